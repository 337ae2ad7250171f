"""The motion-compensated temporal median baseline (vderain.methods.median)."""
import numpy as np
import pytest
import torch

from vderain import VderainError
from vderain.methods import get_method
from vderain.methods.median import TemporalMedian, camera_motion, median_of
from vderain.metrics.toy import add_streaks, falling_streaks, translating


def psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2))


def to_clip(frames):  # (T,H,W,3) uint8 -> (1,T,3,H,W) float
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[None]


def to_img(out):  # (3,H,W) float -> (H,W,3) uint8
    return (out.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def slide(method, frames):
    """Targets 2..T-3 of a clip, one window per call as the pipeline does."""
    w, t0 = method.window, method.target
    return {t: to_img(method(to_clip(frames[t - t0:t - t0 + w]))[0]) for t in range(t0, len(frames) - w + t0 + 1)}


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8])
def test_median_of_matches_numpy(n):
    rng = np.random.default_rng(n)
    stack = [rng.integers(0, 256, (9, 7, 3), dtype=np.uint8) for _ in range(n)]
    want = np.floor(np.median(np.stack(stack).astype(np.float64), axis=0) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(median_of(stack), want)


def test_removes_streaks_on_translating_texture():
    clean = translating(10, 72, 96, speed=(1.3, 0.6), seed=0)
    rainy = add_streaks(clean, seed=3)
    outs = slide(TemporalMedian(window=5), rainy)
    gain = [psnr(o, clean[t]) - psnr(rainy[t], clean[t]) for t, o in outs.items()]
    assert min(gain) > 6.0, gain             # measured ~ +12 dB


def test_motion_compensation_beats_plain_median():
    clean = translating(8, 72, 96, speed=(2.5, 1.0), seed=1)
    rainy = add_streaks(clean, seed=4)
    mc = slide(TemporalMedian(window=5), rainy)
    plain = slide(TemporalMedian(window=5, flow="none"), rainy)
    assert np.mean([psnr(mc[t], clean[t]) for t in mc]) > np.mean([psnr(plain[t], clean[t]) for t in plain]) + 2


def test_clean_clips_pass_nearly_unchanged():
    rng = np.random.default_rng(0)
    still = np.repeat(translating(1, 64, 80, seed=2), 7, axis=0).astype(np.int16)
    still = np.clip(still + rng.integers(-1, 2, still.shape), 0, 255).astype(np.uint8)  # sensor-like noise
    for t, out in slide(TemporalMedian(window=5), still).items():
        assert psnr(out, still[t]) > 40
    moving = translating(7, 64, 80, speed=(1.0, 0.5), seed=2)
    for t, out in slide(TemporalMedian(window=5), moving).items():
        assert psnr(out, moving[t]) > 35


def test_unreliable_flow_falls_back_to_target():
    # Two scene cuts: three of five frames come from another scene. Without the
    # consistency check they would outvote the target's own scene (plain rule, camera=False).
    a, b = translating(5, 72, 96, seed=0), translating(5, 72, 96, seed=5)
    clip = np.stack([b[0], a[1], a[2], b[3], b[4]])
    out = to_img(TemporalMedian(window=5, camera=False)(to_clip(clip))[0])
    plain = to_img(TemporalMedian(window=5, flow="none")(to_clip(clip))[0])
    assert psnr(out, a[2]) > 30
    assert psnr(plain, a[2]) < 25


def test_single_scene_cut_keeps_the_target_scene():
    # A real cut leaves at most two of five frames from the other scene: still a minority
    # even where the camera-motion candidate fills in for the failed flow.
    a, b = translating(5, 72, 96, speed=(1.0, 0.5), seed=0), translating(5, 72, 96, seed=5)
    for clip in (np.stack([a[0], a[1], a[2], b[3], b[4]]), np.stack([b[0], b[1], a[2], a[3], a[4]])):
        assert psnr(to_img(TemporalMedian(window=5)(to_clip(clip))[0]), a[2]) > 30


def test_camera_motion_rescues_flow_that_follows_the_rain():
    # Coherently falling streaks pull DIS towards the rain: the plain rule then keeps the
    # rainy target pixels; the camera-motion candidate still aligns the neighbours.
    clean = translating(9, 72, 96, speed=(0.0, 0.0), seed=3)
    rainy = falling_streaks(clean, n=40)
    cam = slide(TemporalMedian(window=5), rainy)
    plain = slide(TemporalMedian(window=5, camera=False), rainy)
    gain = lambda outs: np.mean([psnr(o, clean[t]) - psnr(rainy[t], clean[t]) for t, o in outs.items()])  # noqa
    assert gain(cam) > 2.5 and gain(cam) > gain(plain) + 2   # measured +4.0 vs +0.2 dB


def test_camera_motion_fit():
    flow = np.zeros((40, 50, 2), np.float32) + np.float32([2.5, -1.0])
    trusted = np.ones((40, 50), bool)
    trusted[:, :10] = False
    flow[:, :10] = 30                                          # garbage where not trusted
    np.testing.assert_allclose(camera_motion(flow, trusted), [[1, 0, 2.5], [0, 1, -1.0]], atol=1e-3)
    np.testing.assert_array_equal(camera_motion(flow, np.zeros_like(trusted)), [[1, 0, 0], [0, 1, 0]])


def test_interface_batch_and_attributes():
    m = get_method("median", device="cpu")
    assert isinstance(m, TemporalMedian)
    assert (m.name, m.window, m.target, m.tileable) == ("median", 5, 2, False)
    assert TemporalMedian(window=3).target == 1
    frames = add_streaks(translating(5, 48, 64, seed=3))
    clips = torch.cat([to_clip(frames), to_clip(frames[::-1].copy())])      # (2,5,3,48,64)
    out = m(clips)
    assert out.shape == (2, 3, 48, 64) and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    # each batch item is restored on its own target frame
    assert psnr(to_img(out[0]), frames[2]) > 20 and psnr(to_img(out[1]), frames[2]) > 20


def test_flow_cache_computes_each_pair_once():
    m = TemporalMedian(window=5)
    calls = []
    real = m._dis
    m._dis = lambda g0, g1: calls.append(1) or real(g0, g1)
    frames = add_streaks(translating(9, 48, 64, seed=4))
    for t in range(4):
        calls.clear()
        m(to_clip(frames[t:t + 5]))
        first = len(calls) if t == 0 else first
    assert first == 8            # 4 neighbours x (forward + backward)
    assert len(calls) == 4       # steady state: only pairs with the newest frame are new


def test_bad_arguments():
    with pytest.raises(VderainError):
        TemporalMedian(flow="raft")
    with pytest.raises(VderainError):
        TemporalMedian(window=0)
    with pytest.raises(VderainError):
        TemporalMedian()(torch.zeros(1, 5, 1, 8, 8))
