import pickle

import pytest
import torch

from vderain import VderainError
from vderain.models import STRNet, STRNetConfig
from vderain.train.checkpoint import export_weights, load_weights

SMALL = dict(frames=3, target=1, scale=2, channels=8, enc_blocks=1, body_blocks=1, dec_blocks=1)


def _randomise(model, std=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.data = torch.randn(p.shape, generator=g) * std
    return model


@pytest.mark.parametrize("h,w", [(32, 32), (37, 50), (9, 13)])
def test_any_size_and_shapes(h, w):
    model = _randomise(STRNet(STRNetConfig(**SMALL)))
    clip = torch.rand(2, 3, 3, h, w)
    out, rain = model(clip)
    assert out.shape == rain.shape == (2, 3, h, w)
    assert out.min() >= 0 and out.max() <= 1
    # task-level residual: output is the target frame minus the predicted layer (clamped)
    assert torch.allclose(out, (clip[:, 1] - rain).clamp(0, 1), atol=1e-6)


def test_untrained_network_is_identity():
    model = STRNet(STRNetConfig(**SMALL))
    clip = torch.rand(1, 3, 3, 24, 40)
    out, rain = model(clip)
    assert rain.abs().max() == 0
    assert torch.equal(out, clip[:, 1])


def test_added_residual_blocks_start_as_identity():
    """Feature-level residual: a fresh block passes its input through unchanged."""
    from vderain.models.strnet import ResBlock
    block = ResBlock(8)
    x = torch.randn(1, 8, 10, 10)
    assert torch.equal(block(x), x)


def test_output_depends_on_neighbours_only_through_window():
    """Changing a neighbour frame changes the result: the window is used, not only the target."""
    model = _randomise(STRNet(STRNetConfig(**{**SMALL, "target": 2})))
    clip = torch.rand(1, 3, 3, 16, 16)
    base = model(clip)[0]
    other = clip.clone()
    other[:, 0] = torch.rand(3, 16, 16)
    assert not torch.allclose(model(other)[0], base)


def test_padding_has_no_border_seam():
    """A size that needs padding gives the same interior as the unpadded crop's neighbourhood allows."""
    model = _randomise(STRNet(STRNetConfig(**SMALL)))
    clip = torch.rand(1, 3, 3, 32, 32)
    full = model(clip)[0]
    cropped = model(clip[..., :31, :31])[0]
    # only pixels near the new border may differ (receptive field reaches the padding)
    assert torch.allclose(full[..., :16, :16], cropped[..., :16, :16], atol=1e-5)


def test_bad_target_rejected():
    with pytest.raises(ValueError):
        STRNet(STRNetConfig(frames=3, target=3))


def test_weights_roundtrip_weights_only(tmp_path):
    model = _randomise(STRNet(STRNetConfig(**SMALL)))
    path = tmp_path / "w.pt"
    export_weights(model, path, meta={"steps": 3})
    blob = torch.load(path, weights_only=True)  # must not need pickle of arbitrary objects
    assert blob["config"]["channels"] == 8
    loaded, meta = load_weights(path)
    assert meta["steps"] == 3
    clip = torch.rand(1, 3, 3, 16, 16)
    # fp16 storage: outputs agree to fp16 precision
    assert torch.allclose(loaded(clip)[0], model(clip)[0], atol=2e-3)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_malicious_checkpoint_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "vderain.strnet/1", "x": _Evil()}, f)
    with pytest.raises(VderainError):
        load_weights(path)


def test_missing_weights_clear_error(tmp_path):
    from vderain.methods import get_method
    with pytest.raises(VderainError, match="not found"):
        get_method(str(tmp_path / "nope.pt"), device="cpu")


def test_unknown_device_is_a_clear_error():
    from vderain.methods import get_method
    with pytest.raises(VderainError, match="unknown device 'gpu'"):
        get_method("identity", device="gpu")


def test_frames_and_statistics_fuse_as_one_conv_over_their_concatenation():
    # rain_layer runs the patch conv on the frames and on the min / mean / max separately (no
    # concatenated copy of the window); the weights were trained as one conv over
    # [frames, min, mean, max], and that is what the stem must receive
    torch.manual_seed(0)
    cfg = STRNetConfig(frames=5, target=2, scale=2, channels=8, enc_blocks=1, body_blocks=1, dec_blocks=1,
                       temporal_stats=True)
    net = STRNet(cfg).eval()
    seen = []
    net.stem.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    x = torch.rand(2, 5, 3, 16, 24)
    with torch.no_grad():
        net.rain_layer(x)
        window = torch.cat([x, x.amin(1, keepdim=True), x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        expected = torch.nn.functional.leaky_relu(net.fuse(window.flatten(1, 2)), 0.1)
    assert seen[0].shape == expected.shape == (2, 8, 8, 12)
    assert torch.allclose(seen[0], expected, atol=1e-6)


@pytest.mark.parametrize("dehaze", [0.0, 1.5])
def test_retargeted_network_restores_the_same_frame_from_a_shifted_window(dehaze):
    # a centred network (target 2 of 5) retargeted to a causal window (target 3): each frame slot
    # keeps the weights of its offset from the target, and the far past frame takes the far
    # future one's. Shown the same frames in those roles, it must compute the same rain layer:
    # the window's statistics, the guard and the haze estimate do not depend on frame order
    from vderain.models.strnet import retarget_fuse
    cfg = STRNetConfig(frames=5, target=2, scale=2, channels=8, enc_blocks=1, body_blocks=1, dec_blocks=1,
                       guard=1, dehaze=dehaze)
    centred = _randomise(STRNet(cfg)).eval()
    causal = STRNet(cfg, target=3).eval()
    state = centred.state_dict()
    causal.load_state_dict({**state, "fuse.weight": retarget_fuse(state["fuse.weight"], 5, 2, 3)})
    x = torch.rand(2, 5, 3, 16, 24)
    shifted = x[:, [4, 0, 1, 2, 3]]            # t+2 moved to the t-3 slot; t now at index 3
    with torch.no_grad():
        r_centred, r_causal = centred.rain_layer(x), causal.rain_layer(shifted)
    assert r_centred.abs().mean() > 1e-3       # a real rain layer, not an untrained zero
    assert torch.allclose(r_centred, r_causal, atol=1e-5)
    # and the plain causal order is a different input: the check above is not vacuous
    with torch.no_grad():
        assert not torch.allclose(causal.rain_layer(x), r_centred, atol=1e-3)


def test_retarget_keeps_offsets_and_rejects_a_target_outside_the_window():
    from vderain.models.strnet import retarget_fuse
    w = torch.arange(24.0).reshape(1, 24, 1, 1)            # 5 frames x RGB + 3 statistics x RGB
    slots = lambda t: t[0, :15, 0, 0].reshape(5, 3)[:, 0].long().div(3, rounding_mode="floor").tolist()
    assert slots(retarget_fuse(w, 5, 2, 3)) == [4, 0, 1, 2, 3]
    assert slots(retarget_fuse(w, 5, 2, 4)) == [4, 3, 0, 1, 2]
    assert slots(retarget_fuse(w, 5, 2, 2)) == [0, 1, 2, 3, 4]
    assert torch.equal(retarget_fuse(w, 5, 2, 3)[0, 15:], w[0, 15:])
    with pytest.raises(ValueError, match="outside"):
        retarget_fuse(w, 5, 2, 5)


@pytest.mark.parametrize("centred,causal", [("quality", "quality_causal"), ("fast", "fast_causal")])
def test_shipped_causal_twins_are_their_centred_networks_retargeted(centred, causal):
    # vderain/weights/README.md, stage 11: the live twins are zero-step retargets of the centred
    # files. A new centred file must be followed by the retarget commands, or this fails
    from vderain.methods.network import weights_path
    from vderain.models.strnet import retarget_fuse
    from vderain.train.checkpoint import read_weights
    cfg_c, state_c, _ = read_weights(weights_path(centred))
    cfg_l, state_l, meta = read_weights(weights_path(causal))
    assert (cfg_c.target, cfg_l.target, cfg_l.frames) == (2, 3, 5)
    expected = {**state_c, "fuse.weight": retarget_fuse(state_c["fuse.weight"], 5, 2, 3)}
    if cfg_l.dehaze == 0:
        expected = {k: v for k, v in expected.items() if not k.startswith("haze.")}
    assert expected.keys() == state_l.keys()
    for k, v in expected.items():
        assert torch.equal(v.half(), state_l[k].half()), k   # both stored in fp16
    assert meta["init"]["retargeted"] == {"from": 2, "to": 3}
