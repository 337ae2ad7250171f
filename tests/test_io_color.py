"""OpenCV YUV 4:2:0 <-> RGB conversions: agree with swscale's accurate mode, no drift."""
from __future__ import annotations

import av
import numpy as np
import pytest

from vderain.io.color import fast_path, rgb_to_yuv420, yuv420_to_rgb
from vderain.io.reader import _rgb_flags, frame_to_rgb
from videogen import pattern_frame


@pytest.mark.parametrize("colorspace,color_range", [(1, 1), (5, 1), (None, None), (1, 2), (9, 1)])
def test_matches_swscale_accurate(colorspace, color_range):
    img = pattern_frame(3, 96, 64)
    kw = {k: v for k, v in (("dst_colorspace", colorspace), ("dst_color_range", color_range)) if v}
    f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p", **kw)
    ours = yuv420_to_rgb(f).astype(float)
    ref = f.to_ndarray(format="rgb24", interpolation=_rgb_flags()).astype(float)
    assert abs((ours - ref).mean()) < 0.1 and np.abs(ours - ref).max() <= 2
    # and the encoder side: same luma as swscale (chroma filters differ slightly)
    g = rgb_to_yuv420(img, colorspace, color_range)
    assert np.abs(g.to_ndarray()[:64].astype(int) - f.to_ndarray()[:64]).max() <= 1


def test_round_trips_do_not_drift():
    img = pattern_frame(5, 96, 64)
    x = yuv420_to_rgb(rgb_to_yuv420(img, 1, 1))
    assert np.abs(x.astype(int) - img).mean() < 4  # one generation: 4:2:0 chroma loss only
    for _ in range(3):
        x = yuv420_to_rgb(rgb_to_yuv420(x, 1, 1))
    # chroma keeps softening as in any 4:2:0 chain, but brightness must not drift
    assert abs(x.astype(float).mean() - img.astype(float).mean()) < 0.3


def test_other_formats_take_the_swscale_path():
    img = pattern_frame(1, 96, 64)
    f10 = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p10le")
    odd = av.VideoFrame.from_ndarray(img[:63, :95].copy(), format="rgb24").reformat(format="yuv420p")
    assert not fast_path(f10) and not fast_path(odd)
    assert np.abs(frame_to_rgb(f10).astype(int) - img).mean() < 4
    assert frame_to_rgb(odd).shape == (63, 95, 3)


def test_encoder_side_resizes_contiguous_planes(monkeypatch):
    """Strided chroma views make OpenCV copy each plane first: the planes must come split."""
    import cv2

    import vderain.io.color as color
    seen = []

    class Spy:
        def __getattr__(self, name):
            return getattr(cv2, name)

        def resize(self, src, *a, **kw):
            seen.append(src.flags.c_contiguous)
            return cv2.resize(src, *a, **kw)

    monkeypatch.setattr(color, "cv2", Spy())
    img = pattern_frame(2, 96, 64)
    frame = rgb_to_yuv420(img, 1, 1)
    assert seen == [True, True]
    assert np.abs(yuv420_to_rgb(frame).astype(int) - img).mean() < 4
