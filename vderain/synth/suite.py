"""The fixed synthetic benchmark suite: recipes, not stored data.

Each case is a procedural scene (vderain.synth.scenes) with a fixed seed, filmed by a
fixed camera motion, and rain from a preset with some parameters pinned. Held out from
training by construction:
  - scenes: procedural seeds 7001..7099 (training never uses procedural scenes except
    the trainer's smoke-test source, which uses seeds >= 10000);
  - rain: fixed generator seeds, and several parameter values no training preset draws
    (wind -48 degrees, shutter 0.2, a 20 fps clip, 120 fps rain, sparse drizzle,
    denser near drops than any preset).
Rendering every case at the default size takes a few seconds on a CPU.
"""
from __future__ import annotations

import torch

from vderain import VderainError

DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_WIDTH = 24, 144, 256

# name: scene (seed, motion, stripes), rain (preset, overrides, synth seed), fps, extras
_CASES: dict[str, dict] = {
    "light_pan": dict(scene=(7001, "pan", False), preset="light", fps=30.0, seed=1,
                      overrides={"wind": 12.0, "dens_far": 25.0, "dens_mid": 6.0}),
    "drizzle_static": dict(scene=(7002, "static", False), preset="light", fps=30.0, seed=2,
                           overrides={"dens_far": 8.0, "dens_mid": 1.5, "dens_near": 0.0, "shutter": 0.2}),
    "heavy_static": dict(scene=(7003, "static", False), preset="heavy", fps=30.0, seed=3,
                         overrides={"veil": 0.7, "wind": -8.0}),
    "heavy_zoom_wind": dict(scene=(7004, "zoom", False), preset="heavy", fps=25.0, seed=4,
                            overrides={"wind": -48.0, "jitter": 4.0}),
    "night_lights": dict(scene=(7005, "pan", False), preset="night", fps=30.0, seed=5,
                         overrides={"lamps": 3.0, "glow": 4.0}),
    "night_static_dim": dict(scene=(7006, "static", False), preset="night", fps=24.0, seed=6,
                             overrides={"lamps": 2.0, "glow": 2.0, "noise_a": 0.006, "noise_b": 0.015}),
    "dashcam_forward": dict(scene=(7007, "forward", False), preset="dashcam", fps=30.0, seed=7,
                            overrides={"radial": 1.0}),
    "storm_occluded": dict(scene=(7008, "static", False), preset="storm", fps=30.0, seed=8,
                           overrides={"dens_near": 11.0, "opacity": 1.0, "wind": 30.0}),
    "lowfps_heavy": dict(scene=(7009, "pan", False), preset="heavy", fps=20.0, seed=9, overrides={}),
    "highfps_light": dict(scene=(7010, "pan", False), preset="light", fps=120.0, seed=10,
                          overrides={"dens_far": 30.0}),
    "compressed_heavy": dict(scene=(7011, "pan", False), preset="heavy", fps=30.0, seed=11,
                             overrides={}, dct=35.0),
    "rain_over_stripes": dict(scene=(7012, "pan", True), preset="light", fps=30.0, seed=12,
                              overrides={"wind": -5.0}),
    "norain_stripes": dict(scene=(7013, "pan", True), preset="norain", fps=30.0, seed=13, overrides={}),
    "norain_fence_wires": dict(scene=(7014, "static", True), preset="norain", fps=30.0, seed=14,
                               overrides={}, negatives=True),
    "norain_plain_zoom": dict(scene=(7015, "zoom", False), preset="norain", fps=30.0, seed=15, overrides={}),
}

SUITE_CASES: list[str] = list(_CASES)


def case_recipe(name: str) -> dict:
    if name not in _CASES:
        raise VderainError(f"unknown suite case '{name}' (cases: {', '.join(SUITE_CASES)})")
    return dict(_CASES[name])


def render_case(name: str, frames: int | None = None, height: int | None = None, width: int | None = None,
                rain_overrides: dict[str, float] | None = None) -> dict:
    """Render one case: {'rainy', 'clean': (T, H, W, 3) uint8, 'fps': float, 'meta': dict}.

    Deterministic: the same arguments give the same clips (CPU, fixed seeds).
    rain_overrides: pin more rain parameters on top of the case's (e.g. {"veil": 0} renders the
    same drops without haze; every random draw stays the same, so the pair isolates the haze).
    """
    from vderain.synth.rain import RainSynth
    from vderain.synth.scenes import procedural_clip, to_uint8_frames

    r = case_recipe(name)
    T = int(DEFAULT_FRAMES if frames is None else frames)      # 0 is an error, not "the default"
    H = int(DEFAULT_HEIGHT if height is None else height)
    W = int(DEFAULT_WIDTH if width is None else width)
    if T < 1 or H < 8 or W < 8:
        raise VderainError(f"suite case size too small: {T} frames of {W}x{H}")
    seed, motion, stripes = r["scene"]
    overrides = {**r["overrides"], **(rain_overrides or {})}
    clean = procedural_clip(T, H, W, seed=seed, motion=motion, stripes=stripes)[None]   # (1,T,3,H,W)
    synth = RainSynth(r["preset"], device="cpu", codec_prob=0.0,
                      dct_prob=1.0 if r.get("dct") else 0.0,
                      negatives_prob=1.0 if r.get("negatives") else 0.0,
                      dct_quality=r.get("dct"), tone_aug=False, px_scale=max(1.0, min(H, W) / 360),
                      overrides=overrides)
    g = torch.Generator().manual_seed(1_000_003 + int(r["seed"]))
    out = synth(clean, generator=g, fps=float(r["fps"]))
    params = {k: (v[0].tolist() if torch.is_tensor(v) else v) for k, v in out["params"].items()}
    rainy, clean_t = to_uint8_frames(out["rainy"][0]), to_uint8_frames(out["clean"][0])
    meta = {"case": name, "preset": r["preset"], "motion": motion, "stripes": stripes,
            "scene_seed": seed, "synth_seed": r["seed"], "overrides": overrides,
            "rain_free": bool(params["rain_free"]), "params": params}
    return {"rainy": rainy, "clean": clean_t, "fps": float(r["fps"]), "meta": meta}
