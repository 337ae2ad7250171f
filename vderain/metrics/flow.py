"""Optical flow helpers shared by the temporal metrics and the temporal-median baseline.

Convention everywhere: `flow = flow_fn(gray0, gray1)` is defined on frame 0's pixel grid
and says where each pixel of frame 0 lies in frame 1, so gray0(x) ~= gray1(x + flow(x)).
`warp(img1, flow)` therefore pulls frame 1 back onto frame 0's grid.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from vderain import VderainError

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# The parameters of OpenCV's own Farneback sample, which the tOF metric
# (TecoGAN, Chu et al. 2020) was published with.
FARNEBACK_PARAMS = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
                        poly_sigma=1.2, flags=0)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 RGB -> (H,W) uint8 luma (OpenCV's BT.601 weights, full range)."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


# OpenCV's DIS raises on frames under 12 px a side, and on some thin frames (WxH 50x12 with
# MEDIUM, 100x30 with FAST or ULTRAFAST) it crashes the process (segfault: `vderain run` of a
# 100x30 clip died so). With both sides >= 32 px every preset worked in a probe (short side
# 32..68 px, long side up to 4000 px, both ways).
MIN_FLOW_SIDE = 32


def dis_calc(dis, gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:  # -> (H,W,2) float32
    """`dis.calc(gray0, gray1)` that cannot crash: a side under MIN_FLOW_SIDE is padded (edge
    pixels repeated, bottom/right) for the flow, which is cropped back to the frame."""
    h, w = gray0.shape[:2]
    pad_h, pad_w = max(0, MIN_FLOW_SIDE - h), max(0, MIN_FLOW_SIDE - w)
    if not (pad_h or pad_w):
        return dis.calc(gray0, gray1, None)
    a, b = (cv2.copyMakeBorder(g, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE) for g in (gray0, gray1))
    return np.ascontiguousarray(dis.calc(a, b, None)[:h, :w])


class DISFlow:
    """OpenCV DIS optical flow on uint8 grayscale frames; one instance per thread."""

    def __init__(self, preset: str = "ultrafast"):
        if preset not in DIS_PRESETS:
            raise VderainError(f"unknown DIS preset '{preset}' (choose from {', '.join(DIS_PRESETS)})")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def __call__(self, gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:  # -> (H,W,2) float32
        return dis_calc(self._dis, gray0, gray1)


def farneback_flow(gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:  # -> (H,W,2) float32
    p = FARNEBACK_PARAMS
    return cv2.calcOpticalFlowFarneback(gray0, gray1, None, p["pyr_scale"], p["levels"], p["winsize"],
                                        p["iterations"], p["poly_n"], p["poly_sigma"], p["flags"])


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    grid = np.dstack([xs, ys])                      # (H,W,2): x, y of every pixel
    grid.setflags(write=False)
    return grid


def sample_map(flow: np.ndarray) -> np.ndarray:
    """(H,W,2) float32 absolute sampling coordinates x + flow, as cv2.remap takes them."""
    return _grid(*flow.shape[:2]) + flow


def warp(img: np.ndarray, flow: np.ndarray, smap: np.ndarray | None = None) -> np.ndarray:
    """Pull `img` (frame 1) onto frame 0's grid along `flow` (bilinear, edge replicated)."""
    smap = sample_map(flow) if smap is None else smap
    return cv2.remap(img, smap, None, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def inside(flow: np.ndarray, smap: np.ndarray | None = None) -> np.ndarray:
    """(H,W) bool: the flow lands inside frame 1 (pixels leaving the frame have no match)."""
    h, w = flow.shape[:2]
    smap = sample_map(flow) if smap is None else smap
    return cv2.inRange(smap, (0.0, 0.0), (w - 1.0, h - 1.0)) > 0


_SUM2 = np.array([[1.0, 1.0]])   # cv2.transform matrix: per-pixel sum of the two flow channels


def fb_consistent(fwd: np.ndarray, bwd: np.ndarray, smap: np.ndarray | None = None,
                  alpha: float = 0.01, beta: float = 0.5) -> np.ndarray:
    """(H,W) bool: forward-backward consistent pixels (Sundaram et al. 2010; Ruder et al. 2016).

    `fwd` is 0->1 on frame 0's grid, `bwd` is 1->0 on frame 1's grid. A pixel is consistent
    when |fwd + bwd(x + fwd)|^2 <= alpha * (|fwd|^2 + |bwd(x + fwd)|^2) + beta.
    """
    bwd_w = warp(bwd, fwd, smap)
    err = fwd + bwd_w
    err *= err
    mag = fwd * fwd
    mag += bwd_w * bwd_w
    # Per channel err - alpha*mag, then summed over the two channels with cv2.transform:
    # numpy reductions over a trailing axis of 2 are several times slower.
    d = cv2.scaleAdd(mag, -alpha, err)
    return cv2.transform(d, _SUM2) <= beta


def motion_boundary(flow: np.ndarray, alpha: float = 0.01, beta: float = 0.002) -> np.ndarray:
    """(H,W) bool: motion boundaries, |grad u|^2 + |grad v|^2 > alpha * |w|^2 + beta (Ruder et al. 2016).

    Gradients are central differences (one-sided at the image edge), in pixels per pixel.
    """
    u, v = cv2.split(flow)
    du_y, du_x = np.gradient(u)
    dv_y, dv_x = np.gradient(v)
    grad2 = du_x ** 2 + du_y ** 2 + dv_x ** 2 + dv_y ** 2
    return grad2 > alpha * (u * u + v * v) + beta


def non_occluded(fwd: np.ndarray, bwd: np.ndarray) -> np.ndarray:
    """(H,W) bool: Lai et al. 2018's valid-pixel mask = consistent, not a motion boundary, lands inside."""
    smap = sample_map(fwd)
    return fb_consistent(fwd, bwd, smap) & ~motion_boundary(fwd) & inside(fwd, smap)
