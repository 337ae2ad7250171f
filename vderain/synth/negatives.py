"""Hard negatives: thin, high-contrast, line-like scene content that must NOT be removed.

Fences, railings, wires, blinds, grass blades and striped cloth are drawn as analytic
antialiased patterns (a function of pixel coordinates), composited into the clean
clip (so they are in the target as well as the input) and moved rigidly by a constant
velocity per clip, or kept static. Some are near-vertical and thin on purpose: a model
that deletes every thin line gets punished.
"""
from __future__ import annotations

import math

import torch

KINDS = ("stripes", "fence", "railing", "wires", "grass", "blinds")


def _lines(proj: torch.Tensor, period: float, width: float) -> torch.Tensor:
    """Antialiased parallel lines: proj = signed distance along the normal (px)."""
    d = (torch.frac(proj / period + 0.5) - 0.5).abs() * period              # distance to nearest line
    return (width / 2 + 0.5 - d).clamp(0, 1)


def _box(X, Y, x0, y0, x1, y1) -> torch.Tensor:
    """Soft-edged rectangle mask."""
    return ((X - x0 + 0.5).clamp(0, 1) * (x1 - X + 0.5).clamp(0, 1)
            * (Y - y0 + 0.5).clamp(0, 1) * (y1 - Y + 0.5).clamp(0, 1))


def pattern(kind: int, T: int, H: int, W: int, u: torch.Tensor, px_scale: float = 1.0) -> torch.Tensor:
    """One clip's hard-negative opacity (T, 1, H, W) in [0, 1].

    u: (16,) uniform randoms that fix every choice (so it is reproducible).
    """
    dev = u.device
    s = px_scale
    moving = u[0] > 0.35
    vx = (u[1] * 2 - 1) * 3 * s * moving                                     # px per frame
    vy = (u[2] * 2 - 1) * 1.5 * s * moving
    t = torch.arange(T, device=dev, dtype=torch.float32)[:, None, None]
    X = torch.arange(W, device=dev, dtype=torch.float32)[None, None, :] + 0.5 - vx * t   # (T,1,W)
    Y = torch.arange(H, device=dev, dtype=torch.float32)[None, :, None] + 0.5 - vy * t   # (T,H,1)
    name = KINDS[kind]
    if name in ("stripes", "blinds"):
        ang = (u[3] * 180) if name == "stripes" else (90 + (u[3] - 0.5) * 10)
        a = math.radians(float(ang))
        proj = X * math.cos(a) + Y * math.sin(a)
        period = float(3 + 9 * u[4]) * s
        width = period * float(0.3 + 0.3 * u[5])
        x0, y0 = float(u[6]) * W * 0.6, float(u[7]) * H * 0.6
        x1, y1 = x0 + W * float(0.25 + 0.5 * u[8]), y0 + H * float(0.25 + 0.5 * u[9])
        a_map = _lines(proj, period, width) * _box(X, Y, x0, y0, x1, y1)
    elif name == "fence":
        a = math.radians(float(u[3]) * 90)
        chain = u[4] > 0.5                                                   # chain-link vs square grid
        b = a + (math.pi / 2 if not chain else math.radians(70 + 40 * float(u[5])))
        period = float(6 + 14 * u[6]) * s
        width = float(0.8 + 1.7 * u[7]) * s
        l1 = _lines(X * math.cos(a) + Y * math.sin(a), period, width)
        l2 = _lines(X * math.cos(b) + Y * math.sin(b), period, width)
        top = float(u[8]) * H * 0.5
        a_map = torch.maximum(l1, l2) * _box(X, Y, -1e9, top, 1e9, 1e9)
    elif name == "railing":
        tilt = math.radians(float(u[3] - 0.5) * 16)
        period = float(7 + 18 * u[4]) * s
        width = float(1 + 2.5 * u[5]) * s
        top = float(0.2 + 0.5 * u[6]) * H
        bars = _lines(X * math.cos(tilt) + Y * math.sin(tilt), period, width) * _box(X, Y, -1e9, top, 1e9, 1e9)
        rail = _lines(Y - top, 1e6, float(2 + 3 * u[7]) * s)
        rail2 = _lines(Y - top - float(0.3 + 0.3 * u[8]) * (H - top), 1e6, width)
        a_map = torch.maximum(torch.maximum(bars, rail * (1 + 0 * X)), rail2 * (1 + 0 * X))
    elif name == "wires":
        a_map = torch.zeros(T, H, W, device=dev)
        n = 1 + int(u[3] * 3.99)
        for i in range(n):
            ui = torch.frac(u[4:10] * (7.31 * (i + 1)) + 0.17 * i)           # fresh numbers per wire
            y0 = float(0.05 + 0.7 * ui[0]) * H
            slope = float(ui[1] * 2 - 1) * 0.35
            sag = float(ui[2]) * 1.5 / W                                     # catenary-ish parabola
            xc = float(ui[3]) * W
            width = float(0.7 + 1.5 * ui[4]) * s
            yw = y0 + slope * (X - xc) + sag * (X - xc) ** 2
            dydx = slope + 2 * sag * (X - xc)
            dist = (Y - yw).abs() / torch.sqrt(1 + dydx * dydx)
            a_map = torch.maximum(a_map, (width / 2 + 0.5 - dist).clamp(0, 1))
    elif name == "grass":
        a = math.radians(float(u[3] - 0.5) * 20)
        period = float(2.5 + 4 * u[4]) * s
        proj = X * math.cos(a) + Y * math.sin(a)
        blade = torch.floor(proj / period)
        rnd = torch.frac(torch.sin(blade * 12.9898 + float(u[5]) * 78.233) * 43758.5453)  # per-blade height
        ground = float(0.5 + 0.35 * u[6]) * H
        tip = ground - rnd * float(0.1 + 0.25 * u[7]) * H
        a_map = _lines(proj, period, float(0.8 + 1.2 * u[8]) * s) * (Y - tip + 0.5).clamp(0, 1)
    else:
        raise ValueError(name)
    return a_map.expand(T, H, W).unsqueeze(1).clamp(0, 1)


def composite(x: torch.Tensor, kinds: torch.Tensor, u: torch.Tensor, px_scale: float = 1.0) -> torch.Tensor:
    """Draw one hard negative into each clip.

    x: (n, T, 3, H, W); kinds (n,) long; u (n, 20) uniforms. Colour is dark or bright
    against the local scene (high contrast), slightly tinted; opacity 0.75..1.
    """
    n, T, _, H, W = x.shape
    out = []
    for i in range(n):
        a = pattern(int(kinds[i]), T, H, W, u[i, :16], px_scale)            # (T,1,H,W)
        bright = u[i, 16] > 0.5
        level = torch.where(bright, 0.8 + 0.2 * u[i, 17], 0.03 + 0.17 * u[i, 17])
        tint = 1 + (u[i, 18:20] - 0.5) * 0.2
        col = torch.stack([level * tint[0], level, level * tint[1]]).clamp(0, 1).view(1, 3, 1, 1)
        op = 0.75 + 0.25 * u[i, 19]
        out.append(x[i] + (a * op) * (col - x[i]))
    return torch.stack(out)
