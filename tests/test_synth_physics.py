"""Numerical checks of the synthesiser's physical claims (small frames, CPU, seconds)."""
import math

import torch

from vderain.synth import RainSynth
from vderain.synth.effects import block_dct_compress, gaussian_blur
from vderain.synth.presets import BASE, PRESETS
from vderain.synth.scenes import procedural_clip

# only one kind of streak, no haze/splashes, so the masks show exactly what is measured
FAR_ONLY = dict(dens_far=30, dens_mid=0, dens_near=0, length=100, shutter=1, jitter=0.3, wind=0,
                veil=0, splash=0, radial=0)
MID_ONLY = dict(FAR_ONLY, dens_far=0, dens_mid=10)


def grey(B=2, T=4, H=128, W=128, v=0.3):
    return torch.full((B, T, 3, H, W), v)


def run(preset, clean, seed=0, fps=30.0, **kw):
    kw.setdefault("camera", False)
    return RainSynth(preset, **kw)(clean, torch.Generator().manual_seed(seed), fps=fps)


def structure(S):
    """Mean streak angle (degrees from vertical, + leans right going down) and coherence."""
    S = gaussian_blur(S.reshape(1, -1, *S.shape[-2:]), torch.tensor([1.5]))
    gx = S[..., 1:-1, 2:] - S[..., 1:-1, :-2]
    gy = S[..., 2:, 1:-1] - S[..., :-2, 1:-1]
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    angle = -math.degrees(0.5 * math.atan2(2 * jxy, jxx - jyy))
    coherence = math.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy)
    return angle, coherence


def corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / ((a * a).sum() * (b * b).sum()).sqrt())


def half_width(S, dim):
    """Lag at which the autocorrelation of S along `dim` falls below 0.5 (a size measure)."""
    S = S - S.mean()
    var = float((S * S).mean())
    for lag in range(1, S.shape[dim] // 2):
        a, b = S.narrow(dim, 0, S.shape[dim] - lag), S.narrow(dim, lag, S.shape[dim] - lag)
        if float((a * b).mean()) / var < 0.5:
            return lag
    return S.shape[dim] // 2


def test_streak_orientation_follows_wind():
    for layer in (FAR_ONLY, MID_ONLY):
        for wind in (-40.0, -15.0, 0.0, 20.0, 45.0):
            out = run("light", grey(), overrides={**layer, "wind": wind})
            angle, coh = structure(out["streak_mask"])
            assert abs(angle - wind) < 3.0, (layer, wind, angle)
            assert coh > 0.6


def test_per_drop_jitter_spreads_orientation():
    _, tight = structure(run("light", grey(), overrides={**FAR_ONLY, "jitter": 0.3})["streak_mask"])
    _, loose = structure(run("light", grey(), overrides={**FAR_ONLY, "jitter": 12.0})["streak_mask"])
    assert loose < tight - 0.05


def test_streak_length_follows_exposure_and_depth():
    long = run("light", grey(), overrides={**FAR_ONLY, "shutter": 1.0})["streak_mask"]
    short = run("light", grey(), overrides={**FAR_ONLY, "shutter": 0.3})["streak_mask"]
    ratio = half_width(long, -2) / half_width(short, -2)
    assert ratio > 2.0, ratio                          # length = speed x exposure / depth
    # nearer drops: longer, wider and softer
    near = run("light", grey(), overrides={**FAR_ONLY, "dens_far": 0, "dens_near": 3})["streak_mask"]
    far = run("light", grey(), overrides=FAR_ONLY)["streak_mask"]
    mid = run("light", grey(), overrides=MID_ONLY)["streak_mask"]
    w_far, w_mid, w_near = (half_width(m, -1) for m in (far, mid, near))
    assert w_far < w_mid < w_near, (w_far, w_mid, w_near)
    assert half_width(far, -2) < half_width(near, -2)


def test_flicker_at_30fps_and_correlation_at_high_fps():
    clean = grey(2, 5, 96, 96)
    mean_corr = {}
    for fps in (24.0, 30.0, 480.0):
        S = run("heavy", clean, fps=fps, overrides={"veil": 0, "splash": 0})["streak_mask"]
        mean_corr[fps] = sum(corr(S[b, t], S[b, t + 1]) for b in range(2) for t in range(4)) / 8
        dens = S.mean((-1, -2, -3))                    # (B, T) density per frame stays put
        assert float((dens.max(1).values / dens.min(1).values).max()) < 1.5
    assert abs(mean_corr[24.0]) < 0.1 and abs(mean_corr[30.0]) < 0.1, mean_corr
    assert mean_corr[480.0] > 0.4, mean_corr


def test_fall_direction_consistent_within_clip():
    S = run("light", grey(1, 5), overrides={**FAR_ONLY, "wind": 25.0})["streak_mask"]
    for t in range(5):
        assert abs(structure(S[:, t])[0] - 25.0) < 4.0


def test_haze_grows_with_depth_and_is_bounded():
    clean = grey(2, 3, 96, 96, v=0.2)
    out = run("heavy", clean, overrides={"dens_far": 0, "dens_mid": 0, "dens_near": 0, "splash": 0,
                                         "veil": 1.0, "veil_k": 1.6})
    trans = out["transmission"][:, 0, 0]                                  # (B, H, W)
    assert float(trans.min()) >= math.exp(-1.0) - 1e-4                   # bounded by the veil
    haze = (1 - trans).mean(-1)                                           # rows, top = far
    top, bottom = haze[:, :24].mean(1), haze[:, -24:].mean(1)
    assert bool((top > bottom + 0.15).all()), (top, bottom)
    diff = (out["rainy"] - out["clean"]).abs().mean((1, 2, 4))            # (B, H)
    assert bool((diff[:, :24].mean(1) > 2 * diff[:, -24:].mean(1)).all())
    assert float(out["params"]["veil"][0]) == 1.0


def test_veil_can_darken_and_streaks_are_not_always_brighter():
    bright = grey(1, 3, 64, 64, v=0.8)
    out = run("heavy", bright, overrides={"dens_far": 0, "dens_mid": 0, "dens_near": 0, "splash": 0,
                                          "veil": 1.0, "veil_k": 0.7})
    assert float(out["layer"].mean()) < -0.02                             # a dark veil
    clips = torch.stack([procedural_clip(3, 48, 64, seed=100 + i, motion="static") for i in range(24)])
    out = RainSynth("train", dct_prob=0.0)(clips, torch.Generator().manual_seed(5))
    streak = out["streak_mask"] > 0.2
    per_clip = [(out["layer"][b] * streak[b]).sum() / streak[b].sum().clamp(min=1) for b in range(24)]
    rainy = ~out["params"]["rain_free"]
    signs = {bool(v > 0) for v, r in zip(per_clip, rainy) if r and abs(float(v)) > 1e-3}
    assert signs == {True, False}, per_clip                              # both brighter and darker rain


def test_whole_frame_changes_are_shared_by_clean_and_rainy():
    clips = torch.stack([procedural_clip(3, 48, 64, seed=200 + i, motion="pan") for i in range(6)])
    s = RainSynth({"light": 1.0}, camera=True, tone_aug=True, dct_prob=0.0,
                  overrides={"veil": 0.0, "noise_a": 0.004, "noise_b": 0.01, "gain": 1.25, "cast": 0.05,
                             "defocus": 0.0})                         # blur would spread streaks
    out = s(clips, torch.Generator().manual_seed(6))
    outside = out["streak_mask"].expand_as(out["rainy"]) == 0
    assert int(outside.sum()) > 1000
    assert torch.equal(out["rainy"][outside], out["clean"][outside])     # tone, cast, noise: identical
    assert float((out["clean"] - clips).abs().mean()) > 0.01              # ...and they did happen


def test_splashes_only_on_the_ground():
    out = run("heavy", grey(2, 3, 96, 96), overrides={"dens_far": 0, "dens_mid": 0, "dens_near": 0,
                                                      "veil": 0, "splash": 60})
    m = out["streak_mask"][..., 0, :, :]
    assert float(m[..., : int(96 * 0.55), :].max()) == 0.0
    assert float(m[..., int(96 * 0.65):, :].mean()) > 0.005


def test_dense_rain_occludes_background():
    B, T, H, W = 1, 3, 96, 96
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    checker = (((yy // 4) + (xx // 4)) % 2).float() * 0.8 + 0.1
    clean = checker.expand(B, T, 3, H, W).clone()
    out = run("storm", clean, overrides={"dens_far": 0, "dens_mid": 0, "dens_near": 12, "opacity": 1.0,
                                         "veil": 0, "splash": 0})
    occ = out["occlusion_mask"].expand_as(clean) > 0.6
    assert int(occ.sum()) > 500
    # where the rain is (mostly) opaque the checkerboard behind it is (mostly) hidden
    assert float(out["rainy"][occ].std()) < 0.5 * float(clean[occ].std())


def test_night_streaks_glow_near_lights():
    clean = grey(2, 3, 96, 128, v=0.5)
    out = run("night", clean, seed=3, overrides={"lamps": 3, "glow": 5.0, "dens_far": 80, "veil": 0})
    lum = out["clean"].mean(2, keepdim=True)                              # lamps are in the scene
    near_light = gaussian_blur(lum.reshape(1, -1, 96, 128), torch.tensor([6.0])).reshape(lum.shape)
    streak = out["streak_mask"] > 0.2
    lit = streak & (near_light > near_light.flatten(1).quantile(0.9, dim=1)[:, None, None, None, None])
    dark = streak & (near_light < near_light.flatten(1).quantile(0.5, dim=1)[:, None, None, None, None])
    mag = out["layer"].abs().mean(2, keepdim=True)
    assert int(lit.sum()) > 20 and int(dark.sum()) > 20
    assert float(mag[lit].mean()) > 2 * float(mag[dark].mean())


def test_rain_does_not_depend_on_background_motion():
    static = procedural_clip(4, 64, 64, seed=1, motion="static")[None]
    pan = procedural_clip(4, 64, 64, seed=1, motion="pan")[None]
    a = run("heavy", static, seed=9)["streak_mask"]
    b = run("heavy", pan, seed=9)["streak_mask"]
    assert torch.equal(a, b)                                              # camera moves scene, not rain


def test_hard_negatives_in_clean_and_rainy_alike():
    from vderain.synth import negatives
    clips = torch.stack([procedural_clip(3, 48, 64, seed=300 + i, motion="static") for i in range(4)])
    out = RainSynth("norain", negatives_prob=1.0, tone_aug=False, camera=False)(
        clips, torch.Generator().manual_seed(1))
    assert torch.equal(out["rainy"], out["clean"])
    assert bool(((out["clean"] - clips).abs().amax((1, 2, 3, 4)) > 0.3).all())   # a line was drawn
    assert bool((out["params"]["negative_kind"] >= 0).all())
    u = torch.full((16,), 0.5)
    u[0] = 1.0                                                            # moving ...
    u[1] = 5 / 6                                                          # ... 2 px per frame right
    for kind in range(len(negatives.KINDS)):
        a = negatives.pattern(kind, 3, 40, 60, u)
        assert torch.allclose(a[1, ..., 2:], a[0, ..., :-2], atol=1e-4), negatives.KINDS[kind]
        u_static = u.clone()
        u_static[0] = 0.0
        s = negatives.pattern(kind, 3, 40, 60, u_static)
        assert torch.equal(s[0], s[2]) and float(s.max()) > 0.5


def test_params_recorded_and_within_preset_ranges():
    clips = grey(16, 2, 32, 32)
    out = RainSynth("train")(clips, torch.Generator().manual_seed(4))
    p = out["params"]
    names = list(PRESETS)
    for b in range(16):
        ranges = {**BASE, **PRESETS[names[int(p["preset_id"][b])]]}
        for k in ("wind", "veil", "length", "dens_far", "gain"):
            lo, hi = ranges[k]
            assert lo - 1e-4 <= float(p[k][b]) <= hi + 1e-4, (k, float(p[k][b]))
        assert bool(p["rain_free"][b]) == (names[int(p["preset_id"][b])] == "norain")


def test_block_dct_compression():
    x = procedural_clip(1, 64, 64, seed=5, motion="static")
    hi = block_dct_compress(x, torch.tensor([95.0]))
    lo = block_dct_compress(x, torch.tensor([10.0]))
    e_hi, e_lo = float((hi - x).abs().mean()), float((lo - x).abs().mean())
    assert e_hi < 0.02 < e_lo
    # blocking: jumps across 8x8 block borders exceed jumps inside blocks
    d = (lo[..., :, 1:] - lo[..., :, :-1]).abs().mean((0, 1, 2))          # (W-1,)
    border = d[7::8].mean()
    inside = torch.cat([d[i::8] for i in range(7)]).mean()
    assert float(border) > 1.3 * float(inside)


def test_real_codec_round_trip():
    clips = torch.stack([procedural_clip(4, 48, 64, seed=400 + i, motion="pan") for i in range(2)])
    s = RainSynth("light", codec_prob=1.0, camera=False)
    out = s(clips, torch.Generator().manual_seed(2))
    ref = RainSynth("light", codec_prob=0.0, camera=False)(clips, torch.Generator().manual_seed(2))
    assert bool((out["params"]["codec_crf"] >= 18).all())
    mse = float(((out["rainy"] - ref["rainy"]) ** 2).mean())
    assert 0 < mse < 10 ** (-25 / 10)                                      # lossy, but close (PSNR > 25)


def test_faint_rain_is_dense_but_translucent():
    """`faint` (phone-like rain): more streaks than `light`, each far less visible."""
    clean = grey(T=3, v=0.35)
    pins = dict(veil=0, splash=0, wind=0, dark=0)
    faint = run("faint", clean, seed=3, overrides=pins)["layer"].abs().amax(2)
    light = run("light", clean, seed=3, overrides=pins)["layer"].abs().amax(2)
    assert float((faint > 0.004).float().mean()) > float((light > 0.004).float().mean())
    assert float(faint.quantile(0.999)) < 0.6 * float(light.quantile(0.999))


def test_dots_freeze_drops_into_short_marks():
    """`dots` (a short exposure): the same drops as `light`, but each mark is short. Measured as
    how much of the layer survives a shift of 4 px along the fall: streaks overlap themselves,
    dots do not."""
    clean = grey(T=3, v=0.35)
    pins = dict(veil=0, splash=0, wind=0, jitter=0, dark=0, dens_far=40, dens_mid=6, dens_near=0.5,
                length=50, opacity=0.8)

    def self_overlap(layer):
        a = layer.abs().amax(2)                                            # (B,T,H,W)
        return float((a[..., 4:, :] * a[..., :-4, :]).sum() / (a * a).sum())

    dots = run("dots", clean, seed=5, overrides=pins)["layer"]
    light = run("light", clean, seed=5, overrides={**pins, "shutter": 0.8})["layer"]
    assert float((dots.abs() > 0.02).float().mean()) > 0.002              # drops are drawn
    assert self_overlap(light) > 0.5
    assert self_overlap(dots) < 0.5 * self_overlap(light)


def test_new_presets_leave_older_mixes_unchanged():
    """Presets appended to the table must not change what the first six draw (the suite)."""
    from vderain.synth.presets import PRESET_NAMES
    assert PRESET_NAMES[:6] == ["light", "heavy", "night", "dashcam", "storm", "norain"]
    g = lambda: torch.Generator().manual_seed(11)
    pid, p = RainSynth("heavy").sample_params(64, g())
    pid6 = torch.multinomial(torch.tensor([0, 1.0, 0, 0, 0, 0]), 64, replacement=True, generator=g())
    assert torch.equal(pid, pid6)
    mixed, _ = RainSynth({"light": 1, "faint": 1}).sample_params(4000, g())
    assert 0.45 < float((mixed == PRESET_NAMES.index("faint")).float().mean()) < 0.55
