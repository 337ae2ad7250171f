"""Speed of the motion-compensated temporal median baseline (CPU, OpenCV).

    python benchmarks/bench_median.py                 # 640x360 and 1280x720, window 5, 2 threads
    python benchmarks/bench_median.py --flow dis-fast --sizes 640x360

Slides a window over a procedural clip the way the pipeline does (one target per call,
batch 1), so the flow cache is exercised as in real use. Prints frames/s with the
resolution, device, threads and dtype.
"""
from __future__ import annotations

import argparse
import time

import cv2
import torch

from vderain.methods.median import TemporalMedian
from vderain.metrics.toy import add_streaks, translating


def bench(width: int, height: int, window: int, flow: str, frames: int, camera: bool = True) -> float:
    clean = translating(frames + window, height, width, speed=(2.0, 0.5))
    rainy = torch.from_numpy(add_streaks(clean)).permute(0, 3, 1, 2).float().div(255).contiguous()  # (N,3,H,W)
    method = TemporalMedian(window=window, flow=flow, camera=camera)
    method(rainy[None, :window])  # warm-up: OpenCV allocations, first flows
    start = time.perf_counter()
    for t in range(1, frames + 1):
        method(rainy[None, t:t + window])
    return frames / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="640x360,1280x720")
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--flow", default="dis")
    ap.add_argument("--no-camera", action="store_true", help="plain rule: unreliable flow -> target pixel")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        fps = bench(w, h, args.window, args.flow, args.frames, not args.no_camera)
        print(f"median window={args.window} flow={args.flow} camera={not args.no_camera} {w}x{h}: {fps:.1f} frames/s "
              f"({1000 / fps:.1f} ms/frame) device=cpu threads={args.threads} dtype=uint8 (OpenCV)")


if __name__ == "__main__":
    main()
