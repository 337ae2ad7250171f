"""How fast does the synthesiser make training pairs?

    python benchmarks/bench_synth.py                       # CPU, 2 threads, procedural clips
    python benchmarks/bench_synth.py --device cuda --batch 24
    python benchmarks/bench_synth.py --clean '/work/shared/data/clean/*.mp4'   # + CleanClipSource

Prints one line per configuration: batch shape, preset, device, threads, dtype, the
median and best time per batch and clips per second. Timings on a shared machine
wander by +-30%: the median of several runs is the number to quote.
"""
from __future__ import annotations

import argparse
import glob
import statistics
import time

import torch

from vderain.synth import CleanClipSource, RainSynth
from vderain.synth.scenes import procedural_clip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_it(fn, device, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds per call. On a busy shared machine the wall time
    wanders a lot; CPU time (all threads together) is the steadier measure of the work."""
    fn()                                                        # warm-up (allocations, noise bank)
    _sync(device)
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def report(label: str, batch: int, times: tuple[list[float], list[float]]) -> None:
    wall, cpu = times
    med, best, c = statistics.median(wall), min(wall), statistics.median(cpu)
    print(f"{label}: wall median {med * 1e3:7.1f} ms  best {best * 1e3:7.1f} ms  cpu {c * 1e3:7.1f} ms "
          f"-> {batch / med:6.1f} clips/s ({med / batch * 1e3:5.1f} ms per clip, best {best / batch * 1e3:5.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--presets", default="train,light,heavy,storm,night,norain")
    ap.add_argument("--clean", help="glob of clean clips to also time CleanClipSource.sample")
    ap.add_argument("--codec-prob", type=float, default=0.0, help="share of clips through libx264 (CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} dtype=float32 torch={torch.__version__}")

    for T, S in ((5, 256), (6, 192)):
        clips = torch.stack([procedural_clip(T, S, S, seed=90_000 + i, motion="pan")
                             for i in range(args.batch)]).to(device)
        for preset in args.presets.split(","):
            synth = RainSynth(preset, device=device, codec_prob=args.codec_prob)
            g = torch.Generator(device=device).manual_seed(0)
            times = time_it(lambda: synth(clips, g), device, args.repeats)
            report(f"RainSynth {preset:7s} ({args.batch},{T},3,{S},{S})", args.batch, times)

    if args.clean:
        paths = sorted(glob.glob(args.clean))
        t = time.perf_counter()
        src = CleanClipSource(paths, frames=6, size=192, device=device)
        print(f"CleanClipSource: {len(paths)} clips, {len(src)} frames, {src.nbytes / 1e9:.2f} GB, "
              f"loaded in {time.perf_counter() - t:.1f} s")
        g = torch.Generator(device=device).manual_seed(0)
        report(f"CleanClipSource.sample ({args.batch},6,3,192,192)", args.batch,
               time_it(lambda: src.sample(args.batch, g), device, args.repeats))
        synth = RainSynth("train", device=device)
        report(f"sample + RainSynth train ({args.batch},6,3,192,192)", args.batch,
               time_it(lambda: synth(src.sample(args.batch, g), g), device, args.repeats))


if __name__ == "__main__":
    main()
