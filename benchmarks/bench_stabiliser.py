"""Temporal stabiliser throughput (vderain/methods/stabilise.py): frames/s of the stabiliser alone.

    python benchmarks/bench_stabiliser.py --device cpu --threads 2 --size 640x360
    python benchmarks/bench_stabiliser.py --device cuda --size 1920x1080

The worst case: rain removed everywhere (every pixel is stabilised), a textured scene panning
2 px/frame. The CPU path is OpenCV/NumPy; on CUDA the per-pixel work is torch on the GPU and the
2K DIS flows run on CPU threads. Prints resolution, device, threads, radius, fps.
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from vderain.methods.stabilise import StabiliserConfig, TemporalStabiliser


def frames(n: int, h: int, w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.random((h, w + 2 * n + 8, 3)).astype(np.float32), (0, 0), 2.0)
    big = ((big - big.min()) / (big.max() - big.min()) * 180 + 40).astype(np.uint8)
    clean = np.stack([big[:, 2 * i:2 * i + w] for i in range(n)])
    streaks = (rng.random((n, h, w)) < 0.02).astype(np.float32)
    streaks = np.stack([cv2.dilate(s, np.ones((9, 1), np.uint8)) for s in streaks])[..., None]
    rainy = np.clip(clean + 120.0 * streaks, 0, 255).astype(np.uint8)
    residue = np.clip(clean + 40.0 * streaks, 0, 255).astype(np.uint8)
    return rainy, residue


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--radius", type=int, default=2)
    ap.add_argument("--passes", type=int, default=StabiliserConfig.passes)
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    w, h = map(int, args.size.split("x"))
    cfg = StabiliserConfig(radius=args.radius, passes=args.passes)
    warm = 2 * cfg.reach + 2
    rainy, residue = frames(warm + args.frames, h, w)     # one steady pan, no jumps
    st = TemporalStabiliser(cfg, None if args.device == "cpu" else args.device)
    for i in range(warm):                     # warm-up: buffers, CUDA kernels
        st.push(-1, rainy[i], residue[i])
    st.flush()
    t0 = time.perf_counter()
    n = 0
    for i in range(warm, warm + args.frames):
        n += len(st.push(i, rainy[i], residue[i]))
    n += len(st.flush())
    if args.device != "cpu":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    st.close()
    print(f"stabiliser {w}x{h} device={args.device} threads={args.threads} radius={args.radius} passes={args.passes} "
          f"uint8 in/out, float32 inside: {n / dt:.1f} fps ({1000 * dt / n:.1f} ms/frame)")


if __name__ == "__main__":
    main()
