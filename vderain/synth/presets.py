"""Rain presets as parameter ranges, sampled per clip.

Each preset maps a parameter name to a (low, high) range; a clip draws every
parameter uniformly from its preset's range. Parameters a preset does not name
come from BASE. Lengths, widths and densities are in *reference pixels*: the
pixels of a frame whose short side is 360 (the training crops come from clips
decoded at that size); `RainSynth(px_scale=...)` rescales them for other sizes.

Parameter meanings (units):
  rain        1 = render rain, 0 = rain-free clip (rainy == clean exactly)
  dens_far    far drops (depth 2.5..8) per 100x100 px per frame
  dens_mid    mid drops (depth 1..2.5), drawn at half resolution (wider, softer)
  dens_near   near drops (depth 0.35..1), drawn at quarter resolution (wide, defocused)
  length      streak length in px of a drop at depth 1, 30 fps, shutter fully open
              (length = fall speed x exposure / depth)
  shutter     exposure time as a fraction of the frame interval
  wind        mean fall direction, degrees from vertical (+ leans right going down)
  jitter      per-drop angle spread (std, degrees)
  opacity     scale of per-drop streak opacity
  env_k       streak colour = env_k x (mix of the local and frame-mean scene colour):
              a drop refracts a wide view of the scene, so it is usually, not always, brighter
  spec        extra white (specular) brightness of streaks
  dark        probability that a clip's streaks are darker than the scene (seen against sky)
  veil        rain accumulation / haze: optical thickness at the far end of the depth proxy
  veil_k      airlight brightness relative to the frame mean (can darken as well as brighten)
  splash      splashes per 100x100 px of the lower (ground) part of the frame, per frame
  night       1 = turn the (clean and rainy) scene into night: darken, tint, add lamps
  lamps       number of light sources added at night
  glow        how strongly streaks near light sources glow
  radial      dashcam: streak tilt away from the image centre (forward motion)
  gain, curve, cast   shared tone/colour augmentation (exposure, tone curve, colour cast)
  noise_a, noise_b    sensor noise: signal-dependent (shot) variance and read-noise std
  defocus     std (px) of a slight lens blur applied to clean and rainy alike
"""
from __future__ import annotations

BASE: dict[str, tuple[float, float]] = {
    "rain": (1, 1),
    "dens_far": (12, 35),
    "dens_mid": (2, 8),
    "dens_near": (0.0, 0.6),
    "length": (25, 55),
    "shutter": (0.35, 1.0),
    "wind": (-20, 20),
    "jitter": (1, 5),
    "opacity": (0.5, 0.9),
    "env_k": (0.9, 1.3),
    "spec": (0.0, 0.2),
    "dark": (0.18, 0.18),
    "veil": (0.0, 0.25),
    "veil_k": (0.85, 1.2),
    "splash": (0, 0),
    "night": (0, 0),
    "lamps": (0, 0),
    "glow": (0.0, 0.0),
    "radial": (0.0, 0.0),
    "gain": (0.8, 1.2),
    "curve": (-0.3, 0.3),
    "cast": (0.0, 0.05),
    "noise_a": (0.0, 0.001),
    "noise_b": (0.0, 0.006),
    "defocus": (0.0, 0.7),
}

PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "light": {},
    "heavy": {
        "dens_far": (50, 130), "dens_mid": (12, 35), "dens_near": (1.0, 4.0),
        "length": (35, 75), "opacity": (0.45, 0.9),
        "veil": (0.3, 0.9), "splash": (10, 40), "jitter": (2, 7),
    },
    "night": {
        "dens_far": (30, 110), "dens_mid": (6, 25), "dens_near": (0.3, 2.5),
        "night": (1, 1), "lamps": (1, 4.99), "glow": (1.5, 5.0),
        "veil": (0.05, 0.5), "veil_k": (0.6, 1.0), "spec": (0.0, 0.05),
        "noise_a": (0.001, 0.006), "noise_b": (0.004, 0.02), "splash": (0, 15),
    },
    "dashcam": {
        "dens_far": (30, 100), "dens_mid": (6, 25), "dens_near": (0.5, 3.0),
        "length": (35, 80), "radial": (0.4, 1.2), "wind": (-12, 12),
        "veil": (0.1, 0.6), "splash": (0, 20),
    },
    "storm": {
        "dens_far": (90, 200), "dens_mid": (30, 70), "dens_near": (3.0, 9.0),
        "length": (45, 100), "wind": (-40, 40), "jitter": (3, 9), "opacity": (0.55, 1.0),
        "veil": (0.6, 1.4), "veil_k": (0.8, 1.15), "splash": (20, 60), "spec": (0.05, 0.3),
    },
    "norain": {"rain": (0, 0)},
    # phone / webcam rain as it looks in real footage: many thin, translucent streaks and mist,
    # rarely the bright opaque lines of the other presets (models trained only on those leave it)
    "faint": {
        "dens_far": (60, 220), "dens_mid": (8, 40), "dens_near": (0.0, 1.5),
        "length": (25, 90), "shutter": (0.5, 1.0), "jitter": (1, 6), "opacity": (0.2, 0.5),
        "env_k": (0.95, 1.25), "spec": (0.0, 0.08), "dark": (0.25, 0.25), "veil": (0.05, 0.6),
    },
    # a short exposure (daylight, a fast shutter, many phones and dashcams in bright light) freezes
    # drops into dots and dashes: far drops become single pixels, near ones short blobs. Streak
    # shape is then no cue at all, only the flicker is (the other presets' shortest far streaks
    # are ~3 px; the particle suite's p_fast_shutter was the case the networks lost most on)
    "dots": {
        "dens_far": (25, 120), "dens_mid": (4, 25), "dens_near": (0.2, 2.5),
        "length": (25, 75), "shutter": (0.03, 0.2), "jitter": (1, 8), "opacity": (0.45, 0.95),
        "spec": (0.0, 0.25), "veil": (0.0, 0.3), "splash": (0, 15),
    },
}

PRESET_NAMES: list[str] = list(PRESETS)          # index = params["preset_id"]
PARAM_NAMES: list[str] = list(BASE)

# The training mix: every preset plus rain-free clips (the model must then change nothing).
TRAIN_MIX: dict[str, float] = {
    "light": 0.22, "heavy": 0.20, "night": 0.14, "dashcam": 0.13, "storm": 0.13, "norain": 0.18,
}

# Ranges training never draws from are used by the benchmark suite (vderain/synth/suite.py).


def preset_table() -> tuple[list[list[float]], list[list[float]]]:
    """(low, high) as nested lists [preset][param], in PRESET_NAMES / PARAM_NAMES order."""
    lo, hi = [], []
    for name in PRESET_NAMES:
        ranges = {**BASE, **PRESETS[name]}
        lo.append([float(ranges[p][0]) for p in PARAM_NAMES])
        hi.append([float(ranges[p][1]) for p in PARAM_NAMES])
    return lo, hi
