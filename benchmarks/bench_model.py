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


def stream_runner(m: NetworkMethod, batch: int, h: int, w: int, pan: float, device: str, frames: int = 64):
    """A callable running batch `i` of windows over a looped stream of `frames` frames: random
    texture panning `pan` px per frame (pan/3 vertically), or independent random frames (0)."""
    from vderain.models.align import StreamAligner, shift_frames
    if pan:
        big = torch.rand(1, 1, 3, h + int(frames * pan / 3) + 2, w + int(frames * pan) + 2, device=device)
        k = torch.arange(frames, device=device, dtype=torch.float32)
        d = (k[:, None] * torch.tensor([pan, pan / 3], device=device))[None]
        stream = shift_frames(big.expand(1, frames, -1, -1, -1).contiguous(), d)[0, ..., :h, :w].contiguous()
    else:
        stream = torch.rand(frames, 3, h, w, device=device)
    aligner = StreamAligner(m.target)
    starts = frames - m.window + 1

    def run(i):
        keys = [[(i * batch + b) % starts + t for t in range(m.window)] for b in range(batch)]
        if batch == 1:   # a view, as the pipeline's frame ring gives (batches are stacked there too)
            clips = stream[keys[0][0]:keys[0][0] + m.window][None]
        else:
            clips = torch.stack([stream[row[0]:row[0] + m.window] for row in keys])   # (B,T,3,H,W)
        return m(aligner(clips, keys), aligned=True)
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--models", default="fast")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pan", type=float, default=0.0,
                    help="models with align: px per frame of a steady pan (the worst case: every "
                         "neighbour is shifted); 0 = independent random frames (no motion found)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the network (default mode; CUDA: also CUDA graphs via "
                         "mode=reduce-overhead). Measured on 2 CPU threads for `fast` at 640x360: "
                         "no gain (27.4 vs 27.8 fps), so the product does not use it; for GPU sessions")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after timing, profile N batches (torch.profiler) and print the 20 most "
                         "costly operators by device time (CPU time on the CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = map(int, args.size.split("x"))
    for name in args.models.split(","):
        m = build(name, args.device)
        if args.compile:
            mode = "reduce-overhead" if args.device.startswith("cuda") else "default"
            compiled = torch.compile(m.model.rain_layer, dynamic=False, mode=mode)
            if mode == "reduce-overhead":   # CUDA graphs reuse their output buffers: copy out
                m.model.rain_layer = lambda *a, **k: compiled(*a, **k).clone()
            else:
                m.model.rain_layer = compiled
            m.name += f" (compiled, {mode})"
        clips = torch.rand(args.batch, m.window, 3, h, w, device=args.device)
        run = lambda i: m(clips)
        if m.aligns:
            # as the pipeline runs it: windows slide over a stream and a StreamAligner keeps each
            # frame's features for the windows that share it (one new frame per output frame)
            run = stream_runner(m, args.batch, h, w, args.pan, args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            held = torch.cuda.memory_allocated()   # the benchmark's own source frames: not the model's
        for i in range(3):
            run(i)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            run(n // args.batch)
            n += args.batch
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
        fps = n / (time.perf_counter() - t0)
        # reserved: what the caching allocator took from the device (what nvidia-smi sees, less
        # the CUDA context), source frames included
        mem = (f"peak GPU mem {(torch.cuda.max_memory_allocated() - held) / 2**30:.2f} GiB beyond the "
               f"benchmark's {held / 2**30:.2f} GiB of source frames (peak reserved "
               f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB)" if args.device.startswith("cuda")
               else f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
        dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu x{args.threads} threads"
        params = sum(p.numel() for p in m.model.parameters())
        gmac = count_macs_per_pixel(m.model.cfg) * w * h / 1e9
        align = (" align, streamed" + (f", pan {args.pan:g} px/frame" if args.pan else " (no motion found)")
                 if m.aligns else "")
        print(f"{m.name}{align}: {w}x{h} {dev} {str(m.dtype).replace('torch.', '')} batch {args.batch}: "
              f"{fps:.1f} frames/s, {params / 1e3:.0f}K params, {gmac:.2f} GMAC/frame, {mem}", flush=True)
        if args.profile:
            profile(run, args.profile, args.device)


def profile(run, batches: int, device: str):
    from torch.profiler import ProfilerActivity, profile as torch_profile
    cuda = device.startswith("cuda")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=acts) as prof:
        for i in range(batches):
            run(i)
        if cuda:
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=20, max_name_column_width=60), flush=True)


if __name__ == "__main__":
    main()
