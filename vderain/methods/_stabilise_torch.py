"""The stabiliser's per-pixel work in torch, for a network running on a GPU (see stabilise.py for
what it does and why). The same steps as the OpenCV path: rain mask, moved neighbours, their
checks, the median; flows stay on the CPU (OpenCV DIS, one thread per neighbour)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)   # cv2.COLOR_RGB2GRAY's weights


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """(H, W) mean over a (2r+1)^2 window, separable, edges averaged over what is inside."""
    x = x[None, None]
    x = F.avg_pool2d(x, (1, 2 * r + 1), stride=1, padding=(0, r), count_include_pad=False)
    return F.avg_pool2d(x, (2 * r + 1, 1), stride=1, padding=(r, 0), count_include_pad=False)[0, 0]


class DevicePath:
    def __init__(self, cfg, device):
        self.cfg = cfg
        self.device = torch.device(device)
        self.new_flows()
        self._pool = ThreadPoolExecutor(max_workers=2 * cfg.radius, thread_name_prefix="vderain-flow")
        self._grid = None
        self._luma = torch.tensor(_LUMA, device=self.device).view(3, 1, 1)
        self.out_of_memory = False

    def new_flows(self) -> None:
        """Fresh DIS objects, one per neighbour (they keep state from the last image size)."""
        self._dis = [cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST) for _ in range(2 * self.cfg.radius)]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._grid = None

    def prepare(self, out: np.ndarray, grey: np.ndarray, grey_in: np.ndarray):
        """Upload a frame: (output (3,H,W) float 0..255, rain mask (H,W) or None where the
        network removed nothing: that frame passes unchanged, but may still be a neighbour);
        None if the GPU is full (the frame passes unchanged and is nobody's neighbour)."""
        try:
            return self._prepare(out, grey, grey_in)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            self.out_of_memory = True
            return None

    def _prepare(self, out, grey, grey_in):
        """(output, rain mask, the frame's texture samples) on the device; mask and texture None
        where nothing was removed."""
        from vderain.methods.stabilise import HIGHPASS_RADIUS, _smoothstep, texture_samples
        c = self.cfg
        g = torch.from_numpy(grey).to(self.device).float()
        r = torch.from_numpy(grey_in).to(self.device).float() - g
        local = (r - _box(r, HIGHPASS_RADIUS)).abs()
        local = F.max_pool2d(local[None, None], 3, stride=1, padding=1)[0, 0]   # 3x3 dilation
        mask = _smoothstep(local, c.rain_low, c.rain_high)
        o = torch.from_numpy(out).to(self.device).permute(2, 0, 1).float()        # (3,H,W) 0..255
        if not bool(mask.max() > 0):
            return o, None, None
        return o, mask, texture_samples(g)

    def _warp(self, img: torch.Tensor, flow: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """img sampled at x + flow(x), and where that lands inside img (bool, as the OpenCV path)."""
        h, w = img.shape[-2:]
        f = torch.as_tensor(flow, device=self.device).permute(2, 0, 1)[None]       # (1,2,h',w') px
        if f.shape[-2:] != (h, w):
            f = F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False)
        if self._grid is None or self._grid.shape[1:3] != (h, w):
            ys, xs = torch.meshgrid(torch.arange(h, device=self.device, dtype=torch.float32),
                                    torch.arange(w, device=self.device, dtype=torch.float32), indexing="ij")
            self._grid = torch.stack([xs, ys], -1)[None]                              # (1,H,W,2)
        g = self._grid + f.permute(0, 2, 3, 1)
        inside = ((g[0, ..., 0] >= -0.5) & (g[0, ..., 0] <= w - 0.5) &
                  (g[0, ..., 1] >= -0.5) & (g[0, ..., 1] <= h - 0.5))
        g = torch.stack([g[..., 0] * (2 / max(w - 1, 1)) - 1, g[..., 1] * (2 / max(h - 1, 1)) - 1], -1)
        return F.grid_sample(img[None], g, mode="bilinear", padding_mode="border", align_corners=True)[0], inside

    def finish(self, it, nbs, flows) -> np.ndarray:
        """The stabilised frame; the network's own output if the GPU has no room for it (the
        network comes first: it keeps its memory and the run goes on)."""
        try:
            return self._finish(it, nbs, flows)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            self.out_of_memory = True
            return it.out

    def flows(self, grey: np.ndarray, others: list) -> list:
        """DIS flows from grey to each of the others (at most 2K), at most flow_side wide, on the
        device (the later passes reuse them: uploaded once, before this frame's kernels, so the
        uploads' synchronisations wait for nothing)."""
        from vderain.methods.stabilise import flow_between
        # OpenCV releases the GIL: the flows run side by side, each with its own DIS object
        new = list(self._pool.map(lambda a: flow_between(a[0], grey, a[1], self.cfg.flow_side, full_size=False),
                                  zip(self._dis, others)))
        try:
            return [torch.from_numpy(f).to(self.device) for f in new]
        except torch.cuda.OutOfMemoryError:     # kept on the CPU: finish uploads them, or gives up
            torch.cuda.empty_cache()
            return new

    def _finish(self, it, nbs, flows) -> np.ndarray:
        from vderain.methods.stabilise import (EXPOSURE_STRIDE as S, TEXTURE_MIN, _median, _smoothstep,
                                               neighbour_gain)
        c = self.cfg
        o, m, tex = it.dev
        clean_w = 1.0 - m
        den = _box(clean_w, c.check_radius)
        enough = den > c.min_clean
        diffs, oks, absent, offsets, insides = [], [], [], [], []
        for nb, flow in zip(nbs, flows):
            moved, inside = self._warp(nb.dev[0], flow)
            diff = moved - o
            # its luma offsets to the frame at every S-th pixel, for the exposure and alignment checks
            offsets.append((diff[:, ::S, ::S] * self._luma).sum(0))
            insides.append(inside[::S, ::S])
            d = (diff.abs() * self._luma).sum(0)
            # how far the moved neighbour is from the frame, in tolerances (as the OpenCV path)
            far = torch.where(enough, _box(d * clean_w, c.check_radius) / den.clamp_min(1e-6) / c.tol_clean,
                              _box(d, c.check_radius) / c.tol_any)
            oks.append(torch.exp(-far.pow(6)))
            diffs.append(diff)
            absent.append(~inside)
        # another exposure (a flash, a fade, a step) or a failed flow (a sudden jump) is left out, as
        # in the OpenCV path: the medians on the device, for all the neighbours at once
        stats = neighbour_stats(torch.stack(offsets), torch.stack(insides), tex, tex >= TEXTURE_MIN)
        gone = torch.stack(absent).any(0).nonzero()      # (P,2): waits for the kernels above
        stats = stats.cpu().tolist()                     # then the frame's one transfer: 4 numbers a neighbour
        votes = [o]
        for diff, ok, st in zip(diffs, oks, stats):
            # o + (ok * gain) * diff, in place in diff (the same float operations)
            votes.append(diff.mul_(ok.mul_(neighbour_gain(*st, c))).add_(o))
        del diffs, oks
        med = _median(votes, torch.maximum, torch.minimum)
        if len(gone):
            # the median without the votes of neighbours that do not show the pixel (as the OpenCV
            # path); whole-number indices: a boolean mask would synchronise on every use
            ys, xs = gone.unbind(1)
            ab = torch.stack([torch.zeros_like(ys, dtype=torch.bool)] + [a[ys, xs] for a in absent])   # (V,P)
            v = torch.stack([x[:, ys, xs] for x in votes]).masked_fill(ab[:, None], float("nan"))   # (V,3,P)
            even = ((~ab).sum(0) % 2 == 0)[None]
            og = o[:, ys, xs]
            extra = torch.where(even, og, torch.full_like(og, float("nan")))
            med[:, ys, xs] = torch.cat([v, extra[None]]).nanmedian(0).values
        if c.deadband > 0:   # noise-sized changes are not made (as the OpenCV path)
            m = m * _smoothstep((med - o).abs().amax(0), c.deadband, 2 * c.deadband)
        res = o + m * (med - o)
        return res.add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def _masked_median(x: torch.Tensor, keep: torch.Tensor):
    """Per row of x (N,M) float32, np.median of its entries where keep (N,M) bool, and their
    count: the middle one of an odd count, the mean of the middle two (in float32) of an even
    one. Garbage where the count is 0."""
    n = keep.sum(1)
    s = torch.where(keep, x, torch.full_like(x, float("inf"))).sort(1).values   # the others sort last
    lo = s.gather(1, ((n - 1) // 2).clamp_min(0)[:, None])[:, 0]
    hi = s.gather(1, (n // 2).clamp_max(x.shape[1] - 1)[:, None])[:, 0]
    return (lo + hi) / 2, n


def neighbour_stats(off: torch.Tensor, inside: torch.Tensor, tex: torch.Tensor, textured: torch.Tensor):
    """stabilise.neighbour_weight's statistics for N neighbours at once, on their device: off and
    inside (N,h,w) (luma offsets at every EXPOSURE_STRIDE-th pixel, where the neighbour shows
    them), tex and textured (hg,wg) the frame's texture samples -> (N,4) float64: the count of
    offsets inside and their median, the count of textured ones inside and the median of
    |offset - their median| / texture (stabilise.neighbour_gain's arguments)."""
    n = off.shape[0]
    hg, wg = tex.shape
    med, n_in = _masked_median(off.reshape(n, -1), inside.reshape(n, -1))
    use = (textured & inside[:, :hg, :wg]).reshape(n, -1)
    o = off[:, :hg, :wg].reshape(n, -1)
    med_t, n_t = _masked_median(o, use)
    a, _ = _masked_median((o - med_t[:, None]).abs() / tex.reshape(1, -1), use)
    return torch.stack([n_in.double(), med.double(), n_t.double(), a.double()], 1)
