"""Contact sheet of a method on real rainy clips: input | output | amplified signed difference.

    python tools/real_contact_sheet.py --clips ../shared/data/real --methods fast,quality -o docs/real_stage1.jpg

One row per clip (its middle frame, restored with its full temporal window). The difference
column shows 0.5 + gain * (input - output): grey = unchanged, bright = removed brightness (streaks),
dark = added brightness. A global tint in that column is the failure to look for.
"""
from __future__ import annotations

import argparse
import glob
import os

import cv2
import numpy as np


def label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default="../shared/data/real")
    ap.add_argument("--methods", default="fast")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=320, help="width of each tile")
    ap.add_argument("--gain", type=float, default=4.0)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    from vderain.bench import read_frames
    from vderain.methods import get_method
    from vderain.pipeline import derain_frames, stabiliser_reach

    methods = [get_method(m, device=args.device) for m in args.methods.split(",")]
    rows = []
    for path in sorted(glob.glob(os.path.join(args.clips, "*.mp4"))):
        frames = read_frames(path)[0]   # upright, as bench and run give it to a method
        mid = len(frames) // 2
        # enough context for the widest window and the stabiliser's reach, centred on the middle frame
        half = max(m.window + stabiliser_reach(m) for m in methods)
        lo, hi = max(0, mid - half), min(len(frames), mid + half + 1)
        tiles = [label(frames[mid], os.path.basename(path))]
        for m in methods:
            out = derain_frames(frames[lo:hi], method=m)[mid - lo]
            diff = (0.5 + args.gain * (frames[mid].astype(np.float32) - out) / 255).clip(0, 1)
            tiles += [label(out, m.name), label((diff * 255).astype(np.uint8), f"{m.name}: in-out x{args.gain:g}")]
        h = round(frames.shape[1] * args.width / frames.shape[2])
        rows.append(np.concatenate([cv2.resize(t, (args.width, h), interpolation=cv2.INTER_AREA) for t in tiles], 1))
    sheet = np.concatenate(rows, 0)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if args.output.lower().endswith(".png") else []
    cv2.imwrite(args.output, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), params)  # (a PNG key warns on a .jpg)
    print(f"wrote {args.output} ({sheet.shape[1]}x{sheet.shape[0]}, {len(rows)} clips)")


if __name__ == "__main__":
    main()
