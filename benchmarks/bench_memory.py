"""Peak memory does not grow with the video's length.

Runs `derain_video(method="identity")` on a 10 s and a 100 s generated 720p clip, each
in a fresh process, and compares their peak RSS. Target: equal within 10%.

    python benchmarks/bench_memory.py                      # 10 s vs 100 s, 1280x720 30 fps
    python benchmarks/bench_memory.py --short 5 --long 50 --method median

The encoder preset only changes speed here (x264's lookahead is a fixed number of
frames), so ultrafast keeps the 100 s run to about a minute on two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from vderain.pipeline import derain_video
t0 = time.perf_counter()
s = derain_video(sys.argv[1], sys.argv[2], method=sys.argv[3], device="cpu", preset=sys.argv[4],
                 progress=False)
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
print(json.dumps({{"frames": s["frames"], "seconds": time.perf_counter() - t0, "peak_mib": peak_kib / 1024}}))
"""


def measure(src: str, dst: str, method: str, preset: str) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD.format(root=ROOT), src, dst, method, preset],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"child failed: {r.stderr.strip().splitlines()[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", type=float, default=10, help="seconds")
    ap.add_argument("--long", type=float, default=100, help="seconds")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--method", default="identity")
    ap.add_argument("--preset", default="ultrafast")
    args = ap.parse_args(argv)

    sys.path.insert(0, HERE)
    from bench_pipeline import make_clip
    tmp = tempfile.mkdtemp(prefix="vderain-mem-")
    results = {}
    for label, secs in (("short", args.short), ("long", args.long)):
        n = int(secs * args.fps)
        t0 = time.perf_counter()
        src = make_clip(os.path.join(tmp, f"{label}.mp4"), n, args.width, args.height, args.fps)
        print(f"made {label} clip: {args.width}x{args.height}, {n} frames ({secs:g} s) + AAC "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)
        results[label] = r = measure(src, os.path.join(tmp, f"{label}_out.mp4"), args.method, args.preset)
        print(f"  {label}: {r['frames']} frames in {r['seconds']:.1f} s, peak RSS {r['peak_mib']:.0f} MiB",
              flush=True)
        os.remove(src)
    s, l = results["short"]["peak_mib"], results["long"]["peak_mib"]
    print(f"method {args.method}, libx264 crf 18 preset {args.preset}, cpus {os.cpu_count()}: "
          f"peak RSS {args.short:g} s = {s:.0f} MiB, {args.long:g} s = {l:.0f} MiB, "
          f"long/short = {l / s:.3f} (target within 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
