"""Shared fixtures: tiny generated videos, made once per test session.

    def test_x(clips):
        path = clips["audio"]        # 96x64, 24 frames, 24 fps, AAC tone

Helpers for making your own live in tests/videogen.py (`from videogen import make_video`).
"""
from __future__ import annotations

import os
import sys
from fractions import Fraction

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import videogen  # noqa: E402

# name -> (file name, make_video kwargs)
CLIPS = {
    "basic": ("basic.mp4", dict(n=24)),
    "audio": ("audio.mp4", dict(n=24, audio=True)),
    "vfr": ("vfr.mp4", dict(n=12, time_base=Fraction(1, 1000),
                            pts=[0, 40, 80, 200, 240, 280, 500, 510, 520, 530, 700, 740])),
    "rotated": ("rotated.mp4", dict(n=12, rotation=90, audio=True)),
    "odd": ("odd.mp4", dict(n=12, width=97, height=65, codec="libx264rgb", pix_fmt="bgr24",
                            options={"qp": "0"})),
    "tenbit": ("tenbit.mkv", dict(n=12, codec="libx265", pix_fmt="yuv420p10le", options={"crf": "8"})),
    "bt709": ("bt709.mp4", dict(n=12, color={"color_range": 1, "colorspace": 1,
                                             "color_primaries": 1, "color_trc": 1})),
    "dashcam": ("dashcam.mp4", dict(n=24, audio=True, subtitles=True, data=True)),
    "lossless": ("lossless.mkv", dict(n=16, codec="ffv1", pix_fmt="bgr0")),
    "faststart": ("faststart.mp4", dict(n=48, audio=True, container_options={"movflags": "+faststart"})),
}


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


class _Clips:
    """Makes each named clip on first use and reuses it for the rest of the session."""

    def __init__(self, folder):
        self.folder = folder
        self.paths = {}

    def __getitem__(self, name: str) -> str:
        if name not in self.paths:
            fname, kwargs = CLIPS[name]
            self.paths[name] = videogen.make_video(self.folder / fname, **kwargs)
        return self.paths[name]


@pytest.fixture(scope="session")
def clips(clip_dir):
    return _Clips(clip_dir)
