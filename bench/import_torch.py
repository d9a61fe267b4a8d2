#!/usr/bin/env python3
"""bench/import_torch.py — the PyTorch side of the import benchmark
(bench/import_device.sh): JPEG files of a traind import manifest -> one
resident bf16 GPU tensor [N,3,S,S], normalized with ImageNet's mean/std, by
the best pipelines the machine allows, each timed end to end (files in the
page cache -> tensor on the device, synchronized):

  pil       PIL decode with draft() (libjpeg's DCT scaling, like traind) +
            antialiased BILINEAR resize, in a DataLoader of W workers, pinned
            uint8 batches -> GPU -> normalize -> bf16
  pil_full  the same without draft() (a plain decode of the full image)
  cv2       OpenCV imdecode with IMREAD_REDUCED_COLOR_2/4/8 (DCT scaling) +
            INTER_AREA resize, same DataLoader
  tv_gpu    torchvision.io.decode_jpeg on the GPU (nvJPEG inside torchvision),
            batches of files read by DataLoader workers, antialiased
            interpolate on the GPU
Prints one 'RESULT import_torch <name> images_per_s=<x> n=<n> s=<t>' line per
pipeline that ran and 'SKIP <name>: <why>' for one that could not.

usage: import_torch.py MANIFEST [--size 224] [--workers 16] [--batch 256] [--only a,b]
"""
import argparse
import json
import os
import sys
import time


def read_manifest(path):
    base = os.path.dirname(os.path.abspath(path))
    images = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            o = json.loads(line)
            if "image" not in o:
                continue
            p = o["image"]
            images.append(p if os.path.isabs(p) else os.path.join(base, p))
    return images


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--only", default="pil,cv2,tv_gpu,pil_full")
    a = ap.parse_args()
    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
        from torch.utils.data import DataLoader, Dataset
    except Exception as e:  # noqa: BLE001
        print(f"SKIP all: PyTorch not available ({e})")
        return 0
    files = read_manifest(a.manifest)
    n, S = len(files), a.size
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"# {n} files, size {S}, device {dev}, torch {torch.__version__}, {a.workers} workers, batch {a.batch}",
          flush=True)
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1) * 255

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    class Decoded(Dataset):
        def __init__(self, how):
            self.how = how

        def __len__(self):
            return n

        def __getitem__(self, i):
            if self.how == "cv2":
                import cv2
                from PIL import Image
                buf = np.fromfile(files[i], dtype=np.uint8)
                with Image.open(files[i]) as hdr:   # the size from the header only
                    w, h = hdr.size
                red = next((r for r in (8, 4, 2) if min(w // r, h // r) >= S), 1)
                flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                         8: cv2.IMREAD_REDUCED_COLOR_8}[red]
                im = cv2.resize(cv2.imdecode(buf, flags), (S, S), interpolation=cv2.INTER_AREA)
                return torch.from_numpy(np.ascontiguousarray(im[:, :, ::-1]))
            from PIL import Image
            im = Image.open(files[i])
            if self.how == "pil":
                im.draft("RGB", (S, S))   # DCT scaling: the smallest scale still >= S
            im = im.convert("RGB").resize((S, S), Image.BILINEAR)
            return torch.from_numpy(np.asarray(im))

    class Raw(Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):   # bytes, not a tensor: 256 tensors a batch each cost a shared fd
            with open(files[i], "rb") as f:
                return f.read()

    def run_loader(how):
        out = torch.empty((n, 3, S, S), dtype=torch.bfloat16, device=dev)
        dl = DataLoader(Decoded(how), batch_size=a.batch, num_workers=a.workers, pin_memory=dev == "cuda",
                        persistent_workers=False, prefetch_factor=4 if a.workers else None,
                        timeout=60 if a.workers else 0)   # a lost worker raises instead of hanging
        sync()
        t0 = time.perf_counter()
        o = 0
        for b in dl:
            x = b.to(dev, non_blocking=True).permute(0, 3, 1, 2).float()
            out[o:o + x.shape[0]] = ((x - mean) / std).to(torch.bfloat16)
            o += x.shape[0]
        sync()
        return time.perf_counter() - t0, o

    def run_tv_gpu():
        import torchvision
        from torchvision.io import decode_jpeg
        if dev != "cuda":
            raise RuntimeError("no CUDA device")
        torchvision.io.decode_jpeg(torchvision.io.read_file(files[0]), device="cuda")   # warm up nvJPEG
        out = torch.empty((n, 3, S, S), dtype=torch.bfloat16, device=dev)
        dl = DataLoader(Raw(), batch_size=a.batch, num_workers=a.workers, collate_fn=list,
                        prefetch_factor=4 if a.workers else None, timeout=60 if a.workers else 0)
        sync()
        t0 = time.perf_counter()
        o = 0
        for b in dl:
            imgs = decode_jpeg([torch.frombuffer(bytearray(x), dtype=torch.uint8) for x in b], device="cuda")
            if all(im.shape == imgs[0].shape for im in imgs):   # one interpolate for the batch
                x = F.interpolate(torch.stack(imgs).float(), size=(S, S), mode="bilinear", antialias=True,
                                  align_corners=False)
            else:
                x = torch.stack([F.interpolate(im.unsqueeze(0).float(), size=(S, S), mode="bilinear",
                                               antialias=True, align_corners=False)[0] for im in imgs])
            out[o:o + x.shape[0]] = ((x - mean) / std).to(torch.bfloat16)
            o += x.shape[0]
        sync()
        return time.perf_counter() - t0, o

    for name in a.only.split(","):
        try:
            if name == "tv_gpu":
                t, got = run_tv_gpu()
            elif name in ("pil", "pil_full", "cv2"):
                if name == "cv2":
                    import cv2  # noqa: F401
                t, got = run_loader(name)
            else:
                print(f"SKIP {name}: unknown pipeline")
                continue
            if got != n:
                raise RuntimeError(f"{got} of {n} images")
            print(f"RESULT import_torch {name} images_per_s={n / t:.1f} n={n} s={t:.3f}", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"SKIP {name}: {type(e).__name__}: {e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
