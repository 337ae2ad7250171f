"""Second I/O review: which video stream is derained, encoder size limits, file:// inputs,
and temp files of writers that were never closed."""
from __future__ import annotations

import gc
import os
import urllib.parse
from fractions import Fraction

import av
import numpy as np
import pytest

from vderain import VderainError
from vderain.io import VideoWriter, open_video
from vderain.io.types import VideoInfo
from videogen import make_video, pattern_frame, read_all


def _two_video_streams(path, sizes, defaults=None, levels=(60, 200), audio=False):
    """One file with a video stream per size, each a flat grey of its level (so the test can
    tell them apart); `defaults`: the default flag of each, None to let the muxer choose."""
    out = av.open(os.fspath(path), "w")
    streams = []
    for i, (w, h) in enumerate(sizes):
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast"}
        s.metadata["title"] = f"video{i}"
        if defaults is not None:
            s.disposition = av.stream.Disposition.default if defaults[i] else av.stream.Disposition(0)
        streams.append(s)
    a = None
    if audio:
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
    for k in range(4):
        for s, level in zip(streams, levels):
            f = av.VideoFrame.from_ndarray(np.full((s.height, s.width, 3), level, np.uint8), format="rgb24")
            f.pts = k
            for p in s.encode(f):
                out.mux(p)
    for s in streams:
        for p in s.encode(None):
            out.mux(p)
    if a is not None:
        for k in range(0, 16000 * 4 // 24, 1024):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, k
            for p in a.encode(fr):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    out.close()
    return os.fspath(path)


# -- 1. the main video stream -------------------------------------------------------------

@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_small_preview_stream_before_the_main_one_is_not_derained(tmp_path, ext):
    # MP4 flags the first video track default by itself: the preview carries the flag
    path = _two_video_streams(tmp_path / f"in.{ext}", [(32, 16), (96, 64)])
    with open_video(path) as r:
        assert (r.info.width, r.info.height) == (96, 64)
        frames = list(r)
    assert len(frames) == 4 and frames[0].rgb.shape == (64, 96, 3)
    assert abs(float(frames[0].rgb.mean()) - 200) < 8  # the main stream's grey, not the preview's


def test_of_two_streams_of_one_size_the_default_one_is_derained(tmp_path):
    path = _two_video_streams(tmp_path / "in.mkv", [(96, 64), (96, 64)], defaults=[False, True])
    frames = read_all(path)[0]
    assert abs(float(frames[0].mean()) - 200) < 8
    # and an ordinary file with both flagged the same keeps taking the first
    path = _two_video_streams(tmp_path / "same.mkv", [(96, 64), (96, 64)], defaults=[True, True])
    assert abs(float(read_all(path)[0][0].mean()) - 60) < 8


def test_the_audio_copier_keeps_the_main_streams_tags_and_names_the_dropped_preview(tmp_path):
    src = _two_video_streams(tmp_path / "in.mkv", [(32, 16), (96, 64)], audio=True)
    out = tmp_path / "out.mkv"
    with open_video(src) as r:
        with VideoWriter(out, r.info, preset="ultrafast", audio_from=src) as w:
            for f in r:
                w.write(f.rgb, f.pts)
    assert any("video stream #0 (h264) dropped" in n for n in w.notes), w.notes
    assert not any("stream #1 (" in n for n in w.notes), w.notes
    with av.open(os.fspath(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert c.streams.video[0].metadata.get("title") == "video1"


def test_decord_refuses_a_file_where_it_would_decode_another_stream(tmp_path):
    pytest.importorskip("decord")
    path = _two_video_streams(tmp_path / "in.mkv", [(32, 16), (96, 64)])
    try:
        r = open_video(path, backend="decord")
    except VderainError as e:
        assert "pyav" in str(e)
        return
    with r:
        assert next(iter(r)).rgb.shape == (64, 96, 3)


# -- 2. frame sizes the encoders refuse (or hang on) --------------------------------------

@pytest.mark.parametrize("codec,size,limit", [
    ("hevc", (8, 8), "16"), ("hevc", (4000, 2), "16"),
    ("av1", (2, 2), "4"), ("av1", (96, 8), "26"),  # SVT-AV1 hangs at its end on the last one
])
def test_tiny_frames_fail_at_once_naming_the_size_limit(tmp_path, codec, size, limit):
    w, h = size
    info = VideoInfo(width=w, height=h, fps=24, time_base=Fraction(1, 24))
    with pytest.raises(VderainError) as e:
        VideoWriter(tmp_path / "out.mkv", info, codec=codec)
    msg = str(e.value)
    assert "\n" not in msg and f"{w}x{h}" in msg and limit in msg and "h264" in msg, msg
    assert os.listdir(tmp_path) == []


def test_sizes_at_the_limits_still_encode(tmp_path):
    for codec, (w, h) in (("hevc", (16, 16)), ("hevc", (15, 64)), ("av1", (4, 4)), ("av1", (96, 26))):
        info = VideoInfo(width=w, height=h, fps=24, time_base=Fraction(1, 24))
        out = tmp_path / f"{codec}{w}x{h}.mkv"
        with VideoWriter(out, info, codec=codec, preset="ultrafast") as wr:
            wr.write(np.zeros((h, w, 3), np.uint8))
        assert out.stat().st_size > 0


# -- 3. file:// inputs ----------------------------------------------------------------------

def test_file_urls_are_local_paths(tmp_path):
    path = make_video(tmp_path / "rain #1 50%.mp4", n=4, audio=True)
    url = "file://" + urllib.parse.quote(path)
    with open_video(url) as r:
        assert r.source == path
        assert len(list(r)) == 4
    with open_video("file://localhost" + urllib.parse.quote(path)) as r:
        assert r.info.width == 96
    with pytest.raises(VderainError, match="input not found: .*missing.mp4"):
        open_video("file://" + urllib.parse.quote(str(tmp_path / "missing.mp4")))
    # the input given as a URL is still protected from being the output
    with open_video(url) as r:
        with pytest.raises(VderainError, match="is the input"):
            VideoWriter(path, r.info, inputs=[url])
        out = tmp_path / "out.mp4"
        with VideoWriter(out, r.info, preset="ultrafast", audio_from=url) as w:
            for f in r:
                w.write(f.rgb, f.pts)
    with av.open(os.fspath(out)) as c:
        assert len(c.streams.audio) == 1


# -- 4. writers never closed --------------------------------------------------------------

@pytest.mark.parametrize("target", ["out.mp4", "frames/"])
def test_a_writer_dropped_unclosed_removes_its_temp(tmp_path, target):
    info = VideoInfo(width=96, height=64, fps=24, time_base=Fraction(1, 24))
    w = VideoWriter(os.path.join(tmp_path, target), info, preset="ultrafast")
    w.write(pattern_frame(0))
    assert len(os.listdir(tmp_path)) == 1  # the temp
    del w
    gc.collect()
    assert os.listdir(tmp_path) == []  # gone, and never renamed into place


def test_a_closed_writer_keeps_its_output_when_collected(tmp_path):
    info = VideoInfo(width=96, height=64, fps=24, time_base=Fraction(1, 24))
    w = VideoWriter(tmp_path / "out.mp4", info, preset="ultrafast")
    w.write(pattern_frame(0))
    w.close()
    del w
    gc.collect()
    assert os.listdir(tmp_path) == ["out.mp4"]
