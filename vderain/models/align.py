"""Global motion compensation of a window: phase correlation + a sub-pixel shift, pure PyTorch.

Why: the network tells rain from texture by per-pixel temporal statistics, and under a camera
pan a stripe or a wire moves across pixels exactly as a streak does, so it shows up in the
window's min/max like rain. Shifting each neighbour onto the target frame first makes a panned
scene static for those statistics; rain, which falls independently of the camera, still
flickers. Only a steady global translation is compensated (pans and tilts of a hand-held,
mounted or vehicle camera); shake, zoom and parallax are left to the network.

No gradients flow through the estimate (it is a measurement of the input, not a learnt layer).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _dilate3(x: torch.Tensor) -> torch.Tensor:
    """3x3 grey dilation (max filter) of (..., H, W), edges replicated: separable maxima of
    shifted views (max_pool2d with stride 1 measured 40x slower on a CPU)."""
    p = F.pad(x.flatten(0, -3)[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    p = p.view(*x.shape[:-2], x.shape[-2] + 2, x.shape[-1] + 2)
    r = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])              # rows
    return torch.maximum(torch.maximum(r[..., :-2, :], r[..., 1:-1, :]), r[..., 2:, :])  # columns


def _grey_small(frames: torch.Tensor, f: int) -> torch.Tensor:
    """(..., 3, H, W) -> grey (..., H//f, W//f) float, box-downscaled by the integer factor f as a
    sum of f*f strided views (avg_pool2d and reshape-mean measured 5-10x slower on a CPU)."""
    h, w = frames.shape[-2:]
    hh, ww = h // f, w // f
    # summed in fp32 whatever the frames' dtype: in bf16 (the GPU path's window) the grey was
    # 10-15 levels off at 1080p (64 pixels a cell) and steady pans went unfound
    x = frames[..., 0, :, :].float() + frames[..., 1, :, :] + frames[..., 2, :, :]
    return sum(x[..., i:hh * f:f, j:ww * f:f] for i in range(f) for j in range(f)) / (3 * f * f)


def _phase_spectra(g: torch.Tensor) -> torch.Tensor:
    """Grey frames (..., h, w) -> unit-magnitude spectra (..., h, w//2+1), mean removed and
    Hann-windowed first. The normalised cross-power spectrum of two frames is the product of
    theirs (one conjugated), so a frame's spectrum is computed once and serves every window."""
    hs, ws = g.shape[-2:]
    g = g - g.mean((-2, -1), keepdim=True)
    win = torch.hann_window(hs, periodic=False, device=g.device)[:, None] * \
        torch.hann_window(ws, periodic=False, device=g.device)[None, :]
    spec = torch.fft.rfft2(g * win)
    # phase only (|S| = 1), normalised on the real view in place: complex division is ~10x slower
    re_im = torch.view_as_real(spec)
    re_im.div_(re_im.pow(2).sum(-1, keepdim=True).sqrt_().add_(1e-8))
    return spec


def _opening(g: torch.Tensor) -> torch.Tensor:
    """3x3 grey opening of (..., h, w): thin bright lines (streaks) vanish, scene structure stays."""
    return _dilate3(-_dilate3(-g))


def _phase_shifts(spec: torch.Tensor, target: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase correlation of each frame's spectrum (B,T,h,w//2+1) with the target's, on grey
    frames of `size` (h, w): (shift (B,T,2) in those pixels, peak (B,T))."""
    hs, ws = size
    b, t = spec.shape[:2]
    corr = torch.fft.irfft2(spec[:, target:target + 1] * spec.conj(), s=(hs, ws))   # peak at -d (mod size)
    peak, idx = corr.flatten(2).max(-1)                                       # (B,T)
    py, px = idx // ws, idx % ws

    def refine(c_minus, c0, c_plus):
        # parabola through the peak and its neighbours: ~0.1 px mean error under a Hann window
        # (the side-peak ratio of Foroosh et al. assumes no window: max error 0.57 vs 0.27 px here)
        den = c_minus - 2 * c0 + c_plus
        return torch.where(den.abs() > 1e-12, 0.5 * (c_minus - c_plus) / den, torch.zeros_like(den)).clamp(-0.5, 0.5)

    bi = torch.arange(b, device=spec.device)[:, None].expand(b, t)
    ti = torch.arange(t, device=spec.device)[None, :].expand(b, t)
    at = lambda yy, xx: corr[bi, ti, yy % hs, xx % ws]
    sy = torch.where(py > hs // 2, py - hs, py).float() + refine(at(py - 1, px), peak, at(py + 1, px))
    sx = torch.where(px > ws // 2, px - ws, px).float() + refine(at(py, px - 1), peak, at(py, px + 1))
    d = -torch.stack([sx, sy], -1)
    d[:, target] = 0
    return d, peak


def _downscale_factor(h: int, w: int, max_side: int) -> int:
    return max(1, min(h, w) // max_side)


def _steady_shifts(spec, open_spec, target, f, size, frame_hw, max_frac=0.25, min_peak=0.03,
                   tol_px=1.0, tol_rel=0.25) -> torch.Tensor:
    """The decision of `global_shifts` from the frames' spectra (B,T,h,w//2+1); `open_spec` is a
    callable giving the spectra of the streak-free copies, asked for only when some window moves."""
    h, w = frame_hw
    t = spec.shape[1]
    k = torch.arange(t, device=spec.device, dtype=torch.float32) - target    # (T,)

    def verdict(s):
        d, peak = _phase_shifts(s, target, size)
        d = d * f
        v = (d * k[None, :, None]).sum(1) / (k * k).sum().clamp(min=1)       # (B,2) px per frame
        fit = v[:, None, :] * k[None, :, None]                                # (B,T,2)
        steady = ((d - fit).abs() <= tol_px + tol_rel * fit.abs()).all(-1).all(-1)
        return d, steady & (peak >= min_peak).all(-1)

    d, ok = verdict(spec)
    plausible = (d[..., 0].abs() <= max_frac * w).all(-1) & (d[..., 1].abs() <= max_frac * h).all(-1)
    # every shift under half a pixel is a static camera: rain specks alone move the sub-pixel
    # estimate by ~0.35 px, and interpolating for that would only blur
    moving = d.abs().amax((1, 2)) >= 0.5
    ok = ok & plausible & moving
    if not bool(ok.any()):  # the common case of a fixed camera: no second opinion needed
        return torch.zeros_like(d)
    d_open, ok_open = verdict(open_spec())
    ok = ok & ok_open & ((d - d_open).abs() <= tol_px).all(-1).all(-1)
    return d * ok[:, None, None]


@torch.no_grad()
def global_shifts(clip: torch.Tensor, target: int, max_side: int = 128, **limits) -> torch.Tensor:
    """Translation of each frame relative to the target frame, in pixels of `clip`.

    clip (B,T,3,H,W) -> d (B,T,2) as (dx, dy): frame k shows the target's content moved by d
    (frame_k(x) ~ target(x - d)); d is 0 for the target itself. The frames are box-downscaled
    by an integer factor to a short side of max_side..2*max_side px (at 1080p the FFTs run on
    135x240 grey images) and the peak is refined to sub-pixel (~0.1 px).

    Rain is itself a motion: drops fall for several frames, and in heavy rain over a static
    scene the correlation locks onto them (measured on the benchmark suite: 8 px/frame
    "pans" of a static camera); codec blocks add false peaks too. So a window is aligned only
    when it shows one steady motion, measured alike on the frames and on a copy with thin bright
    lines removed (a 3x3 grey opening: streaks vanish, scene structure stays): every d_k within
    tol_px + tol_rel*|fit| of a constant velocity through the target, both estimates within
    tol_px of each other, every peak >= min_peak of the normalised cross-power, no shift beyond
    max_frac of the frame, and some shift of at least half a pixel (limits: max_frac=0.25,
    min_peak=0.03, tol_px=1.0, tol_rel=0.25). Otherwise the whole window gets d = 0 and the
    network sees the frames as they were (hand-held shake stays unaligned).
    """
    h, w = clip.shape[-2:]
    f = _downscale_factor(h, w, max_side)
    g = _grey_small(clip, f)                                                  # (B,T,h,w)
    return _steady_shifts(_phase_spectra(g), lambda: _phase_spectra(_opening(g)), target, f,
                          g.shape[-2:], (h, w), **limits)


class StreamAligner:
    """`align_window` for a stream of overlapping windows, with each frame's grey copy and
    spectra computed once and kept while later windows still use them.

    A centred 5-frame window shares four frames with the previous one, so the stateless path
    converts, downscales and transforms every frame five times; here a window costs the new
    frame's features plus four products and inverse FFTs. `keys` name the frames (the stream's
    frame indices): equal keys must mean equal frames. The shifts equal `global_shifts` up to the
    rounding of differently batched FFTs (measured < 1e-3 px).
    """

    def __init__(self, target: int, max_side: int = 128, keep: int = 64):
        self.target, self.max_side, self.keep = target, max_side, keep
        self._cache: dict = {}          # key -> [grey, spectrum, spectrum of the opening | None]
        self._shape = None

    def shifts(self, clip, keys) -> torch.Tensor:
        """clip (B,T,3,H,W) or B lists of T (3,H,W) frames, keys: B lists of T hashables
        -> d (B,T,2) as `global_shifts`."""
        b, t = len(keys), len(keys[0])
        h, w = clip[0][0].shape[-2:]
        device = clip[0][0].device
        if self._shape != (h, w, device):                                    # new stream geometry
            self._cache.clear()
            self._shape = (h, w, device)
        f = _downscale_factor(h, w, self.max_side)
        new = {}
        for bi, row in enumerate(keys):
            for ti, key in enumerate(row):
                if key not in self._cache and key not in new:
                    new[key] = (bi, ti)
        if new:
            g = torch.stack([_grey_small(clip[bi][ti], f) for bi, ti in new.values()])
            for key, gi, si in zip(new, g, _phase_spectra(g)):
                self._cache[key] = [gi, si, None]
        entries = [[self._cache[key] for key in row] for row in keys]

        def open_spec():
            # once per frame: a frame shared by a batch's windows is one entry in several rows
            missing = list({id(e): e for row in entries for e in row if e[2] is None}.values())
            if missing:
                spectra = _phase_spectra(_opening(torch.stack([e[0] for e in missing])))
                for e, s in zip(missing, spectra):
                    e[2] = s
            return torch.stack([torch.stack([e[2] for e in row]) for row in entries])

        spec = torch.stack([torch.stack([e[1] for e in row]) for row in entries])
        d = _steady_shifts(spec, open_spec, self.target, f, (h // f, w // f), (h, w))
        while len(self._cache) > max(self.keep, 2 * b * t):                   # oldest first
            self._cache.pop(next(iter(self._cache)))
        return d

    @torch.no_grad()
    def __call__(self, clip, keys, inplace: bool = False) -> torch.Tensor:
        """The aligned window (B,T,3,H,W); clip as in `shifts` (frames given as lists are
        written once into the output, shifted or not: no stacking copy before); inplace as in
        `shift_frames`."""
        return shift_frames(clip, self.shifts(clip, keys), inplace=inplace)


def _shift_axis(x: torch.Tensor, shift: float, dim: int, out: torch.Tensor) -> torch.Tensor:
    """out[i] = x[i + shift] along dim (-1 or -2) of (C,H,W), linear between samples, edges
    replicated; written straight into `out` (no padded copy: the interior is one lerp of two
    offset views, the edges repeat the first / last sample)."""
    n = x.shape[dim]
    i0 = math.floor(shift)
    frac = shift - i0
    if frac < 1e-4:
        frac, hi_off = 0.0, 0
    else:
        hi_off = 1
    # i in [lo, hi): both x[i + i0] and x[i + i0 + hi_off] lie inside; outside, the clamped
    # indices coincide, so the lerp is the edge sample itself
    lo = min(max(0, -i0), n)
    hi = max(min(n, n - hi_off - i0), lo)
    if hi > lo:
        a = x.narrow(dim, lo + i0, hi - lo)
        if hi_off:
            torch.lerp(a, x.narrow(dim, lo + i0 + 1, hi - lo), frac, out=out.narrow(dim, lo, hi - lo))
        else:
            out.narrow(dim, lo, hi - lo).copy_(a)
    if lo > 0:
        out.narrow(dim, 0, lo).copy_(x.narrow(dim, 0, 1).expand_as(out.narrow(dim, 0, lo)))
    if hi < n:
        out.narrow(dim, hi, n - hi).copy_(x.narrow(dim, n - 1, 1).expand_as(out.narrow(dim, hi, n - hi)))
    return out


def shift_frames(clip, d: torch.Tensor, sampler: str = "auto", inplace: bool = False) -> torch.Tensor:
    """Undo each frame's shift: out[:, k](x) = clip[:, k](x + d_k), bilinear, border-replicated.

    clip (B,T,C,H,W), or B lists of T (C,H,W) frames (written straight into the output, saving
    the copy a stack would make), d (B,T,2) from `global_shifts` -> (B,T,C,H,W). Frames with d = 0 are
    returned bit-exact (a static camera costs no interpolation blur). sampler "lerp": a
    translation is separable, so two 1-D lerps of index-shifted copies per frame (~5x cheaper
    than grid_sample on a CPU); "grid": grid_sample, one moved frame at a time (all at once held
    three more windows' worth of fp32 frames and sampling grids: at 1080p, batch 4, ~1 GiB of a
    GPU); "auto" picks lerp on a CPU, grid elsewhere. Both agree to 1e-4. inplace (clip a tensor
    the caller owns and no other window views): the moved frames are written back into it and
    it is returned, so the aligned window costs no second copy.
    """
    if not isinstance(clip, torch.Tensor):   # B lists of T frames: gathered into the output below
        flat = [f for row in clip for f in row]
        shape = (len(clip), len(clip[0])) + tuple(flat[0].shape)
        device = flat[0].device
        inplace = False
    else:
        flat, shape, device = None, clip.shape, clip.device
    moving = (d.abs().amax(-1) > 1e-3).flatten()                              # (B*T,)
    use_grid = sampler == "grid" or (sampler == "auto" and device.type != "cpu")
    if flat is not None and (use_grid or not bool(moving.any())):
        clip = stack_frames(flat).view(shape)
    if not bool(moving.any()):
        return clip
    moved = moving.nonzero().flatten().tolist()
    dd = d.flatten(0, 1).float()
    if use_grid:
        x = clip.flatten(0, 1)                                                # (BT,C,H,W)
        out = x if inplace else x.clone()
        h, w = x.shape[-2:]
        ys = torch.linspace(-1, 1, h, device=clip.device)
        xs = torch.linspace(-1, 1, w, device=clip.device)
        base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)        # (H,W,2) as (x,y)
        step = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], device=clip.device)
        for i in moved:
            grid = (base + dd[i] * step)[None]                               # (1,H,W,2)
            warped = F.grid_sample(x[i:i + 1].float(), grid, mode="bilinear", padding_mode="border",
                                   align_corners=True)
            out[i] = warped[0].to(x.dtype)   # x[i] is read in full above before it is overwritten
        return out.view(shape)
    xs = flat if flat is not None else clip.flatten(0, 1).unbind(0)           # views, no copy
    out = clip.flatten(0, 1) if inplace else torch.empty((len(xs),) + tuple(shape[2:]), dtype=xs[0].dtype, device=device)
    tmp = torch.empty_like(out[0])
    dd = dd.tolist()
    moved = set(moved)
    for i, x in enumerate(xs):
        if i in moved:   # two writes per moved frame: columns into tmp, rows into out (x is read first)
            _shift_axis(_shift_axis(x, dd[i][0], -1, tmp), dd[i][1], -2, out[i])
        elif not inplace:
            out[i].copy_(x)
    return out.view(shape)


def stack_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack, through numpy's single-threaded copy on a CPU (torch's threaded copy costs
    more on a busy 2-core machine)."""
    if frames[0].device.type == "cpu":
        return torch.from_numpy(np.stack([f.numpy() for f in frames]))
    return torch.stack(frames)


def align_window(clip: torch.Tensor, target: int) -> torch.Tensor:
    """clip (B,T,C,H,W) with its neighbours shifted onto frame `target` where `global_shifts`
    finds one steady motion; unchanged (the same tensor) otherwise."""
    return shift_frames(clip, global_shifts(clip, target))
