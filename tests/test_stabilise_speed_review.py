"""The stabiliser's faster NumPy pieces give the same numbers as the plainer code they replaced
(the speed review: any change to the output, even of one level, is a behaviour change)."""
import cv2
import numpy as np
import pytest
import torch

from vderain.methods.stabilise import TemporalStabiliser, _abstain, _median


@pytest.mark.parametrize("n", [3, 4, 5])
def test_the_in_place_median_matches_the_networks_and_leaves_its_inputs(n):
    """Ties (small whole numbers) and random values; and the same as the networks on torch tensors
    (the GPU path's)."""
    rng = np.random.default_rng(n)
    for v in ([rng.integers(0, 4, (9, 11, 3)).astype(np.float32) for _ in range(n)],
              [rng.random((9, 11, 3), dtype=np.float32) * 255 for _ in range(n)]):
        keep = [x.copy() for x in v]
        want = np.median(np.stack(v), axis=0).astype(np.float32)
        assert np.array_equal(_median(v), want)
        assert np.array_equal(_median([torch.from_numpy(a) for a in v], torch.maximum, torch.minimum).numpy(), want)
        assert all(np.array_equal(a, b) for a, b in zip(v, keep))


def test_abstain_is_the_nanmedian_of_the_votes_left():
    rng = np.random.default_rng(0)
    h, w, n = 12, 17, 5
    votes = [rng.integers(0, 256, (h, w, 3)).astype(np.float32) for _ in range(n)]
    absent = [None] + [rng.random((h, w)) < p for p in (0.3, 0.6, 0.9)]
    med = _median(votes)
    got = med.copy()
    _abstain(got, votes, absent, votes[0])
    # the plain form: NaN where a vote is absent, the frame's own value again when an even count is left
    v = np.stack(votes)
    ab = np.stack([np.zeros((h, w), bool)] + [np.zeros((h, w), bool) if a is None else a for a in absent])
    v[ab] = np.nan
    even = (~ab).sum(0) % 2 == 0
    extra = np.where(even[..., None], votes[0], np.nan)
    want = np.where(ab[1:].any(0)[..., None], np.nanmedian(np.concatenate([v, extra[None]]), axis=0), med)
    assert np.array_equal(got, want.astype(np.float32))


def test_warp_of_a_box_and_of_a_strided_frame_match_planar_maps():
    """One two-channel map sliced from the whole frame's grid, as two planar maps of the box were."""
    rng = np.random.default_rng(1)
    h, w = 40, 56
    img = rng.integers(0, 256, (h, w, 3), np.uint8)
    flow = (rng.standard_normal((h, w, 2)) * 4).astype(np.float32)
    st = TemporalStabiliser()
    for origin, stride, f, src in (((5, 3), 1, flow[3:30, 5:50], img), ((0, 0), 4, flow[::4, ::4], img[..., 0]),
                                   ((0, 0), 1, np.zeros((h, w, 2), np.float32), img)):
        got, inside = st._warp(src, f, origin, stride)
        gx, gy = np.meshgrid(np.arange(origin[0], origin[0] + f.shape[1] * stride, stride, dtype=np.float32),
                             np.arange(origin[1], origin[1] + f.shape[0] * stride, stride, dtype=np.float32))
        mx, my = gx + f[..., 0], gy + f[..., 1]
        want = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        want_in = (mx >= -0.5) & (mx <= w - 0.5) & (my >= -0.5) & (my <= h - 0.5)
        assert np.array_equal(got, want)
        assert (inside is None and want_in.all()) or np.array_equal(inside, want_in)
    st.close()
