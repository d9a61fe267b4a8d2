#!/usr/bin/env python3
"""bench/import_http.py — the traind side of bench/import_device.sh, over the
REST API with nothing but Python's standard library (one process for the
whole poll loop, 5 ms between polls, a time limit per import): wait for the daemon, import a manifest under
a name (POST /v1/datasets, then GET every 5 ms until "ready" or "failed"),
and print the timing lines the benchmark's table reads.

    import_http.py URL MANIFEST SIZE RESIZE NAME [NAME...]

One RESULT line per import (end to end; the first also its decode phase);
the second and later names import the same manifest again: the cache-hit
path. Exit status 1 when the daemon does not answer or an import fails."""
import json
import sys
import time
import urllib.error
import urllib.request


def call(url, method="GET", body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_health(base, limit_s=30.0):
    t_end = time.monotonic() + limit_s
    while time.monotonic() < t_end:
        try:
            if call(base + "/v1/health", timeout=2)[0] == 200:
                return True
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    return False


def import_one(base, manifest, size, resize, name, limit_s=600.0):
    t0 = time.monotonic()
    st, rec = call(base + "/v1/datasets", "POST",
                   {"name": name, "import": {"manifest": manifest, "image_size": size, "resize": resize}})
    if st != 202:
        raise RuntimeError(f"POST import {name}: HTTP {st}: {rec}")
    while True:
        st, rec = call(f"{base}/v1/datasets/{name}", timeout=5)
        if st == 200 and rec.get("state") in ("ready", "failed"):
            break
        if time.monotonic() - t0 > limit_s:
            raise RuntimeError(f"import {name}: not ready after {limit_s:.0f} s: {rec}")
        time.sleep(0.005)
    t = time.monotonic() - t0
    if rec["state"] != "ready":
        raise RuntimeError(f"import {name}: {rec.get('error')}")
    return t, rec


def main():
    base, manifest, size, resize, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
    if not wait_health(base):
        print(f"ERROR: traind did not answer at {base}/v1/health", flush=True)
        return 1
    for i, name in enumerate(names):
        try:
            t, rec = import_one(base, manifest, size, resize, name)
        except (RuntimeError, urllib.error.URLError, OSError) as e:
            print(f"ERROR: {e}", flush=True)
            return 1
        imp = rec.get("import") or {}
        n = rec.get("samples", 0)
        kind = "end_to_end" if i == 0 else "cache_hit"
        print(f"RESULT import_traind {kind} images_per_s={n / t:.1f} n={n} s={t:.3f} "
              f"cache_hit={str(bool(imp.get('cache_hit'))).lower()}", flush=True)
        if i == 0:
            print(f"RESULT import_traind decode_phase images_per_s={imp.get('images_per_s', 0):.1f} "
                  f"s={imp.get('decode_s', 0):.3f}", flush=True)
            keep = {k: rec.get(k) for k in ("samples", "image_size", "bytes", "gb_per_s")}
            keep["import"] = {k: imp.get(k) for k in ("imported", "skipped", "cache_hit", "prepare_s", "decode_s",
                                                      "images_per_s", "decoder", "gpu_frames")}
            print("# record: " + json.dumps(keep), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
