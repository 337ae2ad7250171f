"""Temporal stabiliser: a motion-compensated median of the network's outputs, where rain was.

Why: what a network misses in heavy rain (a streak's faint residue, a guessed patch of
background behind a near drop) differs from frame to frame, so it shows as flicker (the suite's
warping error was 3x the clean video's, all of it in heavy rain). A neighbouring output, moved
onto the frame by optical flow, has the same background and a different residue: the
per-pixel median of the frame and its 2K moved neighbours keeps the first and drops the second.

Only where it is safe:
- only where the network removed rain: the local (high-pass) part of rain layer R = input -
  output, dilated a little. A frame where nothing was removed (rain-free, or rain-free areas of
  a rainy frame) comes out bit-identical;
- only from neighbours whose motion is right: each moved neighbour is compared with the frame
  over the surrounding *rain-free* pixels (where both should agree exactly: stripes moved by a
  wrong flow, a wire the flow could not follow, an occlusion, all disagree there); where a
  neighbourhood has too few rain-free pixels, over all of them with a looser tolerance;
  a neighbour that disagrees votes for the frame's own value.

Flow: OpenCV DIS (preset FAST) on the grey outputs (derained, so rain does not steer it),
computed on a copy at most `flow_side` pixels wide and scaled up. Non-causal: output t waits
for frame t + K (the file pipeline; live video does not use it).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass
class StabiliserConfig:
    radius: int = 2            # K: neighbours on each side (2K + 1 frames in the median)
    rain_low: float = 2.0      # local |R| (0..255 levels) below which a pixel is left alone ...
    rain_high: float = 6.0     # ... and above which it is fully stabilised (smoothstep between)
    tol_clean: float = 6.0     # a moved neighbour's mean |difference| on rain-free pixels (levels)
    tol_any: float = 20.0      # the same over all pixels, where too few are rain-free (30 took 17 % of an
                               # unrelated neighbour; 20 costs the suite's heavy rain 0.3 dB of 1.5 gained)
    min_clean: float = 0.05    # the fraction of rain-free pixels that makes the first test usable
    check_radius: int = 7      # the comparison window is (2r+1)^2
    flow_side: int = 960       # flow on a copy at most this wide (DIS cost grows with pixels)


# the rain mask's high-pass: |R - its 15x15 local mean| keeps streaks and drops a smooth veil
HIGHPASS_RADIUS = 7


def _smoothstep(x, lo: float, hi: float):
    """0 below lo, 1 above hi, smooth between: NumPy arrays or torch tensors alike."""
    z = ((x - lo) * (1.0 / (hi - lo))).clip(0, 1)
    return z * z * (3 - 2 * z)


def flow_between(dis, a: np.ndarray, b: np.ndarray, flow_side: int, full_size: bool = True) -> np.ndarray:
    """DIS flow from grey a to grey b (a(x) ~ b(x + f(x))), computed at most flow_side wide;
    full_size: scaled back up to a's size (else left small, in full-size pixels)."""
    h, w = a.shape
    s = min(1.0, flow_side / max(h, w))
    if s >= 1.0:
        return dis.calc(a, b, None)
    size = (max(16, round(w * s)), max(16, round(h * s)))
    f = dis.calc(cv2.resize(a, size, interpolation=cv2.INTER_AREA),
                 cv2.resize(b, size, interpolation=cv2.INTER_AREA), None)
    f[..., 0] *= w / size[0]
    f[..., 1] *= h / size[1]
    return cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) if full_size else f


class _Item:
    __slots__ = ("key", "out", "grey", "mask", "dev")

    def __init__(self, key, out, grey, mask, dev=None):
        self.key, self.out, self.grey, self.mask = key, out, grey, mask
        self.dev = dev      # GPU path: (output (3,H,W) float 0..255, mask (H,W)) on the device


class TemporalStabiliser:
    """Streaming: push (key, input rgb, output rgb) in order; get (key, stabilised rgb) back, K
    frames later; `flush()` returns the rest at the end. uint8 (H, W, 3) in and out."""

    def __init__(self, cfg: StabiliserConfig | None = None, device=None):
        """device: where the method runs. A CUDA device gets the per-pixel work in torch there
        (flows stay on the CPU, one thread per neighbour: at 1080p the OpenCV path managed 2-3 fps
        on 2 threads, far below the GPU network); anything else (None, CPU) runs in OpenCV/NumPy."""
        self.cfg = cfg or StabiliserConfig()
        if self.cfg.radius < 1:
            raise ValueError("stabiliser radius must be >= 1")
        self._torch = None
        if device is not None and torch.device(device).type == "cuda":
            from vderain.methods import _stabilise_torch
            self._torch = _stabilise_torch.DevicePath(self.cfg, device)
        else:
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._buf: deque[_Item] = deque()
        self._next = 0      # index in _buf of the next frame to finish
        self._grid: tuple | None = None

    @property
    def delay(self) -> int:
        return self.cfg.radius

    @property
    def notes(self) -> list[str]:
        if self._torch is not None and self._torch.out_of_memory:
            return ["out of GPU memory for the stabiliser: some frames were left as the network made them"]
        return []

    def close(self) -> None:
        """Let go of the flow threads and device memory (the object is done after this)."""
        self._buf.clear()
        if self._torch is not None:
            self._torch.close()

    # DIS needs frames of at least 12 px (its smallest pyramid level); smaller ones pass unchanged
    MIN_SIDE = 16

    def push(self, key, rgb_in: np.ndarray, rgb_out: np.ndarray) -> list:
        done = []
        if self._buf and self._buf[-1].out.shape != rgb_out.shape:
            done = self.flush()         # a new size (a stream that changed resolution): a new scene
        self._buf.append(self._item(key, rgb_in, rgb_out))
        K = self.cfg.radius
        while self._next < len(self._buf) and len(self._buf) - 1 - self._next >= K:
            done.append(self._finish(self._next))
            self._next += 1
        while self._next > K:           # keep K finished frames as past neighbours
            self._buf.popleft()
            self._next -= 1
        return done

    def flush(self) -> list:
        done = []
        while self._next < len(self._buf):
            done.append(self._finish(self._next))
            self._next += 1
        self._buf.clear()
        self._next = 0
        return done

    # ------------------------------------------------------------------

    def _item(self, key, rgb_in, rgb_out) -> _Item:
        c = self.cfg
        out = np.ascontiguousarray(rgb_out)
        grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
        if min(out.shape[:2]) < self.MIN_SIDE:
            return _Item(key, out, grey, None)
        grey_in = cv2.cvtColor(np.ascontiguousarray(rgb_in), cv2.COLOR_RGB2GRAY)
        if self._torch is not None:
            dev = self._torch.prepare(out, grey, grey_in)
            return _Item(key, out, grey, True if dev and dev[1] is not None else None, dev)
        r = grey_in.astype(np.float32) - grey                                           # R (luma)
        k = 2 * HIGHPASS_RADIUS + 1
        local = np.abs(r - cv2.blur(r, (k, k)))                                         # streaks, not haze
        mask = _smoothstep(cv2.dilate(local, np.ones((3, 3), np.uint8)), c.rain_low, c.rain_high)
        return _Item(key, out, grey, mask if mask.max() > 0 else None)

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return flow_between(self._dis, a, b, self.cfg.flow_side)

    def _warp(self, img: np.ndarray, flow: np.ndarray, origin=(0, 0)) -> np.ndarray:
        """img sampled at x + flow(x) for the pixels x of a box at `origin` (flow: the box's)."""
        h, w = flow.shape[:2]
        if self._grid is None or self._grid[0].shape != (h, w) or self._grid[2] != origin:
            gx, gy = np.meshgrid(np.arange(origin[0], origin[0] + w, dtype=np.float32),
                                 np.arange(origin[1], origin[1] + h, dtype=np.float32))
            self._grid = (gx, gy, origin)
        gx, gy, _ = self._grid
        return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    def _finish(self, i: int):
        c = self.cfg
        it = self._buf[i]
        if it.mask is None:                      # nothing removed here: nothing to stabilise
            return it.key, it.out
        if self._torch is not None:
            nbs = [self._buf[j] for j in range(max(0, i - c.radius), min(len(self._buf), i + c.radius + 1))
                   if j != i and self._buf[j].dev is not None]
            if len(nbs) < 2:
                return it.key, it.out
            return it.key, self._torch.finish(it, nbs)   # the network's output if the GPU is full
        # everything below is per pixel and zero where the mask is: work on the mask's bounding
        # box (plus the check window, so the box filters see what they would on the whole frame)
        rows, cols = np.flatnonzero(it.mask.any(1)), np.flatnonzero(it.mask.any(0))
        pad = c.check_radius + 1
        y0, y1 = max(0, rows[0] - pad), min(it.mask.shape[0], rows[-1] + pad + 1)
        x0, x1 = max(0, cols[0] - pad), min(it.mask.shape[1], cols[-1] + pad + 1)
        box = (slice(y0, y1), slice(x0, x1))
        out = it.out[box]
        o = out.astype(np.float32)
        m = it.mask[box]
        clean_w = 1.0 - m
        k = (2 * c.check_radius + 1,) * 2
        den = cv2.blur(clean_w, k)
        enough = den > c.min_clean
        votes = [o]
        for j in range(max(0, i - c.radius), min(len(self._buf), i + c.radius + 1)):
            if j == i:
                continue
            nb = self._buf[j]
            moved = self._warp(nb.out, self._flow(it.grey, nb.grey)[box], (x0, y0))        # uint8
            d = cv2.cvtColor(cv2.absdiff(moved, out), cv2.COLOR_RGB2GRAY).astype(np.float32)
            # how far the moved neighbour is from the frame, in tolerances: over the rain-free
            # pixels around, or over all of them where too few are rain-free
            far = np.where(enough, cv2.blur(d * clean_w, k) / np.maximum(den, 1e-6) * (1 / c.tol_clean),
                           cv2.blur(d, k) * (1 / c.tol_any))
            ok = np.exp(-far * far)
            votes.append(o + ok[..., None] * (moved.astype(np.float32) - o))
        if len(votes) < 3:
            return it.key, it.out                # a lone frame (or pair): no majority to take
        res = it.out.copy()
        res[box] = np.clip(o + m[..., None] * (_median(votes) - o) + 0.5, 0, 255).astype(np.uint8)
        return it.key, res


def _median(v: list, maximum=np.maximum, minimum=np.minimum):
    """Per-element median of 3-5 arrays by min/max networks (np.partition was 36 % of the
    stabiliser at 640x360); NumPy arrays, or torch tensors with torch.maximum/minimum.
    More than 5 fall back to a sort."""
    def med3(a, b, c):
        return maximum(minimum(a, b), minimum(maximum(a, b), c))
    if len(v) == 3:
        return med3(*v)
    if len(v) in (4, 5):
        a, b, c, d = v[:4]
        lo = maximum(minimum(a, b), minimum(c, d))     # the larger of the two pair minima
        hi = minimum(maximum(a, b), maximum(c, d))     # the smaller of the two pair maxima
        return (lo + hi) * 0.5 if len(v) == 4 else med3(lo, hi, v[4])
    if isinstance(v[0], np.ndarray):
        return np.median(np.stack(v), axis=0)
    import torch
    return torch.stack(v).quantile(0.5, dim=0)


def stabilise_frames(rainy: np.ndarray, derained: np.ndarray, cfg: StabiliserConfig | None = None,
                     device=None) -> np.ndarray:
    """Whole sequences in memory: (N, H, W, 3) uint8 input and network output -> stabilised output."""
    st = TemporalStabiliser(cfg, device)
    out = np.empty_like(derained)
    try:
        for i in range(len(derained)):
            for k, rgb in st.push(i, rainy[i], derained[i]):
                out[k] = rgb
        for k, rgb in st.flush():
            out[k] = rgb
    finally:
        st.close()
    return out
