"""Training losses on hand-made cases: each must be ~0 for the right answer and grow for a wrong one."""
import pytest
import torch

from vderain.metrics.flow import DISFlow
from vderain.synth.scenes import procedural_clip
from vderain.train import losses as L


def moving_pair(shift=3):
    clip = procedural_clip(2, 96, 128, seed=5, motion="static")   # (2,3,H,W)
    prev = clip[0:1]
    cur = torch.roll(prev, shifts=shift, dims=-1)                  # the scene pans right
    return prev, cur


def test_warped_temporal_is_small_for_the_clean_video_and_large_for_flicker():
    prev, cur = moving_pair()
    flow = L.clean_flow(cur, prev, DISFlow("medium"))
    assert abs(float(flow[0, 20:-20, 20:-20, 0].median()) + 3) < 0.5   # cur(x) = prev(x - 3)
    clean = float(L.warped_temporal(prev, cur, prev, cur, flow))
    g = torch.Generator().manual_seed(0)
    flicker = lambda x: x + 0.1 * torch.randn(x.shape, generator=g)   # a new pattern every frame
    flickering = float(L.warped_temporal(flicker(prev), flicker(cur), prev, cur, flow))
    assert clean < 0.01 and flickering > 5 * clean
    # the static-scene loss would call the pan itself flicker; the warped one does not
    unwarped = float(L.warped_temporal(prev, cur, prev, cur, torch.zeros_like(flow), alpha=0.0))
    assert unwarped > 3 * clean


def test_warped_temporal_masks_what_the_flow_cannot_explain():
    prev, cur = moving_pair()
    flow = L.clean_flow(cur, prev, DISFlow("medium"))
    occluded = cur.clone()
    occluded[..., 30:60, 40:80] = 1.0              # something appears in frame t only
    out_cur = occluded                              # the output shows it, as it should
    masked = float(L.warped_temporal(prev, out_cur, prev, occluded, flow))
    unmasked = float(L.warped_temporal(prev, out_cur, prev, occluded, flow, alpha=0.0))
    assert masked < 0.5 * unmasked


def test_warped_temporal_has_gradients_for_both_outputs():
    prev, cur = moving_pair()
    flow = L.clean_flow(cur, prev, DISFlow("ultrafast"))
    o_prev = (prev + 0.05).requires_grad_()
    o_cur = cur.clone().requires_grad_()
    L.warped_temporal(o_prev, o_cur, prev, cur, flow).backward()
    assert o_prev.grad.abs().sum() > 0 and o_cur.grad.abs().sum() > 0


def test_temporal_difference_is_zero_for_a_constant_error_only():
    prev, cur = moving_pair()
    assert float(L.temporal_difference(prev + 0.1, cur + 0.1, prev, cur)) < 2e-3   # charbonnier eps
    assert float(L.temporal_difference(prev + 0.1, cur, prev, cur)) > 0.09


def test_untouched_l1_weighs_the_output_error_away_from_the_streaks_of_rainy_clips_only():
    from vderain.train.losses import untouched_l1
    clean = torch.full((2, 3, 8, 8), 0.5)
    streak = torch.zeros(2, 1, 8, 8)
    streak[:, :, :4] = 0.6                                 # streaks over the top half
    out = clean.clone().requires_grad_(True)
    with torch.no_grad():
        out[:, :, :4] += 0.3                               # errors under the streaks are not its business
    rain_free = torch.tensor([0.0, 1.0])
    assert float(untouched_l1(out, clean, streak, rain_free).detach()) == 0.0
    with torch.no_grad():
        out[:, :, 4:] += 0.1                               # around them they cost the mean error
    loss = untouched_l1(out, clean, streak, rain_free)
    assert abs(float(loss.detach()) - 0.1) < 1e-6
    loss.backward()
    assert out.grad[:, :, :4].abs().sum() == 0 and out.grad[1].abs().sum() == 0   # nor the rain-free clip
    assert out.grad[0, :, 4:].abs().sum() > 0


def test_log_mse_is_minus_the_psnr_of_the_rainy_clips_and_weighs_them_by_relative_error():
    from vderain.train.losses import log_mse
    clean = torch.full((3, 3, 16, 16), 0.5)
    out = clean.clone()
    out[0] += 0.1                       # heavy error: MSE 1e-2, 20 dB
    out[1] += 0.01                      # drizzle-sized error: MSE 1e-4, 40 dB
    out[2] += 0.3                       # a rain-free clip: not counted here (norain's job)
    out.requires_grad_(True)
    loss = log_mse(out, clean, torch.tensor([0.0, 0.0, 1.0]), floor=0.0)
    assert loss.item() == pytest.approx(-(20 + 40) / 2, abs=1e-3)
    loss.backward()
    g = out.grad.abs().flatten(1).mean(1)
    assert g[2] == 0
    # the same gradient per unit of *relative* error: the small error pulls 10x harder per pixel
    assert (g[1] / g[0]).item() == pytest.approx(10.0, rel=1e-3)
