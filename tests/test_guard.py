"""STRNet's `guard` option: the rain layer may change a region's mean only as far as the window flickers."""
import pytest
import torch
import torch.nn.functional as F

from vderain.models import STRNet, STRNetConfig
from vderain.models.strnet import transient_guard

CFG = dict(frames=3, target=1, scale=2, channels=8, enc_blocks=1, body_blocks=1, dec_blocks=1)


def _offset_net(guard, offset=0.3):
    """Random weights plus a flat offset in R: the measured pitfall (a global tone shift)."""
    net = STRNet(STRNetConfig(**CFG, guard=guard))
    g = torch.Generator().manual_seed(0)
    for p in net.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.05
    torch.nn.init.constant_(net.tail.bias, offset)
    return net


@pytest.mark.parametrize("size", [(70, 100), (64, 64)])
def test_a_still_window_gets_no_low_frequency_change(size):
    frame = torch.rand(1, 1, 3, *size, generator=torch.Generator().manual_seed(1))
    still = frame.expand(2, 3, 3, *size).contiguous()                   # nothing flickers
    unguarded, guarded = _offset_net(0), _offset_net(8)
    guarded.load_state_dict(unguarded.state_dict())
    assert F.avg_pool2d(unguarded.rain_layer(still), 8).abs().min() > 0.2
    r = guarded.rain_layer(still)
    assert r.shape == (2, 3, *size)
    assert F.avg_pool2d(r[..., :64, :64], 8).abs().max() < 0.02          # the offset is gone
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.avg_pool2d(guarded.rain_layer(still).float()[..., :64, :64], 8).abs().max() < 0.03


def test_transient_rain_passes_and_over_removal_is_cut_to_it():
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(1, 1, 3, 48, 64, generator=g).expand(1, 3, 3, 48, 64)
    rain = torch.zeros(1, 3, 3, 48, 64)
    rain[0, 1, :, 10:30:3, 20:40] = 0.5                                  # streaks in the target only
    window = (clean + rain).clamp(0, 1)
    true_r = window[:, 1] - clean[:, 1]
    guard = lambda r: transient_guard(r, window[:, 1], window.amin(1), window.amax(1), 8)
    assert torch.allclose(guard(true_r), true_r, atol=1e-6)  # the right answer stays
    doubled = guard(2 * true_r + 0.1)            # twice the rain plus a veil
    cells, allowed = F.avg_pool2d(doubled, 8), F.avg_pool2d(true_r, 8)
    assert (cells - allowed).abs().max() < 0.03                          # cut back to what flickered
    hp = lambda t: t - F.interpolate(F.avg_pool2d(t, 8), scale_factor=8, mode="bilinear")
    assert (hp(doubled) - hp(2 * true_r)).abs().mean() < 0.02              # streak detail kept


def test_with_a_veil_the_persistent_change_is_only_the_bounded_veil():
    net = _offset_net(4)
    veiled = STRNet(STRNetConfig(**CFG, guard=4, veil=0.1))
    veiled.load_state_dict(net.state_dict(), strict=False)
    still = torch.rand(1, 1, 3, 40, 56, generator=torch.Generator().manual_seed(3)).expand(1, 3, 3, 40, 56)
    assert F.avg_pool2d(veiled.rain_layer(still), 8).abs().max() < 0.02  # veil head at zero
    torch.nn.init.constant_(veiled.veil_head.bias, 10.0)                # saturated: +veil everywhere
    cells = F.avg_pool2d(veiled.rain_layer(still), 8)
    assert cells.min() > 0.08 and cells.max() < 0.12


def test_the_per_pixel_guard_bounds_every_pixel_by_its_own_flicker():
    """guard: 1 (shipped since stage 9) takes a shortcut past the pooling; it must equal the cell
    formula at cell 1: x_t - max_T x <= R <= x_t - min_T x at every pixel, R kept where inside."""
    g = torch.Generator().manual_seed(3)
    window = torch.rand(2, 5, 3, 23, 31, generator=g)
    frame, low, high = window[:, 2], window.amin(1), window.amax(1)
    r = torch.randn(2, 3, 23, 31, generator=g) * 0.5
    out = transient_guard(r, frame, low, high, 1)
    assert (out <= frame - low + 1e-6).all() and (out >= frame - high - 1e-6).all()
    inside = (r <= frame - low) & (r >= frame - high)
    assert inside.float().mean() > 0.2 and torch.equal(out[inside], r[inside])
    by_cells = r + (torch.clamp(F.avg_pool2d(r, 1), frame - high, frame - low) - r)
    assert torch.allclose(out, by_cells, atol=1e-6)
