/* gpu/forward.h — `traind forward`: run the backbone of a HF DINOv2 checkpoint
 * directory (or a traind checkpoint) on given pixels and write HF-named outputs
 * (SPEC §7), so anyone can check traind against transformers on their weights.
 *
 *   traind forward --weights DIR --input IN.safetensors --out OUT.safetensors
 *                  [--precision fp32|bf16] [--backend cpu|cuda|auto] [--device N] [--batch N]
 *
 * IN holds `pixel_values` F32 [B,3,H,W] (H, W multiples of the patch size);
 * OUT gets `last_hidden_state` F32 [B,T,D] and `pooler_output` F32 [B,D]. */
#ifndef TRAIND_FORWARD_H
#define TRAIND_FORWARD_H

#include <stddef.h>

typedef struct {
    const char *weights;      /* HF or traind checkpoint directory */
    const char *input;        /* safetensors with pixel_values */
    const char *out;          /* safetensors to write */
    const char *precision;    /* "fp32" (default) | "bf16" */
    const char *backend;      /* "cpu" | "cuda" | "auto" (default) */
    int device;               /* cuda device index */
    int max_batch;            /* images per forward call (0: 16) */
} forward_opts_t;

/* The library path: 0, or -1 with a message in err. */
int forward_run(const forward_opts_t *o, char *err, size_t errlen);

/* The subcommand: argv[0] is "forward"; flags follow. Exit status 0, 1 on a
 * failure, 2 on a usage error (messages on stderr). */
int forward_main(int argc, char **argv);

#endif
