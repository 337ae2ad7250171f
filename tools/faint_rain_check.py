"""How much of the rain each method removes as the rain gets fainter (the "dead zone").

    python tools/faint_rain_check.py --methods quality,fast --out runs/faint.json

The same streaks at several strengths: the synthesiser's `light` preset without its veil (so
haze is not the question) over procedural scenes (two static, two panning; seeds 8301-8304,
no suite's and no training draw's), then rainy_k = clean + k (rainy - clean). Prints, per k,
the streaks' 90th-percentile amplitude (levels of 255) and, per method, the share of the rain
layer's energy it removed, 1 - MSE(output, clean) / MSE(rainy_k, clean) over the middle frames
(negative: the method added error). Real rain on phones and webcams is mostly 3-10 levels.
"""
from __future__ import annotations

import argparse
import json
import os

import cv2
import numpy as np
import torch

SCENES = [(8301, "static"), (8302, "pan"), (8303, "static"), (8304, "pan")]


def rain_pairs(frames: int, height: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(clean, rainy) uint8-range float32 (T,H,W,3) per scene: the camera's noise and blur are in both."""
    from vderain.synth.rain import RainSynth
    from vderain.synth.scenes import procedural_clip
    synth = RainSynth("light", overrides={"veil": 0.0})
    pairs = []
    for seed, motion in SCENES:
        clip = procedural_clip(frames, height, width, seed=seed, motion=motion)[None]
        out = synth(clip, generator=torch.Generator().manual_seed(seed))
        to_np = lambda x: x[0].permute(0, 2, 3, 1).numpy().astype(np.float32) * 255
        pairs.append((to_np(out["clean"]), to_np(out["rainy"])))
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default="quality,quality-nostab,fast,fast-nostab")
    ap.add_argument("--scales", default="0.1,0.2,0.35,0.5,0.75,1.0")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", default="256x144")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the numbers here as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from vderain.bench import build_methods
    from vderain.pipeline import derain_frames

    width, height = (int(v) for v in args.size.lower().split("x"))
    scales = [float(k) for k in args.scales.split(",")]
    methods = build_methods(args.methods)
    pairs = rain_pairs(args.frames, height, width)
    mid = slice(2, -2)          # every method reflects its window at the ends
    rows = []
    for k in scales:
        amp = []
        removed, on_rain, elsewhere = ({name: [] for name in methods} for _ in range(3))
        for clean, rainy in pairs:
            rk = np.clip(np.round(clean + k * (rainy - clean)), 0, 255).astype(np.uint8)
            err = rk[mid].astype(np.float32) - clean[mid]
            d = np.abs(err).max(-1)
            amp.append(float(np.percentile(d[d > 1], 90)) if (d > 1).any() else 0.0)
            e_in = float((err ** 2).mean())
            rain_px = np.broadcast_to((d > 1)[..., None], err.shape)
            kept = ~rain_px
            has_rain, has_kept = bool(rain_px.any()), bool(kept.any())
            e_rain = float((err[rain_px] ** 2).mean()) if has_rain else 0.0
            for name, m in methods.items():
                out = np.asarray(derain_frames(rk, method=m)).astype(np.float32)
                e_out = (out[mid] - clean[mid]) ** 2
                removed[name].append(1 - float(e_out.mean()) / max(e_in, 1e-9))
                on_rain[name].append(1 - float(e_out[rain_px].mean()) / max(e_rain, 1e-9) if has_rain else 0.0)
                elsewhere[name].append(float(np.sqrt(((out[mid] - rk[mid])[kept] ** 2).mean())) if has_kept else 0.0)
        mean = lambda per: {n: float(np.mean(v)) for n, v in per.items()}
        row = {"k": k, "amplitude_p90": float(np.mean(amp)), "removed": mean(removed),
               "removed_on_rain": mean(on_rain), "rms_change_elsewhere": mean(elsewhere),
               "removed_per_scene": removed}
        rows.append(row)
        print(f"k={k:4.2f}  streaks p90 {row['amplitude_p90']:5.1f} levels", flush=True)
        for n in methods:
            print(f"    {n:32s} removed {100 * row['removed'][n]:7.1f} %   on rain "
                  f"{100 * row['removed_on_rain'][n]:6.1f} %   elsewhere {row['rms_change_elsewhere'][n]:5.2f} levels",
                  flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"scenes": SCENES, "size": args.size, "frames": args.frames, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
