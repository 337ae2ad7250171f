"""Rain streaks and splashes as opacity maps, drawn by scattering points along segments.

Each drop is a line segment (centre, angle, length, opacity). Segments are sampled
at ~1 px spacing and the samples are splatted bilinearly into a flat buffer with a
single `scatter_add_`, so the cost follows the total streak length on screen, not
the frame size, and there is no Python loop over drops.

Depth sets the look: length = fall speed x exposure / depth, and the three depth
layers are drawn at full, half and quarter resolution and upsampled, so nearer
drops come out wider and softer (a wide, defocused streak) while far drops are 1 px.

Drops live for the whole clip and fall by `speed / fps` pixels per frame. A drop
that leaves the bottom re-enters at the top at a new random column, so at 24-30 fps,
where a near drop moves further than the frame between frames, every frame shows
(nearly) new streak positions, and at high frame rates the same drops are seen
again, a little lower: the temporal correlation comes from the physics.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# name, density parameter, depth range, resolution factor, per-drop opacity range
LAYERS = (
    ("far", "dens_far", 2.5, 8.0, 1, (0.35, 0.9)),
    ("mid", "dens_mid", 1.0, 2.5, 2, (0.4, 0.9)),
    ("near", "dens_near", 0.35, 1.0, 4, (0.3, 0.85)),
)
MAX_SAMPLES = 192  # cap on rows per segment
MAX_TILT = math.radians(60)


def _rand(shape, g, device):
    return torch.rand(shape, generator=g, device=device)


def _active_drops(count: torch.Tensor, cap: int, g, device):
    """Per-sample drop counts (B,) float -> batch index (M,) of the active drops.

    Fractional counts are rounded at random so small densities still average right.
    """
    B = count.shape[0]
    n = torch.floor(count + _rand((B,), g, device)).clamp(0, cap)          # (B,)
    slots = torch.arange(cap, device=device).expand(B, cap)
    active = slots < n[:, None]                                           # (B, cap)
    return active.nonzero()[:, 0]                                         # (M,)


def rasterise(cx, cy, ang, length, amp, bidx, T: int, B: int, h: int, w: int,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """Splat segments into opacity maps.

    cx, cy: (T, M) per frame and drop (pixels of this layer, y down, pixel centres at
    integer coordinates); ang (radians from vertical), length, amp: (M,) or (T, M).
    bidx: (M,) sample of each drop. Returns (B, T, h, w), added into `out` if given.
    Columns wrap (x is periodic), rows outside the frame are dropped.

    Rain is near-vertical, so a segment is drawn one row at a time: in every row it
    crosses, its exact x is splatted bilinearly across the two nearest columns (an
    antialiased line without staircase; the ends get fractional row coverage).
    Angles are limited to +-60 degrees from vertical. Drops are bucketed by length so
    short streaks do not pay for the rows of the longest one.
    """
    if out is None:
        out = torch.zeros(B, T, h, w, device=cx.device, dtype=torch.float32)
    M = cx.shape[1]
    if M == 0:
        return out
    ang = ang.clamp(-MAX_TILT, MAX_TILT)
    half = length * torch.cos(ang) / 2                                    # vertical half-extent
    tan = torch.tan(ang)
    per_frame = lambda v: v if v.dim() == 2 else v[None].expand(T, -1)   # -> (T, M)
    half, tan, amp = per_frame(half), per_frame(tan), per_frame(amp)
    hmax = half.amax(0)                                                    # (M,)
    flat = out.view(-1)
    lo = -1.0
    for hi in (3.0, 8.0, 20.0, float(MAX_SAMPLES // 2)):
        sel = ((hmax > lo) & (hmax <= hi)).nonzero()[:, 0] if hi < MAX_SAMPLES // 2 else \
            (hmax > lo).nonzero()[:, 0]
        lo = hi
        if len(sel) == 0:
            continue
        K = int(min(MAX_SAMPLES // 2, math.ceil(float(hmax[sel].max())) + 1))
        _splat(flat, cx[:, sel], cy[:, sel], tan[:, sel], half[:, sel], amp[:, sel], bidx[sel], K, T, h, w)
    return out


def _splat(flat, cx, cy, tan, half, amp, bidx, K: int, T: int, h: int, w: int) -> None:
    """Rows -K..K around each centre; all inputs (T, M'); adds into flat (B*T*h*w,)."""
    k = torch.arange(-K, K + 1, device=cx.device, dtype=torch.float32)    # (S,)
    rows = torch.round(cy)[..., None] + k                                 # (T, M, S)
    dy = rows - cy[..., None]
    cover = (half[..., None] + 0.5 - dy.abs()).clamp_(0, 1)               # row coverage at the ends
    px = cx[..., None] + dy * tan[..., None]
    x0 = torch.floor(px)
    fx = px - x0
    xa = torch.remainder(x0.long(), w)
    xb = xa + 1
    xb = torch.where(xb == w, 0, xb)
    yy = rows.long()
    inside = (yy >= 0) & (yy < h)
    wgt = amp[..., None] * cover * inside
    frame = (bidx[None, :] * T + torch.arange(T, device=cx.device)[:, None])  # (T, M)
    row = ((frame * h)[..., None] + yy.clamp(0, h - 1)) * w                 # (T, M, S)
    idx = torch.cat([(row + xa).reshape(-1), (row + xb).reshape(-1)])
    val = torch.cat([(wgt * (1 - fx)).reshape(-1), (wgt * fx).reshape(-1)])
    flat.scatter_add_(0, idx, val)


def _upsample(x: torch.Tensor, f: int, H: int, W: int) -> torch.Tensor:
    """(B, T, h, w) at 1/f resolution -> (B, T, H, W)."""
    if f == 1:
        return x
    B, T, h, w = x.shape
    up = F.interpolate(x.view(B * T, 1, h, w), size=(h * f, w * f), mode="bilinear",
                       align_corners=False)
    return up[:, :, :H, :W].reshape(B, T, H, W)


def render_rain(p: dict[str, torch.Tensor], B: int, T: int, H: int, W: int, fps: torch.Tensor,
                g: torch.Generator, px_scale: float = 1.0, t0: int = 0,
                gf: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Rain opacity (before saturation) for a batch of clips.

    p: per-sample parameters (B,) from the presets; fps: (B,). Returns the summed
    opacity (B, T, 1, H, W) and extra per-sample info for the params record.
    """
    device = fps.device
    total = torch.zeros(B, T, H, W, device=device)
    area_ref = H * W / (px_scale * px_scale) / 1e4          # frame area in 100x100 ref px
    rain = p["rain"] > 0.5
    for name, key, z_lo, z_hi, f, (a_lo, a_hi) in LAYERS:
        h, w = -(-H // f), -(-W // f)
        Hv_extra = 1.6                                       # drops also live above/below the frame
        count = p[key] * area_ref * Hv_extra * rain
        cap = int(math.ceil(float(count.max()))) + 1 if B else 1
        bidx = _active_drops(count, cap, g, device)          # (M,)
        M = bidx.shape[0]
        if M == 0:
            continue
        r = _rand((7, M), g, device)
        # drops in a volume: number at depth z grows like z^2 (frustum), so sample z^3 uniformly
        z = (z_lo ** 3 + r[0] * (z_hi ** 3 - z_lo ** 3)) ** (1.0 / 3.0)   # (M,)
        xs = r[1] * w                                                      # start column
        fps_b = fps[bidx]
        scale = px_scale / f                                               # ref px -> layer px
        speed = p["length"][bidx] * (30.0 / fps_b) / z * scale             # px per frame
        # dashcam: forward motion tilts streaks away from the image centre and stretches them
        off = (xs / w - 0.5) * 2                                            # -1..1
        radial = p["radial"][bidx]
        ang_deg = p["wind"][bidx] + p["jitter"][bidx] * (r[2] * 2 - 1) * 1.7 + radial * 35 * off
        ang = ang_deg * (math.pi / 180)
        speed = speed * (1 + radial * off.abs()) * (0.85 + 0.3 * r[3])
        length = (speed * p["shutter"][bidx]).clamp(min=1.0)
        amp = (a_lo + (a_hi - a_lo) * r[4]) * p["opacity"][bidx]
        # fall: each drop moves `speed` along its direction per frame; wrapping vertically
        # over a virtual height re-enters it at a new random column
        Hv = h + length + 4                                                 # (M,)
        # float64 here: t0 can be large (frame 10000 of a long clip)
        t = (torch.arange(T, device=device, dtype=torch.float64) + t0)[:, None]   # (T, 1)
        y_raw = (r[5] * Hv).double() + t * (speed * torch.cos(ang)).double()     # (T, M)
        k = torch.floor(y_raw / Hv.double())
        cy = (y_raw - k * Hv.double()).float() - (length / 2 + 2)
        cx = (xs.double() + t * (speed * torch.sin(ang)).double()
              + torch.frac(k * (0.618034 + r[6].double())) * w).float()
        if f == 1:
            rasterise(cx, cy, ang, length, amp, bidx, T, B, h, w, out=total)
        else:
            total += _upsample(rasterise(cx, cy, ang, length, amp, bidx, T, B, h, w), f, H, W)

    # splashes: tiny crowns (two short arms thrown up-and-out) on the lower part of the
    # frame, fresh every frame
    ground = 0.4
    hs = int(H * ground)
    count = p["splash"] * (hs * W / (px_scale * px_scale) / 1e4) * rain
    if hs > 0 and float(count.max()) > 0:
        cap = int(math.ceil(float(count.max()))) + 1
        bidx = _active_drops(count, cap, g, device)
        M = bidx.shape[0]
        if M:
            r = _rand((5, T, M), gf if gf is not None else g, device)
            x = r[0] * W
            y = H - hs + r[1] * hs
            arm = (1.5 + 3.0 * r[2]) * px_scale
            tilt = (40 + 20 * r[3]) * (math.pi / 180)
            amp = 0.25 + 0.45 * r[4]
            for side in (-1.0, 1.0):
                a = side * tilt
                # segment from the impact point upward: centre half an arm up along the arm
                cx = x + torch.sin(a) * arm / 2
                cy = y - torch.cos(a) * arm / 2
                rasterise(cx, cy, a, arm, amp, bidx, T, B, H, W, out=total)
    return total.unsqueeze(2), {}
