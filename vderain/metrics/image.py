"""Per-frame fidelity: PSNR and SSIM on RGB and on the MATLAB-style Y channel.

All inputs are uint8 RGB, (H,W,3) frames or (T,H,W,3) sequences. Protocols (see
docs/metrics.md):

- Y channel: MATLAB `rgb2ycbcr` on uint8 images, i.e. BT.601 "studio range"
  Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 with R,G,B in 0..255, rounded to an
  integer in 16..235, as most deraining papers compute it.
- PSNR: 10 log10(255^2 / MSE), peak 255 for RGB and for Y alike (MATLAB's `psnr` on
  uint8), MSE over every pixel (and channel) of one frame; identical frames are capped
  at 100 dB so means stay finite.
- SSIM: Wang et al. 2004 with an 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
  L = 255, "valid" filtering (the map covers only positions where the window fits, as
  in the reference ssim_index.m), no automatic downsampling; RGB SSIM = mean of the three
  channels' SSIM.
- `border` crops that many pixels off every side before anything is computed.
"""
from __future__ import annotations

import cv2
import numpy as np

from vderain import VderainError

PSNR_CAP = 100.0
# MATLAB's Y coefficients (65.481, 128.553, 24.966) times 1000, as integer lookup tables
_Y_R, _Y_G, _Y_B = (np.arange(256, dtype=np.int32) * c for c in (65481, 128553, 24966))
_SSIM_K = cv2.getGaussianKernel(11, 1.5)          # (11,1) float64, sums to 1
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """(...,3) uint8 RGB -> (...) uint8 Y in 16..235, exactly MATLAB's rgb2ycbcr on uint8.

    Exact integer arithmetic: 255000 * Y = 4080000 + 65481 R + 128553 G + 24966 B, rounded
    half up (MATLAB rounds half away from zero; Y > 0). A float64 version disagrees with
    this on 90 of the 2^24 colours, the ones that land within rounding error of a .5.
    """
    num = _Y_R[rgb[..., 0]] + _Y_G[rgb[..., 1]] + _Y_B[rgb[..., 2]]   # int32, < 2^26
    num += 16 * 255000 + 127500
    return (num // 255000).astype(np.uint8)


def crop(rgb: np.ndarray, border: int) -> np.ndarray:
    """Drop `border` pixels on each side of (...,H,W,3) frames."""
    if border <= 0:
        return rgb
    out = rgb[..., border:-border, border:-border, :]
    if out.size == 0:
        raise VderainError(f"border crop of {border} px leaves nothing of {rgb.shape[-2]}x{rgb.shape[-3]} frames")
    return out


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise VderainError(f"cannot compare frames of different shapes {a.shape} and {b.shape}")


def mse_to_psnr(mse, peak: float = 255.0):
    mse = np.maximum(np.asarray(mse, np.float64), peak ** 2 * 10 ** (-PSNR_CAP / 10))
    return 10 * np.log10(peak ** 2 / mse)


def psnr(a: np.ndarray, b: np.ndarray, channel: str = "rgb", border: int = 0) -> float:
    """PSNR of one uint8 RGB frame pair, on 'rgb' or 'y'."""
    return float(psnr_frames(a[None], b[None], channel, border)[0])


def psnr_frames(a: np.ndarray, b: np.ndarray, channel: str = "rgb", border: int = 0) -> np.ndarray:
    """(T,H,W,3) uint8 pairs -> (T,) PSNR per frame."""
    _check_pair(a, b)
    a, b = crop(a, border), crop(b, border)
    if channel == "y":
        a, b = rgb_to_y(a), rgb_to_y(b)
    elif channel != "rgb":
        raise VderainError(f"unknown channel '{channel}' (rgb or y)")
    return psnr_planes(a, b)


def psnr_planes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T,...) uint8 frames (RGB or Y planes) -> (T,) PSNR, peak 255."""
    # cv2.norm sums squared uint8 differences exactly (in double) without a float copy.
    sse = np.array([cv2.norm(np.ascontiguousarray(x), np.ascontiguousarray(y), cv2.NORM_L2SQR)
                    for x, y in zip(a, b)])
    return mse_to_psnr(sse / a[0].size)


def _blur(x: np.ndarray) -> np.ndarray:
    # Border mode is irrelevant: only the 'valid' part of the map is kept.
    return cv2.sepFilter2D(x, cv2.CV_64F, _SSIM_K, _SSIM_K, borderType=cv2.BORDER_REFLECT)


def ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two (H,W) planes with values on the 0..255 scale (any dtype)."""
    if min(x.shape) < 11:
        raise VderainError(f"SSIM needs frames of at least 11x11 pixels, got {x.shape}")
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    mx, my = _blur(x), _blur(y)
    sxx = _blur(x * x) - mx * mx
    syy = _blur(y * y) - my * my
    sxy = _blur(x * y) - mx * my
    smap = ((2 * mx * my + _C1) * (2 * sxy + _C2)) / ((mx * mx + my * my + _C1) * (sxx + syy + _C2))
    return float(smap[5:-5, 5:-5].mean())


def ssim(a: np.ndarray, b: np.ndarray, channel: str = "rgb", border: int = 0) -> float:
    """SSIM of one uint8 RGB frame pair, on 'rgb' (mean over channels) or 'y'."""
    _check_pair(a, b)
    a, b = crop(a, border), crop(b, border)
    if channel == "y":
        return ssim_plane(rgb_to_y(a), rgb_to_y(b))
    if channel != "rgb":
        raise VderainError(f"unknown channel '{channel}' (rgb or y)")
    return float(np.mean([ssim_plane(a[..., c], b[..., c]) for c in range(3)]))


def ssim_frames(a: np.ndarray, b: np.ndarray, channel: str = "rgb", border: int = 0) -> np.ndarray:
    """(T,H,W,3) uint8 pairs -> (T,) SSIM per frame."""
    _check_pair(a, b)
    return np.array([ssim(x, y, channel, border) for x, y in zip(a, b)])
