"""The benchmark suite: every case renders, deterministically, in the promised format."""
import numpy as np
import pytest

from vderain import VderainError
from vderain.synth.suite import SUITE_CASES, case_recipe, render_case


def test_suite_covers_required_situations():
    names = " ".join(SUITE_CASES)
    for word in ("light", "heavy", "night", "dashcam", "storm", "norain_stripes", "norain_fence"):
        assert word in names, word
    assert len(set(SUITE_CASES)) == len(SUITE_CASES)
    # held out: procedural seeds below the trainer's procedural range (>= 10000)
    assert all(case_recipe(n)["scene"][0] < 10000 for n in SUITE_CASES)


@pytest.mark.parametrize("name", SUITE_CASES)
def test_case_renders(name):
    c = render_case(name, frames=4, height=40, width=56)
    assert c["rainy"].shape == c["clean"].shape == (4, 40, 56, 3)
    assert c["rainy"].dtype == np.uint8 and c["clean"].dtype == np.uint8
    assert c["fps"] > 0 and c["meta"]["case"] == name
    diff = np.abs(c["rainy"].astype(int) - c["clean"].astype(int))
    if c["meta"]["rain_free"]:
        assert name.startswith("norain") and diff.max() == 0
    else:
        assert diff.mean() > 0.3


def test_deterministic_and_default_size():
    a = render_case("heavy_static", frames=3)
    b = render_case("heavy_static", frames=3)
    assert np.array_equal(a["rainy"], b["rainy"]) and np.array_equal(a["clean"], b["clean"])
    assert a["rainy"].shape[1:3] == (144, 256)


def test_unknown_case():
    with pytest.raises(VderainError):
        render_case("sunny_day")


def test_rain_overrides_isolate_haze_and_streaks_with_the_same_draws():
    full = render_case("drizzle_static", frames=3, height=48, width=64)
    no_veil = render_case("drizzle_static", frames=3, height=48, width=64, rain_overrides={"veil": 0.0})
    nothing = render_case("drizzle_static", frames=3, height=48, width=64,
                          rain_overrides={"veil": 0.0, "opacity": 0.0})
    assert np.array_equal(full["clean"], no_veil["clean"]) and np.array_equal(full["clean"], nothing["clean"])
    assert no_veil["meta"]["params"]["veil"] == 0.0 and full["meta"]["params"]["veil"] > 0.1
    assert not np.array_equal(full["rainy"], no_veil["rainy"])
    assert np.abs(nothing["rainy"].astype(int) - nothing["clean"]).max() <= 1   # no rain left at all


@pytest.mark.parametrize("kw", [dict(frames=0), dict(height=0), dict(width=0)])
def test_zero_sizes_are_refused_not_replaced_by_defaults(kw):
    with pytest.raises(VderainError):
        render_case("light_pan", **kw)
