"""Network throughput and memory: frames/s of the model alone (no decode/encode).

    python benchmarks/bench_model.py --device cpu --threads 2 --size 640x360 --models fast
    python benchmarks/bench_model.py --device cuda --size 1920x1080 --batch 8 --models quality,fast

Prints one line per model with resolution, device, threads, dtype, batch, fps, peak memory.
Random weights are used when the shipped weights are absent (speed does not depend on them).
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from vderain.methods.network import NetworkMethod, weights_path
from vderain.models import STRNet, STRNetConfig, count_macs_per_pixel
from vderain.train.config import load_config


def build(name: str, device: str) -> NetworkMethod:
    path = weights_path(name)
    if path.is_file():
        return NetworkMethod.from_name(name, device=device)
    cfg = load_config(f"configs/{name}.yaml").model
    return NetworkMethod(STRNet(cfg), device=device, name=name + " (random weights)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--models", default="fast")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pan", type=float, default=0.0,
                    help="px per frame: clips show a steady pan (the worst case of models with align: "
                         "every neighbour is estimated and shifted); 0 = independent random frames")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = map(int, args.size.split("x"))
    for name in args.models.split(","):
        m = build(name, args.device)
        clips = torch.rand(args.batch, m.window, 3, h, w, device=args.device)
        if args.pan:
            from vderain.models.align import shift_frames
            k = torch.arange(m.window, device=args.device, dtype=torch.float32) - m.target
            d = (k[:, None] * torch.tensor([args.pan, args.pan / 3], device=args.device))[None].expand(args.batch, -1, -1)
            clips = shift_frames(clips[:, m.target:m.target + 1].expand_as(clips).contiguous(), -d)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        for _ in range(3):
            m(clips)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            m(clips)
            n += args.batch
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
        fps = n / (time.perf_counter() - t0)
        mem = (f"peak GPU mem {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if args.device.startswith("cuda")
               else f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
        dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu x{args.threads} threads"
        params = sum(p.numel() for p in m.model.parameters())
        gmac = count_macs_per_pixel(m.model.cfg) * w * h / 1e9
        align = " align" + (f" pan {args.pan:g} px/frame" if args.pan else " (no motion found)") if m.model.cfg.align else ""
        print(f"{m.name}{align}: {w}x{h} {dev} {str(m.dtype).replace('torch.', '')} batch {args.batch}: "
              f"{fps:.1f} frames/s, {params / 1e3:.0f}K params, {gmac:.2f} GMAC/frame, {mem}", flush=True)


if __name__ == "__main__":
    main()
