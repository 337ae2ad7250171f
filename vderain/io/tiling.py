"""Run a method on overlapping spatial tiles and blend them back without seams.

Frames too large for (GPU) memory are cut into tiles that overlap. Each tile's
output is weighted by a ramp across the overlap that is 0 over the outer quarter of
the overlap (where a convolution sees the tile's artificial border) and rises
linearly to 1; the two ramps of neighbouring tiles sum to 1, so a pointwise method
gives exactly the untiled result and a convolutional one matches it when its
receptive radius is at most overlap // 4. A strided one (a network working at H/8) is
shift-invariant only in steps of its stride: `grid` puts the tile origins on it.
"""
from __future__ import annotations

import numbers
from typing import Callable

import torch


def tile_starts(size: int, tile: int, overlap: int, grid: int = 1) -> list[int]:
    """Evenly spread tile origins covering [0, size) with at least `overlap` between neighbours.
    grid: origins are multiples of it, and the last tile runs on to the frame's end (up to
    grid - 1 pixels longer than `tile`; tile_length). A network that works at H/8 sees a tile
    off its 8-pixel grid as a different picture: fast-causal's output moved by up to 55 levels
    deep inside a tile whose origin was 2 pixels off it."""
    if tile >= size:
        return [0]
    if (tile - overlap) // grid < 1:
        grid = 1
    span = (size - tile) // grid          # the last origin, in grid steps
    if span == 0:                         # the frame is less than a grid step longer: one tile
        return [0]
    step = (tile - overlap) // grid
    n = max(-(-span // step) + 1, 2)      # with grid 1: ceil((size - overlap) / (tile - overlap))
    return [round(i * span / (n - 1)) * grid for i in range(n)]


def tile_length(size: int, starts: list[int], tile: int, k: int) -> int:
    """Length of tile k: `tile`, except the last, which ends at the frame's end."""
    return size - starts[k] if k == len(starts) - 1 else tile


def _ramp(length: int, starts: list[int], tile: int, k: int, device, dtype) -> torch.Tensor:
    """1-D weight of tile k along one axis (of `length` pixels): ramps in the overlaps with its neighbours."""
    own = tile_length(length, starts, tile, k)
    w = torch.ones(own, device=device, dtype=dtype)
    pos = torch.arange(own, device=device, dtype=dtype)
    a = starts[k]
    if k > 0:  # overlap with the previous tile: [a, prev_end)
        ov = starts[k - 1] + tile - a
        m = ov // 4
        span = max(ov - 2 * m, 1)
        w = torch.minimum(w, ((pos - m + 0.5) / span).clamp(0, 1))
    if k < len(starts) - 1:  # overlap with the next tile: [next_start, a + tile) (not the last: own == tile)
        ov = a + tile - starts[k + 1]
        m = ov // 4
        span = max(ov - 2 * m, 1)
        rel = (a + tile) - (a + pos) - 0.5  # distance from this tile's far edge
        w = torch.minimum(w, ((rel - m) / span).clamp(0, 1))
    return w


def check_tiling(tile, overlap) -> tuple[int, int]:
    """(th, tw) from `tile` (pixels, or a (th, tw) pair), or a ValueError saying what is wrong.
    A negative overlap leaves gaps between the tiles (their pixels came out as NaN, i.e.
    garbage after the conversion to uint8), a zero or fractional size has no tiles at all."""
    pair = tuple(tile) if isinstance(tile, (tuple, list)) else (tile, tile)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
                                 for v in pair):
        raise ValueError(f"tile must be a whole number of pixels >= 1, or a (height, width) pair of them; got {tile!r}")
    if not isinstance(overlap, numbers.Integral) or isinstance(overlap, bool) or overlap < 0:
        raise ValueError(f"tile overlap must be a whole number of pixels >= 0; got {overlap!r}")
    return int(pair[0]), int(pair[1])


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], clips: torch.Tensor,
                tile: int | tuple[int, int], overlap: int = 32,
                device: torch.device | str | None = None, grid: int = 1) -> torch.Tensor:
    """fn: (B, T, 3, h, w) -> (B, C, h, w); clips: (B, T, 3, H, W) -> (B, C, H, W).

    tile:    tile size in pixels (int or (th, tw)); clipped to the frame.
    overlap: pixels shared by neighbouring tiles (at most half the tile).
    device:  where fn runs; tiles move there one at a time while the full-size
             input and the blended output stay on clips.device (e.g. CPU).
    grid:    tile origins on multiples of it (a strided fn's own grid: NetworkMethod.tile_grid);
             the last tile along an axis may be up to grid - 1 pixels longer.
    """
    B, T, C, H, W = clips.shape
    th, tw = check_tiling(tile, overlap)
    th, tw = min(th, H), min(tw, W)
    oh = min(overlap, th // 2)
    ow = min(overlap, tw // 2)
    ys, xs = tile_starts(H, th, oh, grid), tile_starts(W, tw, ow, grid)
    if len(ys) == 1 and len(xs) == 1:
        return fn(clips if device is None else clips.to(device)).to(clips.device)
    out = wsum = None
    for i, y in enumerate(ys):
        wy = _ramp(H, ys, th, i, clips.device, torch.float32)
        ly = len(wy)
        for j, x in enumerate(xs):
            wx = _ramp(W, xs, tw, j, clips.device, torch.float32)
            lx = len(wx)
            part = clips[..., y:y + ly, x:x + lx]
            if device is not None:
                part = part.to(device, non_blocking=True)
            res = fn(part).to(clips.device, torch.float32)  # (B, C', ly, lx)
            if out is None:
                out = torch.zeros(B, res.shape[1], H, W, dtype=torch.float32, device=clips.device)
                wsum = torch.zeros(1, 1, H, W, dtype=torch.float32, device=clips.device)
            w = wy[:, None] * wx[None, :]  # (ly, lx)
            out[..., y:y + ly, x:x + lx] += res * w
            wsum[..., y:y + ly, x:x + lx] += w
    return (out / wsum).to(clips.dtype)
