"""Contact sheet of the rain presets beside real rainy footage: docs/synth_presets.png.

    python tools/contact_sheet.py                         # uses /work/shared/data if present
    python tools/contact_sheet.py --clean my_clip.mp4 --real rainy1.mp4 rainy2.mp4 --out sheet.png

One frame of a clean clip, the same frame under every preset (light, heavy, night,
dashcam, storm, faint), and frames of real rainy clips for comparison. Without footage the
clean frame is a procedural scene and the real column is left out.
"""
from __future__ import annotations

import argparse
import glob
import os

import cv2
import numpy as np
import torch

from vderain.synth.presets import PRESET_NAMES

DATA = "/work/shared/data"
PRESETS = tuple(n for n in PRESET_NAMES if n != "norain")


def read_frames(path: str, start: int, count: int) -> np.ndarray:
    import av
    out = []
    with av.open(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= start:
                out.append(f.to_ndarray(format="rgb24"))
            if len(out) == count:
                break
    return np.stack(out)


def fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Centre-crop to the w:h aspect, then resize."""
    H, W = img.shape[:2]
    s = min(W / w, H / h)
    cw, ch = int(w * s), int(h * s)
    x0, y0 = (W - cw) // 2, (H - ch) // 2
    return cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)


def label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.rectangle(img, (0, 0), (8 + 9 * len(text), 20), (0, 0, 0), -1)
    cv2.putText(img, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clean", default=os.path.join(DATA, "clean", "05_default_juggle.mp4"))
    ap.add_argument("--real", nargs="*", default=[os.path.join(DATA, "real", n)
                                                  for n in ("rr13_367.mp4", "rr13_5.mp4", "rr13_152.mp4")])
    ap.add_argument("--out", default="docs/synth_presets.png")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--tile", default="288x162", help="tile size WxH")
    ap.add_argument("--bits", type=int, default=5,
                    help="bits per channel kept (fewer: smaller PNG; the committed sheet must stay < 500 KB)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tw, th = map(int, args.tile.split("x"))

    from vderain.synth import RainSynth
    from vderain.synth.scenes import procedural_clip
    if os.path.isfile(args.clean):
        frames = read_frames(args.clean, 60, 3)
        frames = np.stack([cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in frames])
        clean = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[None]   # (1,3,3,360,640)
        source = os.path.basename(args.clean)
    else:
        clean = procedural_clip(3, 360, 640, seed=7100, motion="pan")[None]
        source = "procedural scene"
    tiles = [label(fit((clean[0, 1].permute(1, 2, 0).numpy() * 255).astype(np.uint8), tw, th),
                   f"clean ({source})")]
    for preset in PRESETS:
        out = RainSynth(preset)(clean, torch.Generator().manual_seed(args.seed), fps=30.0)
        frame = (out["rainy"][0, 1].permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
        tiles.append(label(fit(frame, tw, th), f"synth: {preset}"))
    for path in args.real:
        if os.path.isfile(path):
            tiles.append(label(fit(read_frames(path, 20, 1)[0], tw, th), f"REAL: {os.path.basename(path)}"))
    cols = 3
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
    sheet = np.concatenate(rows, 0)
    if args.bits < 8:
        step = 1 << (8 - args.bits)
        sheet = (sheet // step * step + step // 2).astype(np.uint8)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out}: {sheet.shape[1]}x{sheet.shape[0]}, {os.path.getsize(args.out) / 1024:.0f} KB")


if __name__ == "__main__":
    main()
