#!/usr/bin/env python3
"""PyTorch reference for traind's benchmarks (SPEC §8), as the seed notebook ran it:
HF transformers Dinov2Model (dinov2-large shapes, random weights: no downloads) with
blocks 0..11 and the embeddings frozen, the hand head of SPEC §4, bf16 autocast, SDPA
attention, fused AdamW, a GPU-resident bf16 dataset gathered by a randperm and cast
to fp32 before the encoder. With --bf16-input the bf16 batch goes into the autocast
encoder as it is (no fp32 copy), and --mode max-autotune compiles with that mode: together
the strongest plain-PyTorch version a careful user would write ("torch-best").

Prints one JSON object per measurement (prefix "RESULT ") so bench/run_device.sh can
tabulate them next to traind's numbers from the same call.

  python3 bench/torch_ref.py train --batch 32 [--compile [--mode max-autotune]] [--bf16-input]
  python3 bench/torch_ref.py eval --batch 256
  python3 bench/torch_ref.py load --gb 4
"""
import argparse, json, os, tempfile, time
import torch
import torch.nn as nn
import torch.nn.functional as F

TIPS = [4, 8, 12, 16, 20]


def result(**kw):
    print("RESULT " + json.dumps(kw), flush=True)


def make_backbone(size):
    from transformers import Dinov2Config, Dinov2Model
    dims = {"small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}[size]
    cfg = Dinov2Config(hidden_size=dims[0], num_hidden_layers=dims[1], num_attention_heads=dims[2],
                       mlp_ratio=4, patch_size=14, image_size=518, layer_norm_eps=1e-6,
                       attn_implementation="sdpa")
    return Dinov2Model(cfg), cfg


class HandNet(nn.Module):
    def __init__(self, size, freeze):
        super().__init__()
        self.backbone, cfg = make_backbone(size)
        d = cfg.hidden_size
        self.joints = nn.Sequential(nn.Linear(d, 512), nn.GELU(), nn.Linear(512, 63))
        self.conf = nn.Sequential(nn.Linear(d, 256), nn.GELU(), nn.Linear(256, 21))
        for p in self.backbone.embeddings.parameters():
            p.requires_grad_(False)
        for blk in self.backbone.encoder.layer[:freeze]:
            for p in blk.parameters():
                p.requires_grad_(False)

    def forward(self, x):
        cls = self.backbone(pixel_values=x).last_hidden_state[:, 0]
        return self.joints(cls).view(-1, 21, 3), self.conf(cls)


def hand_loss(pred, conf, gt, valid):
    w = torch.ones(21, device=pred.device)
    w[TIPS] = 10.0
    e = (pred.float() - gt).norm(dim=-1)                      # [B,21]
    wv = w * valid
    joint = (e * wv).sum() / wv.sum().clamp_min(1)
    dp = torch.cdist(pred.float(), pred.float())
    dg = torch.cdist(gt, gt)
    iu = torch.triu_indices(21, 21, 1, device=pred.device)
    pv = valid[:, iu[0]] * valid[:, iu[1]]
    pair = ((dp[:, iu[0], iu[1]] - dg[:, iu[0], iu[1]]).abs() * pv).sum() / pv.sum().clamp_min(1)
    tgt = torch.exp(-e.detach() / 0.02)
    bce = F.binary_cross_entropy_with_logits(conf.float(), tgt, reduction="none")
    confl = (bce * valid).sum() / valid.sum().clamp_min(1)
    return joint + 0.3 * pair + 0.1 * confl


def resident_data(n, size, dev):
    g = torch.Generator(device=dev).manual_seed(0)
    imgs = torch.randn(n, 3, size, size, device=dev, generator=g).to(torch.bfloat16)
    joints = torch.rand(n, 21, 3, device=dev, generator=g) * 0.2 + torch.tensor([0, 0, 0.5], device=dev)
    valid = torch.ones(n, 21, device=dev)
    return imgs, joints, valid


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    times.sort()
    return times[len(times) // 2]


def device_free():
    """Free device memory as the driver sees it (what traind's peak_mem_gb is a drop of)."""
    torch.cuda.synchronize()
    return torch.cuda.mem_get_info()[0]


def mem_fields(free0):
    """peak_mem_gb: the caching allocator's peak of live tensors (max_memory_allocated);
    reserved_gb: what it held from the driver; dev_drop_gb: the drop of the device's free
    memory since before the model was made (allocator cache, cuBLAS/cuDNN workspaces,
    compiled kernels) — the same measure as traind's peak_mem_gb."""
    return dict(peak_mem_gb=torch.cuda.max_memory_allocated() / 1e9,
                reserved_gb=torch.cuda.max_memory_reserved() / 1e9,
                dev_drop_gb=(free0 - device_free()) / 1e9)


def bench_train(a):
    dev = "cuda"
    torch.zeros(1, device=dev)
    free0 = device_free()
    torch.manual_seed(0)
    net = HandNet(a.size, a.freeze).to(dev)
    imgs, joints, valid = resident_data(max(4 * a.batch, 512), a.image, dev)
    decay = [p for n, p in net.named_parameters() if p.requires_grad and p.dim() >= 2]
    nodecay = [p for n, p in net.named_parameters() if p.requires_grad and p.dim() < 2]
    head_ids = {id(p) for p in list(net.joints.parameters()) + list(net.conf.parameters())}
    groups = []
    for ps, wd in ((decay, 0.01), (nodecay, 0.0)):
        groups.append({"params": [p for p in ps if id(p) not in head_ids], "lr": 1e-5, "weight_decay": wd})
        groups.append({"params": [p for p in ps if id(p) in head_ids], "lr": 1e-3, "weight_decay": wd})
    opt = torch.optim.AdamW([g for g in groups if g["params"]], fused=True)
    model = torch.compile(net, mode=a.mode) if a.compile else net
    n = imgs.shape[0]

    def step():
        idx = torch.randint(0, n, (a.batch,), device=dev)
        x = imgs[idx] if a.bf16_input else imgs[idx].float()   # the seed notebook's cast
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred, conf = model(x)
            loss = hand_loss(pred, conf, joints[idx], valid[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    t0 = time.time()
    step(); torch.cuda.synchronize()
    first = time.time() - t0
    torch.cuda.reset_peak_memory_stats()
    sec = timed(step, a.warmup, a.iters)
    result(bench="train", impl=impl_name(a), size=a.size,
           batch=a.batch, image=a.image, freeze=a.freeze, step_s=sec, images_per_s=a.batch / sec,
           first_step_s=first, **mem_fields(free0), gpu=torch.cuda.get_device_name())


def impl_name(a):
    """torch-eager / torch-compile: the seed's way (fp32 cast, default compile);
    torch-best: bf16 inputs and max-autotune; anything else is spelled out."""
    if not a.compile:
        return "torch-eager" + ("-bf16in" if a.bf16_input else "")
    if a.mode == "max-autotune" and a.bf16_input:
        return "torch-best"
    return "torch-compile" + ("" if a.mode == "default" else "-" + a.mode) + ("-bf16in" if a.bf16_input else "")


@torch.no_grad()
def bench_eval(a):
    dev = "cuda"
    torch.zeros(1, device=dev)
    free0 = device_free()
    net = HandNet(a.size, 0).to(dev).eval()
    model = torch.compile(net, mode=a.mode) if a.compile else net
    imgs, _, _ = resident_data(max(2 * a.batch, 512), a.image, dev)
    n = imgs.shape[0]

    def step():
        idx = torch.randint(0, n, (a.batch,), device=dev)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(imgs[idx] if a.bf16_input else imgs[idx].float())

    torch.cuda.reset_peak_memory_stats()
    sec = timed(step, a.warmup, a.iters)
    result(bench="eval", impl=impl_name(a), size=a.size, batch=a.batch, image=a.image, step_s=sec,
           images_per_s=a.batch / sec, **mem_fields(free0), gpu=torch.cuda.get_device_name())


def bench_load(a):
    from safetensors.torch import save_file, load_file
    n = int(a.gb * 1e9 / (3 * a.image * a.image * 2))
    x = torch.randn(n, 3, a.image, a.image).to(torch.bfloat16)
    d = tempfile.mkdtemp(dir=a.tmp)
    pt, st = os.path.join(d, "cache.pt"), os.path.join(d, "cache.safetensors")
    torch.save({"image": x}, pt)
    save_file({"image": x}, st)
    del x
    nbytes = n * 3 * a.image * a.image * 2
    for name, fn in (("torch.load", lambda: torch.load(pt, map_location="cuda")["image"]),
                     ("safetensors", lambda: load_file(st, device="cuda")["image"])):
        fn(); torch.cuda.synchronize()             # warm the page cache
        t0 = time.time(); y = fn(); torch.cuda.synchronize(); dt = time.time() - t0
        del y
        result(bench="load", impl=name, gb=nbytes / 1e9, seconds=dt, gb_per_s=nbytes / 1e9 / dt)
    os.remove(pt); os.remove(st); os.rmdir(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["train", "eval", "load"])
    ap.add_argument("--size", default="large")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--image", type=int, default=224)
    ap.add_argument("--freeze", type=int, default=12)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--mode", default="default", choices=["default", "max-autotune", "reduce-overhead"])
    ap.add_argument("--bf16-input", action="store_true", help="feed the bf16 batch without the fp32 cast")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--gb", type=float, default=4.0)
    ap.add_argument("--tmp", default="/tmp")
    a = ap.parse_args()
    {"train": bench_train, "eval": bench_eval, "load": bench_load}[a.what](a)


if __name__ == "__main__":
    main()
