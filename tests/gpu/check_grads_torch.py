#!/usr/bin/env python3
"""GPU check of a train step's parameter gradients against PyTorch autograd (SPEC §8).

Runs `test_grad_gpu --dump` (traind on the CUDA backend: a small DINOv2 with the
hand head, block 0 frozen, one forward + backward from given upstream gradients
dpred/dconf), then rebuilds the same network in PyTorch from the dumped weights
(HF Dinov2Model + the hand head: pooler -> Linear -> GELU(erf) -> Linear, for
joints and confidence), computes L = sum(pred * dpred) + sum(conf_logit * dconf)
in float64 on the GPU and compares, per trainable tensor, ||traind - torch|| /
max(||torch||, floor): fp32 plan <= 1e-4, bf16 plan <= 5e-2. The floor (1e-3 of
the RMS tensor-gradient norm) is for the attention key biases, whose exact
gradient is zero (softmax ignores a per-query shift): traind's rounding noise
there must be small on the scale of the other gradients. Prints TAP.

  python3 tests/gpu/check_grads_torch.py --bin build/release/gpu-tests/test_grad_gpu
"""
import argparse, os, subprocess, sys, tempfile
import torch
from safetensors import safe_open
from transformers import Dinov2Config, Dinov2Model


def run(binary, path, bf16):
    cmd = [binary, "--dump", path] + (["--bf16"] if bf16 else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    return meta, t


def torch_grads(meta, t):
    D, L, H, img = (int(meta[k]) for k in ("hidden", "layers", "heads", "image"))
    cfg = Dinov2Config(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, mlp_ratio=4,
                       patch_size=14, image_size=img, layer_norm_eps=float(meta["layer_norm_eps"]),
                       attn_implementation="eager")
    model = Dinov2Model(cfg).double().cuda()
    sd = {k: v for k, v in t.items() if k in model.state_dict()}
    missing = [k for k in model.state_dict() if k not in sd]
    if missing:
        raise RuntimeError(f"weights missing from the dump: {missing[:5]}")
    model.load_state_dict({k: v.double() for k, v in sd.items()})
    lin = {}
    for name in ("joints.fc1", "joints.fc2", "conf.fc1", "conf.fc2"):
        w, b = t[f"heads.hand.{name}.weight"], t[f"heads.hand.{name}.bias"]
        m = torch.nn.Linear(w.shape[1], w.shape[0]).double().cuda()
        with torch.no_grad():
            m.weight.copy_(w.double())
            m.bias.copy_(b.double())
        lin[name] = m
    px = t["pixel_values"].double().cuda()
    pool = model(pixel_values=px).pooler_output
    gelu = torch.nn.GELU()   # exact erf
    pred = lin["joints.fc2"](gelu(lin["joints.fc1"](pool)))
    conf = lin["conf.fc2"](gelu(lin["conf.fc1"](pool)))
    loss = (pred * t["dpred"].double().cuda()).sum() + (conf * t["dconf"].double().cuda()).sum()
    loss.backward()
    grads = {f"grad.{k}": p.grad for k, p in model.named_parameters() if p.grad is not None}
    for name, m in lin.items():
        grads[f"grad.heads.hand.{name}.weight"] = m.weight.grad
        grads[f"grad.heads.hand.{name}.bias"] = m.bias.grad
    return pred.detach(), conf.detach(), grads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    n = failed = 0

    def check(good, msg):
        nonlocal n, failed
        n += 1
        failed += not good
        print(f"{'' if good else 'not '}ok {n} - {msg}", flush=True)

    for bf16 in (False, True):
        plan = "bf16" if bf16 else "fp32"
        tol = 5e-2 if bf16 else 1e-4
        try:
            meta, t = run(a.bin, os.path.join(tmp, f"grads-{plan}.safetensors"), bf16)
            pred, conf, ref = torch_grads(meta, t)
        except Exception as e:   # report, do not crash the TAP stream
            check(False, f"{plan}: {e}")
            continue
        for k, v in (("pred", pred), ("conf_logit", conf)):
            rel = ((t[k].double().cuda() - v).norm() / v.norm()).item()
            check(rel == rel and rel <= (2e-2 if bf16 else 1e-5), f"{plan} forward {k}: rel err {rel:.3e}")
        mine = {k: v for k, v in t.items() if k.startswith("grad.")}
        norms = [ref[k].norm().item() for k in mine if k in ref]
        floor = 1e-3 * (sum(x * x for x in norms) / max(len(norms), 1)) ** 0.5
        worst, worst_k, bad = 0.0, "", []
        for k, g in sorted(mine.items()):
            if k not in ref:
                bad.append(f"{k} (no torch gradient)")
                continue
            r = ref[k]
            rel = ((g.double().cuda().reshape(r.shape) - r).norm() / r.norm().clamp_min(max(floor, 1e-30))).item()
            if not (rel == rel and rel <= tol):
                bad.append(f"{k} {rel:.3e}")
            if rel > worst:
                worst, worst_k = rel, k
        check(len(mine) > 0 and not bad,
              f"{plan}: {len(mine) - len(bad)} of {len(mine)} trainable gradients within {tol:g} of PyTorch autograd "
              f"(worst {worst:.3e}, {worst_k[5:]})")
        for b in bad[:10]:
            print(f"#   {b}")
        frozen = [k for k in ref if k not in mine and k.startswith("grad.embeddings")]
        check(len(frozen) > 0, f"{plan}: frozen prefix has no traind gradient ({len(frozen)} embedding tensors)")
    print(f"1..{n}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
