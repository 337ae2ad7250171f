"""Scores methods on natural clips under the held-out particle renderer (vderain/synth/particles.py).

    python tools/particle_natural_check.py --clips data/clean --out runs/particles_natural.json \
        --methods identity,median,fast,quality

The `particles` suite (vderain bench --suite particles) draws its rain over procedural scenes;
this puts the same recipes over natural footage (frames 30..53 of each clip, 256x144), the
scenes the networks were trained on, under rain they were not. Prints PSNR-Y per recipe and
method (means over clips) and the mean change of the frame (output - clean) the method left.
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
    ap.add_argument("--clips", default="data/clean")
    ap.add_argument("--out", required=True)
    ap.add_argument("--methods", default="identity,median,fast,quality")
    ap.add_argument("--cases", default="p_drizzle_static,p_heavy_pan,p_bokeh_near,p_fast_shutter,p_dark_drops,p_lowfps_storm")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from vderain.metrics.image import psnr
    from vderain.pipeline import derain_frames
    from vderain.synth.particles import particle_recipe, render_particles, _BASE
    import importlib.util
    spec = importlib.util.spec_from_file_location("nrc", os.path.join(os.path.dirname(__file__), "natural_rain_check.py"))
    nrc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nrc)

    from vderain.bench import build_methods
    methods = build_methods(args.methods)
    names = list(methods)
    results = {}
    for path in sorted(glob.glob(os.path.join(args.clips, "*.mp4"))):
        try:
            clean = nrc.clip_frames(path, 24, 256, 144)
        except ValueError:
            clean = np.zeros((0,))
        if len(clean) < 24:
            print(f"{os.path.basename(path)}: skipped, fewer than 54 frames", flush=True)
            continue
        for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
            r = particle_recipe(case)
            rain = render_particles(clean, r["fps"], r["seed"], **{k: r[k] for k in _BASE})["rainy"]
            for k, m in methods.items():
                out = derain_frames(rain, method=m)
                score = float(np.mean([psnr(o, c, "y") for o, c in zip(out, clean)]))
                shift = float((out.astype(np.float32) - clean).mean())
                results.setdefault(case, {}).setdefault(k, []).append((score, shift))
            print(os.path.basename(path), case, {k: round(v[-1][0], 2) for k, v in results[case].items()}, flush=True)
    if not results:
        raise SystemExit(f"no clip of 54 frames or more in {args.clips}")
    table = {c: {k: [float(np.mean([s for s, _ in v])), float(np.mean([d for _, d in v]))] for k, v in ms.items()}
             for c, ms in results.items()}
    with open(args.out, "w") as f:
        json.dump(table, f, indent=1)
    print("case".ljust(18) + "".join(k[-16:].rjust(17) for k in names))
    for c, ms in table.items():
        print(c.ljust(18) + "".join(f"{ms[k][0]:10.2f} ({ms[k][1]:+.1f})".rjust(17) for k in names))
    print("mean".ljust(18) + "".join(f"{np.mean([table[c][k][0] for c in table]):10.2f}".ljust(17) for k in names))


if __name__ == "__main__":
    main()
