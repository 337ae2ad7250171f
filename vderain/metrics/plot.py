"""Dependency-free plots for the bench report, drawn with OpenCV into RGB uint8 images.

- `line_chart`: per-frame curves (e.g. PSNR over time), one colour per method.
- `temporal_profile`: one pixel row of every frame stacked top to bottom, so time runs
  downwards. A still scene gives clean vertical streaks; flicker and residual rain show
  up as horizontal noise; smoothing shows as blur. `profile_panels` puts the methods
  side by side, each under its name.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

# Distinct colours (RGB), colour-blind-friendly first (Okabe-Ito), then extras.
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
           (86, 180, 233), (120, 120, 120), (240, 228, 66), (0, 0, 0), (150, 75, 0)]
FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)


def _text(img, text, org, scale=0.45, color=INK, thick=1, anchor="left"):
    (w, h), _ = cv2.getTextSize(text, FONT, scale, thick)
    x, y = org
    if anchor == "right":
        x -= w
    elif anchor == "center":
        x -= w // 2
    cv2.putText(img, text, (int(x), int(y)), FONT, scale, color, thick, cv2.LINE_AA)
    return w, h


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round-numbered ticks covering [lo, hi] (1, 2, 5 x 10^k steps)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)][:50]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.2g}"


def line_chart(series: dict[str, list[float]], title: str = "", xlabel: str = "frame",
               ylabel: str = "", size: tuple[int, int] = (900, 380), x0: int = 0) -> np.ndarray:
    """(H,W,3) uint8 RGB chart of several curves; NaNs leave gaps. x values are x0, x0+1, ..."""
    W, H = size
    img = np.full((H, W, 3), 255, np.uint8)
    left, right, top, bottom = 64, 16, 50, 44
    legend_w = 0
    if series:
        legend_w = 28 + max(cv2.getTextSize(k, FONT, 0.45, 1)[0][0] for k in series)
    right += legend_w
    px0, px1, py0, py1 = left, W - right, top, H - bottom
    vals = np.concatenate([np.asarray(v, np.float64) for v in series.values()]) if series else np.array([])
    vals = vals[np.isfinite(vals)]
    n = max((len(v) for v in series.values()), default=1)
    _text(img, title, (left, 18), 0.55, INK, 1)
    if vals.size == 0:
        _text(img, "no data", ((px0 + px1) // 2, (py0 + py1) // 2), 0.6, INK, 1, "center")
        return img
    lo, hi = float(vals.min()), float(vals.max())
    pad = (hi - lo) * 0.08 or 0.5
    yt = nice_ticks(lo - pad, hi + pad)
    ylo, yhi = yt[0], yt[-1]
    xhi = max(n - 1, 1)

    def X(i):
        return px0 + (px1 - px0) * i / xhi

    def Y(v):
        return py1 - (py1 - py0) * (v - ylo) / (yhi - ylo)

    for v in yt:
        y = int(round(Y(v)))
        cv2.line(img, (px0, y), (px1, y), GRID, 1)
        _text(img, _fmt(v), (px0 - 6, y + 4), 0.4, INK, 1, "right")
    for i in nice_ticks(0, xhi, 8):
        if 0 <= i <= xhi and i == int(i):
            x = int(round(X(i)))
            cv2.line(img, (x, py1), (x, py1 + 4), INK, 1)
            _text(img, str(int(i) + x0), (x, py1 + 18), 0.4, INK, 1, "center")
    cv2.rectangle(img, (px0, py0), (px1, py1), INK, 1)
    _text(img, xlabel, ((px0 + px1) // 2, H - 8), 0.45, INK, 1, "center")
    _text(img, ylabel, (6, top - 14), 0.45, INK, 1)
    for k, (label, v) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        v = np.asarray(v, np.float64)
        pts = [(X(i), Y(y)) if math.isfinite(y) else None for i, y in enumerate(v)]
        run: list = []
        for p in pts + [None]:
            if p is None:
                if len(run) > 1:
                    cv2.polylines(img, [np.int32(np.round(run))], False, color, 2, cv2.LINE_AA)
                elif len(run) == 1:
                    cv2.circle(img, tuple(np.int32(np.round(run[0]))), 2, color, -1, cv2.LINE_AA)
                run = []
            else:
                run.append(p)
        ly = top + 12 + 18 * k
        cv2.line(img, (W - legend_w - 4, ly - 4), (W - legend_w + 14, ly - 4), color, 3, cv2.LINE_AA)
        _text(img, label, (W - legend_w + 20, ly), 0.45, INK, 1)
    return img


def temporal_profile(seq: np.ndarray, row: int | None = None, rows_per_frame: int | None = None) -> np.ndarray:
    """(T,H,W,3) uint8 -> (T*k, W, 3): pixel row `row` (default the middle) of each frame, stacked.

    Each frame's row is repeated k times (default: enough to be >= 120 px tall) so short
    clips stay readable.
    """
    t, h = seq.shape[:2]
    row = h // 2 if row is None else row
    k = rows_per_frame or max(1, math.ceil(120 / t))
    return np.repeat(seq[:, row], k, axis=0)


def label_above(img: np.ndarray, text: str, height: int = 22) -> np.ndarray:
    bar = np.full((height, img.shape[1], 3), 255, np.uint8)
    # Shrink the label until it fits the panel.
    scale = 0.45
    while scale > 0.25 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > img.shape[1] - 4:
        scale -= 0.05
    _text(bar, text, (img.shape[1] // 2, height - 7), scale, INK, 1, "center")
    return np.vstack([bar, img])


def side_by_side(panels: list[np.ndarray], gap: int = 6, max_width: int = 1800) -> np.ndarray:
    """Arrange panels left to right, wrapping into rows no wider than max_width."""
    if not panels:
        return np.full((10, 10, 3), 255, np.uint8)
    rows, cur, cur_w = [], [], 0
    for p in panels:
        if cur and cur_w + gap + p.shape[1] > max_width:
            rows.append(cur)
            cur, cur_w = [], 0
        cur.append(p)
        cur_w += p.shape[1] + (gap if len(cur) > 1 else 0)
    rows.append(cur)
    out_rows = []
    for r in rows:
        h = max(p.shape[0] for p in r)
        parts = []
        for i, p in enumerate(r):
            if i:
                parts.append(np.full((h, gap, 3), 255, np.uint8))
            parts.append(np.vstack([p, np.full((h - p.shape[0], p.shape[1], 3), 255, np.uint8)]))
        out_rows.append(np.hstack(parts))
    width = max(r.shape[1] for r in out_rows)
    padded = [np.hstack([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)]) for r in out_rows]
    return np.vstack([x for r in padded for x in (r, np.full((gap, width, 3), 255, np.uint8))][:-1])


def profile_panels(profiles: dict[str, np.ndarray], max_width: int = 1800) -> np.ndarray:
    """Labelled temporal profiles side by side; wide frames are shrunk to keep it viewable."""
    panels = []
    for name, p in profiles.items():
        if p.shape[1] > 480:  # shrink width only: time resolution (rows) is what matters
            p = cv2.resize(p, (480, p.shape[0]), interpolation=cv2.INTER_AREA)
        panels.append(label_above(p, name))
    return side_by_side(panels, max_width=max_width)


def write_png(path: str, rgb: np.ndarray) -> None:
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()
