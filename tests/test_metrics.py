"""Metrics against hand-computed cases and independent references (vderain.metrics)."""
import math

import numpy as np
import pytest
import torch

from vderain import VderainError
from vderain.metrics import (FlowReference, ResourceMeter, SequenceScorer, flicker, psnr, psnr_frames,
                             rgb_to_y, ssim, tof, warping_error)
from vderain.metrics.flow import DISFlow, to_gray, warp
from vderain.metrics.temporal import farneback_flows
from vderain.metrics.toy import add_streaks, texture, translating


def gray_frame(v, h=32, w=40):
    return np.full((h, w, 3), v, np.uint8)


# ---------------------------------------------------------------- PSNR / Y

def test_psnr_of_a_known_error():
    a = gray_frame(128)
    checker = (np.indices(a.shape[:2]).sum(0) % 2 * 2 - 1)[..., None]       # +-1 everywhere
    b = (a.astype(int) + 5 * checker).astype(np.uint8)                       # MSE = 25 exactly
    assert psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 25), abs=1e-9)
    rng = np.random.default_rng(0)
    c = np.clip(128 + rng.normal(0, 10, (256, 256, 3)).round(), 0, 255).astype(np.uint8)
    ref = np.full_like(c, 128)
    assert psnr(ref, c) == pytest.approx(20 * math.log10(255 / 10), abs=0.1)  # sigma-10 noise: 28.13 dB


def test_identical_frames_are_capped_not_infinite():
    a = gray_frame(7)
    assert psnr(a, a) == 100.0 and psnr(a, a, "y") == 100.0


def test_matlab_y_values():
    # Hand-computed: 16 + (65.481 R + 128.553 G + 24.966 B) / 255, rounded.
    rgb = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]],
                   np.uint8)
    np.testing.assert_array_equal(rgb_to_y(rgb), [16, 235, 81, 145, 41, 126])
    rng = np.random.default_rng(1)
    px = rng.integers(0, 256, (5000, 3), dtype=np.uint8)
    y = 16 + px.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255
    far = np.abs(y - np.floor(y) - 0.5) > 1e-6                               # away from .5 ties
    np.testing.assert_array_equal(rgb_to_y(px)[far], np.floor(y + 0.5)[far])


def test_psnr_y_of_uniform_grays():
    a, b = gray_frame(100), gray_frame(110)                    # Y = 102 and 110 (219/255 scaling, rounded)
    assert rgb_to_y(a)[0, 0] == 102 and rgb_to_y(b)[0, 0] == 110
    assert psnr(a, b, "y") == pytest.approx(10 * math.log10(255 ** 2 / 64))
    assert psnr(a, b, "rgb") == pytest.approx(10 * math.log10(255 ** 2 / 100))


def test_border_crop_and_per_frame():
    a = np.stack([gray_frame(50), gray_frame(60)])
    b = a.copy()
    b[:, :3] = 0                                               # damage only the top 3 rows
    assert (psnr_frames(a, b, border=3) == 100).all()
    assert (psnr_frames(a, b) < 40).all()
    assert psnr_frames(a, b).shape == (2,)
    with pytest.raises(VderainError):
        psnr(a[0], a[0, :10])


# ---------------------------------------------------------------- SSIM

def test_ssim_identical_and_constant_images():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, img, "y") == pytest.approx(1.0, abs=1e-12)
    # Flat images: variances vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    c1 = (0.01 * 255) ** 2
    want = (2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1)
    assert ssim(gray_frame(100), gray_frame(120)) == pytest.approx(want, abs=1e-9)


def test_ssim_matches_kornia():
    import kornia
    rng = np.random.default_rng(3)
    a = (texture(48, 64, rng) + 0.5).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    ta = torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].double() / 255
    want = kornia.metrics.ssim(ta, tb, 11, max_val=1.0, padding="valid").mean().item()  # channel mean
    assert ssim(a, b) == pytest.approx(want, abs=1e-6)
    assert 0.3 < want < 0.99                                   # a real, non-trivial case


def test_ssim_falls_with_noise():
    rng = np.random.default_rng(4)
    a = (texture(48, 64, rng) + 0.5).astype(np.uint8)
    vals = [ssim(a, np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8), "y") for s in (2, 8, 30)]
    assert vals[0] > vals[1] > vals[2]


# ---------------------------------------------------------------- flow, warping error

def test_dis_recovers_a_known_translation_and_warp_undoes_it():
    seq = translating(2, 64, 80, speed=(2.0, 1.0), seed=5)
    f = DISFlow("medium")(to_gray(seq[0]), to_gray(seq[1]))
    assert np.median(f[..., 0]) == pytest.approx(2.0, abs=0.1)
    assert np.median(f[..., 1]) == pytest.approx(1.0, abs=0.1)
    known = np.zeros((64, 80, 2), np.float32) + np.float32([2.0, 1.0])
    back = warp(seq[1].astype(np.float32), known)
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(back[inner] - seq[0][inner]).mean() < 1.0   # bilinear of a bilinear shift: ~ 0


def test_warping_error_near_zero_for_translation_and_higher_with_flicker():
    clean = translating(6, 64, 80, speed=(1.5, 0.5), seed=6)
    ref = FlowReference(clean, "medium", source="ground truth")
    assert np.mean([v.mean() for v in ref.valid]) > 0.8        # few pixels are occluded
    e_clean = warping_error(clean, ref)
    assert e_clean.shape == (5,) and e_clean.max() < 2e-4
    jitter = np.array([0, 10, -10, 10, -10, 10])[:, None, None, None]
    flick = np.clip(clean.astype(int) + jitter, 0, 255).astype(np.uint8)
    e_flick = warping_error(flick, ref)
    # a +-10 level brightness swing between frames: squared error (20/255)^2 = 6.2e-3
    assert e_flick.mean() == pytest.approx((20 / 255) ** 2, rel=0.25)
    assert (e_flick > 10 * e_clean).all()


def test_occluded_pixels_are_masked():
    # A textured square moves 6 px right over a still background: the background strip it
    # covers has no match in frame 1, and the square's outline is a motion boundary.
    bg, obj = translating(1, 64, 96, seed=7)[0], translating(1, 64, 96, seed=8)[0]
    seq = np.stack([bg, bg])
    seq[0, 20:44, 30:54] = obj[20:44, 30:54]
    seq[1, 20:44, 36:60] = obj[20:44, 30:54]
    valid = FlowReference(seq, "medium").valid[0]
    assert valid[20:44, 54:60].mean() < 0.2                   # covered strip: occluded
    assert valid[20:44, 28:32].mean() < 0.2                   # trailing edge: motion boundary
    assert valid[:, :16].mean() > 0.95 and valid[24:40, 38:48].mean() > 0.9
    ref = FlowReference(seq, "medium")
    err = warping_error(seq, ref)[0]
    unmasked = np.mean(((seq[0] - warp(seq[1].astype(np.float32), ref.flow(0))) / 255) ** 2)
    assert err < 1e-3 and unmasked > 5 * err                   # the mask hides the mismatches


# ---------------------------------------------------------------- tOF, flicker

def test_tof_zero_for_truth_and_speed_for_a_frozen_output():
    gt = translating(5, 64, 80, speed=(1.3, 0.6), seed=9)
    gt_flows = farneback_flows(gt)
    assert tof(gt, gt_flows).max() == 0.0
    frozen = np.repeat(gt[:1], 5, axis=0)                      # its flow is 0; the truth moves 1.43 px
    assert tof(frozen, gt_flows).mean() == pytest.approx(math.hypot(1.3, 0.6), abs=0.2)


def test_flicker_zero_when_still_and_measures_brightness_swings():
    still = np.repeat(translating(1, 64, 80, seed=10), 5, axis=0)
    rainy = add_streaks(still, seed=11)
    ref = FlowReference(rainy, "medium", rain_robust=True, source="input")
    assert np.mean([ref.static(t).mean() for t in range(4)]) > 0.9
    assert (flicker(still, ref) == 0).all()
    swing = np.clip(still.astype(int) + np.array([0, 6, 0, 6, 0])[:, None, None, None], 0, 255).astype(np.uint8)
    y = rgb_to_y(swing).astype(int)
    want = np.abs(np.diff(y, axis=0)).mean(axis=(1, 2))        # every pixel is static here
    np.testing.assert_allclose(flicker(swing, ref), want, atol=0.05)
    assert flicker(rainy, ref).mean() > 1.0                    # streaks come and go


def test_flicker_undefined_when_nothing_is_static():
    moving = translating(4, 64, 80, speed=(3.0, 0.0), seed=12)
    ref = FlowReference(moving, "medium", rain_robust=True, source="input")
    assert np.isnan(flicker(moving, ref)).all()


# ---------------------------------------------------------------- whole-sequence scoring

def test_sequence_scorer_paired():
    clean = np.repeat(translating(1, 48, 64, seed=13), 6, axis=0)
    rainy = add_streaks(clean, seed=14)
    sc = SequenceScorer(rainy, clean, skip=1, flow_preset="fast")
    assert sc.protocol["frames_scored"] == 4 and "ground truth" in sc.protocol["warp_flow"]
    perfect, identity = sc.score(clean), sc.score(rainy)
    assert perfect["mean"]["psnr_y"] == 100 and perfect["mean"]["ssim_rgb"] == pytest.approx(1)
    assert perfect["mean"]["ewarp_gap"] == pytest.approx(0, abs=1e-12)
    assert perfect["mean"]["flicker_ratio"] == 0 and identity["mean"]["flicker_ratio"] == pytest.approx(1)
    assert identity["mean"]["psnr_rgb"] < 35 and identity["mean"]["ewarp_gap"] > 0
    assert len(identity["per_frame"]["psnr_y"]) == 4 and len(identity["per_frame"]["ewarp"]) == 3
    np.testing.assert_allclose(np.array(identity["per_frame"]["ewarp"]) - sc.gt_ewarp,
                               identity["per_frame"]["ewarp_gap"])
    with pytest.raises(VderainError):
        sc.score(clean[:5])
    with pytest.raises(VderainError):
        sc.score(clean[:, :40])


def test_sequence_scorer_without_ground_truth():
    still = np.repeat(translating(1, 48, 64, seed=15), 5, axis=0)
    rainy = add_streaks(still, seed=16)
    sc = SequenceScorer(rainy, None, flow_preset="fast")
    res = sc.score(still)
    assert set(res["mean"]) == {"ewarp", "flicker", "flicker_ratio"}
    assert "input" in sc.protocol["warp_flow"] and res["mean"]["flicker"] == 0


def test_resource_meter_sees_an_allocation():
    with ResourceMeter("cpu") as meter:
        block = np.ones(64 * 2 ** 20 // 8)                     # 64 MiB, touched
        block.sum()
        import time
        time.sleep(0.05)
    r = meter.result(frames=10)
    assert r["rss_increase_mb"] > 40
    assert r["fps"] == pytest.approx(10 / r["seconds"]) and r["device"] == "cpu" and r["threads"] >= 1


# ---------------------------------------------------------------- frames the metrics cannot take

def test_frames_too_small_for_the_metrics_are_an_error_not_a_crash():
    # OpenCV's DIS raises on 8x8 frames (and segfaults on some thin ones such as 12x50):
    # the reference flow refuses them with a VderainError before calling it.
    tiny = translating(3, 8, 8, seed=17)
    with pytest.raises(VderainError, match="too small for the reference optical flow"):
        FlowReference(tiny, "medium")
    with pytest.raises(VderainError, match="8x8 px"):
        SequenceScorer(tiny, None)
    # SSIM's 11x11 window: said when the scorer is built, not once per method scored
    flat = translating(1, 10, 40, seed=18)
    with pytest.raises(VderainError, match="40x10 px .* too small for SSIM"):
        SequenceScorer(flat, flat)
    # no ground truth and one frame: no metric is defined at all
    with pytest.raises(VderainError, match="nothing to score"):
        SequenceScorer(translating(1, 48, 64, seed=19), None)
    # the border crop's message says width x height, as every other message does
    with pytest.raises(VderainError, match="nothing of 40x32 frames"):
        psnr(gray_frame(1), gray_frame(1), border=16)
