# traind — build and test.
#
#   make            release build (CPU backend always; CUDA backend when nvcc is found)
#   make test       sanitizer build (ASan+UBSan, CPU backend) and the whole suite under prove
#   make test-gpu   GPU tests (needs a GPU; see tests/gpu/run_device.sh)
#   make install    PREFIX=/usr/local DESTDIR=
#
# Sources are discovered per directory; a new file needs no Makefile edit:
#   gpu/*.c store/*.c api/*.c daemon/*.c   -> the core library (daemon/main.c is the entry)
#   gpu/cuda/*.cu                          -> CUDA backend (only when nvcc exists)
#   clients/trainctl.c                     -> trainctl
#   tests/unit/test_*.c                    -> one TAP test binary each
#   tests/integration/*.sh                 -> TAP shell tests against a real daemon
#   tests/gpu/test_*.c                     -> GPU test binaries (make test-gpu)
#   api/dashboard/*.{html,js,css,svg}      -> the dashboard, built into traind (with Chart.js
#                                             from Debian's libjs-chart.js) as byte arrays
#   tests/tools/*.c                        -> test helpers (build/test/tools/, build/release/tools/)

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wstrict-prototypes
CSTD    := -std=gnu11
INC     := -I. -I/usr/include/x86_64-linux-gnu
PKGS    := jansson sqlite3 libmicrohttpd libsystemd gnutls libturbojpeg libpng
LIBS    := $(shell pkg-config --libs $(PKGS)) -lopenblas -lpthread -lm
CURLLIB := $(shell pkg-config --libs libcurl) -ljansson -lm

CORE_SRC := $(filter-out daemon/main.c,$(wildcard gpu/*.c store/*.c api/*.c daemon/*.c))
CU_SRC   := $(wildcard gpu/cuda/*.cu)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
GPU_SRC  := $(wildcard tests/gpu/test_*.c)
TOOL_SRC := $(wildcard tests/tools/*.c)

.DEFAULT_GOAL := all

# ---- dashboard assets ------------------------------------------------------
# Our page, scripts and style sheet plus Chart.js (Debian's libjs-chart.js,
# installed by scripts/install-deps.sh) become build/gen/api/dashboard_assets.c;
# nothing of it is committed or fetched at run time.
CHARTJS  ?= /usr/share/javascript/chart.js/chart.min.js
DASH_IN  := $(sort $(wildcard api/dashboard/*.html api/dashboard/*.js api/dashboard/*.css \
                              api/dashboard/*.svg)) $(CHARTJS)
GEN      := build/gen
DASH_C   := $(GEN)/api/dashboard_assets.c

$(DASH_C): $(DASH_IN) scripts/embed-assets.py
	@mkdir -p $(dir $@)
	python3 scripts/embed-assets.py $@ $(DASH_IN)
$(CHARTJS):
	@echo "error: $@ is missing: the dashboard embeds Chart.js from the Debian package" \
	      "libjs-chart.js (apt-get install libjs-chart.js, or scripts/install-deps.sh)" >&2; exit 1

# ---- release build --------------------------------------------------------
R        := build/release
RFLAGS   := $(CSTD) -O2 -g -march=x86-64-v2 $(WARN) $(INC) -MMD -MP
ifneq ($(NVCC),)
  HAVE_CUDA := 1
  RFLAGS    += -DTRAIND_CUDA -I$(CUDA_HOME)/include
  CU_OBJ    := $(CU_SRC:%.cu=$(R)/%.o)
  CUDALIBS  := -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib -lcudnn -lcublasLt -lcublas -lcudart -lstdc++ -Wl,-rpath,'$$ORIGIN'
  NVFLAGS   := -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -lineinfo \
               -Xcompiler -Wall,-Wextra,-Werror,-Wno-unused-parameter -I. -MMD -MP
endif
R_OBJ := $(CORE_SRC:%.c=$(R)/%.o) $(R)/gen/api/dashboard_assets.o $(CU_OBJ)

all: $(R)/traind $(R)/trainctl

$(R)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(RFLAGS) -c $< -o $@
$(R)/gen/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(RFLAGS) -c $< -o $@
$(R)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
# the image kernels compute the CPU reference's floats bit for bit: no FMA contraction
$(R)/gpu/cuda/images.o $(R)/gpu/cuda/jpeg_gpu.o: NVFLAGS += --fmad=false
# the importer's pixel loops (resize, CMYK, orientation): -O3 lets GCC vectorize them
$(R)/gpu/image.o $(R)/gpu/imgdec.o: RFLAGS += -O3
$(R)/libtraind.a: $(R_OBJ)
	ar rcs $@ $^
$(R)/traind: $(R)/daemon/main.o $(R)/libtraind.a
	$(CC) $(RFLAGS) -o $@ $^ $(LIBS) $(CUDALIBS)
$(R)/trainctl: clients/trainctl.c
	@mkdir -p $(dir $@)
	$(CC) $(RFLAGS) -o $@ $< $(CURLLIB)

# ---- sanitizer test build (CPU backend only) ------------------------------
T       := build/test
TFLAGS  := $(CSTD) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
           -fno-sanitize-recover=undefined $(WARN) $(INC) -MMD -MP -DTRAIND_TEST
T_OBJ   := $(CORE_SRC:%.c=$(T)/%.o) $(T)/gen/api/dashboard_assets.o
T_BINS  := $(UNIT_SRC:tests/unit/%.c=$(T)/unit/%)
T_TOOLS := $(TOOL_SRC:tests/tools/%.c=$(T)/tools/%)

$(T)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(TFLAGS) -c $< -o $@
$(T)/gen/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(TFLAGS) -c $< -o $@
$(T)/libtraind.a: $(T_OBJ)
	ar rcs $@ $^
$(T)/unit/%: tests/unit/%.c $(T)/libtraind.a
	@mkdir -p $(dir $@)
	$(CC) $(TFLAGS) -o $@ $< $(T)/libtraind.a $(LIBS)
$(T)/tools/%: tests/tools/%.c $(T)/libtraind.a
	@mkdir -p $(dir $@)
	$(CC) $(TFLAGS) -o $@ $< $(T)/libtraind.a $(LIBS)
$(T)/traind: $(T)/daemon/main.o $(T)/libtraind.a
	$(CC) $(TFLAGS) -o $@ $^ $(LIBS)
$(T)/trainctl: clients/trainctl.c
	@mkdir -p $(dir $@)
	$(CC) $(TFLAGS) -o $@ $< $(CURLLIB)

test-build: $(T_BINS) $(T_TOOLS) $(T)/traind $(T)/trainctl

# prove prints the closing summary CI reads ("Result: PASS", Files=, Tests=).
test: test-build
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	TRAIND_BIN=$(CURDIR)/$(T)/traind TRAINCTL_BIN=$(CURDIR)/$(T)/trainctl \
	prove --exec '' --timer tests/lint/layers.sh $(T_BINS) $(sort $(wildcard tests/integration/*.sh))

# ---- GPU tests (run on the GPU machine; see tests/gpu/run_device.sh) ------
G_BINS := $(GPU_SRC:tests/gpu/%.c=$(R)/gpu-tests/%)
$(R)/gpu-tests/%: tests/gpu/%.c $(R)/libtraind.a
	@mkdir -p $(dir $@)
	$(CC) $(RFLAGS) -o $@ $< $(R)/libtraind.a $(LIBS) $(CUDALIBS)
# Benchmarks: bench/*.c -> build/release/bench/* (run on the GPU machine by bench/run_device.sh)
B_BINS := $(patsubst bench/%.c,$(R)/bench/%,$(wildcard bench/*.c))
$(R)/bench/%: bench/%.c $(R)/libtraind.a
	@mkdir -p $(dir $@)
	$(CC) $(RFLAGS) -o $@ $< $(R)/libtraind.a $(LIBS) $(CUDALIBS)
R_TOOLS := $(TOOL_SRC:tests/tools/%.c=$(R)/tools/%)
$(R)/tools/%: tests/tools/%.c $(R)/libtraind.a
	@mkdir -p $(dir $@)
	$(CC) $(RFLAGS) -o $@ $< $(R)/libtraind.a $(LIBS) $(CUDALIBS)
bench-build: all $(B_BINS) $(R_TOOLS)

gpu-tests: all $(G_BINS) $(B_BINS)
test-gpu: gpu-tests
	prove --exec '' --timer $(G_BINS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)/etc/traind
	install -m 755 $(R)/traind $(R)/trainctl $(DESTDIR)$(PREFIX)/bin/
	sed 's,@PREFIX@,$(PREFIX),g' systemd/traind.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/traind.service
	install -m 644 systemd/traind.conf.example $(DESTDIR)/etc/traind/traind.conf.example
	install -m 644 systemd/sysusers-traind.conf $(DESTDIR)$(PREFIX)/lib/sysusers.d/traind.conf

clean:
	rm -rf build

.PHONY: all test test-build test-gpu gpu-tests bench-build install clean
-include $(shell find build -name '*.d' 2>/dev/null)
