"""HazeNet: the persistent part of the rain layer, a smooth haze, estimated from one destreaked frame.

Rain accumulates into a veil: y = x t + A (1 - t), transmission t = e^-tau falling with scene
depth, airlight A greyish. It is not transient, so the window's flicker cannot find it; it is a
contrast loss towards A, so no bounded additive layer undoes it. Inverting it,
    x = y + (y - A) (e^tau - 1),   i.e. its part of R is (A - y) (e^tau - 1),
needs tau and A per region, which single-image statistics give when read over wide areas: haze
lifts the dark floor, lowers the bright ceiling and shrinks local contrast, more so far away
(towards the top of most frames). A 5-minute probe of this estimator on the synthesiser's haze
over natural clips gained +4 dB on the suite's haze (28.2 -> 32.2) where the body-feature head
inside STRNet, trained on 128-px crops, had learnt none.

It reads the destreaked frame alone, not the streak network's features, so it trains on its
own (vderain/train/haze.py) and one estimator serves every model; rain-free clips in training
teach it what an unveiled scene's contrast looks like.

Shape flow (cell = 8 px):
  hazy (B,3,H,W) -> cues (B,25,H/8,W/8): per cell mean, std, dark floor, bright ceiling (8),
  their frame means (8) and deviations from them (8), the row (1) -> 3x3 conv -> 5 dilated residual convs (1,2,4,8,1;
  ~40 cells of context) with a frame-wide context vector after the third -> 1x1 -> tau (3), A (3)
  -> bilinear up to H x W.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

CELL = 8
N_HAZE_CUES = 8
N_INPUTS = 3 * N_HAZE_CUES + 1


def haze_cues(y: torch.Tensor, cell: int) -> torch.Tensor:
    """Per cell of `cell` px of a frame (B,3,H,W): mean colour (3), contrast (std, 3), the dark
    floor (min over the cell and colours, 1) and the bright ceiling (1) -> (B, 8, H/cell, W/cell).
    Haze lifts the floor towards the airlight and shrinks the contrast by t (the dark channel prior)."""
    pool = lambda t: F.avg_pool2d(t, cell, ceil_mode=True)
    mean = pool(y)
    std = (pool(y * y) - mean * mean).clamp(min=1e-6).sqrt()
    floor = -F.max_pool2d(-y.amin(1, keepdim=True), cell, ceil_mode=True)
    ceiling = F.max_pool2d(y.amax(1, keepdim=True), cell, ceil_mode=True)
    return torch.cat([mean, std, floor, ceiling], 1)


def rain_gate(r: torch.Tensor, found: float) -> torch.Tensor:
    """(B,3,H,W) streak layer -> (B,1,1,1) in [0,1]: 0 where the frame's mean |R| is under `found`,
    1 from twice that, smooth between. A low-contrast scene with no rain found is not haze."""
    # the mean |R| accumulated in fp32 without a full-resolution copy of R (a bf16 one is two fp32)
    mean_abs = torch.linalg.vector_norm(r.detach(), 1, dim=(1, 2, 3), keepdim=True, dtype=torch.float32) / r[0].numel()
    u = ((mean_abs - found) / found).clamp(0, 1)
    return u * u * (3 - 2 * u)


class HazeNet(nn.Module):
    # logits start at -6 (tau ~ 0.004 * tau_max: no haze at init); the gain lets Adam reach a
    # useful depth in hundreds of steps, not ~10^4 (a CPU run's bias moved 0.06 in 1,000 steps)
    GAIN = 4.0

    def __init__(self, channels: int = 32):
        super().__init__()
        c = channels
        self.inp = nn.Conv2d(N_INPUTS, c, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Conv2d(c, c, 3, padding=d, dilation=d) for d in (1, 2, 4, 8, 1)])
        self.context = nn.Linear(c, c)
        self.out = nn.Conv2d(c, 6, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        with torch.no_grad():
            self.out.bias[:3] = -6.0 / self.GAIN

    def cues(self, hazy: torch.Tensor) -> torch.Tensor:
        c = haze_cues(hazy, CELL)                                           # (B,8,h,w)
        b, _, h, w = c.shape
        frame = c.mean((-2, -1), keepdim=True)
        row = torch.linspace(0, 1, h, device=c.device, dtype=c.dtype).view(1, 1, h, 1)
        return torch.cat([c, frame.expand_as(c), c - frame, row.expand(b, 1, h, w)], 1)

    def estimate(self, frames: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """(N,3,H,W), or a list of (B,3,H,W) read as their concatenation -> (N,6,H/8,W/8):
        optical-depth logits (3) and airlight logits (3) per cell."""
        # the statistics are read off the frame, not a path for the body's gradient (in fp32: a
        # variance in bf16 loses the contrast it is there to measure), one frame batch at a time:
        # the fp32 copies of a whole window were the network's peak memory (bf16, 1080p)
        parts = frames if isinstance(frames, (list, tuple)) else [frames]
        cues = torch.cat([self.cues(p.detach().float()) for p in parts])   # (N,25,h,w), small
        f = F.leaky_relu(self.inp(cues.to(self.inp.weight.dtype)), 0.1)
        for i, conv in enumerate(self.blocks):
            f = f + F.leaky_relu(conv(f), 0.1)
            if i == 2:
                f = f + self.context(f.mean((-2, -1)))[:, :, None, None]
        return self.GAIN * self.out(f)

    def forward(self, hazy: torch.Tensor, tau_max: float,
                window: torch.Tensor | list[torch.Tensor] | None = None) -> torch.Tensor:
        """hazy: the destreaked frame (B,3,H,W). Returns the haze part of R, (A - hazy) (e^tau - 1).

        window: (B,T',3,H,W), or a list of T' (B,3,H,W), more frames of the same scene (the
        window's neighbours, streaks and all: half the training frames keep theirs; a list needs
        no copy of them). The estimate is averaged over them and
        `hazy`: haze persists, a per-frame estimate wavers with the streaks and the motion, and
        that adds flicker (suite warping error with `quality`: 3.70 from the target alone, 3.63
        averaged over the window; 15.7 vs 5.4 ms per 640x360 frame on 2 CPU threads).
        """
        a = self.estimate(hazy)
        if isinstance(window, torch.Tensor):
            window = list(window.unbind(1))
        if window:
            t = len(window)                           # frame-major: frame j's batch is rows j*B...
            a = (a + self.estimate(window).view(t, *a.shape).sum(0)) / (t + 1)
        a = a.float()
        gain = torch.expm1(tau_max * torch.sigmoid(a[:, :3]))           # e^tau - 1 per cell
        # R = (A - y)(e^tau - 1) = up(A (e^tau - 1)) - y up(e^tau - 1): two smooth maps upsampled
        # in one call, one channel per image (CPU bilinear is slower on 3-channel NCHW), and two
        # full-resolution ops: 3.4 instead of 7.6 ms per 640x360 frame on 2 CPU threads
        maps = torch.cat([torch.sigmoid(a[:, 3:]) * gain, gain], 1)     # (B,6,h,w)
        b, _, h, w = maps.shape
        H, W = hazy.shape[-2:]
        up = F.interpolate(maps.reshape(b * 6, 1, h, w), size=(H, W), mode="bilinear",
                           align_corners=False).view(b, 6, H, W)
        if torch.is_grad_enabled():
            return up[:, :3] - hazy.float() * up[:, 3:]
        # inference: in place, in the maps' own memory (the same numbers; at 1080p bf16 no two
        # more full-resolution fp32 frames on top of the peak)
        return up[:, :3].sub_(up[:, 3:].mul_(hazy))
