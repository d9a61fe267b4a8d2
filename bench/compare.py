#!/usr/bin/env python3
"""bench/compare.py — tabulates the SPEC §8 benchmarks, traind next to PyTorch.

Two subcommands (standard library only: it runs on the GPU machine's python3):

  compare.py table LOG [--md]
      Reads every `RESULT {json}` line of LOG (bench/run_device.sh's bench.log:
      bench/torch_ref.py's and build/release/bench/bench_traind's output, and
      second-job's below) and prints one table: traind vs torch eager and
      torch.compile images/s and peak memory per train batch, eval images/s,
      load GB/s, the second job's time to its first step, each with the ratio
      the goal is stated in and PASS/MISS against the goal:
        train  >= 1.3x torch.compile    eval >= 1.5x torch eager
        load   >= 10 GB/s               second job's first step <= 2 s
      Then traind's per-op profiles (bench_traind --profile), top ops first.
      --md prints Markdown (for bench/RESULTS.md). Exit status 0 even
      when a goal is missed (a benchmark reports; it does not fail).

  compare.py second-job --url URL [--backbone dinov2-small] [--freeze 0]
                        [--batch 32] [--image 224] [--samples 256] [--steps 5]
                        [--dataset bench] [--token T]
      Against a running traind: loads a synthetic dataset (POST /v1/datasets)
      and waits until it is ready and resident; submits a first train job and
      waits for its end (warm-up: page cache, driver, the daemon's paths);
      then submits a second, identical job and measures from just before its
      POST /v1/jobs to the first poll (GET /v1/jobs/{id} every 20 ms) that
      shows progress.step >= 1; also when it left `queued`. Prints a
      `RESULT {json}` line (bench "second_job") and waits for the job's end.

  compare.py data-parallel --url URL --devices N [--backbone dinov2-base]
                           [--freeze 0] [--batch 128] [--image 224]
                           [--samples 1024] [--steps 30]
      Against a running traind with N devices: the same train job (global
      batch --batch) on 1 device, then on N ("devices": N), each after a
      warm-up job; prints a `RESULT {json}` line (bench "data_parallel") with
      both jobs' images/s (from their results), the scaling (N-device over
      1-device images/s) and the largest relative difference of their loss
      series (the same losses up to float summation order).
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request

GOALS = {"train": 1.3, "eval": 1.6, "load": 10.0, "second_job": 2.0, "augment_cost": 3.0}


# ---------------------------------------------------------------------------- table

def read_results(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            i = line.find("RESULT {")
            if i < 0:
                continue
            try:
                out.append(json.loads(line[i + len("RESULT "):]))
            except json.JSONDecodeError:
                print(f"compare: skipping a malformed RESULT line: {line.strip()[:120]}", file=sys.stderr)
    return out


def pick(results, **kw):
    """Last result matching every key=value (later runs override earlier ones)."""
    found = None
    for r in results:
        if all(r.get(k) == v for k, v in kw.items()):
            found = r
    return found


def fmt(x, spec="{:.1f}"):
    return "–" if x is None else spec.format(x)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def verdict(value, goal, higher_is_better=True):
    if value is None:
        return "n/a"
    ok = value >= goal if higher_is_better else value <= goal
    return "PASS" if ok else "MISS"


def mem_note(e, c, best):
    """torch's device-level drop (the measure traind's number is), where the run recorded it."""
    parts = [f"{n} {r['dev_drop_gb']:.2f}" for n, r in (("eager", e), ("compile", c), ("best", best))
             if r and r.get("dev_drop_gb") is not None]
    return "; torch free-memory drop: " + ", ".join(parts) if parts else ""


def build_rows(results):
    rows = []   # (measurement, traind, torch eager, torch.compile, ratio, goal, verdict, note)
    # one row pair per (size, frozen blocks, batch): dinov2-large with 12 frozen
    # blocks and dinov2-base fully trained are separate shapes
    trains = sorted({(r.get("size"), r.get("freeze"), r.get("batch")) for r in results
                     if r.get("bench") == "train" and r.get("batch")}, key=lambda k: (str(k[0]), k[1] or 0, k[2]))
    for size, frz, b in trains:
        key = dict(bench="train", size=size, freeze=frz, batch=b)
        t = pick(results, impl="traind", **key)
        e = pick(results, impl="torch-eager", **key)
        c = pick(results, impl="torch-compile", **key)
        best = pick(results, impl="torch-best", **key)
        ti = t and t.get("images_per_s")
        rc = ratio(ti, c and c.get("images_per_s"))
        rb = ratio(ti, best and best.get("images_per_s"))
        re_ = ratio(ti, e and e.get("images_per_s"))
        note = f"vs eager {fmt(re_, '{:.2f}x')}"
        if best:
            note += (f"; torch-best (bf16 in, max-autotune) {fmt(best.get('images_per_s'))} img/s, "
                     f"{fmt(best.get('peak_mem_gb'), '{:.2f}')} GB: traind {fmt(rb, '{:.2f}x')}")
        if t and t.get("tflops"):
            note += f"; traind {t['tflops']:.0f} TFLOP/s"
        if t and isinstance(t.get("phases"), dict):
            p = t["phases"]
            note += (" (fwd {:.1f} / bwd {:.1f} / opt {:.1f} ms)".format(
                1e3 * p.get("forward_s", 0), 1e3 * p.get("backward_s", 0), 1e3 * p.get("adamw_s", 0)))
        shape = f"{size} freeze {frz}" if frz is not None else f"{size}"
        rows.append((f"train {shape} b{b} img/s", fmt(ti), fmt(e and e.get("images_per_s")),
                     fmt(c and c.get("images_per_s")), fmt(rc, "{:.2f}x"), "≥ 1.3x compile",
                     verdict(rc, GOALS["train"]), note))
        rows.append((f"train {shape} b{b} peak GB", fmt(t and t.get("peak_mem_gb"), "{:.2f}"),
                     fmt(e and e.get("peak_mem_gb"), "{:.2f}"), fmt(c and c.get("peak_mem_gb"), "{:.2f}"),
                     "", "", "", "traind: free-memory drop; torch: max_memory_allocated" + mem_note(e, c, best)))
    evals = sorted({r.get("batch") for r in results if r.get("bench") == "eval" and r.get("batch")})
    for b in evals:
        t = pick(results, bench="eval", impl="traind", batch=b)
        e = pick(results, bench="eval", impl="torch-eager", batch=b)
        ti = t and t.get("images_per_s")
        re_ = ratio(ti, e and e.get("images_per_s"))
        size = (t or e or {}).get("size", "?")
        note = f"traind {t['tflops']:.0f} TFLOP/s" if t and t.get("tflops") else ""
        rows.append((f"eval {size} b{b} img/s", fmt(ti), fmt(e and e.get("images_per_s")), "–",
                     fmt(re_, "{:.2f}x"), f"≥ {GOALS['eval']}x eager", verdict(re_, GOALS["eval"]), note))
        rows.append((f"eval {size} b{b} peak GB", fmt(t and t.get("peak_mem_gb"), "{:.2f}"),
                     fmt(e and e.get("peak_mem_gb"), "{:.2f}"), "–", "", "", "", ""))
    t = pick(results, bench="load", impl="traind")
    tl = pick(results, bench="load", impl="torch.load")
    sf = pick(results, bench="load", impl="safetensors")
    if t or tl or sf:
        g = t and t.get("gb_per_s")
        note = f"torch.load {fmt(tl and tl.get('gb_per_s'))} GB/s, safetensors {fmt(sf and sf.get('gb_per_s'))} GB/s"
        if t:
            note += f"; traind {t.get('gb', 0):.2f} GB resident, best {fmt(t.get('best_gb_per_s'))} GB/s"
        rows.append(("load GB/s (warm page cache)", fmt(g), fmt(tl and tl.get("gb_per_s")), "–",
                     fmt(ratio(g, sf and sf.get("gb_per_s")), "{:.2f}x"), "≥ 10 GB/s",
                     verdict(g, GOALS["load"]), note + "; ratio vs safetensors"))
    for b in sorted({r.get("batch") for r in results if r.get("bench") == "augment_cost" and r.get("batch")}):
        a = pick(results, bench="augment_cost", impl="traind", batch=b)
        c = a.get("cost_pct")
        note = (f"plain {fmt(1e3 * a['step_s_plain'] if a.get('step_s_plain') else None, '{:.1f}')} ms, augmented "
                f"{fmt(1e3 * a['step_s_augment'] if a.get('step_s_augment') else None, '{:.1f}')} ms per step "
                f"(interleaved, medians of {a.get('iters')})")
        rows.append((f"augmentation cost {a.get('size', '?')} b{b} %", fmt(c, "{:.2f}"), "–", "–", "", "≤ 3 %",
                     verdict(c, GOALS["augment_cost"], higher_is_better=False), note))
    for s in [r for r in results if r.get("bench") == "second_job"]:
        v = s.get("first_step_s")
        note = (f"{s.get('backbone')} b{s.get('batch')}: queued→running {fmt(s.get('to_running_s'), '{:.2f}')} s, "
                f"first job {fmt(s.get('first_job_first_step_s'), '{:.2f}')} s")
        rows.append((f"second job → first step s ({s.get('backbone')})", fmt(v, "{:.2f}"), "–", "–", "",
                     "≤ 2 s", verdict(v, GOALS["second_job"], higher_is_better=False), note))
    for d in [r for r in results if r.get("bench") == "data_parallel"]:
        note = (f"{d.get('backbone')} b{d.get('batch')} global: 1 device {fmt(d.get('images_per_s_1'))} img/s; "
                f"losses within {fmt(d.get('max_rel_loss_diff'), '{:.1e}')} of the 1-device job's")
        rows.append((f"data parallel, {d.get('devices')} GPUs img/s", fmt(d.get("images_per_s_n")), "–", "–",
                     f"{fmt(d.get('scaling'), '{:.2f}')}x of 1 GPU", "–", "", note))
    return rows


HEAD = ("measurement", "traind", "torch eager", "torch.compile", "ratio", "goal", "", "notes")


def profile_lines(results, md, top=14):
    out = []
    for p in [r for r in results if r.get("bench") == "profile"]:
        ceil = p.get("matmul_ceiling_tflops")
        head = (f"traind per-op profile, {p.get('size')} batch {p.get('batch')} ({p.get('steps')} steps, sync around "
                f"each op): sum {p.get('sum_ms_per_step', 0):.1f} ms/step vs {p.get('step_ms_unprofiled', 0):.1f} "
                f"unprofiled; matrix products {p.get('matmul_ms_per_step', 0):.1f} ms at "
                f"{p.get('matmul_tflops', 0):.0f} TFLOP/s" + (f" (ceiling 8192^3 bf16: {ceil:.0f})" if ceil else ""))
        out.append("")
        out.append(("**" + head + "**") if md else head)
        if md:
            out.append("")
            out.append("| op | calls/step | ms/step | TFLOP/s |")
            out.append("|---|---|---|---|")
        for o in (p.get("ops") or [])[:top]:
            tf = f"{o['tflops']:.0f}" if o.get("tflops") else ""
            if md:
                out.append(f"| {o['op']} | {o['calls_per_step']:g} | {o['ms_per_step']:.2f} | {tf} |")
            else:
                out.append(f"  {o['op']:<40} {o['calls_per_step']:>6g}/step {o['ms_per_step']:>9.2f} ms  {tf}")
    return out


def cmd_table(a):
    results = read_results(a.log)
    if not results:
        print(f"compare: no RESULT lines in {a.log}", file=sys.stderr)
        return 1
    rows = build_rows(results)
    gpu = next((r.get("gpu") for r in results if r.get("gpu")), "?")
    if a.md:
        print(f"Card: {gpu}\n")
        print("| " + " | ".join(HEAD) + " |")
        print("|" + "---|" * len(HEAD))
        for r in rows:
            print("| " + " | ".join(str(x) for x in r) + " |")
    else:
        print(f"card: {gpu}")
        w = [max(len(str(r[i])) for r in rows + [HEAD]) for i in range(len(HEAD) - 1)]
        for r in [HEAD] + rows:
            print("  ".join(str(x).ljust(w[i]) for i, x in enumerate(r[:-1])) + "  " + str(r[-1]))
    for line in profile_lines(results, a.md):
        print(line)
    return 0


# ------------------------------------------------------------------------ second job

class Api:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"null")
            except json.JSONDecodeError:
                return e.code, None
        except (urllib.error.URLError, OSError) as e:   # not listening (yet), reset, timeout
            return 0, {"error": {"code": "connection", "message": str(e)}}


def wait_until(fn, timeout, every):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        v = fn()
        if v is not None:
            return v
        time.sleep(every)
    return None


TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def run_job(api, spec, timeout):
    """Submit spec; returns (seconds to leave queued, seconds to step >= 1, id)."""
    t0 = time.monotonic()
    st, rec = api.call("POST", "/v1/jobs", spec)
    if st not in (200, 201) or not rec or "id" not in rec:
        raise RuntimeError(f"POST /v1/jobs -> {st}: {rec}")
    jid = rec["id"]
    to_running = None
    while True:
        st, rec = api.call("GET", f"/v1/jobs/{jid}")
        now = time.monotonic() - t0
        if st != 200:
            raise RuntimeError(f"GET /v1/jobs/{jid} -> {st}: {rec}")
        if to_running is None and rec.get("state") != "queued":
            to_running = now
        step = (rec.get("progress") or {}).get("step") or 0
        if step >= 1:
            return to_running, now, jid
        if rec.get("state") in TERMINAL:
            raise RuntimeError(f"job {jid} ended {rec.get('state')} before its first step: {rec.get('error')}")
        if now > timeout:
            raise RuntimeError(f"job {jid}: no step within {timeout} s (state {rec.get('state')})")
        time.sleep(0.02)


def wait_job_end(api, jid, timeout):
    def done():
        st, rec = api.call("GET", f"/v1/jobs/{jid}")
        return rec if st == 200 and rec.get("state") in TERMINAL else None
    rec = wait_until(done, timeout, 0.2)
    if rec is None:
        raise RuntimeError(f"job {jid} did not end within {timeout} s")
    return rec


def dataset_ready(api, name, source, timeout, every):
    """The daemon answering /v1/health, then dataset `name` resident: POSTed with
    `source` (e.g. {"synthetic": {...}} or {"path": ...}) unless it is already
    there, then polled every `every` s until ready. Returns (record, seconds
    from the POST, or from finding it, to ready), or (None, None) having said why."""
    if wait_until(lambda: api.call("GET", "/v1/health", timeout=2)[0] == 200 or None, min(timeout, 60), 0.2) is None:
        print("compare: traind does not answer /v1/health", file=sys.stderr)
        return None, None
    t0 = time.monotonic()
    st, rec = api.call("GET", f"/v1/datasets/{name}")
    if st == 404:
        t0 = time.monotonic()
        st, rec = api.call("POST", "/v1/datasets", dict({"name": name}, **source))
        if st not in (200, 201, 202, 409):
            print(f"compare: POST /v1/datasets -> {st}: {rec}", file=sys.stderr)
            return None, None

    def ready():
        s, r = api.call("GET", f"/v1/datasets/{name}")
        return r if s == 200 and r.get("state") in ("ready", "failed") else None
    ds = wait_until(ready, timeout, every)
    load_s = time.monotonic() - t0
    if not ds or ds.get("state") != "ready":
        print(f"compare: dataset {name} not ready after {load_s:.1f} s: {ds}", file=sys.stderr)
        return None, None
    return ds, load_s


def cmd_second_job(a):
    api = Api(a.url, a.token)
    ds, load_s = dataset_ready(api, a.dataset, {"synthetic": {"samples": a.samples, "image_size": a.image, "seed": 1}},
                               a.timeout, 0.1)
    if ds is None:
        return 1
    spec = {"type": "train", "dataset": a.dataset, "batch_size": a.batch, "steps": a.steps,
            "eval_every": 0, "checkpoint_every": 0,
            "model": {"backbone": a.backbone, "freeze_layers": a.freeze}}
    try:
        r1, f1, j1 = run_job(api, spec, a.timeout)
        e1 = wait_job_end(api, j1, a.timeout)
        r2, f2, j2 = run_job(api, spec, a.timeout)
        e2 = wait_job_end(api, j2, a.timeout)
    except RuntimeError as e:
        print(f"compare: second-job: {e}", file=sys.stderr)
        return 1
    print("RESULT " + json.dumps({
        "bench": "second_job", "impl": "traind", "backbone": a.backbone, "freeze": a.freeze, "batch": a.batch,
        "image": a.image, "samples": a.samples, "first_step_s": f2, "to_running_s": r2,
        "first_job_first_step_s": f1, "first_job_to_running_s": r1, "dataset_load_s": load_s,
        "jobs": [j1, j2], "states": [e1.get("state"), e2.get("state")],
        "images_per_s": (e2.get("progress") or {}).get("images_per_s")}), flush=True)
    return 0


def cmd_data_parallel(a):
    api = Api(a.url, a.token)
    ds, _ = dataset_ready(api, a.dataset, {"synthetic": {"samples": a.samples, "image_size": a.image, "seed": 1}},
                          a.timeout, 0.2)
    if ds is None:
        return 1
    out = {"bench": "data_parallel", "impl": "traind", "backbone": a.backbone, "freeze": a.freeze,
           "batch": a.batch, "image": a.image, "devices": a.devices, "residency": ds.get("residency")}
    losses = {}
    try:
        for n in (1, a.devices):
            spec = {"type": "train", "dataset": a.dataset, "batch_size": a.batch, "steps": a.steps, "seed": 1,
                    "eval_every": 0, "checkpoint_every": 0, "devices": n,
                    "model": {"backbone": a.backbone, "freeze_layers": a.freeze}}
            warm = dict(spec, steps=3)
            _, _, jw = run_job(api, warm, a.timeout)
            wait_job_end(api, jw, a.timeout)
            _, _, j = run_job(api, spec, a.timeout)
            e = wait_job_end(api, j, a.timeout)
            if e.get("state") != "succeeded":
                raise RuntimeError(f"job {j} on {n} device(s): {e.get('state')}: {e.get('error')}")
            out[f"images_per_s_{'1' if n == 1 else 'n'}"] = (e.get("result") or {}).get("images_per_s")
            st, m = api.call("GET", f"/v1/jobs/{j}/metrics?name=loss")
            losses[n] = [p["value"] for p in (m if isinstance(m, list) else [])]
    except RuntimeError as e:
        print(f"compare: data-parallel: {e}", file=sys.stderr)
        return 1
    a1, an = losses.get(1) or [], losses.get(a.devices) or []
    if a1 and len(a1) == len(an):
        out["max_rel_loss_diff"] = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a1, an))
    if out.get("images_per_s_1") and out.get("images_per_s_n"):
        out["scaling"] = out["images_per_s_n"] / out["images_per_s_1"]
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def cmd_headline(a):
    """SPEC's headline through the daemon: a large path dataset made resident
    (POST -> ready, and the load rate the record gives), then a train, an eval
    and an infer job from it, each timed from POST to its first step and to its
    end. One RESULT line per phase."""
    api = Api(a.url, a.token)
    ds, load_s = dataset_ready(api, a.dataset, {"path": a.path}, a.timeout, 0.05)
    if ds is None:
        return 1
    print("RESULT " + json.dumps({"bench": "headline_load", "impl": "traind", "post_to_ready_s": load_s,
                                  "dataset": {k: ds.get(k) for k in ("samples", "bytes", "resident_bytes", "image_size",
                                                                     "load", "dtype", "device", "devices")
                                              if k in ds}}), flush=True)
    model = {"backbone": a.backbone, "freeze_layers": a.freeze}
    specs = [
        ("train", {"type": "train", "dataset": a.dataset, "batch_size": a.batch, "steps": a.steps,
                   "eval_every": 0, "checkpoint_every": 0, "model": model}),
        ("eval", {"type": "eval", "dataset": a.dataset, "batch_size": 256, "model": model,
                  "indices": [[0, a.eval_samples]]}),
        ("infer", {"type": "infer", "dataset": a.dataset, "batch_size": 256, "model": model,
                   "indices": [[0, a.infer_samples]]}),
    ]
    rc = 0
    for name, spec in specs:
        t1 = time.monotonic()
        try:
            to_run, first, jid = run_job(api, spec, a.timeout)
            end = wait_job_end(api, jid, a.timeout)
        except RuntimeError as e:
            print(f"compare: headline {name}: {e}", file=sys.stderr)
            rc = 1
            continue
        prog = end.get("progress") or {}
        print("RESULT " + json.dumps({"bench": "headline_" + name, "impl": "traind", "job": jid,
                                      "state": end.get("state"), "error": end.get("error"),
                                      "to_running_s": to_run, "first_step_s": first,
                                      "total_s": time.monotonic() - t1, "images_per_s": prog.get("images_per_s"),
                                      "progress": prog}), flush=True)
        if end.get("state") != "succeeded":
            rc = 1
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="tabulate RESULT lines")
    t.add_argument("log")
    t.add_argument("--md", action="store_true")
    def against_daemon(name, help_, dataset, backbone, freeze, batch):
        """a subcommand run against a running traind, with the options every such one has"""
        p = sub.add_parser(name, help=help_)
        p.add_argument("--url", required=True)
        p.add_argument("--token", default="")
        p.add_argument("--dataset", default=dataset)
        p.add_argument("--backbone", default=backbone)
        p.add_argument("--freeze", type=int, default=freeze)
        p.add_argument("--batch", type=int, default=batch)
        p.add_argument("--timeout", type=float, default=300)
        return p
    s = against_daemon("second-job", "a second job's time to its first step, against a running traind",
                       "bench", "dinov2-small", 0, 32)
    s.add_argument("--image", type=int, default=224)
    s.add_argument("--samples", type=int, default=256)
    s.add_argument("--steps", type=int, default=5)
    d = against_daemon("data-parallel", "a train job on 1 and on N devices, against a running traind",
                       "bench_dp", "dinov2-base", 0, 128)
    d.add_argument("--devices", type=int, default=2)
    d.add_argument("--image", type=int, default=224)
    d.add_argument("--samples", type=int, default=1024)
    d.add_argument("--steps", type=int, default=30)
    h = against_daemon("headline", "a large path dataset resident, then train, eval and infer from it",
                       "headline", "dinov2-large", 12, 32)
    h.add_argument("--path", required=True)
    h.add_argument("--steps", type=int, default=100)
    h.add_argument("--eval-samples", type=int, default=16384)
    h.add_argument("--infer-samples", type=int, default=4096)
    a = ap.parse_args()
    return {"table": cmd_table, "second-job": cmd_second_job, "data-parallel": cmd_data_parallel,
            "headline": cmd_headline}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
