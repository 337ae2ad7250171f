#!/usr/bin/env python3
"""How much of each suite case's error is haze and how much is streaks.

Renders every rainy case of the synthetic suite three ways with the same random draws: as
benchmarked, without its veil (`veil` 0: streaks only) and without its streaks (`opacity` 0:
haze only), and prints the input's PSNR-Y against the clean frames and its mean signed luma
error for each. A case whose "no veil" PSNR is far above the full one is limited by haze, which
no temporal statistic sees (it is the same in every frame).

  python tools/rain_components.py [--frames 24]
"""
from __future__ import annotations

import argparse

import numpy as np

from vderain.metrics.image import psnr_frames, rgb_to_y
from vderain.synth.suite import SUITE_CASES, render_case


def describe(rainy: np.ndarray, clean: np.ndarray) -> str:
    """PSNR-Y as the bench scores it (mean over frames) and the mean signed luma error x1e3
    of [0, 1] values (positive: brighter than clean)."""
    err = (rgb_to_y(rainy).astype(np.float64) - rgb_to_y(clean)).mean() / 255 * 1e3
    return f"{psnr_frames(rainy, clean, 'y').mean():.2f} ({err:+.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=None)
    args = ap.parse_args()
    print("| case | veil | as benchmarked: PSNR-Y (mean err ×1e3) | streaks only (veil 0) | haze only (opacity 0) |")
    print("|---|---:|---|---|---|")
    for name in SUITE_CASES:
        full = render_case(name, frames=args.frames)
        if full["meta"]["rain_free"]:
            continue
        cells = [describe(full["rainy"], full["clean"])]
        for extra in ({"veil": 0.0}, {"opacity": 0.0}):
            case = render_case(name, frames=args.frames, rain_overrides=extra)
            cells.append(describe(case["rainy"], case["clean"]))
        print(f"| {name} | {full['meta']['params']['veil']:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
