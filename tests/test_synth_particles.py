"""The held-out particle renderer: independent of the training synthesiser, deterministic,
and physically sensible (signed rain layer, wind tilts streaks, the rain follows the camera)."""
import ast
from pathlib import Path

import cv2
import numpy as np
import pytest

from vderain import VderainError
from vderain.synth.particles import (PARTICLE_CASES, camera_motion, particle_recipe, render_particle_case,
                                     render_particles, terminal_speed)

PACKAGE = Path(__file__).resolve().parent.parent / "vderain"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_held_out_by_construction():
    # training never sees this renderer ...
    for path in (PACKAGE / "train").rglob("*.py"):
        assert not any("particles" in n for n in _imports(path)), path
    # ... and it borrows no rain from the training synthesiser
    used = _imports(PACKAGE / "synth" / "particles.py")
    for module in ("vderain.synth.rain", "vderain.synth.streaks", "vderain.synth.presets", "vderain.synth.suite"):
        assert not any(n.startswith(module) for n in used), module
    # scenes are procedural seeds of their own, away from the synthetic suite's and training's
    from vderain.synth.suite import SUITE_CASES, case_recipe
    seeds = {case_recipe(n)["scene"][0] for n in SUITE_CASES}
    mine = [particle_recipe(n)["scene"][0] for n in PARTICLE_CASES]
    assert len(set(mine)) == len(mine) and not seeds & set(mine) and max(mine) < 10000


@pytest.mark.parametrize("name", PARTICLE_CASES)
def test_case_renders_with_visible_rain(name):
    c = render_particle_case(name, frames=4, height=48, width=80)
    assert c["rainy"].shape == c["clean"].shape == (4, 48, 80, 3)
    assert c["rainy"].dtype == np.uint8 and c["clean"].dtype == np.uint8
    assert c["fps"] > 0 and c["meta"]["case"] == name and not c["meta"]["rain_free"]
    # drops were drawn (fog and H.264 alone would change the frames too)
    assert c["meta"]["coverage"] > 1e-3


def test_deterministic_and_default_size():
    a = render_particle_case("p_heavy_pan", frames=3)
    b = render_particle_case("p_heavy_pan", frames=3)
    assert np.array_equal(a["rainy"], b["rainy"]) and np.array_equal(a["clean"], b["clean"])
    assert a["rainy"].shape[1:3] == (144, 256)
    with pytest.raises(VderainError):
        render_particle_case("sunny_day")


def test_terminal_speed_grows_with_drop_size():
    v = terminal_speed(np.array([0.5, 1.0, 2.0, 5.0]))
    assert np.all(np.diff(v) > 0) and 1.5 < v[0] < 2.5 and 8.5 < v[-1] < 9.65


def _flat(value: int, T=3, H=96, W=160) -> np.ndarray:
    # a flat frame with faint fixed noise (the camera tracker needs corners; none move)
    rng = np.random.default_rng(0)
    frame = np.clip(value + rng.normal(0, 2, (H, W, 3)), 0, 255).astype(np.uint8)
    return np.repeat(frame[None], T, 0)


def test_drops_blend_towards_their_radiance_so_the_layer_is_signed():
    # a drop shows the environment's radiance: it brightens a dark scene and darkens a bright one
    dark = render_particles(_flat(30), 30.0, seed=1, drops=20000, radiance=(1.0, 0.5))
    bright = render_particles(_flat(230), 30.0, seed=1, drops=20000, radiance=(0.5, 0.0))
    assert (dark["rainy"].astype(int) - _flat(30)).mean() > 0.3
    assert (bright["rainy"].astype(int) - _flat(230)).mean() < -0.3
    # no drops, no change
    none = render_particles(_flat(100), 30.0, seed=1, drops=0)
    assert np.array_equal(none["rainy"], _flat(100))


def _streak_tilt(rain: np.ndarray) -> float:
    """Mean orientation of the streaks from the structure tensor: >0 when they lean like '\\'."""
    g = rain.astype(np.float32).mean(-1)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    # a streak along direction (dx, dy) has gradients across it: gx*gy has the sign of -dx*dy
    return -float((gx * gy).sum() / ((gx * gx + gy * gy).sum() + 1e-6))


def test_wind_tilts_the_streaks():
    base = _flat(40)
    tilts = {}
    for wind in (-6.0, 6.0):
        out = render_particles(base, 30.0, seed=3, drops=20000, wind=wind, radiance=(1.0, 0.5))
        tilts[wind] = _streak_tilt(out["rainy"][1].astype(int) - base[1])
    # wind to the right, drops fall to the lower right: streaks along (+x, +y), leaning '\'
    assert tilts[6.0] > 0.05 and tilts[-6.0] < -0.05


def test_a_long_pan_keeps_its_rain():
    # the drop volume follows the view: 40 frames at 8 px/frame cross the frame twice over, and
    # the last frame has as much rain as the first, on both sides
    rng = np.random.default_rng(2)
    big = cv2.GaussianBlur(rng.random((80, 560, 3)).astype(np.float32), (0, 0), 1.5)
    big = (big / big.max() * 100).astype(np.uint8)
    pan = np.stack([big[8:72, 400 - 8 * k: 496 - 8 * k] for k in range(40)])
    alpha = render_particles(pan, 30.0, seed=5, drops=20000, z=(0.8, 12.0))["alpha"]
    first, last = alpha[1].mean(), alpha[-1].mean()
    assert 0.6 < last / first < 1.6
    left, right = alpha[-1][:, :48].mean(), alpha[-1][:, 48:].mean()
    assert 0.5 < left / right < 2.0


def test_bad_parameters_are_one_line_errors():
    frames = _flat(50)
    for kw in ({"z": (0.0, 10.0)}, {"z": (5.0, 2.0)}, {"drops": -1}):
        with pytest.raises(VderainError):
            render_particles(frames, 30.0, seed=0, **kw)
    with pytest.raises(VderainError):
        render_particles(frames, 0.0, seed=0)


def test_camera_motion_finds_a_shift_and_a_zoom():
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.random((300, 400, 3)).astype(np.float32), (0, 0), 2)
    big = (big / big.max() * 255).astype(np.uint8)
    a = big[50:194, 50:306]
    shifted = big[49:193, 47:303]            # the scene moved by (+3, +1)
    m = camera_motion(np.stack([a, shifted]))
    assert np.allclose(m[0], np.eye(2, 3))
    assert np.allclose(m[1][:, 2], (3, 1), atol=0.3) and np.allclose(m[1][:, :2], np.eye(2), atol=0.02)
    zoomed = cv2.warpAffine(a, cv2.getRotationMatrix2D((128, 72), 0, 1.05), (256, 144), borderMode=cv2.BORDER_REFLECT)
    m = camera_motion(np.stack([a, zoomed]))
    assert abs(np.sqrt(np.linalg.det(m[1][:, :2])) - 1.05) < 0.01


def test_rain_turns_with_a_panning_camera():
    # a camera panning right to left moves the scene (and the rain around the camera) right:
    # rendered over such a pan, still streaks lean along the scene's motion
    rng = np.random.default_rng(1)
    big = cv2.GaussianBlur(rng.random((120, 400, 3)).astype(np.float32), (0, 0), 1.5)
    big = (big / big.max() * 120).astype(np.uint8)
    pan = np.stack([big[10:106, 200 - 6 * k: 360 - 6 * k] for k in range(4)])   # +6 px/frame
    still = render_particles(pan, 30.0, seed=4, drops=20000, radiance=(1.0, 0.5), shutter=1.0)
    rain = still["rainy"][2].astype(int) - pan[2]
    assert _streak_tilt(rain) > 0.05     # falling and carried right: '\'
