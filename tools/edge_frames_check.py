"""How much each method changes a clip's first and last frames against its middle frames.

    python tools/edge_frames_check.py --clips ../shared/data/real --methods fast,quality

An end frame has neighbours on one side only: its window is mirrored at the edge, and where the
scene drifts (clouds, light, exposure) the end frame is the window's temporal extreme, which a
network can read as rain (docs/bench_stage15.md: a faint-trained `fast` "dehazed" a cloudy sky's
end frames by 13 levels). Per clip (its first --frames frames, full resolution) and method, it
prints the mean |output - input| (levels of 255) of frame 0, of the last frame, and the median over
the middle frames; `ratio` is the larger end over the middle (floored at 0.05 levels). A method
that treats the ends like any other frame has a ratio near 1 and ends well under a level.
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import cv2
import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default="../shared/data/real", help="a folder of videos or one video")
    ap.add_argument("--methods", default="fast,quality")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the numbers here as JSON")
    ap.add_argument("--no-hold", action="store_true",
                    help="run the networks without EdgeHold (the pipeline before stage 17)")
    ap.add_argument("--cap", default="1.0",
                    help="EdgeHold's ceiling on a mirrored window's streak level, times the nearest full "
                         "window's ('none': hold the haze gate only); default 1.0 as shipped")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from vderain.bench import build_methods, read_frames
    from vderain.pipeline import derain_frames

    paths = sorted(glob.glob(os.path.join(args.clips, "*.mp4"))) if os.path.isdir(args.clips) else [args.clips]
    methods = build_methods(args.methods)
    for m in methods.values():
        if hasattr(m, "holds_edges"):
            m.holds_edges = not args.no_hold
            m.edge_cap = None if args.cap.lower() == "none" else float(args.cap)
    rows = []
    for path in paths:
        x, _ = read_frames(path, args.frames)
        if len(x) < 3:
            continue
        for name, m in methods.items():
            out = np.asarray(derain_frames(x, method=m)).astype(np.float32)
            per = np.abs(out - x.astype(np.float32)).mean((1, 2, 3))
            middle = float(np.median(per[1:-1]))
            ratio = max(per[0], per[-1]) / max(middle, 0.05)
            rows.append({"clip": os.path.basename(path), "method": name, "first": float(per[0]),
                         "last": float(per[-1]), "middle": middle, "ratio": float(ratio)})
            print(f"{os.path.basename(path):16s} {name:32s} first {per[0]:6.2f}  last {per[-1]:6.2f}  "
                  f"middle {middle:5.2f}  ratio {ratio:6.1f}", flush=True)
    for name in methods:
        mine = [r for r in rows if r["method"] == name]
        worst = max(mine, key=lambda r: max(r["first"], r["last"]))
        print(f"{name}: worst end frame {max(worst['first'], worst['last']):.2f} levels ({worst['clip']}), "
              f"median ratio {np.median([r['ratio'] for r in mine]):.1f}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"frames": args.frames, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
