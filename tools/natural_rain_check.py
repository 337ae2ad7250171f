"""Scores methods on natural clips with synthesised rain: a check on scenes the suite does not have.

    python tools/natural_rain_check.py --clips data/clean --out runs/natural.json \
        --methods quality,quality-nostab,fast,fast-nostab

Each clip: frames 30..53 resized to 320x180, and for every preset one rain render with a fixed
seed (light, heavy, storm, night, dashcam, and norain: output must equal input). The natural
clips are the networks' training clips (so this is no test of the network); it checks what was
tuned on the synthetic suite, e.g. the temporal stabiliser, on other scenes. Prints a table of
PSNR-Y / Ewarp x1e3 per preset (means over clips), the clean clips' own Ewarp beside it.
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import cv2
import numpy as np
import torch

PRESETS = ["light", "heavy", "storm", "night", "dashcam", "norain"]


def clip_frames(path: str, n: int, w: int, h: int, skip: int = 30) -> np.ndarray:
    from vderain.io import open_video
    r = open_video(path)
    out = []
    try:
        for i, f in enumerate(r):
            if i >= skip:
                out.append(cv2.resize(f.rgb, (w, h), interpolation=cv2.INTER_AREA))
            if len(out) == n:
                break
    finally:
        r.close()
    return np.stack(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default="data/clean")
    ap.add_argument("--out", required=True)
    ap.add_argument("--methods", default="quality,quality-nostab,fast,fast-nostab")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from vderain.metrics import SequenceScorer
    from vderain.pipeline import derain_frames
    from vderain.synth.rain import RainSynth
    from vderain.synth.scenes import to_uint8_frames

    from vderain.bench import build_methods
    methods = build_methods(args.methods)
    names = list(methods)
    paths = sorted(glob.glob(os.path.join(args.clips, "*.mp4")))
    if not paths:
        raise SystemExit(f"natural_rain_check: no .mp4 clips in {args.clips}")
    rows = []
    for ci, path in enumerate(paths):
        clean = torch.from_numpy(clip_frames(path, 24, 320, 180)).permute(0, 3, 1, 2).float().div(255)[None]
        for pi, preset in enumerate(PRESETS):
            synth = RainSynth(preset, device="cpu", codec_prob=0.0, dct_prob=0.0, tone_aug=False, px_scale=1.0)
            out = synth(clean, generator=torch.Generator().manual_seed(5000 + 17 * ci + pi), fps=30.0)
            rainy, gt = to_uint8_frames(out["rainy"][0]), to_uint8_frames(out["clean"][0])
            sc = SequenceScorer(rainy, gt, flow_preset="medium")
            row = {"clip": os.path.basename(path), "preset": preset, "gt_ewarp": sc.reference_values()["gt_ewarp"]}
            for k, m in [("identity", None)] + list(methods.items()):
                res = sc.score(rainy if m is None else derain_frames(rainy, method=m))["mean"]
                row[k] = [res["psnr_y"], res["ewarp"]]
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(args.out, "w") as f:
        json.dump(rows, f)
    keys = ["identity"] + names
    print("| rain | clean Ewarp | " + " | ".join(keys) + " |\n|---|---:|" + "---:|" * len(keys))
    groups = [(p, [r for r in rows if r["preset"] == p]) for p in PRESETS]
    groups.append(("**rainy mean**", [r for r in rows if r["preset"] != "norain"]))
    for name, rs in groups:
        cells = [f"{np.mean([r[k][0] for r in rs]):.2f} / {1e3 * np.mean([r[k][1] for r in rs]):.2f}" for k in keys]
        print(f"| {name} | {1e3 * np.mean([r['gt_ewarp'] for r in rs]):.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
