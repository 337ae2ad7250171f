"""Temporal consistency: warping error, tOF and a no-reference flicker measure.

Every function here takes uint8 RGB sequences (T,H,W,3) and returns one value per
consecutive frame pair (T-1,); NaN marks a pair where the metric has no pixels to use.
Protocols, exactly (also in docs/metrics.md):

- Flow for warping error and flicker: OpenCV DIS (preset stated, MEDIUM by default) on
  grayscale, computed once per sequence on a *reference* sequence, both directions.
  Reference = ground truth when there is one, else the input. On a rainy input the
  grays are first cleaned by a 3x3 grey opening so streaks do not steer the flow.
- Valid (non-occluded) pixels for pair (t, t+1): forward-backward consistent, not a
  motion boundary (Ruder et al. 2016 thresholds, as Lai et al. 2018 use) and the flow
  lands inside frame t+1.
- Warping error (Lai et al., ECCV 2018): E_t = mean over valid pixels and the 3 channels
  of (O_t - warp(O_{t+1}, F_{t->t+1}))^2, pixels scaled to [0,1], bilinear warp in float.
- tOF (Chu et al., TecoGAN 2020): mean over pixels of the end-point distance between the
  Farneback flow O_t -> O_{t+1} and G_t -> G_{t+1} (OpenCV sample parameters, grayscale).
- Flicker (no ground truth needed): mean |Y(O_{t+1}) - Y(O_t)| (MATLAB Y, 0..255 scale)
  over *static* valid pixels: valid on the input's own flow and |F| < 0.5 px.
"""
from __future__ import annotations

import cv2
import numpy as np

from vderain import VderainError
from vderain.metrics.flow import MIN_FLOW_SIDE, DISFlow, farneback_flow, non_occluded, to_gray, warp
from vderain.metrics.image import rgb_to_y

STATIC_PX = 0.5          # |flow| below this (pixels/frame) counts as static for flicker
_OPEN3 = np.ones((3, 3), np.uint8)


def _gray(rgb: np.ndarray, rain_robust: bool) -> np.ndarray:
    g = to_gray(rgb)
    # The 3x3 opening erases bright structures under 3 px wide (rain streaks) before flow.
    return cv2.morphologyEx(g, cv2.MORPH_OPEN, _OPEN3) if rain_robust else g


class FlowReference:
    """DIS flows t -> t+1 and valid masks of one reference sequence, computed once.

    Flows are kept as float16 (ample for sub-pixel warps) so long 720p sequences fit.
    """

    def __init__(self, ref: np.ndarray, preset: str = "medium", rain_robust: bool = False,
                 source: str = "reference"):
        self.preset, self.rain_robust, self.source = preset, rain_robust, source
        h, w = ref.shape[1:3]
        if len(ref) > 1 and min(h, w) < MIN_FLOW_SIDE:   # a flow on padding would score nothing true
            raise VderainError(f"frames of {w}x{h} px are too small for the reference optical flow of "
                               f"the temporal metrics (at least {MIN_FLOW_SIDE}x{MIN_FLOW_SIDE} after the border crop)")
        dis = DISFlow(preset)
        grays = [_gray(f, rain_robust) for f in ref]
        self.flows: list[np.ndarray] = []     # (H,W,2) float16, t -> t+1 on frame t's grid
        self.valid: list[np.ndarray] = []     # (H,W) bool
        for g0, g1 in zip(grays[:-1], grays[1:]):
            fwd, bwd = dis(g0, g1), dis(g1, g0)
            self.flows.append(fwd.astype(np.float16))
            self.valid.append(non_occluded(fwd, bwd))

    def __len__(self) -> int:
        return len(self.flows)

    def flow(self, t: int) -> np.ndarray:
        return self.flows[t].astype(np.float32)

    def static(self, t: int, threshold: float = STATIC_PX) -> np.ndarray:
        f = self.flow(t)
        return self.valid[t] & (f[..., 0] ** 2 + f[..., 1] ** 2 < threshold ** 2)

    @property
    def description(self) -> str:
        pre = ", 3x3 opening" if self.rain_robust else ""
        return f"DIS {self.preset.upper()} on {self.source} grayscale{pre}"


def _check(seq: np.ndarray, n_pairs: int) -> None:
    if len(seq) - 1 != n_pairs:
        raise ValueError(f"sequence has {len(seq)} frames but the reference has {n_pairs + 1}")


def warping_error(seq: np.ndarray, ref: FlowReference) -> np.ndarray:
    """(T,H,W,3) uint8 -> (T-1,) Lai et al. warping error, [0,1]-scaled squared error."""
    _check(seq, len(ref))
    out = np.full(len(ref), np.nan)
    for t in range(len(ref)):
        m = ref.valid[t]
        if not m.any():
            continue
        nxt = warp(seq[t + 1].astype(np.float32), ref.flow(t))         # (H,W,3) on frame t's grid
        d = (seq[t].astype(np.float32) - nxt)[m] * (1 / 255)             # (N,3)
        out[t] = float(np.mean(d * d))
    return out


def farneback_flows(seq: np.ndarray) -> list[np.ndarray]:
    """Farneback flows t -> t+1 on grayscale, float16, for tOF."""
    grays = [to_gray(f) for f in seq]
    return [farneback_flow(a, b).astype(np.float16) for a, b in zip(grays[:-1], grays[1:])]


def tof(seq: np.ndarray, gt_flows: list[np.ndarray]) -> np.ndarray:
    """(T,H,W,3) uint8 -> (T-1,) mean end-point distance to the ground truth's Farneback flow (px)."""
    _check(seq, len(gt_flows))
    out = np.empty(len(gt_flows))
    for t, (f, g) in enumerate(zip(farneback_flows(seq), gt_flows)):
        d = f.astype(np.float32) - g.astype(np.float32)
        out[t] = float(np.mean(np.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2)))
    return out


def flicker(seq: np.ndarray, inp_ref: FlowReference, min_fraction: float = 0.01,
            y: np.ndarray | None = None) -> np.ndarray:
    """(T,H,W,3) uint8 -> (T-1,) mean |dY| over static valid pixels of the input (0..255 Y levels).

    NaN for pairs where under `min_fraction` of the pixels are static (a moving camera).
    `y` may pass the sequence's MATLAB Y planes (T,H,W) when the caller has them already.
    """
    _check(seq, len(inp_ref))
    y = (rgb_to_y(seq) if y is None else y).astype(np.int16)           # (T,H,W)
    out = np.full(len(inp_ref), np.nan)
    for t in range(len(inp_ref)):
        m = inp_ref.static(t)
        if m.mean() < min_fraction:
            continue
        out[t] = float(np.abs(y[t + 1] - y[t])[m].mean())
    return out


def static_fraction(inp_ref: FlowReference) -> float:
    """Mean fraction of pixels that count as static for flicker."""
    return float(np.mean([inp_ref.static(t).mean() for t in range(len(inp_ref))])) if len(inp_ref) else 0.0
