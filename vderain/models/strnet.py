"""Spatio-temporal residual network (STRNet): predicts the rain layer of one frame from a window.

Residual at two levels:
  * task level: the network outputs the signed rain layer R of the target frame and the
    derained frame is `rainy[target] - R` (clamped only at the very end);
  * feature level: the body is a stack of residual blocks whose last conv starts at zero, so an
    untrained block is the identity and added depth cannot make the result worse at init.

Time: the T frames of the window are folded into channels (early fusion) after a lossless
pixel-unshuffle, together with per-pixel temporal statistics (min / mean / max over the
window). Rain flickers - a new random pattern every frame - so it shows up as the gap between a
frame and its neighbours' minimum; texture moves coherently and stays in all of them. The 1x1
fusion layer learns the frame differences it needs; the encoder / decoder give the context to
tell a streak from a wire.

Optionally (`align`) the neighbours are first shifted onto the target frame when the window
shows one steady global motion (a pan), so texture moving with the camera stops flickering
in the statistics; see align.py.

Shape flow (s = scale, C = channels):
  clip (B,T,3,H,W) + stats -> (B, (T+3)*3, H, W) -> s x s conv, stride s -> C at H/s
  -> enc ResBlocks at H/s -> stride-2 conv -> 2C body ResBlocks at H/2s -> shuffle up -> + skip
  -> dec ResBlocks -> conv -> 3*s^2 -> shuffle -> R (B,3,H,W)
  with `veil`: R -> R - up(pool_8s(R)) + up(veil * tanh(1x1 conv(pool_4(body)))), i.e. low
  frequencies enter R only through a smooth layer bounded to +-veil (airlight / dimming)
  with `guard`: R's local means (cells of `guard` px) are clamped to the flicker the aligned
  window shows, [mean(x_t - max_T x), mean(x_t - min_T x)]: a transient layer cannot change a
  region by more than its frames disagree (transient_guard). With both, the guarded R keeps its
  (transient) low frequencies and the veil is added on top: R -> guard(R) + up(veil * tanh(...))
  with `dehaze`: the persistent part as physics has it, a smooth haze inverted on the destreaked
  frame: R -> R + (A - (x_t - R)) (e^tau - 1), tau <= dehaze and A smooth maps read off the
  destreaked frame's wide-area statistics by a separate small network (haze.py)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vderain.models.align import align_window
from vderain.models.haze import HazeNet, rain_gate


@dataclass
class STRNetConfig:
    frames: int = 5          # window length T
    target: int = 2          # index of the restored frame in the window (T//2 centred, T-1/T-2 causal)
    scale: int = 2           # space-to-depth factor: the network works at H/scale
    channels: int = 32       # C at H/scale; the body runs at 2C and H/(2*scale)
    enc_blocks: int = 1
    body_blocks: int = 4
    dec_blocks: int = 1
    temporal_stats: bool = True  # feed min/mean/max over the window as extra frames
    align: bool = False          # shift neighbours onto the target first (steady global motion: pans)
    veil: float = 0.0            # > 0: R = high-pass streak layer + a smooth veil bounded to +-veil
    guard: int = 0               # > 0: cell size (px) of the transient guard on R's low frequencies
    dehaze: float = 0.0          # > 0: invert a smooth haze y = x t + A (1 - t), optical depth -ln t <= dehaze
    dehaze_gate: float = 0.0     # > 0: only where rain was found: frames whose streak layer has mean |R| under
                                 # this keep their haze (full from twice it; haze.rain_gate)
    dehaze_window: bool = True   # average the haze estimate over the window's frames (steadier; 3x the cost)

    def to_dict(self) -> dict:
        return asdict(self)


class ResBlock(nn.Module):
    """x + conv(act(conv(x))), second conv zero-initialised: identity at init."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class STRNet(nn.Module):
    def __init__(self, cfg: STRNetConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or STRNetConfig()
        if overrides:
            cfg = STRNetConfig(**{**cfg.to_dict(), **overrides})
        if not 0 <= cfg.target < cfg.frames:
            raise ValueError(f"target {cfg.target} outside window of {cfg.frames} frames")
        self.cfg = cfg
        s, c = cfg.scale, cfg.channels
        n_in = cfg.frames + (3 if cfg.temporal_stats and cfg.frames > 1 else 0)
        # space-to-depth + 1x1 fusion in one op: an s x s conv with stride s (no copy of the input)
        self.fuse = nn.Conv2d(n_in * 3, c, s, stride=s)
        self.stem = nn.Conv2d(c, c, 3, padding=1)
        self.enc = nn.Sequential(*[ResBlock(c) for _ in range(cfg.enc_blocks)])
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.body = nn.Sequential(*[ResBlock(2 * c) for _ in range(cfg.body_blocks)])
        self.up = nn.Conv2d(2 * c, 4 * c, 1)  # -> pixel_shuffle(2) -> c
        self.dec = nn.Sequential(*[ResBlock(c) for _ in range(cfg.dec_blocks)])
        self.tail = nn.Conv2d(c, 3 * s * s, 3, padding=1)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        # R = 0 at init: the untrained network returns its input, never something worse.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        if cfg.veil > 0:
            # the only path for low frequencies into R (issue #4's measured pitfall: a free head
            # learns global darkening); zero at init, bounded by tanh
            self.veil_head = nn.Conv2d(2 * c, 3, 1)
            nn.init.zeros_(self.veil_head.weight)
            nn.init.zeros_(self.veil_head.bias)
        if cfg.dehaze > 0:
            # the haze is persistent, so the window's flicker cannot find it: its own estimator,
            # reading contrast and dark floor over wide areas (~no haze at init)
            self.haze = HazeNet()

    @property
    def multiple(self) -> int:
        return 2 * self.cfg.scale

    def rain_layer(self, clip: torch.Tensor, align: bool | None = None, gate: torch.Tensor | None = None,
                   return_gate: bool = False, streak_cap: torch.Tensor | None = None):
        """clip (B,T,3,H,W) in [0,1] -> signed rain layer R (B,3,H,W) of the target frame.

        align: None follows cfg.align; False when the caller has aligned the clip already
        (the pipeline does, once for the whole frame, before cutting it into tiles).
        gate: (B,1,1,1) haze gates to use instead of the frames' own (a NaN row keeps its own): the
        pipeline gives a clip's reflected end windows the gate of the nearest full window; or a
        callable, own gates (B,1,1,1) fp32 -> the gates to use (the pipeline limits how fast the
        gate may change from frame to frame).
        return_gate: return (R, the gates used (B,1,1,1) fp32 or None without a gated haze step,
        the streak layer's mean |R| before any cap (B,1,1,1) fp32).
        streak_cap: (B,1,1,1) ceilings on that mean |R| (NaN: none); a streak layer above is scaled down.
        """
        b, t, _, h, w = clip.shape
        if t != self.cfg.frames:
            raise ValueError(f"expected a window of {self.cfg.frames} frames, got {t}")
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        x = clip
        if ph or pw:  # pad so any size works; cropped off again below
            x = F.pad(x.reshape(b * t, 3, h, w), (0, pw, 0, ph), mode="replicate").reshape(b, t, 3, h + ph, w + pw)
        if (self.cfg.align if align is None else align) and t > 1:
            # a panned stripe moves under the window's pixels as rain does; a steady pan undone,
            # only rain still flickers (vderain/models/align.py)
            x = align_window(x, self.cfg.target)
        target = x[:, self.cfg.target]
        frames = x
        guarded = self.cfg.guard > 0 and t > 1
        lo_hi = (x.amin(1), x.amax(1)) if guarded or (self.cfg.temporal_stats and t > 1) else None
        if self.cfg.temporal_stats and t > 1:
            # flicker cues a 1x1 layer cannot form on its own: per-pixel min / mean / max over time.
            # The patch conv is linear, so frames and statistics go through their own slices of
            # its weight: the same sum as one conv over their concatenation, without copying the
            # window into a (B, (T+3)*3, H, W) tensor (1.6 GB at 1080p, batch 8, fp32)
            stats = torch.stack([lo_hi[0], x.mean(1), lo_hi[1]], 1).flatten(1, 2)  # (B, 9, H, W)
            weight, k, stride = self.fuse.weight, 3 * t, self.cfg.scale
            f = (F.conv2d(x.flatten(1, 2), weight[:, :k], self.fuse.bias, stride=stride)
                 + F.conv2d(stats, weight[:, k:], stride=stride))
            del stats  # full-resolution temporaries are dropped as soon as they are used: at
            #            inference the haze step's maps come on top of whatever is still held
            if not guarded:
                lo_hi = None
        else:
            f = self.fuse(x.flatten(1, 2))                               # (B, T*3, H, W) -> (B, C, H/s, W/s)
        f = self.act(f)
        f = self.enc(self.act(self.stem(f)))                             # (B, C, H/s, W/s)
        g = self.body(self.act(self.down(f)))                            # (B, 2C, H/2s, W/2s)
        f = f + F.pixel_shuffle(self.up(g), 2)                           # (B, C, H/s, W/s)
        r = F.pixel_shuffle(self.tail(self.dec(f)), self.cfg.scale)                 # (B, 3, H', W')
        del f
        if guarded:
            r = transient_guard(r, target, *lo_hi, self.cfg.guard)
        lo_hi = None
        if self.cfg.veil > 0:
            # swap the head's low frequencies (cells of 8s px) for the bounded veil: one pool and
            # one upsample, r + up(veil - pool(r))
            cell = 8 * self.cfg.scale
            v = self.cfg.veil * torch.tanh(self.veil_head(F.avg_pool2d(g, 4, ceil_mode=True))).to(r.dtype)
            if not guarded:                                              # (B,3,H'/8s,W'/8s)
                # unguarded, the head's own low frequencies would be free: swap them for the veil
                v = v - F.avg_pool2d(r, cell, ceil_mode=True)
            r = r + F.interpolate(v, size=r.shape[-2:], mode="bilinear", align_corners=False)
        del g
        streak = None
        if streak_cap is not None or return_gate:
            streak = streak_level(r)
        if streak_cap is not None:
            r = r * cap_scale(streak, streak_cap).to(r.dtype)
        if self.cfg.dehaze > 0:
            tg = self.cfg.target
            others = [frames[:, j] for j in range(t) if j != tg] if self.cfg.dehaze_window else None
            haze = self.haze(target - r, self.cfg.dehaze, others)
            if self.cfg.dehaze_gate > 0:
                own = rain_gate(r, self.cfg.dehaze_gate)
                if callable(gate):
                    gate = gate(own)
                else:
                    gate = own if gate is None else torch.where(torch.isnan(gate), own, gate.to(own))
                haze = haze * gate if torch.is_grad_enabled() else haze.mul_(gate.to(haze.dtype))
            else:
                gate = None
            r = r + haze.to(r.dtype)
        else:
            gate = None
        r = r[..., :h, :w]
        return (r, gate, streak) if return_gate else r

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (derained target frame, rain layer), both (B,3,H,W); derained is clamped to [0,1]."""
        r = self.rain_layer(clip)
        rainy = clip[:, self.cfg.target]
        return (rainy - r.to(rainy.dtype)).clamp(0, 1), r


def streak_level(r: torch.Tensor) -> torch.Tensor:
    """A streak layer's mean |R| per window, (B,1,1,1) fp32 (EdgeHold compares them)."""
    return torch.linalg.vector_norm(r.detach(), 1, dim=(1, 2, 3), keepdim=True, dtype=torch.float32) / r[0].numel()


def cap_scale(streak: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """(B,1,1,1) factors that bring mean |R| levels `streak` down to ceilings `cap` (NaN: none)."""
    return (cap.to(streak) / streak.clamp(min=1e-12)).clamp(max=1).nan_to_num(1.0)


def transient_guard(r: torch.Tensor, frame: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                    cell: int) -> torch.Tensor:
    """Bound R's local means by the flicker the window shows: per cell of `cell` px,
    mean(x_t - max_T x) <= mean(R) <= mean(x_t - min_T x).

    Streaks are transient, so what they add to a region shows up as the gap between the target
    frame and the window's (aligned) minimum; a low-frequency change with no such evidence is the
    measured pitfall (darkened highlights, blotches in mist, more removed than rain added). A
    persistent haze is not transient: with `veil` or `dehaze` it enters R after this, through
    its own bounded head. r, frame (the target x_t), low, high (min / max over the aligned window): (B,3,H,W).
    """
    if cell == 1:                # per pixel: no pooling, no upsampling (5x faster on a CPU)
        return torch.maximum(torch.minimum(r, (frame - low).to(r.dtype)), (frame - high).to(r.dtype))
    h, w = r.shape[-2:]
    pool = lambda t: F.avg_pool2d(t, cell, ceil_mode=True)
    mean_t = pool(frame)
    cells = pool(r)
    fix = torch.clamp(cells, (mean_t - pool(high)).to(cells.dtype), (mean_t - pool(low)).to(cells.dtype)) - cells
    b, c, hc, wc = fix.shape
    # one channel per image: CPU bilinear upsampling of 3-channel NCHW is slower
    up = F.interpolate(fix.reshape(b * c, 1, hc, wc), scale_factor=cell, mode="bilinear", align_corners=False)
    return r + up.view(b, c, hc * cell, wc * cell)[..., :h, :w]


def retarget_fuse(weight: torch.Tensor, frames: int, old_target: int, new_target: int) -> torch.Tensor:
    """The patch conv's weight (C, (T[+3])*3, s, s) of a network trained to restore frame
    `old_target` of its window, rearranged for one that restores `new_target` (same T).

    Each frame slot's weights follow its offset from the target: the frame one step back keeps
    the weights it had for "one step back". The window's statistics slices are unchanged. An
    offset the new window gains takes the weights of one it loses, nearest with nearest, so a
    centred network (offsets -2..+2) becomes a causal one with one frame of look-ahead (offsets
    -3..+1) whose far past frame plays the part of the far future one: the network learned to
    treat its neighbours nearly alike (flicker is flicker on either side), and the suite agrees
    (vderain/weights/README.md, stage 11).
    """
    if not (0 <= old_target < frames and 0 <= new_target < frames):
        raise ValueError(f"targets {old_target} -> {new_target} outside a window of {frames} frames")
    c = weight.shape[0]
    per_frame = weight[:, :3 * frames].reshape(c, frames, 3, *weight.shape[2:])
    old = {j - old_target: j for j in range(frames)}          # offset -> slot
    new = {j - new_target: j for j in range(frames)}
    slot_of = {new[o]: old[o] for o in new if o in old}
    gained = sorted((o for o in new if o not in old), key=abs)
    lost = sorted((o for o in old if o not in new), key=abs)
    slot_of.update({new[g]: old[q] for g, q in zip(gained, lost)})
    moved = per_frame[:, [slot_of[j] for j in range(frames)]].reshape(c, 3 * frames, *weight.shape[2:])
    return torch.cat([moved, weight[:, 3 * frames:]], 1)


def count_macs_per_pixel(cfg: STRNetConfig) -> float:
    """Multiply-accumulates per input pixel (convs only), for speed budgeting."""
    s, c = cfg.scale, cfg.channels
    n_in = cfg.frames + (3 if cfg.temporal_stats and cfg.frames > 1 else 0)
    at_s = n_in * 3 * s * s * c + 9 * c * c * (1 + 2 * cfg.enc_blocks + 2 * cfg.dec_blocks) + 9 * c * 3 * s * s
    at_2s = 9 * c * 2 * c + 9 * (2 * c) ** 2 * 2 * cfg.body_blocks + 2 * c * 4 * c
    return at_s / (s * s) + at_2s / (4 * s * s)
