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


def clean_flow(c_cur: torch.Tensor, c_prev: torch.Tensor, dis) -> torch.Tensor:
    """DIS flow on the clean frames (B,3,H,W) in [0,1]: where each pixel of frame t lies in
    frame t-1, (B,H,W,2) on c_cur's device. OpenCV on the CPU: measured ~55 ms for a batch of
    16 pairs of 192x192 (2 busy cores), which is why the loss is off by default."""
    import numpy as np

    from vderain.metrics.flow import to_gray
    u8 = lambda x: (x.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    cur, prev = u8(c_cur), u8(c_prev)
    flows = np.stack([dis(to_gray(cur[b]), to_gray(prev[b])) for b in range(cur.shape[0])])
    return torch.from_numpy(flows).to(c_cur.device)


def warped_temporal(o_prev, o_cur, c_prev, c_cur, flow: torch.Tensor, alpha: float = 50.0) -> torch.Tensor:
    """Lai et al.'s short-term temporal loss: |o_t - W(o_{t-1})| where the clean frames agree.

    W pulls frame t-1 onto frame t's grid along `flow` (from `clean_flow`); the occlusion mask
    exp(-alpha |c_t - W(c_{t-1})|^2) drops pixels the flow cannot explain (occlusions, flow
    errors, lighting changes), and samples from outside the frame are dropped too.
    """
    from kornia.geometry.transform import remap
    B, _, H, W = o_cur.shape
    ys, xs = torch.meshgrid(torch.arange(H, device=flow.device, dtype=torch.float32),
                            torch.arange(W, device=flow.device, dtype=torch.float32), indexing="ij")
    mx, my = xs + flow[..., 0], ys + flow[..., 1]                               # (B,H,W)
    # align_corners=True: kornia normalises pixel maps that way (an identity map is then exact)
    pull = lambda x: remap(x, mx, my, mode="bilinear", padding_mode="border", align_corners=True)
    with torch.no_grad():
        mask = torch.exp(-alpha * ((c_cur.float() - pull(c_prev.float())) ** 2).sum(1, keepdim=True))
        mask = mask * ((mx >= 0) & (mx <= W - 1) & (my >= 0) & (my <= H - 1)).unsqueeze(1)
    diff = (o_cur - pull(o_prev)).abs() * mask
    return diff.sum() / (mask.sum() * o_cur.shape[1]).clamp(min=1.0)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import kornia
    return kornia.losses.ssim_loss(x.float(), y.float(), window_size=11)


def masked_l1(r: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |r| over the samples where mask (B,) is 1; 0 when none are."""
    return _masked_mean(r.abs().flatten(1).mean(1), mask)


def _masked_mean(per_sample: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-sample values (B,) over the samples where mask (B,) is 1; 0 when none are."""
    mask = mask.to(per_sample.dtype)
    return (per_sample * mask).sum() / mask.sum().clamp(min=1)


def log_mse(out: torch.Tensor, clean: torch.Tensor, rain_free: torch.Tensor,
            floor: float = (1 / 255) ** 2) -> torch.Tensor:
    """Mean over the clips with rain of 10 log10(MSE + floor), i.e. minus their PSNR in dB:
    out, clean (B,3,H,W), rain_free (B,). A per-pixel loss is ruled by heavy rain (its errors
    are 100x a drizzle's); in log space every clip counts by its relative error, as the
    benchmark's mean PSNR counts it. The floor (an MSE of one grey level) bounds the weight of
    a clip that is nearly right already."""
    mse = ((out - clean) ** 2).flatten(1).mean(1)
    return _masked_mean(10 * torch.log10(mse + floor), 1 - rain_free)


def untouched_l1(out: torch.Tensor, clean: torch.Tensor, streak: torch.Tensor, rain_free: torch.Tensor,
                 below: float = 0.02) -> torch.Tensor:
    """Mean |out - clean| over the pixels no streak touches (streak opacity under `below`) of the
    clips with rain: out, clean (B,3,H,W), streak (B,1,H,W), rain_free (B,). Extra weight on the
    rain's surroundings, which must come out as they were (their veil removed, nothing else): the
    faint-rain runs removed more of the rain and changed its surroundings more (0.16 -> 0.22
    levels RMS at 4.2-level streaks). Rain-free clips are left to `norain`, which already asks
    for the whole frame, so they do not swamp the mean."""
    mask = (streak.detach() < below).to(out.dtype) * (1 - rain_free).view(-1, 1, 1, 1).to(out.dtype)
    return ((out - clean).abs() * mask).sum() / (mask.sum() * out.shape[1]).clamp(min=1.0)
