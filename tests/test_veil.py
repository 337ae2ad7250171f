"""STRNet's `veil` option: low frequencies reach the rain layer only through a bounded, smooth veil."""
import pytest
import torch
import torch.nn.functional as F

from vderain.models import STRNet, STRNetConfig

CFG = dict(frames=3, target=1, scale=2, channels=8, enc_blocks=1, body_blocks=1, dec_blocks=1)


def _pair(veil=0.1, offset=0.5):
    """A network whose head adds a flat `offset` to R (the measured pitfall: a global tone
    shift), and the same weights with a veil head."""
    plain, veiled = STRNet(STRNetConfig(**CFG)), STRNet(STRNetConfig(**CFG, veil=veil))
    g = torch.Generator().manual_seed(0)
    for p in plain.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.05
    torch.nn.init.constant_(plain.tail.bias, offset)
    missing, unexpected = veiled.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("veil_head.") for k in missing)
    return plain, veiled


@pytest.mark.parametrize("size", [(70, 100), (64, 64)])
def test_a_flat_offset_is_replaced_by_the_veil_and_the_veil_is_bounded(size):
    plain, veiled = _pair(veil=0.1)
    x = torch.rand(2, 3, 3, *size, generator=torch.Generator().manual_seed(1))
    r_plain = plain.rain_layer(x)
    assert F.avg_pool2d(r_plain, 16).abs().min() > 0.4                   # the offset is there
    r = veiled.rain_layer(x)                                             # veil head at zero
    assert r.shape == r_plain.shape
    assert F.avg_pool2d(r, 16).abs().max() < 0.01                        # offset removed
    # streak-scale detail untouched
    hp = lambda t: t - t.mean((-2, -1), keepdim=True)
    assert torch.allclose(hp(r).abs().mean(), hp(r_plain).abs().mean(), rtol=0.05)
    torch.nn.init.constant_(veiled.veil_head.bias, -10.0)               # saturated: -veil everywhere
    cells = F.avg_pool2d(veiled.rain_layer(x), 16)
    assert cells.max() < -0.09 and cells.min() > -0.11


# the guard has no weights and the heads start at zero: a warm start may add any of them
@pytest.mark.parametrize("extra", [dict(veil=0.2), dict(veil=0.2, guard=4), dict(dehaze=0.5, guard=4)])
def test_new_heads_train_and_old_weights_warm_start_into_them(tmp_path, extra):
    from vderain.train.checkpoint import export_weights
    from vderain.train.config import TrainConfig
    from vderain.train.loop import _warm_start
    plain, _ = _pair()
    export_weights(plain, tmp_path / "old.pt")
    cfg = TrainConfig()
    cfg.model = STRNetConfig(**CFG, **extra)
    cfg.init = str(tmp_path / "old.pt")
    model = STRNet(cfg.model)
    head = model.veil_head if "veil" in extra else model.haze.out
    fresh = head.bias.detach().clone()
    _warm_start(model, cfg, load=True)
    assert torch.equal(model.tail.bias, plain.tail.bias) and torch.equal(head.bias, fresh)
    model.rain_layer(torch.rand(1, 3, 3, 32, 32)).mean().backward()
    assert head.weight.grad.abs().sum() > 0
    cfg.model = STRNetConfig(**{**CFG, "channels": 4}, **extra)         # a different network: refused
    with pytest.raises(Exception):
        _warm_start(STRNet(cfg.model), cfg, load=True)
