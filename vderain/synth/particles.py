"""A second, independent rain renderer: drops as 3D particles, for testing on rain never trained on.

Every vderain model learns from one synthesiser (rain.py / streaks.py), and the `synthetic`
suite renders its cases with that same code: a model can learn the renderer's habits and
score well on them. The issue asks for weights that work "on rain they never saw", as public
benchmarks render it with particle systems. This module is that test. It shares no rain code
with the training synthesiser and nothing under vderain/train imports it (a test checks), and
it draws rain the way a particle system does, from different physics:

  * drops are particles in a 3D volume around the camera: uniform density in space, so
    near drops are few and large, far ones many and faint; drop sizes follow an exponential
    (Marshall-Palmer) law and fall at their terminal speed (Atlas et al.: 9.65 - 10.3
    exp(-0.6 d/mm) m/s), with wind and the camera's own motion;
  * a pinhole camera projects each drop's path during the exposure to a motion-blurred
    streak of the drop's projected width: thin far drops cover a fraction of a pixel;
  * photometry after Garg & Nayar: a drop refracts light from a wide cone of the scene, so
    it shows a smooth environment radiance, not "brightness added". Each pixel of a streak
    sees the drop for width / length of the exposure and blends towards that radiance:
    drops brighten dark backgrounds and can darken bright ones (the rain layer is signed);
  * depth of field: drops off the focus distance are blurred by their circle of confusion
    (large soft blobs close to the lens);
  * fog: distant rain as extinction towards an airlight, by a depth proxy (rows);
  * the camera: pans (rotation) and zooms are read off the clean clip itself (tracked
    corners, a similarity per frame), so the rain turns with the scene; forward motion is a translation of the
    drop volume, which gives radial streaks. Optionally the rainy clip goes through H.264.

It is numpy + OpenCV on the CPU (a benchmark renderer, not a training one): a case at
256x144x24 renders in about a second. Deterministic from its seeds.
"""
from __future__ import annotations

import math

import numpy as np

from vderain import VderainError

DEFAULT_FRAMES, DEFAULT_HEIGHT, DEFAULT_WIDTH = 24, 144, 256
SUPERSAMPLE = 4             # streaks are drawn at 4x and area-averaged: sub-pixel widths
BLUR_BINS = (0.0, 0.8, 1.6, 3.2, 6.4)  # defocus sigmas (px at the output size) drops are binned into


def terminal_speed(d_mm: np.ndarray) -> np.ndarray:
    """Terminal fall speed (m/s) of drops of diameter d (mm), Atlas, Srivastava & Sekhon (1973)."""
    return np.clip(9.65 - 10.3 * np.exp(-0.6 * d_mm), 0.3, None)


# name: scene (seed, motion, stripes), fps, and the rain:
#   drops: particles in the volume; d_mm: mean diameter (exponential law, 0.5..6 mm);
#   shutter: exposure as a fraction of the frame interval; wind: m/s (x, towards the right);
#   z: depth range of the volume (m); focus: focus distance (m), 0 = everything sharp;
#   aperture: defocus strength; radiance: (gain, offset) of the drop radiance over the scene's
#   wide-area mean; opacity: scales every drop's blend; fog: extinction per unit depth proxy;
#   forward: camera speed into the scene (m/s); crf: H.264 round trip of the rainy clip;
#   size: apparent size over the physical one. A 1 mm drop 5 m away is 0.04 px wide in a
#   256-px frame and invisible; what makes rain visible on camera is glare, bloom and
#   defocus, which particle systems (and this renderer) fold into a larger drawn drop
_BASE = dict(drops=18000, d_mm=1.2, size=12.0, shutter=1.0, wind=0.0, z=(0.8, 25.0), focus=0.0, aperture=0.0,
             radiance=(1.4, 0.12), opacity=0.9, fog=0.0, forward=0.0, crf=0)
_CASES: dict[str, dict] = {
    "p_drizzle_static": dict(scene=(7101, "static", False), fps=30.0, seed=1, drops=12000, d_mm=0.7,
                             shutter=0.5),
    "p_heavy_pan": dict(scene=(7102, "pan", False), fps=30.0, seed=2, drops=42000, d_mm=1.6, wind=2.5),
    "p_bokeh_near": dict(scene=(7103, "pan", False), fps=25.0, seed=3, drops=27000, d_mm=1.8,
                         focus=12.0, aperture=3.5, z=(0.25, 25.0)),
    "p_dashcam": dict(scene=(7104, "forward", False), fps=30.0, seed=4, drops=27000, d_mm=1.4,
                      forward=14.0, z=(0.3, 20.0)),
    "p_fast_shutter": dict(scene=(7105, "pan", False), fps=30.0, seed=5, drops=27000, d_mm=1.6,
                           shutter=0.06),
    "p_over_stripes": dict(scene=(7106, "pan", True), fps=30.0, seed=6, drops=21000, d_mm=1.3, wind=-1.5),
    "p_dark_drops": dict(scene=(7107, "zoom", False), fps=24.0, seed=7, drops=60000, d_mm=1.5,
                         radiance=(0.75, 0.0), wind=1.0),
    "p_lowfps_storm": dict(scene=(7108, "pan", False), fps=15.0, seed=8, drops=48000, d_mm=2.0,
                           wind=-4.0, shutter=0.8, fog=0.2),
    "p_h264_heavy": dict(scene=(7109, "pan", False), fps=30.0, seed=9, drops=36000, d_mm=1.5,
                         wind=1.5, crf=28),
}

PARTICLE_CASES: list[str] = list(_CASES)


def particle_recipe(name: str) -> dict:
    if name not in _CASES:
        raise VderainError(f"unknown particle case '{name}' (cases: {', '.join(PARTICLE_CASES)})")
    return {**_BASE, **_CASES[name]}


def camera_motion(clean: np.ndarray) -> np.ndarray:
    """The scene's image motion in a clean clip (T,H,W,3) uint8: (T,2,3) similarity transforms,
    the k-th taking a pixel of frame k-1 to where that scene point is in frame k (rotation,
    zoom and shift, from tracked corners and RANSAC). Frame 0 gets the identity."""
    import cv2
    T, H, W = clean.shape[:3]
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clean]
    motion = np.tile(np.eye(2, 3, dtype=np.float64), (T, 1, 1))
    for k in range(1, T):
        pts = cv2.goodFeaturesToTrack(grey[k - 1], 400, 0.01, max(3, min(H, W) // 40))
        if pts is None or len(pts) < 8:
            continue
        nxt, found, _ = cv2.calcOpticalFlowPyrLK(grey[k - 1], grey[k], pts, None, winSize=(15, 15), maxLevel=3)
        good = found[:, 0] == 1
        if good.sum() < 8:
            continue
        m, _ = cv2.estimateAffinePartial2D(pts[good], nxt[good], method=cv2.RANSAC, ransacReprojThreshold=1.0)
        if m is not None:
            motion[k] = m
    return motion


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 affine: first a, then b."""
    return (np.vstack([b, [0, 0, 1]]) @ np.vstack([a, [0, 0, 1]]))[:2]


def _apply(m: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return m[0, 0] * u + m[0, 1] * v + m[0, 2], m[1, 0] * u + m[1, 1] * v + m[1, 2]


def _environment(frame: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """A drop's radiance at each pixel: the scene averaged over a wide cone (Garg & Nayar: a drop
    refracts ~165 degrees of the environment), i.e. the global mean mixed with a very blurred
    frame, scaled. (H,W,3) float."""
    import cv2
    H, W = frame.shape[:2]
    small = cv2.resize(frame, (4, 3), interpolation=cv2.INTER_AREA)
    wide = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    mean = frame.reshape(-1, 3).mean(0)
    return np.clip(gain * (0.6 * mean + 0.4 * wide) + offset, 0, 1)


def _hash01(ids: np.ndarray, n: np.ndarray, salt: int) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per (drop, wrap count): where a drop re-enters."""
    h = (ids.astype(np.uint64) * np.uint64(2654435761) + (n.astype(np.int64) + 1_000_000).astype(np.uint64)
         * np.uint64(40503) + np.uint64(salt) * np.uint64(97531)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(2246822519)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(13)
    return h.astype(np.float64) / 2.0 ** 32


def render_particles(clean: np.ndarray, fps: float, seed: int, **rain) -> dict:
    """Rain from 3D particles over a clean clip (T,H,W,3) uint8 -> {'rainy': (T,H,W,3) uint8,
    'alpha': (T,H,W) float32 streak coverage (the largest over the blur bins)}. `rain`: the
    recipe keys above."""
    import cv2
    p = {**_BASE, **rain}
    clean = np.asarray(clean)
    T, H, W = clean.shape[:3]
    z0, z1 = (float(z) for z in p["z"])
    if not fps > 0 or not 0 < z0 < z1 or int(p["drops"]) < 0 or not p["shutter"] >= 0:
        raise VderainError(f"particle rain needs fps > 0, 0 < z near < z far, drops >= 0, shutter >= 0 "
                           f"(got fps {fps}, z {p['z']}, drops {p['drops']}, shutter {p['shutter']})")
    rng = np.random.default_rng(1_000_033 + int(seed))
    f = 0.87 * W                                      # focal length (px): a 60-degree horizontal view
    # the rain volume turns and zooms with the scene: a camera rotating (a pan) or zooming moves
    # every drop across the image as it moves the scene. Forward motion is the volume's own
    # translation (`forward`: a dashcam does not turn), so then the scene's is not followed
    step = camera_motion(clean) if p["forward"] <= 0 else np.tile(np.eye(2, 3), (T, 1, 1))
    track = [np.eye(2, 3)]
    for k in range(1, T):
        track.append(_compose(track[-1], step[k]))
    scales = [math.sqrt(abs(np.linalg.det(m[:, :2]))) for m in track]
    # a box around the view frustum (uniform density in space), wide enough for the widest view
    # of the clip (a zoom out); it is centred on each frame's view, so a long pan never runs out
    xm = 0.65 * z1 / min(1.0, min(scales))
    ym = xm * H / W + 2.0
    n = int(p["drops"])
    ids = np.arange(n)
    X = rng.uniform(-xm, xm, n)
    Y = rng.uniform(-ym, ym, n)
    Z = rng.uniform(z0, z1, n)
    # exponential sizes above the 0.5 mm drops that still show, mean d_mm
    d = np.minimum(0.5 + rng.exponential(max(p["d_mm"] - 0.5, 0.05), n), 6.0)      # mm
    v = terminal_speed(d)                                             # m/s, down (+y)
    sway = rng.normal(0.0, 0.3, n)                                    # turbulence, m/s across
    dt = 1.0 / float(fps)
    exposure = float(p["shutter"]) * dt
    ss = SUPERSAMPLE
    rainy = np.empty_like(clean)
    alpha_total = np.empty((T, H, W), np.float32)
    gain, offset = p["radiance"]
    rows = (np.arange(H, dtype=np.float32) + 0.5) / H
    fog_t = np.exp(-float(p["fog"]) * (1.3 - rows))[:, None, None]    # top rows are far
    eye = np.eye(2, 3)
    for k in range(T):
        frame = clean[k].astype(np.float32) / 255
        env = _environment(frame, gain, offset)
        now = track[k]
        # where this frame's view centre points, as a direction in frame 0's camera
        inv = cv2.invertAffineTransform(now)
        cx, cy = _apply(inv, np.array(W / 2), np.array(H / 2))
        ox, oy = (float(cx) - W / 2) / f, (float(cy) - H / 2) / f
        # the path of each drop during the exposure, in camera space
        pts = []
        for t in (k * dt, k * dt + exposure):
            zs = Z - p["forward"] * t
            nz = np.floor((zs - z0) / (z1 - z0))
            ys = Y + v * t
            ny = np.floor((ys + ym) / (2 * ym))
            # a drop that fell out of the box (or passed the camera) re-enters as a new drop:
            # at the top (the far end), at a fresh place, not in the column it left
            xs = X + (p["wind"] + sway) * t + 2 * xm * _hash01(ids, ny + 7919 * nz, 1)
            zs = zs + (z1 - z0) * _hash01(ids, ny, 2) * (ny != 0)
            zs = z0 + (zs - z0) % (z1 - z0)
            xc, yc = zs * ox, zs * oy                                 # the box follows the view
            xs = (xs - xc + xm) % (2 * xm) - xm + xc
            ys = (ys - yc + ym) % (2 * ym) - ym + yc
            pts.append((xs, ys, zs, ny, nz))
        (xa, ya, za, nya, nza), (xb, yb, zb, nyb, nzb) = pts
        # a drop re-entering during the exposure would draw a streak across the frame: skip it
        ok = (nya == nyb) & (nza == nzb) & (np.abs(xb - xa) < xm) & (np.abs(yb - ya) < ym)
        # pinhole projection, then the camera's rotation / zoom as measured on the scene; it
        # goes on moving during the exposure (as it does into the next frame), which smears the
        # streak along the scene's motion
        ahead = step[k + 1] if k + 1 < T else step[k]
        later = _compose(now, eye + p["shutter"] * (ahead - eye))
        ua, va = _apply(now, f * xa / za + W / 2, f * ya / za + H / 2)
        ub, vb = _apply(later, f * xb / zb + W / 2, f * yb / zb + H / 2)
        zm = 0.5 * (za + zb)
        # drawn drop width (px); the largest near drops are capped (a lens blurs them, `focus`)
        width = np.minimum(p["size"] * scales[k] * f * d * 1e-3 / zm, 3.0)
        length = np.hypot(ub - ua, vb - va)
        # each pixel on the streak sees the drop for width / (length + width) of the exposure
        blend = p["opacity"] * width / (length + width)
        if p["aperture"] > 0 and p["focus"] > 0:
            coc = p["aperture"] * f * 1e-3 * np.abs(1 / zm - 1 / p["focus"]) * 20
        else:
            coc = np.zeros_like(zm)
        lo = -0.1 * W
        ok &= (np.minimum(ua, ub) > lo) & (np.maximum(ua, ub) < W - lo)
        ok &= (np.minimum(va, vb) > lo) & (np.maximum(va, vb) < H - lo)
        # the faintest far drops are fog, not streaks (and most of the particles)
        ok &= blend * np.minimum(width, 1.0) > 0.003
        b_idx = np.abs(coc[:, None] - np.array(BLUR_BINS)[None]).argmin(1)
        drawn = np.flatnonzero(ok)
        # a supersampled canvas per defocus bin that has drops (without `focus`, only the sharp one)
        bins = {b: np.zeros((H * ss, W * ss), np.float32) for b in np.unique(b_idx[drawn]).tolist()}
        for i in drawn[np.argsort(-zm[drawn], kind="stable")]:       # far first: near drops cover far ones
            thick = max(1, int(round(width[i] * ss)))
            # a thinner drop than the line drawn: its coverage of the line's pixels is the ratio
            value = float(blend[i] * min(1.0, width[i] * ss / thick))
            cv2.line(bins[int(b_idx[i])], (int(round(ua[i] * ss)), int(round(va[i] * ss))),
                     (int(round(ub[i] * ss)), int(round(vb[i] * ss))), value, thick, cv2.LINE_8)
        # fog dims the scene behind the rain; the drops that show are near, drawn over it
        out = frame * fog_t + 0.78 * (1 - fog_t)
        total = np.zeros((H, W), np.float32)
        for b, canvas in sorted(bins.items()):
            sigma = BLUR_BINS[b]
            a = cv2.resize(canvas, (W, H), interpolation=cv2.INTER_AREA)
            if sigma > 0:
                a = cv2.GaussianBlur(a, (0, 0), sigma)
            a = np.clip(a, 0, 1)[..., None]
            out = out * (1 - a) + env * a
            total = np.maximum(total, a[..., 0])
        rainy[k] = np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)
        alpha_total[k] = total
    if p["crf"]:
        from vderain.synth.effects import codec_roundtrip
        rainy = codec_roundtrip(rainy, int(p["crf"]), fps=int(round(fps)))
    return {"rainy": rainy, "alpha": alpha_total}


def render_particle_case(name: str, frames: int | None = None, height: int | None = None,
                         width: int | None = None) -> dict:
    """One case of the `particles` suite: {'rainy', 'clean': (T,H,W,3) uint8, 'fps', 'meta'}."""
    from vderain.synth.scenes import procedural_clip, to_uint8_frames

    r = particle_recipe(name)
    T = int(frames or DEFAULT_FRAMES)
    H = int(height or DEFAULT_HEIGHT)
    W = int(width or DEFAULT_WIDTH)
    if T < 2 or H < 16 or W < 16:
        raise VderainError(f"particle case size too small: {T} frames of {W}x{H}")
    seed, motion, stripes = r["scene"]
    clean = to_uint8_frames(procedural_clip(T, H, W, seed=seed, motion=motion, stripes=stripes))
    rain = {k: r[k] for k in _BASE}
    out = render_particles(clean, r["fps"], r["seed"], **rain)
    meta = {"case": name, "renderer": "particles", "motion": motion, "stripes": stripes,
            "scene_seed": seed, "rain_seed": r["seed"], "rain": rain,
            "coverage": float(out["alpha"].mean()), "rain_free": False}
    return {"rainy": out["rainy"], "clean": clean, "fps": float(r["fps"]), "meta": meta}
