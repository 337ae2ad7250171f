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
        from vderain.methods.stabilise import HIGHPASS_RADIUS, _smoothstep
        c = self.cfg
        r = torch.from_numpy(grey_in).to(self.device).float() - torch.from_numpy(grey).to(self.device).float()
        local = (r - _box(r, HIGHPASS_RADIUS)).abs()
        local = F.max_pool2d(local[None, None], 3, stride=1, padding=1)[0, 0]   # 3x3 dilation
        mask = _smoothstep(local, c.rain_low, c.rain_high)
        o = torch.from_numpy(out).to(self.device).permute(2, 0, 1).float()        # (3,H,W) 0..255
        return o, (mask if bool(mask.max() > 0) else None)

    def _warp(self, img: torch.Tensor, flow: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """img sampled at x + flow(x), and where that lands inside img (bool, as the OpenCV path)."""
        h, w = img.shape[-2:]
        f = torch.from_numpy(flow).to(self.device).permute(2, 0, 1)[None]          # (1,2,h',w') px
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
        """DIS flows from grey to each of the others (at most 2K), at most flow_side wide."""
        from vderain.methods.stabilise import flow_between
        # OpenCV releases the GIL: the flows run side by side, each with its own DIS object
        return list(self._pool.map(lambda a: flow_between(a[0], grey, a[1], self.cfg.flow_side, full_size=False),
                                   zip(self._dis, others)))

    def _finish(self, it, nbs, flows) -> np.ndarray:
        from vderain.methods.stabilise import (EXPOSURE_STRIDE as S, TEXTURE_MIN, _median, _smoothstep,
                                               neighbour_weight, texture_samples)
        c = self.cfg
        o, m = it.dev
        clean_w = 1.0 - m
        den = _box(clean_w, c.check_radius)
        enough = den > c.min_clean
        votes, absent = [o], []
        tex = texture_samples(it.grey, S)
        textured = tex >= TEXTURE_MIN
        for nb, flow in zip(nbs, flows):
            moved, inside = self._warp(nb.dev[0], flow)
            diff = moved - o
            # another exposure (a flash, a fade, a step) or a failed flow (a sudden jump) is left
            # out, as in the OpenCV path
            sampled = torch.stack([(diff[:, ::S, ::S] * self._luma).sum(0), inside[::S, ::S].float()]).cpu().numpy()
            gain = neighbour_weight(sampled[0], sampled[1] > 0, tex, textured, c)   # one transfer
            d = (diff.abs() * self._luma).sum(0)
            # how far the moved neighbour is from the frame, in tolerances (as the OpenCV path)
            far = torch.where(enough, _box(d * clean_w, c.check_radius) / den.clamp_min(1e-6) / c.tol_clean,
                              _box(d, c.check_radius) / c.tol_any)
            votes.append(o + (torch.exp(-far.pow(6)) * gain) * diff)
            absent.append(~inside)
        med = _median(votes, torch.maximum, torch.minimum)
        gone = torch.stack(absent).any(0)
        if bool(gone.any()):
            # the median without the votes of neighbours that do not show the pixel (as the OpenCV path)
            ab = torch.cat([torch.zeros_like(gone)[None], torch.stack(absent)])[:, gone]     # (V,P)
            v = torch.stack(votes)[:, :, gone].masked_fill(ab[:, None], float("nan"))      # (V,3,P)
            even = ((~ab).sum(0) % 2 == 0)[None]
            extra = torch.where(even, o[:, gone], torch.full_like(o[:, gone], float("nan")))
            med[:, gone] = torch.cat([v, extra[None]]).nanmedian(0).values
        if c.deadband > 0:   # noise-sized changes are not made (as the OpenCV path)
            m = m * _smoothstep((med - o).abs().amax(0), c.deadband, 2 * c.deadband)
        res = o + m * (med - o)
        return res.add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
