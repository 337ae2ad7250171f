"""Where a method's error lies on the synthetic suite: low vs high spatial frequencies, and its bias.

The measured pitfall of issue #4 is a rain layer that carries low frequencies (darkening or
brightening whole regions). PSNR alone does not show it; this splits each case's luma error
(output - clean) into a Gaussian low-pass (sigma 8 px) and the rest, and prints the mean error,
whose sign says whether the method removed too much (negative: output darker than the clean
frame) or too little.

    vderain bench --suite synthetic --methods quality,fast --save-outputs --out runs/b
    python tools/error_bands.py runs/b/outputs --methods identity,quality,fast
"""
from __future__ import annotations

import argparse
import glob
import os

import cv2
import numpy as np


def luma(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32) / 255
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def bands(out: np.ndarray, clean: np.ndarray, sigma: float = 8.0) -> tuple[float, float, float]:
    """(low-pass MSE, high-pass MSE, mean error) of the luma error, MSEs x1e4, mean x1e3."""
    e = luma(out) - luma(clean)
    low = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in e])
    return float((low ** 2).mean() * 1e4), float(((e - low) ** 2).mean() * 1e4), float(e.mean() * 1e3)


def main() -> None:
    from vderain.synth.suite import SUITE_CASES, render_case
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outputs", help="a bench report's outputs/ folder (vderain bench --save-outputs)")
    ap.add_argument("--methods", default="identity,quality,fast", help="identity = the rainy input")
    ap.add_argument("--cases", default=None, help="comma-separated; default: the suite's rainy cases")
    args = ap.parse_args()
    cases = args.cases.split(",") if args.cases else [c for c in SUITE_CASES if not c.startswith("norain")]
    methods = args.methods.split(",")
    print("| case | " + " | ".join(f"{m} low / high / mean" for m in methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for case in cases:
        c = render_case(case)
        cells = []
        for m in methods:
            if m == "identity":
                out = c["rainy"]
            else:
                files = sorted(glob.glob(os.path.join(args.outputs, m, case, "*.png")))
                if len(files) != len(c["clean"]):
                    cells.append("missing")
                    continue
                out = np.stack([cv2.imread(p, cv2.IMREAD_COLOR)[..., ::-1] for p in files])
            lo, hi, mean = bands(out, c["clean"])
            cells.append(f"{lo:.1f} / {hi:.1f} / {mean:+.1f}")
        print(f"| {case} | " + " | ".join(cells) + " |", flush=True)
    print("\nMSE x1e4 of the luma error below / above a sigma-8 Gaussian; mean error x1e3 "
          "(negative: darker than clean, too much removed).")


if __name__ == "__main__":
    main()
