#!/usr/bin/env python3
"""GPU check of `traind forward` against Hugging Face Dinov2Model (SPEC §8 numerics).

For each size (small, base, large) and with/without registers: a random HF model
(no downloads; every parameter randomized), saved as a HF checkpoint directory;
pixel values at 224 px (the 518-px position table interpolated, as real DINOv2
checkpoints need); reference computed in float64 on the GPU; `traind forward`
run on the given backend in fp32 and bf16. Relative error ||out-ref||/||ref||
must be <= 1e-5 (fp32) and <= 2e-2 (bf16). Prints TAP.

  python3 tests/hf/check_forward.py --traind build/release/traind [--backend cuda]
"""
import argparse, os, subprocess, sys, tempfile
import torch
from safetensors.torch import save_file, load_file
from transformers import (Dinov2Config, Dinov2Model,
                          Dinov2WithRegistersConfig, Dinov2WithRegistersModel)

from make_fixtures import randomize   # the same randomization as the CPU fixtures (same folder)

SIZES = {"small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traind", required=True)
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--sizes", default="small,base,large")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--image", type=int, default=224)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(7)
    n = 0
    failed = 0
    tmp = tempfile.mkdtemp()
    for size in a.sizes.split(","):
        for regs in (0, 4):
            if regs and size != "small":
                continue                      # registers: once is enough for the loader path
            d, L, H = SIZES[size]
            kw = dict(hidden_size=d, num_hidden_layers=L, num_attention_heads=H, mlp_ratio=4,
                      patch_size=14, image_size=518, layer_norm_eps=1e-6, attn_implementation="eager")
            if regs:
                cfg = Dinov2WithRegistersConfig(num_register_tokens=regs, **kw)
                model = Dinov2WithRegistersModel(cfg)
            else:
                cfg = Dinov2Config(**kw)
                model = Dinov2Model(cfg)
            randomize(model, g)
            wdir = os.path.join(tmp, f"{size}-r{regs}")
            os.makedirs(wdir, exist_ok=True)
            cfg.save_pretrained(wdir)
            save_file({k: v.float().contiguous() for k, v in model.state_dict().items()},
                      os.path.join(wdir, "model.safetensors"))
            px = torch.randn(a.batch, 3, a.image, a.image, generator=g)
            inp = os.path.join(wdir, "in.safetensors")
            save_file({"pixel_values": px.contiguous()}, inp)
            with torch.no_grad():
                ref = model.double().cuda()(pixel_values=px.double().cuda())
            refs = {k: getattr(ref, k).float().cpu() for k in ("last_hidden_state", "pooler_output")}
            del model, ref
            torch.cuda.empty_cache()
            for prec, tol in (("fp32", 1e-5), ("bf16", 2e-2)):
                out = os.path.join(wdir, f"out-{prec}.safetensors")
                r = subprocess.run([a.traind, "forward", "--weights", wdir, "--input", inp, "--out", out,
                                    "--precision", prec, "--backend", a.backend],
                                   capture_output=True, text=True)
                for k, v in refs.items():
                    n += 1
                    name = f"{size} registers={regs} {prec} {k}"
                    if r.returncode != 0:
                        print(f"not ok {n} - {name}: traind forward failed: {r.stderr.strip()[-400:]}")
                        failed += 1
                        continue
                    o = load_file(out)[k]
                    if o.shape != v.shape:
                        print(f"not ok {n} - {name}: shape {tuple(o.shape)} != {tuple(v.shape)}")
                        failed += 1
                        continue
                    rel = ((o.double() - v.double()).norm() / v.double().norm()).item()
                    good = rel == rel and rel <= tol
                    failed += not good
                    print(f"{'' if good else 'not '}ok {n} - {name}: rel err {rel:.3e} (tol {tol:g})")
                    sys.stdout.flush()
    print(f"1..{n}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
