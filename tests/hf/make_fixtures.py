#!/usr/bin/env python3
"""Reference fixtures for traind's CPU forward: HF transformers DINOv2 models
built from random configs (no downloads), every parameter randomized, outputs
computed in float64 on the CPU with eager attention and stored as float32.

Writes, under --out, one directory per fixture:
  config.json, model.safetensors (HF Dinov2Model names, fp32),
  io.safetensors (pixel_values [B,3,H,W], last_hidden_state [B,T,D], pooler_output [B,D])

Run on a machine with torch + transformers (the GPU machine):
  python3 tests/hf/make_fixtures.py --out tests/fixtures
"""
import argparse, json, os
import torch
from safetensors.torch import save_file
import transformers
from transformers import (Dinov2Config, Dinov2Model,
                          Dinov2WithRegistersConfig, Dinov2WithRegistersModel)

FIXTURES = [
    # name, registers, table image_size, input size, batch
    ("hf_tiny", 0, 56, 56, 2),
    ("hf_tiny_interp", 0, 42, 56, 2),
    ("hf_tiny_reg", 4, 42, 56, 2),
    ("hf_tiny_518", 0, 518, 224, 1),
    ("hf_tiny_reg_518", 4, 518, 224, 1),
]

def randomize(model, g):
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if name.endswith("lambda1"):
                p.copy_(0.5 + 0.25 * r)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * r)
            elif name.endswith("bias"):
                p.copy_(0.05 * r)
            elif "embeddings" in name and "patch" not in name:
                p.copy_(0.5 * r)
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(r / fan_in ** 0.5)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(1234)
    for name, regs, table, size, batch in FIXTURES:
        kw = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=4,
                  patch_size=14, image_size=table, layer_norm_eps=1e-6, layerscale_value=1.0,
                  hidden_act="gelu", qkv_bias=True, use_swiglu_ffn=False, drop_path_rate=0.0,
                  attn_implementation="eager")
        if regs:
            cfg = Dinov2WithRegistersConfig(num_register_tokens=regs, **kw)
            model = Dinov2WithRegistersModel(cfg)
        else:
            cfg = Dinov2Config(**kw)
            model = Dinov2Model(cfg)
        model.eval()
        randomize(model, g)
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        cfg.save_pretrained(d)
        sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, os.path.join(d, "model.safetensors"))
        px = torch.randn(batch, 3, size, size, generator=g, dtype=torch.float64).float()
        m64 = model.double()
        with torch.no_grad():
            out = m64(pixel_values=px.double())
        io = {"pixel_values": px.contiguous(),
              "last_hidden_state": out.last_hidden_state.float().contiguous(),
              "pooler_output": out.pooler_output.float().contiguous()}
        save_file(io, os.path.join(d, "io.safetensors"),
                  metadata={"transformers": transformers.__version__, "torch": torch.__version__})
        print(name, "T =", out.last_hidden_state.shape[1], "keys", len(sd))

if __name__ == "__main__":
    main()
