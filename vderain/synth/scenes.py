"""Procedural clean scenes for tests and the benchmark suite (no footage needed).

A scene is painted once on a canvas larger than the frame (sky gradient, textured
ground, buildings with windows, round shapes, multi-scale noise texture, optionally
fences / wires / railings / stripes) and filmed by a virtual camera that pans,
zooms, moves forward or stays still; one small object moves on its own.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vderain.synth import negatives

MOTIONS = ("static", "pan", "zoom", "forward")


def to_uint8_frames(x: torch.Tensor):
    """(T, 3, H, W) float in [0,1] -> (T, H, W, 3) uint8 numpy, rounded."""
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _noise(h: int, w: int, cells: int, g: torch.Generator, ch: int = 1) -> torch.Tensor:
    """Smooth value noise (ch, h, w) in about [0, 1]."""
    gh = max(2, int(cells * h / max(h, w)) + 2)
    gw = max(2, int(cells * w / max(h, w)) + 2)
    grid = torch.rand(1, ch, gh, gw, generator=g)
    return F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=True)[0].clamp(0, 1)


def _texture(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """Multi-octave noise (1, h, w) around 0 with fine detail (so motion is visible)."""
    t = sum(_noise(h, w, c, g) * a for c, a in ((4, 0.5), (16, 0.3), (64, 0.2), (max(h, w) // 3, 0.15)))
    return t - t.mean()


def _canvas(Hc: int, Wc: int, g: torch.Generator, stripes: bool) -> torch.Tensor:
    r = lambda *s: torch.rand(*s, generator=g)
    yy = torch.arange(Hc, dtype=torch.float32)[:, None] / Hc
    xx = torch.arange(Wc, dtype=torch.float32)[None, :] / Wc
    hz = float(0.3 + 0.25 * r(1))
    sky_top, sky_bot = r(3) * 0.4 + 0.45, r(3) * 0.3 + 0.65
    sky = sky_top[:, None, None] * (1 - yy / hz) + sky_bot[:, None, None] * (yy / hz)
    sky = sky + 0.15 * (_noise(Hc, Wc, 6, g) - 0.5)                           # clouds
    ground_col = r(3) * 0.5 + 0.15
    ground = ground_col[:, None, None] * (1 + 0.8 * _texture(Hc, Wc, g))
    img = torch.where(yy < hz, sky, ground).expand(3, Hc, Wc).clone()
    # two textures shared by all objects (sign-flipped per object): painting is the slow
    # part, so every object is drawn inside its own bounding box only
    texs = (_texture(Hc, Wc, g)[0], _texture(Hc, Wc, g)[0])

    def box(y0, y1, x0, x1):
        y0, y1 = max(0, int(y0)), min(Hc, int(math.ceil(y1)))
        x0, x1 = max(0, int(x0)), min(Wc, int(math.ceil(x1)))
        return y0, y1, x0, x1

    def tex_in(y0, y1, x0, x1) -> torch.Tensor:
        t = texs[int(float(r(1)) * 2) % 2][y0:y1, x0:x1]
        return t if float(r(1)) < 0.5 else -t
    # buildings along the horizon, with window grids
    for _ in range(int(3 + 5 * float(r(1)))):
        x0 = float(r(1)) * Wc
        bw = (0.08 + 0.2 * float(r(1))) * Wc
        top = hz * (0.2 + 0.7 * float(r(1))) * Hc
        bot = (hz + 0.05 + 0.2 * float(r(1))) * Hc
        y0, y1, xa, xb = box(top, bot, x0, x0 + bw)
        col = r(3) * 0.6 + 0.2
        per = 5 + 6 * float(r(1))
        lit = float(r(1)) > 0.3
        if y1 <= y0 or xb <= xa:
            continue
        tex = col[:, None, None] * (1 + 0.5 * tex_in(y0, y1, xa, xb))
        win = ((torch.frac(xx[:, xa:xb] * Wc / per) < 0.5) & (torch.frac(yy[y0:y1] * Hc / (per * 1.3)) < 0.5))
        img[:, y0:y1, xa:xb] = tex * (1 - 0.45 * win.float() * lit)
    # round and rectangular objects on the ground
    for _ in range(int(4 + 6 * float(r(1)))):
        cy = (hz + (1 - hz) * float(r(1))) * Hc
        cx = float(r(1)) * Wc
        ry = (0.03 + 0.1 * float(r(1))) * Hc
        rx = ry * (0.5 + 1.5 * float(r(1)))
        round_ = float(r(1)) > 0.4
        col = r(3) * 0.85 + 0.1
        y0, y1, xa, xb = box(cy - ry, cy + ry, cx - rx, cx + rx)
        if y1 <= y0 or xb <= xa:
            continue
        d = ((yy[y0:y1] * Hc - cy) / ry) ** 2 + ((xx[:, xa:xb] * Wc - cx) / rx) ** 2
        m = (1.5 - d * 1.5).clamp(0, 1) if round_ else torch.ones_like(d)
        sub = img[:, y0:y1, xa:xb]
        img[:, y0:y1, xa:xb] = sub + m * (col[:, None, None] * (1 + 0.4 * tex_in(y0, y1, xa, xb)) - sub)
    if stripes:
        # fences, wires, railings, stripes: the thin lines a deraining model must keep
        for kind in ("wires", "fence", "railing", "stripes", "grass"):
            if kind != "wires" and float(r(1)) < 0.45:
                continue
            a = negatives.pattern(negatives.KINDS.index(kind), 1, Hc, Wc, r(16))[0]    # (1,Hc,Wc)
            level = 0.05 + 0.1 * float(r(1)) if float(r(1)) < 0.6 else 0.85 + 0.15 * float(r(1))
            img = img * (1 - a) + level * a
    return img.clamp(0, 1)


def procedural_clip(frames: int, height: int, width: int, seed: int, motion: str = "pan",
                    stripes: bool = False) -> torch.Tensor:
    """A deterministic textured scene filmed by a moving camera: (T, 3, H, W) float in [0, 1]."""
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    g = torch.Generator().manual_seed(int(seed))
    T, H, W = int(frames), int(height), int(width)
    Hc, Wc = 2 * H, 2 * W
    canvas = _canvas(Hc, Wc, g, stripes)[None]                                # (1,3,Hc,Wc)
    r = lambda: float(torch.rand(1, generator=g))
    t = torch.arange(T, dtype=torch.float32)
    ox = torch.zeros(T)
    oy = torch.zeros(T)
    scale = torch.ones(T)
    cx, cy = Wc / 2, Hc / 2
    if motion == "pan":
        a = 2 * math.pi * r()
        v = (1.0 + 3.0 * r()) * max(H, W) / 160                               # px per frame
        ox, oy = t * v * math.cos(a), t * v * math.sin(a) * 0.4
    elif motion == "zoom":
        rate = (0.01 + 0.02 * r()) * (1 if r() < 0.5 else -1)
        scale = torch.exp(-rate * t)
    elif motion == "forward":
        # forward driving: expansion about a focus of expansion near the centre, speeding up
        rate = 0.015 + 0.02 * r()
        scale = 1 / (1 + rate * t + 0.2 * rate * t * t / max(T, 1))
        cy = Hc / 2 - 0.1 * H
    # output pixel (u, v) -> canvas (cx + ox + s (u - W/2), cy + oy + s (v - H/2))
    u = torch.arange(W, dtype=torch.float32) + 0.5 - W / 2
    v = torch.arange(H, dtype=torch.float32) + 0.5 - H / 2
    X = cx + ox[:, None, None] + scale[:, None, None] * u[None, None, :]     # (T,1,W)
    Y = cy + oy[:, None, None] + scale[:, None, None] * v[None, :, None]     # (T,H,1)
    grid = torch.stack([(X / Wc * 2 - 1).expand(T, H, W), (Y / Hc * 2 - 1).expand(T, H, W)], -1)
    clip = F.grid_sample(canvas.expand(T, -1, -1, -1), grid, mode="bilinear",
                         padding_mode="reflection", align_corners=False)      # (T,3,H,W)
    if motion != "static":
        # one object moving on its own (a person, a car): local motion besides the camera's
        yy = torch.arange(H, dtype=torch.float32)[:, None]
        xx = torch.arange(W, dtype=torch.float32)[None, :]
        ry, rx = (0.08 + 0.08 * r()) * H, (0.05 + 0.08 * r()) * W
        y0, x0 = (0.5 + 0.3 * r()) * H, r() * W
        vx, vy = (r() * 2 - 1) * 3 * W / 160, (r() * 2 - 1) * H / 160
        col = torch.rand(3, generator=g) * 0.8 + 0.1
        ti = t[:, None, None]
        d = ((yy - y0 - vy * ti) / ry) ** 2 + ((xx - x0 - vx * ti) / rx) ** 2   # (T,H,W)
        m = (2 - 2 * d).clamp(0, 1)[:, None]
        clip = clip + m * (col[None, :, None, None] - clip)
    return clip.clamp(0, 1)
