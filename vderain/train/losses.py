"""Training losses. Each is weighted (0 switches it off) from LossConfig."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()


def lowpass_l1(r_pred: torch.Tensor, r_true: torch.Tensor, k: int = 8) -> torch.Tensor:
    """L1 between 8x8 block means of the predicted and true rain layers.

    Streaks are high-frequency; a low-frequency error in R is a global tone/colour shift of the
    output (the measured failure: a model that darkens highlights). Weighting it on its own
    makes that shift expensive even when it is small per pixel.
    """
    return (F.avg_pool2d(r_pred, k, ceil_mode=True) - F.avg_pool2d(r_true, k, ceil_mode=True)).abs().mean()


def temporal_difference(o_prev, o_cur, c_prev, c_cur) -> torch.Tensor:
    """|(o_t - o_{t-1}) - (c_t - c_{t-1})|: the output must change between frames exactly as the
    clean video does. Where the clean frames move, this is the warped consistency loss with the
    true motion folded in (no flow estimate needed, no occlusion mask: occlusions are in c too)."""
    return charbonnier(o_cur - o_prev, c_cur - c_prev)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import kornia
    return kornia.losses.ssim_loss(x.float(), y.float(), window_size=11)


def masked_l1(r: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |r| over the samples where mask (B,) is 1; 0 when none are."""
    per_sample = r.abs().flatten(1).mean(1)
    return (per_sample * mask).sum() / mask.sum().clamp(min=1)
