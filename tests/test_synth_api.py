"""Smoke tests of the training API: shapes, ranges, determinism, rain-free identity, sources."""
import numpy as np
import pytest
import torch

from vderain.synth import CleanClipSource, PRESETS, RainSynth
from vderain.synth.scenes import procedural_clip


def _batch(B=3, T=4, H=48, W=64, seed=0):
    return torch.stack([procedural_clip(T, H, W, seed=seed + i, motion=m)
                        for i, m in zip(range(B), ["pan", "static", "zoom", "forward"])])


@pytest.fixture(scope="module")
def clips():
    return _batch()


def test_procedural_clip_shape_range_and_determinism():
    a = procedural_clip(5, 40, 56, seed=3, motion="pan", stripes=True)
    b = procedural_clip(5, 40, 56, seed=3, motion="pan", stripes=True)
    c = procedural_clip(5, 40, 56, seed=4, motion="pan", stripes=True)
    assert a.shape == (5, 3, 40, 56) and a.dtype == torch.float32
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float((a[1:] - a[:-1]).abs().mean()) > 1e-3       # the camera moves
    s = procedural_clip(4, 40, 56, seed=3, motion="static")
    assert float((s[1:] - s[:-1]).abs().max()) < 1e-6        # static means static


@pytest.mark.parametrize("preset", ["train"] + list(PRESETS))
def test_outputs_shapes_ranges(clips, preset):
    out = RainSynth(preset)(clips, torch.Generator().manual_seed(1))
    B, T, _, H, W = clips.shape
    for k in ("rainy", "clean", "layer"):
        assert out[k].shape == (B, T, 3, H, W), k
    for k in ("streak_mask", "occlusion_mask"):
        assert out[k].shape == (B, T, 1, H, W), k
        assert 0 <= float(out[k].min()) and float(out[k].max()) <= 1
    assert 0 <= float(out["rainy"].min()) and float(out["rainy"].max()) <= 1
    assert 0 <= float(out["clean"].min()) and float(out["clean"].max()) <= 1
    assert torch.allclose(out["layer"], out["rainy"] - out["clean"])
    assert out["params"]["preset_id"].shape == (B,)


def test_same_seed_same_output_and_different_seed_differs(clips):
    s = RainSynth("train", dct_prob=0.5)
    a = s(clips, torch.Generator().manual_seed(7))
    b = RainSynth("train", dct_prob=0.5)(clips, torch.Generator().manual_seed(7))
    c = s(clips, torch.Generator().manual_seed(8))
    assert torch.equal(a["rainy"], b["rainy"]) and torch.equal(a["clean"], b["clean"])
    assert not torch.equal(a["rainy"], c["rainy"])


def test_rain_free_is_exact_identity(clips):
    out = RainSynth("norain", tone_aug=True, negatives_prob=1.0)(clips, torch.Generator().manual_seed(2))
    assert torch.equal(out["rainy"], out["clean"])
    assert float(out["layer"].abs().max()) == 0.0
    assert float(out["streak_mask"].max()) == 0.0
    assert bool(out["params"]["rain_free"].all())


def test_input_not_modified(clips):
    before = clips.clone()
    RainSynth("train", negatives_prob=1.0)(clips, torch.Generator().manual_seed(3))
    assert torch.equal(before, clips)


def test_rain_changes_frames(clips):
    out = RainSynth("heavy")(clips, torch.Generator().manual_seed(4))
    assert float(out["layer"].abs().mean()) > 0.01
    assert float(out["streak_mask"].mean()) > 0.01


def test_faint_scaling_scales_the_rain_layer_and_is_off_by_default(clips):
    # camera off: with it on, the faint draw would shift the noise stream (new noise in both clips)
    kw = dict(camera=False, tone_aug=False, negatives_prob=0.0, dct_prob=0.0)
    full = RainSynth("heavy", **kw)(clips, torch.Generator().manual_seed(6))
    faint = RainSynth("heavy", faint_prob=1.0, faint_scale=(0.25, 0.25), **kw)(clips, torch.Generator().manual_seed(6))
    assert torch.equal(faint["clean"], full["clean"])
    assert torch.allclose(faint["layer"], 0.25 * full["layer"], atol=2e-6)
    assert torch.allclose(faint["streak_mask"], 0.25 * full["streak_mask"])
    assert torch.allclose(1 - faint["transmission"], 0.25 * (1 - full["transmission"]), atol=1e-6)
    assert torch.equal(faint["params"]["faint_k"], torch.full((len(clips),), 0.25))
    # a share: rain-free clips are never scaled (k stays 1) and some rain clips keep k = 1
    mixed = RainSynth({"light": 0.5, "norain": 0.5}, faint_prob=0.5)(clips.repeat(8, 1, 1, 1, 1),
                                                                      torch.Generator().manual_seed(7))
    k, free = mixed["params"]["faint_k"], mixed["params"]["rain_free"]
    assert bool((k[free] == 1).all()) and bool(((k[~free] >= 0.1) & (k[~free] <= 0.6)).any())
    assert bool((k[~free] == 1).any())
    with pytest.raises(Exception, match="faint"):
        RainSynth("light", faint_prob=1.5)
    with pytest.raises(Exception, match="faint"):
        RainSynth("light", faint_prob=0.5, faint_scale=(0.5, 1.5))   # stronger than the preset: not faint


def test_faint_clips_can_drop_their_veil(clips):
    """faint_veil=False: a faint clip is its streaks over the clean scene, scaled; the veil's
    brightening is gone (it taught a network to subtract a faint layer from static scenes)."""
    kw = dict(camera=False, tone_aug=False, negatives_prob=0.0, dct_prob=0.0, faint_prob=1.0,
              faint_scale=(0.3, 0.3))
    run = lambda veil, keep: RainSynth("heavy", faint_veil=keep, overrides={"veil": veil}, **kw)(
        clips, torch.Generator().manual_seed(6))
    streaks_only = run(0.8, False)
    no_veil = run(0.0, True)
    with_veil = run(0.8, True)
    assert torch.allclose(streaks_only["layer"], no_veil["layer"], atol=2e-6)
    assert bool((streaks_only["transmission"] == 1).all())
    assert bool((streaks_only["params"]["veil"] == 0).all())
    assert float((with_veil["layer"] - streaks_only["layer"]).abs().mean()) > 1e-3
    # clips that are not faint keep their veil
    whole = RainSynth("heavy", faint_veil=False, overrides={"veil": 0.8}, **{**kw, "faint_prob": 0.0})(
        clips, torch.Generator().manual_seed(6))
    assert float((1 - whole["transmission"]).mean()) > 1e-3


def _write_video(path, frames, fps=25):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        st.options = {"crf": "18", "preset": "ultrafast"}
        for f in frames:
            for p in st.encode(__import__("av").VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)


def test_clean_clip_source_video_and_still(tmp_path):
    import cv2
    clip = (procedural_clip(12, 48, 64, seed=11, motion="pan") * 255).byte().permute(0, 2, 3, 1).numpy()
    _write_video(tmp_path / "a.mp4", np.ascontiguousarray(clip))
    cv2.imwrite(str(tmp_path / "still.png"), cv2.cvtColor(clip[0], cv2.COLOR_RGB2BGR))
    (tmp_path / "frames").mkdir()
    for i, f in enumerate(clip[:8]):
        cv2.imwrite(str(tmp_path / "frames" / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    src = CleanClipSource([str(tmp_path / "a.mp4"), str(tmp_path / "still.png"), str(tmp_path / "frames")],
                          frames=4, size=32, max_short_side=40)
    assert min(c.shape[-2] for c in src.clips) <= 40
    a = src.sample(6, torch.Generator().manual_seed(0))
    b = src.sample(6, torch.Generator().manual_seed(0))
    assert a.shape == (6, 4, 3, 32, 32) and a.dtype == torch.float32
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert src.last_fps.shape == (6,)
    motions = set()
    for s in range(10):
        src.sample(8, torch.Generator().manual_seed(s))
        motions |= {i["motion"] for i in src.last_info}
    assert {"pan", "zoom", "forward", "shake"} & motions


def test_bad_inputs():
    from vderain import VderainError
    with pytest.raises(VderainError):
        RainSynth("drizzle")
    with pytest.raises(VderainError):
        CleanClipSource(["/nonexistent/clip.mp4"])
    with pytest.raises(VderainError):
        RainSynth("light")(torch.rand(2, 3, 8, 8))


def test_clean_clip_source_frame_folder_in_natural_order(tmp_path):
    # frame_10.png sorted before frame_2.png: every window jumped about in time
    import cv2
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), np.full((20, 24, 3), 10 * i, np.uint8))
    src = CleanClipSource([str(tmp_path)], frames=4, size=16)
    means = [int(f.float().mean()) for f in src.clips[0]]
    assert means == [10 * i for i in range(12)]


def test_clean_clip_source_turns_a_rotated_clip_upright(tmp_path):
    import sys, os
    sys.path.insert(0, os.path.dirname(__file__))
    from videogen import make_video
    path = make_video(tmp_path / "phone.mp4", n=3, width=48, height=32, rotation=90)
    src = CleanClipSource([path], frames=2, size=16)
    assert tuple(src.clips[0].shape) == (3, 3, 48, 32)            # shown portrait, as the phone filmed


@pytest.mark.parametrize("kw", [dict(frames=0), dict(size=0), dict(max_short_side=0)])
def test_clean_clip_source_bad_sizes(tmp_path, kw):
    from vderain import VderainError
    import cv2
    cv2.imwrite(str(tmp_path / "still.png"), np.zeros((20, 24, 3), np.uint8))
    with pytest.raises(VderainError):
        CleanClipSource([str(tmp_path / "still.png")], **kw).sample(2, torch.Generator().manual_seed(0))
