"""STRNet's `dehaze` option: the persistent part of R as a smooth haze y = x t + A (1 - t), inverted."""
import math

import torch

from vderain.models import STRNet, STRNetConfig

CFG = dict(frames=3, target=1, scale=2, channels=8, enc_blocks=1, body_blocks=1, dec_blocks=1, guard=4)


def _hazy(tau=0.3, air=(0.7, 0.72, 0.75), size=(36, 52), seed=0):
    """A still clip (no streaks) under uniform haze, and its clean frame."""
    clean = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1
    t = math.exp(-tau)
    a = torch.tensor(air).view(1, 3, 1, 1)
    hazy = clean * t + a * (1 - t)
    return hazy[:, None].expand(1, 3, 3, *size).contiguous(), clean


def test_no_haze_at_init_and_exact_inversion_with_the_true_parameters():
    net = STRNet(STRNetConfig(**CFG, dehaze=0.5))
    clip, clean = _hazy()
    assert net.rain_layer(clip).abs().max() < 0.002                   # ~nothing removed at init
    logit = lambda p: math.log(p / (1 - p)) / net.HAZE_GAIN
    with torch.no_grad():                                             # tell it the haze: tau 0.3, A
        net.dehaze_head[-1].bias[:3] = logit(0.3 / 0.5)
        net.dehaze_head[-1].bias[3:] = torch.tensor([logit(v) for v in (0.7, 0.72, 0.75)])
    out = clip[:, 1] - net.rain_layer(clip)
    assert (out - clean).abs().max() < 1e-4                           # contrast restored, not offset
    with torch.no_grad():
        net.dehaze_head[-1].bias[:3] = 3.0                                 # saturated: tau = dehaze
    r = net.rain_layer(clip)
    bound = (1 - clip[:, 1]).abs().clamp(min=clip[:, 1]) * math.expm1(0.5)
    assert (r.abs() <= bound + 1e-5).all()


def test_the_haze_head_learns_a_haze_from_scratch():
    torch.manual_seed(0)
    net = STRNet(STRNetConfig(**CFG, dehaze=0.6))
    opt = torch.optim.Adam(net.dehaze_head.parameters(), lr=0.003)
    clips = [_hazy(seed=s) for s in range(4)]
    err = lambda: sum((c[:, 1] - net.rain_layer(c) - x).abs().mean() for c, x in clips) / len(clips)
    before = float(err())
    for _ in range(150):
        opt.zero_grad()
        err().backward()
        opt.step()
    assert float(err()) < 0.25 * before
