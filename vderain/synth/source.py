"""CleanClipSource: rain-free footage decoded once into memory, sampled as augmented clips.

Every video (PyAV), folder of frames or still image is decoded once, downscaled so
its short side is at most `max_short_side`, and kept as uint8 (N, 3, h, w) on the
target device. `sample()` then only slices and resamples on that device:

  - random clip (weighted by length), start, frame stride 1..max_stride (speed change),
    time reversal, horizontal flip, random crop at a random scale;
  - windows never straddle a scene cut (detected at load);
  - a share of samples are a *still* frame filmed by a synthetic camera: pan, zoom,
    forward (dashcam-like) motion or hand-held shake; real clips sometimes get a
    slow pan or shake on top of their own motion.
Tone/colour and day-to-night augmentation happen in RainSynth, which applies them
to the clean and rainy clip alike.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vderain import VderainError
from vderain.io.types import quarter_turns, turn

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MOTIONS = ("pan", "zoom", "forward", "shake")


def _fit(img: np.ndarray, max_short_side: int) -> np.ndarray:
    import cv2
    h, w = img.shape[:2]
    s = max_short_side / min(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _read_image(path: str) -> np.ndarray:
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise VderainError(f"cannot read image '{path}'")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _natural_key(name: str):
    """frame_2.png before frame_10.png (as the frame-folder reader orders them)."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _read_video(path: str, max_short_side: int, max_frames: int | None) -> tuple[list[np.ndarray], float]:
    import av
    from vderain.io.reader import main_video_stream
    try:
        with av.open(path) as c:
            st = main_video_stream(c)
            if st is None:
                raise VderainError(f"'{path}' has no video stream")
            st.thread_type = "AUTO"
            fps = float(st.average_rate) if st.average_rate else 30.0
            out = []
            for fr in c.decode(st):
                out.append(_fit(turn(fr.to_ndarray(format="rgb24"), quarter_turns(fr.rotation)), max_short_side))
                if max_frames and len(out) >= max_frames:
                    break
    except av.error.FFmpegError as e:
        raise VderainError(f"cannot decode '{path}': {e}") from None
    if not out:
        raise VderainError(f"'{path}' has no decodable frames")
    return out, fps


def _scene_cuts(frames: np.ndarray) -> np.ndarray:
    """Segment id per frame: a cut where the thumbnail difference jumps far above usual."""
    import cv2
    if len(frames) < 2:
        return np.zeros(len(frames), dtype=np.int64)
    th = np.stack([cv2.resize(f, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32) for f in frames])
    d = np.abs(np.diff(th, axis=0)).mean(axis=(1, 2, 3))
    cut = (d > 25) & (d > 5 * (np.median(d) + 1))
    return np.concatenate([[0], np.cumsum(cut)])


class CleanClipSource:
    """Augmented clean clips (B, T, 3, size, size) float in [0, 1], gathered on `device`."""

    def __init__(self, paths, frames: int = 6, size: int = 192, device="cpu", max_short_side: int = 360,
                 seed: int = 0, still_prob: float = 0.25, max_stride: int = 3,
                 scale_range: tuple[float, float] = (0.7, 1.4), max_frames: int | None = None):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not paths:
            raise VderainError("CleanClipSource needs at least one video, frame folder or image")
        if int(frames) < 1 or int(size) < 1 or int(max_short_side) < 1:
            raise VderainError(f"CleanClipSource needs frames, size and max_short_side >= 1 "
                               f"(got {frames}, {size}, {max_short_side})")
        self.frames, self.size = int(frames), int(size)
        self.device = torch.device(device)
        self.still_prob, self.max_stride = float(still_prob), int(max_stride)
        self.scale_range = scale_range
        self.seed = seed
        self.clips: list[torch.Tensor] = []     # uint8 (N, 3, h, w) on device
        self.segments: list[np.ndarray] = []    # scene id per frame
        self.fps: list[float] = []
        self.names: list[str] = []
        for p in map(str, paths):
            if os.path.isdir(p):
                files = sorted((f for f in Path(p).iterdir() if f.suffix.lower() in IMAGE_EXT),
                               key=lambda f: _natural_key(f.name))
                if not files:
                    raise VderainError(f"folder '{p}' holds no images")
                frames_np = [_fit(_read_image(str(f)), max_short_side) for f in files[:max_frames]]
                fps = 30.0
            elif not os.path.exists(p):
                raise VderainError(f"no such file or folder: '{p}'")
            elif Path(p).suffix.lower() in IMAGE_EXT:
                frames_np, fps = [_fit(_read_image(p), max_short_side)], 30.0
            else:
                frames_np, fps = _read_video(p, max_short_side, max_frames)
            shapes = {f.shape for f in frames_np}
            if len(shapes) != 1:
                raise VderainError(f"frames of '{p}' differ in size")
            arr = np.stack(frames_np)                                          # (N,h,w,3)
            self.segments.append(_scene_cuts(arr))
            self.clips.append(torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(self.device))
            self.fps.append(fps)
            self.names.append(p)
        self.lengths = torch.tensor([c.shape[0] for c in self.clips], dtype=torch.float32)
        self.last_fps: torch.Tensor | None = None      # (B,) frame rate of the last batch
        self.last_info: list[dict] = []

    def __len__(self) -> int:
        return int(self.lengths.sum())

    @property
    def nbytes(self) -> int:
        return sum(c.numel() for c in self.clips)

    # ---- sampling --------------------------------------------------------------------
    def _frames_for(self, ci: int, rnd: list[float]) -> tuple[list[int], int, bool]:
        """Frame indices of one window (stride, reversed) avoiding scene cuts; None if none fits."""
        N, T = self.clips[ci].shape[0], self.frames
        seg = self.segments[ci]
        stride = 1 + int(rnd[0] * self.max_stride)
        for k in range(stride, 0, -1):
            span = (T - 1) * k + 1
            if span > N:
                continue
            for attempt in range(4):
                s = int(((rnd[1] + 0.618 * attempt) % 1.0) * (N - span + 1))
                if seg[s] == seg[s + span - 1]:
                    idx = list(range(s, s + span, k))
                    rev = rnd[2] < 0.5
                    return (idx[::-1] if rev else idx), k, rev
        return None, 1, False

    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator
        gdev = g.device if g is not None else torch.device("cpu")
        T, S = self.frames, self.size
        rnd = torch.rand(batch, 16, generator=g, device=gdev).cpu().tolist()
        jit = torch.randn(batch, T, 3, generator=g, device=gdev).cpu()
        out = torch.empty(batch, T, 3, S, S, device=self.device)
        fps_out, self.last_info = [], []
        cum = torch.cumsum(self.lengths / self.lengths.sum(), 0).tolist()
        for b in range(batch):
            r = rnd[b]
            ci = min(next((i for i, c in enumerate(cum) if r[0] < c), len(cum) - 1), len(cum) - 1)
            clip = self.clips[ci]
            N, _, h, w = clip.shape
            still = r[1] < self.still_prob or N < T
            idx, stride, rev = (None, 1, False) if still else self._frames_for(ci, r[2:5])
            if idx is None:
                still = True
                idx = [int(r[3] * N) % N] * T
            # crop scale (source px per output px); keep the crop inside the frame
            s = 1.0
            if r[5] < 0.6:
                lo, hi = self.scale_range
                s = math.exp(math.log(lo) + r[6] * (math.log(hi) - math.log(lo)))
            s = min(s, min(h, w) / S)
            t = torch.arange(T, dtype=torch.float32)
            ox, oy, scale, rot = torch.zeros(T), torch.zeros(T), torch.full((T,), s), torch.zeros(T)
            motion = "none"
            if still:
                motion = MOTIONS[min(int(r[7] * 4), 3)]
            elif r[7] < 0.1:
                motion = "shake"
            elif r[7] < 0.25:
                motion = "pan"
            if motion == "pan":
                a = 2 * math.pi * r[8]
                v = (1 + 5 * r[9]) * s * (1 if still else 0.5)                # source px per frame
                ox, oy = t * v * math.cos(a), t * v * math.sin(a) * 0.5
            elif motion == "zoom":
                rate = (0.01 + 0.03 * r[8]) * (1 if r[9] < 0.5 else -1)
                scale = s * torch.exp(-rate * (t - (T - 1) / 2))
            elif motion == "forward":
                rate = 0.02 + 0.05 * r[8]
                scale = s / (1 + rate * t)
            elif motion == "shake":
                amp = (1 + 3 * r[8]) * s
                ox, oy = jit[b, :, 0] * amp, jit[b, :, 1] * amp
                rot = jit[b, :, 2] * math.radians(0.4 + 0.8 * r[9])
            # largest half-extent of the crop over the clip, so the centre keeps it inside
            half = (scale * S / 2) * (1 + rot.abs() * 1.5)                    # (T,)
            scale_fit = min(1.0, min(h, w) / (2 * float(half.max()) + 1e-6))
            scale, half = scale * scale_fit, half * scale_fit
            lo_x, hi_x = float((half - ox).max()), float((w - half - ox).min())
            lo_y, hi_y = float((half - oy).max()), float((h - half - oy).min())
            cx = lo_x + r[10] * (hi_x - lo_x) if hi_x >= lo_x else w / 2 - float(ox.mean())
            cy = lo_y + r[11] * (hi_y - lo_y) if hi_y >= lo_y else h / 2 - float(oy.mean())
            flip = r[12] < 0.5
            sel = clip[idx] if not still else clip[idx[0]:idx[0] + 1]
            if motion == "none" and abs(s - 1.0) < 1e-6:
                # fast path: a plain crop
                x0 = int(round(cx - S / 2))
                y0 = int(round(cy - S / 2))
                x0, y0 = max(0, min(w - S, x0)), max(0, min(h - S, y0))
                crop = sel[:, :, y0:y0 + S, x0:x0 + S].float().div_(255)
                if crop.shape[0] == 1:
                    crop = crop.expand(T, -1, -1, -1)
            else:
                crop = self._warp(sel, cx, cy, ox, oy, scale, rot, T, S)
            if flip:
                crop = crop.flip(-1)
            out[b] = crop
            fps_out.append(self.fps[ci] / stride)
            self.last_info.append({"clip": self.names[ci], "frames": idx, "stride": stride, "reversed": rev,
                                   "still": still, "motion": motion, "scale": s, "flip": flip})
        self.last_fps = torch.tensor(fps_out, device=self.device)
        return out

    def _warp(self, sel, cx, cy, ox, oy, scale, rot, T, S) -> torch.Tensor:
        """Resample a crop per frame: output (u, v) -> source centre + offset + R(rot) s (u, v)."""
        _, _, h, w = sel.shape
        # integer box that covers every frame's crop, so only that part is converted to float
        half = (scale * S / 2) * (1 + rot.abs() * 1.5) * 1.45 + 2
        x0 = max(0, int(math.floor(cx + float((ox - half).min()))))
        x1 = min(w, int(math.ceil(cx + float((ox + half).max()))))
        y0 = max(0, int(math.floor(cy + float((oy - half).min()))))
        y1 = min(h, int(math.ceil(cy + float((oy + half).max()))))
        box = sel[:, :, y0:y1, x0:x1].float().div_(255)                         # (T or 1, 3, bh, bw)
        bh, bw = box.shape[-2:]
        dev = box.device
        u = torch.arange(S, device=dev, dtype=torch.float32) + 0.5 - S / 2
        c, s_ = torch.cos(rot).to(dev), torch.sin(rot).to(dev)
        sc = scale.to(dev)
        uu, vv = u[None, None, :], u[None, :, None]                           # (1,1,S), (1,S,1)
        X = cx - x0 + ox.to(dev)[:, None, None] + sc[:, None, None] * (c[:, None, None] * uu - s_[:, None, None] * vv)
        Y = cy - y0 + oy.to(dev)[:, None, None] + sc[:, None, None] * (s_[:, None, None] * uu + c[:, None, None] * vv)
        grid = torch.stack([X / bw * 2 - 1, Y / bh * 2 - 1], -1)               # (T,S,S,2)
        if box.shape[0] == 1:
            box = box.expand(T, -1, -1, -1)
        return F.grid_sample(box, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
