"""Tiny procedural rainy/clean pairs for tests and smoke runs (no files, no synthesiser).

A smooth random texture translates at a known sub-pixel speed; every frame gets its own
independent bright streaks. Small on purpose: what it checks is "does the temporal
machinery work", not realism (the synthesiser's suite is for that).
"""
from __future__ import annotations

import cv2
import numpy as np


def texture(h: int, w: int, rng: np.random.Generator, blur: float = 2.0) -> np.ndarray:
    """(h,w,3) float32 in [0,255]: blurred colour noise plus a soft gradient (features for flow)."""
    noise = rng.random((h, w, 3), dtype=np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), blur)
    tex = (tex - tex.min()) / (np.ptp(tex) + 1e-6)
    ramp = np.linspace(0.2, 0.8, w, dtype=np.float32)[None, :, None]
    return np.clip(255 * (0.75 * tex + 0.25 * ramp), 0, 255)


def translating(frames: int, h: int, w: int, speed=(1.3, 0.6), seed: int = 0) -> np.ndarray:
    """(T,h,w,3) uint8: a texture moving by `speed` (dx, dy) pixels per frame."""
    rng = np.random.default_rng(seed)
    pad = int(np.ceil(max(abs(speed[0]), abs(speed[1])) * frames)) + 4
    canvas = texture(h + 2 * pad, w + 2 * pad, rng)
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        # out_t(x) = canvas(x + pad - speed * t): a crop sliding by -speed, so the
        # content moves by +speed and the true flow t -> t+1 is +speed everywhere.
        m = np.float32([[1, 0, pad - speed[0] * t], [0, 1, pad - speed[1] * t]])
        out[t] = np.clip(cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
                         + 0.5, 0, 255)
    return out


def add_streaks(clean: np.ndarray, density: float = 0.004, length: int = 9, strength: float = 0.7,
                seed: int = 1) -> np.ndarray:
    """Independent per-frame bright slanted streaks, screen-blended onto (T,H,W,3) uint8."""
    rng = np.random.default_rng(seed)
    t, h, w, _ = clean.shape
    out = np.empty_like(clean)
    n = max(1, int(density * h * w))
    for i in range(t):
        mask = np.zeros((h, w), np.float32)
        xs, ys = rng.integers(0, w, n), rng.integers(0, h, n)
        for x, y in zip(xs, ys):
            dx = int(round(length * 0.25))
            cv2.line(mask, (int(x), int(y)), (int(x) + dx, int(y) + length), 1.0, 1, cv2.LINE_AA)
        a = (strength * mask)[..., None]
        f = clean[i].astype(np.float32)
        out[i] = np.clip(f + a * (255 - f) + 0.5, 0, 255).astype(np.uint8)
    return out


def falling_streaks(clean: np.ndarray, n: int = 40, speed: int = 9, length: int = 12, width: int = 2,
                    strength: float = 0.8, seed: int = 0) -> np.ndarray:
    """Streaks that fall together at `speed` px/frame, screen-blended onto (T,H,W,3) uint8.

    Unlike `add_streaks` the rain moves coherently, so dense optical flow follows the
    rain instead of the scene: the failure mode heavy real rain causes.
    """
    rng = np.random.default_rng(seed)
    t, h, w, _ = clean.shape
    xs, ys = rng.integers(0, w, n), rng.integers(-h, h, n)
    out = np.empty_like(clean)
    for i in range(t):
        mask = np.zeros((h, w), np.float32)
        for x, y in zip(xs, ys):
            y0 = (y + speed * i) % (2 * h) - h // 2
            cv2.line(mask, (int(x), int(y0)), (int(x) + 2, int(y0) + length), 1.0, width, cv2.LINE_AA)
        a = (strength * mask)[..., None]
        f = clean[i].astype(np.float32)
        out[i] = np.clip(f + a * (255 - f) + 0.5, 0, 255).astype(np.uint8)
    return out


def toy_pair(frames: int = 12, h: int = 72, w: int = 96, seed: int = 0, speed=(1.3, 0.6)) -> dict:
    """{'rainy', 'clean': (T,H,W,3) uint8, 'fps', 'meta'} in the synthesiser suite's format."""
    clean = translating(frames, h, w, speed=speed, seed=seed)
    rainy = add_streaks(clean, seed=seed + 1)
    return dict(rainy=rainy, clean=clean, fps=25.0, meta=dict(kind="toy", speed=tuple(speed), seed=seed))
