"""Tiny procedural test videos (moving patterns, sine-tone audio), made with PyAV.

Other test modules import these helpers; keep clips tiny so the suite stays fast.
"""
from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np


def pattern_frame(i: int, width: int = 96, height: int = 64) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a gradient, a bar moving right, a square moving down, a texture.

    Edges are softened a little, as a camera's optics would: pixel-sharp colour edges are a
    worst case for 4:2:0 chroma that no real footage has.
    """
    import cv2
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x * 200 // max(width - 1, 1) + 20).astype(np.uint8)
    img[..., 1] = (y * 200 // max(height - 1, 1) + 20).astype(np.uint8)
    img[..., 2] = (((x // 4 + y // 4) % 2) * 60 + 80).astype(np.uint8)
    bx = (i * 3) % width
    img[:, bx:bx + max(2, width // 12)] = (240, 240, 60)
    sy = (i * 2) % max(height - height // 4, 1)
    sx = width // 3
    img[sy:sy + height // 4, sx:sx + height // 4] = (30, 60, 220)
    return cv2.GaussianBlur(img, (0, 0), 0.8)


def pattern_frames(n: int, width: int = 96, height: int = 64) -> np.ndarray:
    return np.stack([pattern_frame(i, width, height) for i in range(n)])


def _add_tone(out, container_ext: str, seconds: float, freq: float = 440.0, tone_from: float = 0.0,
              codec: str | None = None):
    codec = codec or ("libopus" if container_ext == "webm" else "aac")
    rate = 48000 if codec == "libopus" else 16000
    stream = out.add_stream(codec, rate=rate)
    stream.layout = "mono"
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.3 * np.sin(2 * np.pi * freq * t) * (t >= tone_from)).astype(np.float32)[None]
    return stream, samples


def _mux_tone(out, stream, samples):
    step = 960 if stream.codec_context.name == "libopus" else 1024
    fmt = stream.codec_context.format.name  # flt (aac, opus) or s16 (pcm_s16le)
    if fmt == "s16":
        samples = (samples * 32767).astype(np.int16)
    for k in range(0, samples.shape[1], step):
        chunk = np.ascontiguousarray(samples[:, k:k + step])
        frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
        frame.sample_rate = stream.rate
        frame.pts = k
        for p in stream.encode(frame):
            out.mux(p)
    for p in stream.encode(None):
        out.mux(p)


def make_video(path, n: int = 16, width: int = 96, height: int = 64, fps: float = 24,
               codec: str = "libx264", pix_fmt: str = "yuv420p", audio: bool = False,
               rotation: int = 0, pts: list[int] | None = None, time_base: Fraction | None = None,
               color: dict | None = None, subtitles: bool = False, data: bool = False,
               options: dict | None = None, container_options: dict | None = None,
               frames: np.ndarray | None = None, tone_from: float = 0.0,
               audio_codec: str | None = None) -> str:
    """Write a clip of the moving pattern and return its path.

    pts/time_base: explicit (VFR) timestamps. color: codec-context colour tags, e.g.
    {"color_range": 1, "colorspace": 1, "color_primaries": 1, "color_trc": 1}.
    subtitles/data: add a mov_text track / a binary data track (mp4 only), like dashcam files.
    tone_from: the audio is silent before this many seconds, a 440 Hz tone (RMS 0.21) after.
    audio_codec: instead of AAC (Opus in WebM), e.g. "pcm_s16le" as cameras record.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lstrip(".")
    if frames is None:
        frames = pattern_frames(n, width, height)
    n, height, width = frames.shape[:3]
    out = av.open(path, "w", options=container_options or {})
    rate = Fraction(fps).limit_denominator(1001)
    v = out.add_stream(codec, rate=rate)
    v.width, v.height, v.pix_fmt = width, height, pix_fmt
    tb = time_base or (1 / rate)
    v.codec_context.time_base = tb
    v.time_base = tb
    opts = dict(options or {})
    if codec == "libx265":
        opts.setdefault("x265-params", "log-level=error")
    v.options = opts
    if rotation:
        v.set_display_rotation(rotation)
    for k, val in (color or {}).items():
        setattr(v.codec_context, k, val)
    a = samples = None
    if audio:
        a, samples = _add_tone(out, ext, n / fps, tone_from=tone_from, codec=audio_codec)
    sub = dat = None
    if subtitles:
        sub = out.add_mux_stream("mov_text")
        sub.time_base = Fraction(1, 1000)
    if data:
        dat = out.add_mux_stream("bin_data")
        dat.time_base = Fraction(1, 1000)
    for i, img in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format=pix_fmt)
        frame.pts = pts[i] if pts is not None else round(i / fps / tb)
        frame.time_base = tb
        for p in v.encode(frame):
            out.mux(p)
        ms = int(float(frame.pts * tb) * 1000)
        if sub is not None and i % 8 == 0:
            text = f"frame {i}".encode()
            _mux_side(out, sub, len(text).to_bytes(2, "big") + text, ms)
        if dat is not None and i % 4 == 0:
            _mux_side(out, dat, f"GPS {i} 51.5N 0.12W".encode(), ms)
    for p in v.encode(None):
        out.mux(p)
    if a is not None:
        _mux_tone(out, a, samples)
    out.close()
    return path


def _mux_side(out, stream, payload: bytes, ms: int):
    p = av.Packet(payload)
    p.stream = stream
    p.time_base = Fraction(1, 1000)
    p.pts = p.dts = ms
    p.duration = 100
    out.mux(p)


def make_audio_only(path, seconds: float = 1.0) -> str:
    path = os.fspath(path)
    out = av.open(path, "w")
    a, samples = _add_tone(out, os.path.splitext(path)[1].lstrip("."), seconds)
    _mux_tone(out, a, samples)
    out.close()
    return path


def make_zero_frame_video(path) -> str:
    """A Matroska file that declares a video stream but holds no video packets (audio only)."""
    path = os.fspath(path)
    out = av.open(path, "w")
    v = out.add_stream("libx264", rate=24)
    v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
    a, samples = _add_tone(out, "mkv", 0.5)
    _mux_tone(out, a, samples)
    out.close()
    return path


def make_frame_folder(folder, n: int = 10, width: int = 64, height: int = 48, ext: str = "png",
                      start: int = 1) -> str:
    import cv2
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        bgr = cv2.cvtColor(pattern_frame(i, width, height), cv2.COLOR_RGB2BGR)
        cv2.imwrite(os.path.join(folder, f"frame_{start + i}.{ext}"), bgr)  # unpadded: tests natural order
    return folder


def read_all(path, **kw):
    """Decode a file with the project's reader: (frames (N,H,W,3), times, info)."""
    from vderain.io import open_video
    with open_video(path, **kw) as r:
        frames = list(r)
    return np.stack([f.rgb for f in frames]), [f.time for f in frames], r.info


def stream_summary(path) -> list[tuple]:
    """[(type, codec name, packet count)] for every stream, read with plain PyAV."""
    with av.open(os.fspath(path)) as c:
        counts = {s.index: 0 for s in c.streams}
        for p in c.demux():
            if p.size:
                counts[p.stream.index] += 1
        return [(s.type, s.codec_context.name if s.codec_context else None, counts[s.index])
                for s in c.streams]


def _audio_vs_video(path):
    """(samples, times): decoded mono audio, timed in seconds after the first video frame."""
    with av.open(os.fspath(path)) as c:
        f = next(c.decode(video=0))
        v0 = float(f.pts * f.time_base)
    xs, ts = [], []
    with av.open(os.fspath(path)) as c:
        for f in c.decode(audio=0):
            x = f.to_ndarray().reshape(-1)  # mono
            xs.append(x.astype(np.float64))
            ts.append(float(f.pts * f.time_base) - v0 + np.arange(len(x)) / f.sample_rate)
    if not xs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ts)


def audio_rms(path, t0: float, t1: float) -> float:
    """RMS of the decoded audio between t0 and t1 seconds after the first video frame."""
    x, t = _audio_vs_video(path)
    x = x[(t >= t0) & (t < t1)]
    assert len(x), f"no audio between {t0} and {t1} s in {path}"
    return float(np.sqrt(np.mean(x ** 2)))


def tone_onset(path, level: float = 0.1) -> float:
    """Seconds after the first video frame at which the audio first exceeds `level`."""
    x, t = _audio_vs_video(path)
    loud = np.nonzero(np.abs(x) > level)[0]
    assert len(loud), f"no tone in {path}"
    return float(t[loud[0]])


def make_joined_ts(path, n: int = 48, tone_from: float = 1.0) -> str:
    """`cat a.ts a.ts` (dashcams, broadcast captures): two recordings joined end to end, the
    clock starting again at the join. Each half: n frames at 24 fps with audio, silent until
    tone_from seconds, then a tone."""
    path = os.fspath(path)
    one = make_video(path + ".half.ts", n=n, audio=True, tone_from=tone_from)
    with open(one, "rb") as f:
        half = f.read()
    os.remove(one)
    with open(path, "wb") as f:
        f.write(half * 2)
    return path


def tone_onsets(path) -> list[float]:
    """Times (s after the first video frame) where a tone starts after a silence."""
    x, t = _audio_vs_video(path)
    loud = np.abs(x) > 0.1
    return [float(t[i]) for i in np.nonzero(loud[1:] & ~loud[:-1])[0] + 1 if not loud[max(0, i - 800):i].any()]


def make_size_change_ts(path, sizes=((96, 64), (128, 96)), n: int = 6, fps: int = 24) -> str:
    """An MPEG-TS whose picture size changes mid-stream (as a camera or broadcast may do):
    one TS per size with continuing timestamps, joined byte for byte (TS allows that)."""
    import io
    path = os.fspath(path)
    with open(path, "wb") as f:
        for part, (w, h) in enumerate(sizes):
            buf = io.BytesIO()
            out = av.open(buf, "w", format="mpegts")
            v = out.add_stream("libx264", rate=fps)
            v.width, v.height, v.pix_fmt = w, h, "yuv420p"
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(pattern_frame(part * n + i, w, h), format="rgb24")
                frame.pts = part * (n + 2) + i  # +2: x264's delay that the TS muxer adds to part 0
                for p in v.encode(frame):
                    out.mux(p)
            for p in v.encode(None):
                out.mux(p)
            out.close()
            f.write(buf.getvalue())
    return path


def break_adts(src, dst, which: int = 10) -> str:
    """Copy an MPEG-TS with the ADTS header of its `which`-th audio PES overwritten by garbage
    (as a damaged broadcast recording has): the demuxer passes the packet on, and an .mp4
    muxer's ADTS-to-ASC filter refuses it."""
    with av.open(os.fspath(src)) as c:
        pid = c.streams.audio[0].id
    data = bytearray(open(src, "rb").read())
    seen = 0
    for off in range(0, len(data), 188):
        b = data[off:off + 188]
        if ((b[1] & 0x1F) << 8 | b[2]) != pid or not b[1] & 0x40:  # this PID, a PES starts
            continue
        start = 4 + (1 + b[4] if (b[3] >> 4) & 2 else 0)  # after the adaptation field
        seen += 1
        if seen == which:
            es = off + start + 9 + b[start + 8]  # after the PES header
            data[es:es + 7] = b"\xe7\x9e" * 3 + b"\xe7"
            break
    open(dst, "wb").write(bytes(data))
    return os.fspath(dst)
