"""Review of the day's changes: each test fails without its fix."""
from __future__ import annotations

import argparse
import os
from fractions import Fraction

import numpy as np
import pytest

from vderain.io.types import VideoInfo


def _has_encoder(name: str) -> bool:
    import av
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - not in this FFmpeg build
        return False
    return True


@pytest.mark.parametrize("codec,encoder,ext", [("hevc", "libx265", "mp4"), ("av1", "libsvtav1", "mkv")])
def test_live_file_output_takes_codecs_with_a_minimum_frame_size(tmp_path, codec, encoder, ext):
    # FileSink checks its settings with a probe encoder: at 2x2 x265 and SVT-AV1 refused it, so
    # `vderain live -o out.mp4 --codec hevc` (or av1) always failed with "cannot encode 2x2 frames"
    if not _has_encoder(encoder):
        pytest.skip(f"{encoder} not in this FFmpeg build")
    from vderain.io.live import FileSink
    sink = FileSink(str(tmp_path / f"o.{ext}"), 30.0, codec=codec)
    sink.close()
    assert os.listdir(tmp_path) == []   # the probe's temp file is gone, nothing written


def _live_args(**kw):
    base = dict(width=None, height=None, fps=None, loop=False, realtime=True, codec=None, crf=None,
                output=None, bitrate=None, stream=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_fps_is_not_called_ignored_for_a_stream_whose_rate_it_sets():
    # a stream's rate is known only once it opens: until then --fps is the outputs' frame rate
    # (`fps = source.fps or args.fps or 30.0`), so it is not "ignored for a stream"
    from vderain.commands.live import ignored_options
    from vderain.io.live import StreamSource
    src = StreamSource("udp://127.0.0.1:9")   # not opened (no start())
    assert src.fps is None
    assert ignored_options(_live_args(fps=60.0), src) == []
    notes = ignored_options(_live_args(fps=60.0, width=640), src)
    assert notes == ["--width asks a camera for a capture mode; ignored for a stream"]


def test_writer_abort_removes_its_temp_even_if_the_encoder_fails_to_close(tmp_path):
    from vderain.io.writer import VideoWriter
    info = VideoInfo(width=32, height=32, fps=24, time_base=Fraction(1, 24))
    w = VideoWriter(tmp_path / "out.mkv", info, codec="h264", preset="ultrafast")
    w.write(np.zeros((32, 32, 3), np.uint8))

    def broken():
        raise RuntimeError("encoder gone")
    real_abort, w._sink.abort = w._sink.abort, broken
    try:
        with pytest.raises(RuntimeError, match="encoder gone"):
            w.abort()
    finally:
        real_abort()
    assert os.listdir(tmp_path) == []
    assert not w._finalizer.alive
    w.abort()   # done once: a second abort does nothing


def test_neighbour_weight_is_exposure_times_alignment():
    # one helper for the OpenCV and torch paths: the same weight each computed inline before
    from vderain.methods.stabilise import (TEXTURE_MIN, StabiliserConfig, alignment_weight,
                                           exposure_weight, neighbour_weight, texture_samples)
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (64, 96), dtype=np.uint8)
    tex = texture_samples(grey, 4)
    textured = tex >= TEXTURE_MIN
    cfg = StabiliserConfig()
    off = rng.normal(3, 4, (16, 24)).astype(np.float32)
    inside = np.ones((16, 24), bool)
    inside[:, :5] = False
    hg, wg = tex.shape
    for ins in (None, inside):
        use = textured if ins is None else textured & ins[:hg, :wg]
        want = (exposure_weight(off if ins is None else off[ins], cfg.tol_exposure)
                * alignment_weight(off[:hg, :wg][use], tex[use], cfg.tol_align))
        assert neighbour_weight(off, ins, tex, textured, cfg) == want
