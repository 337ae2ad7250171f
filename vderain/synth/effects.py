"""Whole-frame components of the synthesiser, each bounded and recorded per sample.

Tone/colour augmentation, night conversion and lamps act on the *scene*, so they are
applied to the clean clip before rain and therefore appear identically in the clean
target and the rainy input. Veil (haze/rain accumulation) and the streak colour are
part of the rain. Defocus and sensor noise are applied to clean and rainy alike (the
model should keep the camera's look and only remove rain); block-DCT compression and
the real codec round trip touch the rainy clip only.

All tensors: (B, T, 3, H, W) float in [0, 1] unless stated.
"""
from __future__ import annotations

import io
import math

import torch
import torch.nn.functional as F


def tone(x: torch.Tensor, gain: torch.Tensor, curve: torch.Tensor, cast: torch.Tensor) -> torch.Tensor:
    """Exposure gain (B,), colour cast (B,3) multipliers and a tone curve x + k x (1 - x), |k| <= 1
    (monotonic, keeps 0 and 1 fixed). A cheap stand-in for gamma that needs no pow()."""
    m = (gain[:, None] * cast)[:, None, :, None, None]                     # (B,1,3,1,1)
    x = (x * m).clamp_(0, 1)
    k = curve[:, None, None, None, None]
    return torch.addcmul(1 + k, x, -k).mul_(x)                              # = x + k x (1 - x)


def night(x: torch.Tensor, strength: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Day-to-night: a darkening gamma-like curve, low gain and a blue-ish tint.

    x: (n, T, 3, H, W); strength (n,) in [0,1]; u (n, 3) uniform randoms.
    """
    gain = (0.12 + 0.25 * u[:, 0]) * strength + (1 - strength)            # (n,)
    tint = torch.stack([0.85 + 0.1 * u[:, 1], 0.92 + 0.05 * u[:, 2], torch.ones_like(u[:, 0])], 1)
    m = (gain[:, None] * tint)[:, None, :, None, None]
    return x * x * m                                                        # gamma 2 then gain


def lamps(n: int, T: int, H: int, W: int, count: torch.Tensor, u: torch.Tensor, px_scale: float
          ) -> torch.Tensor:
    """Light sources (street lamps, headlights) as additive blobs: a bright core and a halo.

    count (n,) lamps per sample (<= 4); u (n, 4, 6) uniform randoms. Returns (n, 1, 3, H, W).
    Drawn at quarter resolution (they are smooth) and upsampled.
    """
    device = u.device
    h, w = -(-H // 4), -(-W // 4)
    yy = torch.arange(h, device=device, dtype=torch.float32)[:, None] + 0.5
    xx = torch.arange(w, device=device, dtype=torch.float32)[None, :] + 0.5
    out = torch.zeros(n, 3, h, w, device=device)
    for k in range(u.shape[1]):
        on = (count > k).float()                                            # (n,)
        cy = (0.05 + 0.6 * u[:, k, 0]) * h
        cx = u[:, k, 1] * w
        sig = (0.6 + 1.6 * u[:, k, 2]) * px_scale                           # core radius, 1/4 px
        d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
        core = torch.exp(-d2 / (2 * sig[:, None, None] ** 2))
        halo = 0.25 * torch.exp(-d2 / (2 * (5 * sig[:, None, None]) ** 2))
        warm = u[:, k, 3]                                                   # sodium-orange .. white
        col = torch.stack([torch.ones_like(warm), 0.95 - 0.3 * warm, 0.9 - 0.6 * warm], 1)
        inten = (0.7 + 0.6 * u[:, k, 4]) * on
        out += (core + halo)[:, None] * (col * inten[:, None])[:, :, None, None]
    up = F.interpolate(out, size=(h * 4, w * 4), mode="bilinear", align_corners=False)
    return up[:, :, :H, :W].unsqueeze(1)


def depth_proxy(h: int, w: int, horizon: torch.Tensor, u_field: torch.Tensor) -> torch.Tensor:
    """A plausible scene depth in [0, 1] (1 = far) at low resolution.

    Real clips have no depth, so: far above a horizon line, nearer towards the bottom,
    times a smooth random field. It depends on no frame content, so a clip processed in
    chunks gets the same haze in every chunk.
    horizon (B,) in rows 0..1; u_field (B, 4, 4) uniform randoms. Returns (B, h, w).
    """
    y = (torch.arange(h, device=horizon.device, dtype=torch.float32) + 0.5) / h    # (h,)
    hz = horizon[:, None]
    d = torch.where(y[None] < hz, torch.ones_like(y[None]) + 0 * hz,
                    1 - 0.9 * (y[None] - hz) / (1 - hz).clamp(min=1e-3))            # (B, h)
    field = F.interpolate(u_field[:, None], size=(h, w), mode="bicubic", align_corners=False)[:, 0]
    return (d[:, :, None] * (0.8 + 0.4 * field)).clamp(0, 1)


def low_res(x: torch.Tensor, f: int = 8) -> torch.Tensor:
    """(B, T, 3, H, W) -> (B, T, 3, ceil(H/f), ceil(W/f)) local means."""
    B, T, C, H, W = x.shape
    y = F.adaptive_avg_pool2d(x.reshape(B * T, C, H, W), (-(-H // f), -(-W // f)))
    return y.view(B, T, C, y.shape[-2], y.shape[-1])


def upsample(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, T, C, h, w) -> (B, T, C, H, W) bilinear."""
    B, T, C, h, w = x.shape
    # one channel per image: CPU bilinear upsampling of 3-channel NCHW is ~4x slower
    y = F.interpolate(x.reshape(B * T * C, 1, h, w), size=(H, W), mode="bilinear", align_corners=False)
    return y.view(B, T, C, H, W)


def blur_lr(x: torch.Tensor, passes: int = 2) -> torch.Tensor:
    """Wide soft blur of a (N, C, h, w) low-resolution map (repeated 3x3 box)."""
    for _ in range(passes):
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of each image in (N, C, H, W) with its own sigma (N,) in px.

    One depthwise conv over all images as channels, channels_last: on CPU that is
    ~10x faster than conv2d on (N*C, 1, H, W)."""
    N, C, H, W = x.shape
    r = max(1, int(round(2 * float(sigma.max()))))
    t = torch.arange(-r, r + 1, device=x.device, dtype=torch.float32)
    k1 = torch.exp(-t[None] ** 2 / (2 * sigma.float()[:, None].clamp(min=1e-3) ** 2))  # (N, k)
    k1 = k1 / k1.sum(1, keepdim=True)
    k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(C, 0)[:, None]          # (N*C,1,k,k)
    p = F.pad(x.reshape(1, N * C, H, W), (r, r, r, r), mode="replicate")
    y = F.conv2d(p.contiguous(memory_format=torch.channels_last), k2, groups=N * C)
    return y.reshape(N, C, H, W)


def blur3(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Slight defocus: a 3x3 Gaussian (sigma <= ~0.8 px) of (..., H, W) with replicated
    edges, done as in-place shifted adds (cheaper than a conv on CPU, no padding copy)."""
    if sigma > 0.85:
        lead = x.shape[:-2]
        return gaussian_blur(x.reshape(1, -1, *x.shape[-2:]), torch.tensor([sigma], device=x.device)
                             ).reshape(*lead, *x.shape[-2:])
    a = math.exp(-1 / (2 * sigma * sigma))
    a = a / (1 + 2 * a)                                                     # side tap weight
    for dim in (-1, -2):
        n = x.shape[dim]
        out = x * (1 - 2 * a)
        out.narrow(dim, 1, n - 1).add_(x.narrow(dim, 0, n - 1), alpha=a)
        out.narrow(dim, 0, n - 1).add_(x.narrow(dim, 1, n - 1), alpha=a)
        out.narrow(dim, 0, 1).add_(x.narrow(dim, 0, 1), alpha=a)            # replicate edges
        out.narrow(dim, n - 1, 1).add_(x.narrow(dim, n - 1, 1), alpha=a)
        x = out
    return x


# ---- compression -----------------------------------------------------------------

_LUMA_Q = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
           14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
           18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
           49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_CHROMA_Q = [17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 \
    + [47, 66] + [99] * 6 + [99] * 32


def _dct_matrix(device) -> torch.Tensor:
    n = torch.arange(8, device=device, dtype=torch.float32)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d                                                                # (8, 8) orthonormal


def block_dct_compress(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Cheap, pure-torch stand-in for lossy compression: JPEG-style 8x8 block DCT
    quantisation in YCbCr with 2x chroma subsampling (blocking, ringing, colour bleed).

    x: (n, 3, H, W) in [0,1]; quality (n,) in 1..100. Returns (n, 3, H, W). Works on GPU.
    """
    n, _, H, W = x.shape
    dev = x.device
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    yc = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - yc) * 0.564
    cr = (r - yc) * 0.713
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2, ceil_mode=True)      # 4:2:0
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 50 / q, 2 - q / 50)                         # libjpeg's scaling
    D = _dct_matrix(dev)
    K = torch.kron(D, D)                                                    # (64, 64)

    def quant(c: torch.Tensor, table: list[int]) -> torch.Tensor:           # (n, h, w)
        h, w = c.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        c = F.pad(c[:, None], (0, pw, 0, ph), mode="replicate")[:, 0] * 255 - 128
        hb, wb = c.shape[1] // 8, c.shape[2] // 8
        blk = c.view(n, hb, 8, wb, 8).permute(0, 1, 3, 2, 4).reshape(n, hb * wb, 64)
        # the 2-D DCT of a block is one 64x64 matrix (kron(D, D)): a single large matmul
        coef = blk @ K.T                                                    # (n, blocks, 64)
        qt = (torch.tensor(table, device=dev, dtype=torch.float32)[None]
              * scale[:, None]).clamp(min=1)[:, None]                       # (n, 1, 64)
        coef = torch.round(coef / qt).mul_(qt)
        blk = (coef @ K).view(n, hb, wb, 8, 8)
        c = blk.permute(0, 1, 3, 2, 4).reshape(n, hb * 8, wb * 8)
        return ((c + 128) / 255)[:, :h, :w]

    yc = quant(yc, _LUMA_Q)
    cb = quant(chroma[:, 0] + 0.5, _CHROMA_Q) - 0.5
    cr = quant(chroma[:, 1] + 0.5, _CHROMA_Q) - 0.5
    cc = F.interpolate(torch.stack([cb, cr], 1), scale_factor=2, mode="bilinear",
                       align_corners=False)[:, :, :H, :W]
    cb, cr = cc[:, 0], cc[:, 1]
    r = yc + cr / 0.713
    b = yc + cb / 0.564
    g = (yc - 0.299 * r - 0.114 * b) / 0.587
    return torch.stack([r, g, b], 1).clamp(0, 1)


def codec_roundtrip(frames, crf: int, codec: str = "libx264", fps: int = 30):
    """Encode (T, H, W, 3) uint8 RGB frames with a real encoder in memory and decode them back.

    Needs PyAV. Odd sizes are padded by edge replication (yuv420p needs even sizes).
    Returns a (T, H, W, 3) uint8 numpy array.
    """
    import av
    import numpy as np

    frames = np.asarray(frames)
    T, H, W, _ = frames.shape
    ph, pw = H % 2, W % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        st = out.add_stream(codec, rate=fps)
        st.width, st.height = frames.shape[2], frames.shape[1]
        st.pix_fmt = "yuv420p"
        st.options = {"crf": str(int(crf)), "preset": "veryfast"}
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    buf.seek(0)
    dec = []
    with av.open(buf, "r") as inp:
        for fr in inp.decode(video=0):
            dec.append(fr.to_ndarray(format="rgb24"))
    dec = np.stack(dec[:T])
    if len(dec) < T:                                     # encoders never drop frames; be safe
        dec = np.concatenate([dec, np.repeat(dec[-1:], T - len(dec), 0)])
    return dec[:, :H, :W]
