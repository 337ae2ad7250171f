"""Classical baseline: per-pixel temporal median over a motion-compensated window.

Rain streaks are bright, thin and land somewhere new in every frame, while the scene
moves smoothly. So: warp each neighbour onto the target frame with optical flow, then
take the per-pixel median across the window; a streak present in fewer than half of
the aligned frames disappears. Where the flow cannot be trusted (forward-backward
inconsistent, or pointing outside the frame) the neighbour's vote is replaced by the
target pixel itself, so occlusions and flow failures degrade to "unchanged", never to
ghosting.

Runs on the CPU with OpenCV whatever device is asked for. Flows and grays are cached by
frame content, so a sliding window computes each ordered frame pair only once.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import cv2
import numpy as np
import torch

from vderain import VderainError
from vderain.methods import Method
from vderain.metrics.flow import DISFlow, fb_consistent, inside, sample_map, to_gray, warp

FLOWS = ("dis", "dis-ultrafast", "dis-fast", "dis-medium", "none")


def median_of(stack: list[np.ndarray]) -> np.ndarray:
    """Element-wise median of same-shape uint8 arrays.

    An odd-even transposition sort with np.minimum/np.maximum is several times faster
    than np.median for the handful of frames in a window (no float conversion, no
    partition per pixel). Even counts average the two middle values (rounded half up).
    """
    n = len(stack)
    if n > 15:
        return np.median(np.stack(stack), axis=0).round().astype(np.uint8)
    a = list(stack)
    for rnd in range(n):
        for i in range(rnd % 2, n - 1, 2):
            lo = np.minimum(a[i], a[i + 1])
            a[i + 1] = np.maximum(a[i], a[i + 1])
            a[i] = lo
    if n % 2:
        return a[n // 2]
    return ((a[n // 2 - 1].astype(np.uint16) + a[n // 2] + 1) // 2).astype(np.uint8)


def to_hwc_uint8(chw: np.ndarray) -> np.ndarray:
    """(3,H,W) float in [0,1] -> (H,W,3) uint8, rounded and saturated.

    OpenCV's SIMD conversion is ~7x faster than torch's clamp/round/permute at 720p.
    """
    planes = cv2.convertScaleAbs(cv2.max(chw.reshape(-1, chw.shape[-1]), 0.0), alpha=255.0)
    return cv2.merge(list(planes.reshape(chw.shape)))


_OPEN3 = np.ones((3, 3), np.uint8)


def flow_gray(rgb: np.ndarray) -> np.ndarray:
    """Grayscale for flow with thin bright streaks removed (3x3 grey opening).

    Rain is exactly the thing that breaks flow between rainy frames; an opening erases
    bright structures under 3 px wide and barely moves the edges flow needs. On the toy
    clip it halves DIS ULTRAFAST's error on rainy frames (0.17 -> 0.09 px).
    """
    return cv2.morphologyEx(to_gray(rgb), cv2.MORPH_OPEN, _OPEN3)


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class TemporalMedian(Method):
    """Motion-compensated temporal median (OpenCV DIS flow on grayscale)."""
    name = "median"
    tileable = False  # flow needs the whole frame

    def __init__(self, window: int = 5, device: str | torch.device = "cpu", flow: str = "dis"):
        if int(window) < 1:
            raise VderainError(f"median window must be >= 1, got {window}")
        if flow not in FLOWS:
            raise VderainError(f"unknown flow '{flow}' for the median method (choose from {', '.join(FLOWS)})")
        self.window = int(window)
        self.target = self.window // 2
        # OpenCV runs on the CPU: asking the pipeline to move windows to a GPU would only
        # add two copies, so the method always says "cpu" whatever was asked for.
        self.device = torch.device("cpu")
        self.requested_device = torch.device(device) if device is not None else self.device
        self.flow = flow
        preset = "ultrafast" if flow == "dis" else flow.removeprefix("dis-")
        self._dis = DISFlow(preset) if flow != "none" else None
        # The last two windows' ordered pairs (target <-> each neighbour): a sliding window
        # reuses the previous one's pairs with the newer frames. Bounded because one 1080p
        # flow field is 16 MB.
        self._flows = _LRU(max(4, 4 * (self.window - 1)))

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:  # (B,T,3,H,W) -> (B,3,H,W)
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise VderainError(f"median expects clips (B,T,3,H,W), got {tuple(clips.shape)}")
        x = clips.detach().float().cpu().numpy()                          # (B,T,3,H,W)
        out = np.stack([self.restore([to_hwc_uint8(f) for f in clip]) for clip in x])  # (B,H,W,3)
        out = out.astype(np.float32)
        out *= 1 / 255
        # A channels-last view, not a copy: the pipeline turns it back into HWC uint8.
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(clips.device)

    def restore(self, clip: list[np.ndarray]) -> np.ndarray:
        """T frames (H,W,3) uint8 -> (H,W,3) uint8 median aligned on frame `target`."""
        t = min(self.target, len(clip) - 1)
        ref = clip[t]
        if self._dis is None:
            return median_of(list(clip))
        grays = [flow_gray(f) for f in clip]
        keys = [hashlib.blake2b(g.tobytes(), digest_size=16).digest() for g in grays]
        votes = []
        for j, frame in enumerate(clip):
            if j == t or keys[j] == keys[t]:   # reflected edge windows repeat frames
                votes.append(frame if j == t else ref)
                continue
            fwd = self._pair_flow(keys[t], keys[j], grays[t], grays[j])    # (H,W,2) on ref's grid
            bwd = self._pair_flow(keys[j], keys[t], grays[j], grays[t])
            smap = sample_map(fwd)
            aligned = warp(frame, fwd, smap)
            bad = ~(fb_consistent(fwd, bwd, smap) & inside(fwd, smap))
            np.copyto(aligned, ref, where=bad[..., None])
            votes.append(aligned)
        return median_of(votes)

    def _pair_flow(self, k0: bytes, k1: bytes, g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
        return self._flows.get_or((k0, k1), lambda: self._dis(g0, g1))
