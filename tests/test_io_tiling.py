"""Spatial tiling: seamless blending, convolution parity with enough overlap."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vderain.io import tiled_apply
from vderain.io.tiling import tile_starts


def _clips(h=75, w=101, t=3, b=2):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, t, 3, h, w, generator=g)


def _pointwise(clips):  # (B,T,3,h,w) -> (B,3,h,w), no spatial context
    return clips.mean(1) * 0.7 + clips[:, 0] ** 2 * 0.3


def _conv(clips):  # receptive radius 2: two 3x3 convolutions
    k = torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16
    k = k.expand(3, 1, 3, 3)
    x = clips.mean(1)
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3) - 0.1


def test_tile_starts_cover_the_frame():
    for size, tile, ov in [(100, 32, 8), (75, 40, 16), (64, 64, 8), (50, 80, 8), (257, 64, 32)]:
        starts = tile_starts(size, tile, ov)
        t = min(tile, size)
        assert starts[0] == 0 and starts[-1] + t == size
        assert all(b - a <= t - min(ov, t) for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("tile,overlap", [(32, 8), (40, 16), (48, 4), ((30, 50), 10)])
def test_pointwise_method_is_identical_when_tiled(tile, overlap):
    clips = _clips()
    torch.testing.assert_close(tiled_apply(_pointwise, clips, tile, overlap), _pointwise(clips),
                               atol=1e-6, rtol=0)


def test_conv_method_matches_with_enough_overlap():
    clips = _clips()
    full = _conv(clips)
    tiled = tiled_apply(_conv, clips, 32, overlap=16)  # margin 16 // 4 = 4 >= radius 2
    torch.testing.assert_close(tiled, full, atol=1e-5, rtol=0)


def test_no_overlap_shows_seams():
    clips = _clips(64, 96)  # tiles of 32 meet edge to edge: no overlap at all
    err = (tiled_apply(_conv, clips, 32, overlap=0) - _conv(clips)).abs().max()
    assert err > 1e-3  # the parity test above can fail: borders differ without overlap


def test_tile_bigger_than_frame_and_device_argument():
    clips = _clips(20, 30)
    out = tiled_apply(_pointwise, clips, 256, 32, device="cpu")
    torch.testing.assert_close(out, _pointwise(clips))


@pytest.mark.parametrize("tile,overlap", [(8, -3), (0, 4), ((0, 16), 4), (8.5, 4), (True, 4), (16, 2.5)])
def test_bad_tile_or_overlap_is_refused(tile, overlap):
    """A negative overlap left gaps between the tiles whose pixels came out as NaN (garbage once
    converted to uint8); zero, fractional or boolean sizes crashed deep inside or did the same."""
    with pytest.raises(ValueError, match="tile"):
        tiled_apply(_pointwise, _clips(20, 30), tile, overlap)
