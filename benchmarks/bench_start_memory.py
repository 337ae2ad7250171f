"""Peak RSS of a short network run, where a clip's first call dominates (the start's mirrored
windows and the first full ones, EdgeHold's look-ahead).

    python benchmarks/bench_start_memory.py                          # quality, 1920x1080, 7 frames
    python benchmarks/bench_start_memory.py --method fast --size 3840x2160

CPU, fp32, 1 thread, batch 1, stabiliser off, random frames (the gate's decisions do not change
what is held). Run it in a fresh process: the peak is the process's.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="quality")
    ap.add_argument("--size", default="1920x1080", help="WxH")
    ap.add_argument("--frames", type=int, default=7)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(1)
    from vderain.pipeline import derain_frames
    frames = np.random.default_rng(0).integers(0, 255, (args.frames, h, w, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    derain_frames(frames, method=args.method, batch=1, stabilise=False)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB on Linux
    print(f"{args.method} {w}x{h}, {args.frames} frames, CPU fp32, 1 thread, batch 1: "
          f"peak RSS {peak_gb:.2f} GiB, {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
