"""Shared helpers for the live tests: tiny clips whose frames carry their own index."""
from __future__ import annotations

import socket
import time

import numpy as np

from vderain.io.live import LiveSource

W, H, FPS = 96, 64, 30
BASE, STEP = 20, 5     # frame i has a flat top half at BASE + STEP * i: readable after H.264


def frame(i: int, w: int = W, h: int = H) -> np.ndarray:
    img = np.full((h, w, 3), BASE + STEP * (i % 47), np.uint8)   # 47 levels before uint8 overflows
    x = (i * 4) % (w - 8)
    img[h // 2:, x:x + 8] = 255          # a moving bar in the bottom half: real motion
    return img


def index_of(rgb: np.ndarray) -> float:
    """The frame index encoded in the top half (float: compression blurs it slightly)."""
    return (float(rgb[: rgb.shape[0] // 2].mean()) - BASE) / STEP


def make_clip(path, n: int = 30, fps: int = FPS, w: int = W, h: int = H) -> str:
    import av
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "10"}
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(frame(i, w, h), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float = 5.0, step: float = 0.01) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def read_all(url_or_path, timeout=(5, 3), limit: int = 1000) -> list[np.ndarray]:
    """A second, independent reader (plain PyAV): every decodable frame, until EOF or error."""
    import av
    frames = []
    try:
        with av.open(str(url_or_path), timeout=timeout) as c:
            for f in c.decode(video=0):
                frames.append(f.to_ndarray(format="rgb24"))
                if len(frames) >= limit:
                    break
    except (av.FFmpegError, OSError):
        pass   # a live stream ends by its sender going away
    return frames


def make_color_clip(path, n: int = 4, colorspace: int = 1, color_range: int = 1,
                    pix_fmt: str = "yuv420p", w: int = W, h: int = H) -> str:
    """Saturated colour bars tagged with a colour matrix (1 = BT.709) and range (1 limited, 2 full).

    Greys read the same under any matrix; saturated colours do not, so a reader that
    ignores the tags is caught.
    """
    import av
    from vderain.io import color
    bars = np.array([(30, 200, 30), (200, 30, 30), (30, 30, 200), (230, 200, 40)], np.uint8)
    img = np.repeat(np.repeat(bars, w // 4, axis=0)[None], h, axis=0)   # (H, W, 3) vertical bars
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.codec_context.colorspace, s.codec_context.color_range = colorspace, color_range
        s.options = {"preset": "ultrafast", "qp": "0"}
        for i in range(n):
            f = color.rgb_to_yuv420(img, colorspace, color_range)
            if pix_fmt != "yuv420p":
                f = av.VideoFrame.from_ndarray(f.to_ndarray(), format=pix_fmt)
                f.colorspace, f.color_range = colorspace, color_range
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


class Waits(LiveSource):
    """A source that delivers nothing until stopped (a camera still opening, or one that connects
    and sends nothing)."""
    name = "slow camera"

    def _frames(self):
        while not self._stop.wait(0.05):
            pass
        return
        yield
