"""`vderain bench`: dataset layouts, external outputs, skipped methods, report files."""
import json
import os

import cv2
import numpy as np
import pytest

from vderain import VderainError, bench
from vderain.cli import main
from vderain.metrics.report import terminal_table
from vderain.metrics.toy import add_streaks, translating

from videogen import read_all


def write_frames(folder, frames):
    os.makedirs(folder, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"{i + 1}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


def write_video(path, frames, fps=25):
    import av
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
        s.options = {"qp": "0"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def pair(seed, n=8, h=48, w=64, speed=(0.0, 0.0)):
    clean = translating(n, h, w, speed=speed, seed=seed)
    return add_streaks(clean, seed=seed + 100), clean


@pytest.fixture
def suffixed(tmp_path):
    """NTURain-like: <name>_Rain/ beside <name>_GT/, frames 1.png, 2.png, ... (10 sorts after 9)."""
    root = tmp_path / "data"
    for name, seed, speed in (("a1", 1, (0, 0)), ("b2", 2, (1.0, 0.5))):
        rainy, clean = pair(seed, n=11, speed=speed)
        write_frames(root / f"{name}_Rain", rainy)
        write_frames(root / f"{name}_GT", clean)
    return root


def run(args):
    return main(["bench", "--no-progress"] + [str(a) for a in args])


def test_layouts_are_discovered(tmp_path, suffixed):
    specs = bench.discover_pairs(str(suffixed))
    assert [s.name for s in specs] == ["a1", "b2"] and specs[0].rain.endswith("a1_Rain")
    # rain/ + gt/ trees of per-sequence folders and videos
    trees = tmp_path / "trees"
    rainy, clean = pair(3)
    write_frames(trees / "rainy" / "s1", rainy)
    write_frames(trees / "gt" / "s1", clean)
    write_video(str(trees / "rainy" / "v.mp4"), rainy)
    write_video(str(trees / "gt" / "v.mp4"), clean)
    specs = {s.name: s for s in bench.discover_pairs(str(trees))}
    assert sorted(specs) == ["s1", "v"]
    video = bench.load_pair(specs["v"])                       # paired videos decode like frame folders
    assert video.rainy.shape == video.clean.shape == (8, 48, 64, 3)
    assert np.abs(video.clean.astype(int) - clean).mean() < 3  # lossless-ish H.264 4:4:4
    # a single pair: rain/*.png + gt/*.png
    single = tmp_path / "single"
    write_frames(single / "rain", rainy)
    write_frames(single / "clean", clean)
    assert [s.name for s in bench.discover_pairs(str(single))] == ["single"]
    # one folder per sequence
    per = tmp_path / "per"
    write_frames(per / "x" / "input", rainy)
    write_frames(per / "x" / "target", clean)
    assert [s.name for s in bench.discover_pairs(str(per))] == ["x"]
    with pytest.raises(VderainError, match="no rainy/clean pairs"):
        bench.discover_pairs(str(tmp_path / "trees" / "gt" / "s1"))


def test_frames_load_in_numeric_order(suffixed):
    seq = bench.load_pair(bench.discover_pairs(str(suffixed))[0])
    rainy, clean = pair(1, n=11)
    np.testing.assert_array_equal(seq.clean, clean)            # 1..11.png in order, not 1, 10, 11, 2...
    np.testing.assert_array_equal(seq.rainy, rainy)


def test_pairs_with_builtin_and_external_methods(tmp_path, suffixed):
    # An "external method" whose outputs are the ground truth itself must score perfectly,
    # with exactly the code that scores the built-in methods.
    ext = tmp_path / "ext"
    for name, seed, speed in (("a1", 1, (0, 0)), ("b2", 2, (1.0, 0.5))):
        write_frames(ext / name, pair(seed, n=11, speed=speed)[1])
    out = tmp_path / "report"
    assert run(["--pairs", suffixed, "--methods", "identity,median", "--external", f"oracle={ext}",
                "--out", out, "--skip", 1, "--save-outputs"]) == 0
    for f in ("table.md", "results.csv", "results.json", "report.html", "curve_a1.png", "profile_b2.png"):
        assert (out / f).stat().st_size > 0, f
    res = json.loads((out / "results.json").read_text())
    summ = res["summary"]
    assert summ["oracle"]["mean"]["psnr_y"] == 100 and summ["oracle"]["mean"]["ewarp_gap"] == pytest.approx(0)
    assert summ["median"]["mean"]["psnr_y"] > summ["identity"]["mean"]["psnr_y"] + 5
    assert summ["median"]["mean"]["flicker_ratio"] < 0.5
    assert summ["median"]["perf"]["fps"] > 0 and "perf" not in summ["oracle"]
    seq = res["sequences"][0]
    assert seq["protocol"]["frames_scored"] == 9 and len(seq["results"]["median"]["per_frame"]["psnr_y"]) == 9
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "oracle" in (out / "table.md").read_text()
    # Saved outputs scored as an external method give the same numbers as the built-in run.
    again = tmp_path / "again"
    assert run(["--pairs", suffixed, "--methods", "identity", "--external", f"saved={out / 'outputs' / 'median'}",
                "--out", again, "--skip", 1]) == 0
    saved = json.loads((again / "results.json").read_text())["summary"]["saved"]["mean"]
    for k, v in summ["median"]["mean"].items():
        assert saved[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_an_external_output_without_its_end_frames_is_scored_with_skip(tmp_path, suffixed, capsys):
    """Sliding-window methods often write T-2k frames (no output for the first and last k):
    scored as frames k..T-k-1 when --skip k drops those ends; refused, with the way, otherwise."""
    full, short = tmp_path / "full", tmp_path / "short"
    for name, seed, speed in (("a1", 1, (0, 0)), ("b2", 2, (1.0, 0.5))):
        clean = pair(seed, n=11, speed=speed)[1]
        noisy = np.clip(clean.astype(int) + np.random.default_rng(seed).integers(-9, 10, clean.shape), 0, 255)
        write_frames(full / name, noisy.astype(np.uint8))
        write_frames(short / name, noisy[2:-2].astype(np.uint8))
    out = tmp_path / "r"
    assert run(["--pairs", suffixed, "--methods", "identity", "--external", f"full={full}",
                "--external", f"short={short}", "--out", out, "--skip", 2]) == 0
    assert "taken as frames 2..8" in capsys.readouterr().err
    summ = json.loads((out / "results.json").read_text())["summary"]
    for k, v in summ["full"]["mean"].items():
        assert summ["short"]["mean"][k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    assert run(["--pairs", suffixed, "--methods", "identity", "--external", f"short={short}",
                "--out", tmp_path / "r1", "--skip", 1]) == 0
    err = capsys.readouterr().err
    assert "has 7 frames, the sequence has 11 (an output without its first and last 2 frames is scored with --skip 2" in err


def test_external_problems_are_reported_not_fatal(tmp_path, suffixed, capsys):
    ext = tmp_path / "ext"
    write_frames(ext / "a1", pair(1, n=10)[1])                # one frame short; b2 missing
    out = tmp_path / "r"
    assert run(["--pairs", suffixed, "--methods", "identity", "--external", f"other={ext}", "--out", out]) == 0
    res = json.loads((out / "results.json").read_text())
    st = {s["name"]: s["results"]["other"]["status"] for s in res["sequences"]}
    assert st["a1"].startswith("failed:") and "10 frames" in st["a1"]
    assert st["b2"].startswith("missing:")
    assert "other" in capsys.readouterr().err
    assert run(["--pairs", suffixed, "--methods", "identity", "--external", f"other={ext}", "--out", out,
                "--strict"]) == 1


def test_a_method_scored_on_some_sequences_is_also_compared_like_for_like(tmp_path, suffixed):
    ext = tmp_path / "ext"
    write_frames(ext / "a1", pair(1, n=11)[1])                # the ground truth for a1 only
    out = tmp_path / "r"
    assert run(["--pairs", suffixed, "--methods", "identity", "--external", f"oracle={ext}", "--out", out]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["oracle"]["status"].startswith("partial") and res["scopes"]["summary_common"] == ["a1"]
    a1 = next(s for s in res["sequences"] if s["name"] == "a1")["results"]["identity"]["mean"]["psnr_y"]
    both = res["summary"]["identity"]["mean"]["psnr_y"]
    common = res["summary_common"]
    assert common["identity"]["mean"]["psnr_y"] == pytest.approx(a1) and both != pytest.approx(a1)
    assert common["identity"]["sequences"] == common["oracle"]["sequences"] == 1
    assert "Like for like" in (out / "table.md").read_text()
    rows = (out / "results.csv").read_text().splitlines()
    assert sorted(r.split(",")[1] for r in rows if r.startswith("MEAN-common,")) == ["(ground truth)", "identity", "oracle"]
    # every method scored everywhere: no second table
    assert run(["--pairs", suffixed, "--methods", "identity,median", "--out", tmp_path / "r2"]) == 0
    assert "summary_common" not in json.loads((tmp_path / "r2" / "results.json").read_text())


def test_method_without_weights_is_skipped(tmp_path, monkeypatch, capsys):
    import vderain.methods as methods
    real = methods.get_method

    def fake(name, device="auto", **kw):
        if name == "quality":
            raise VderainError("weights for 'quality' not found")
        return real(name, device, **kw)
    monkeypatch.setattr(methods, "get_method", fake)
    out = tmp_path / "r"
    assert run(["--suite", "toy", "--methods", "identity,quality-framewise", "--out", out]) == 0
    captured = capsys.readouterr()
    assert "quality-framewise" in captured.err and "weights for 'quality' not found" in captured.err
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["quality-framewise"]["status"].startswith("skipped:")
    assert res["summary"]["identity"]["status"] == "ok"
    assert "skipped" in captured.out                           # visible in the terminal table too


def test_two_sequences_of_one_name_are_an_error_not_one_hidden(tmp_path):
    still = np.repeat(translating(1, 48, 64, seed=5), 4, axis=0)
    write_frames(tmp_path / "real" / "a1", still)
    write_video(str(tmp_path / "real" / "a1.mp4"), still)
    with pytest.raises(VderainError, match="are both sequence 'a1'"):
        bench.discover_real(str(tmp_path / "real"))


def test_real_footage_without_ground_truth(tmp_path):
    still = np.repeat(translating(1, 48, 64, seed=5), 8, axis=0)
    write_frames(tmp_path / "clip", add_streaks(still, seed=6))
    out = tmp_path / "r"
    assert run(["--real", tmp_path / "clip", "--methods", "identity,median", "--out", out]) == 0
    res = json.loads((out / "results.json").read_text())
    m = res["summary"]["median"]["mean"]
    assert "psnr_y" not in m and m["flicker_ratio"] < 0.5
    assert res["summary"]["identity"]["mean"]["flicker_ratio"] == pytest.approx(1)
    assert "input" in res["sequences"][0]["protocol"]["warp_flow"]


def test_a_phone_clip_is_read_upright(clips):
    """A clip coded landscape with a display rotation was scored, and shown to the method, on its
    side: rain falling sideways, unlike what `vderain run` gives the method."""
    coded, _, info = read_all(clips["rotated"])
    assert info.rotation == 90
    frames, _ = bench.read_frames(clips["rotated"])
    assert frames.shape == (coded.shape[0], coded.shape[2], coded.shape[1], 3)
    np.testing.assert_array_equal(frames[3], np.rot90(coded[3]))


def test_bad_arguments(tmp_path, capsys):
    assert run(["--suite", "toy", "--methods", "identity,nope", "--out", tmp_path / "r"]) == 1
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert run(["--suite", "nope", "--out", tmp_path / "r"]) == 1
    (tmp_path / "empty").mkdir()
    assert run(["--pairs", tmp_path / "empty", "--out", tmp_path / "r"]) == 1
    assert "no rainy/clean pairs" in capsys.readouterr().err
    assert run(["--suite", "toy", "--external", "x", "--out", tmp_path / "r"]) == 1
    # an external method's name becomes a folder under OUT/outputs/: a path would write elsewhere
    assert run(["--suite", "toy", "--external", f"../x={tmp_path}", "--save-outputs", "--out", tmp_path / "r"]) == 1
    assert "the name '../x' must not be a path" in capsys.readouterr().err and not (tmp_path / "r" / "x").exists()


def test_library_api_and_terminal_table():
    seqs = list(bench.suite_sequences("toy", ["toy-still"], frames=6))
    res = bench.run_bench(seqs, bench.parse_methods("identity,median"), bench.BenchOptions(progress=False),
                          log=lambda m: None)
    text = terminal_table(res)
    assert "median" in text and "PSNR-Y" in text and "(ground truth)" in text
    assert res["summary"]["median"]["mean"]["psnr_y"] > res["summary"]["identity"]["mean"]["psnr_y"]


def test_rain_free_cases_get_their_own_table():
    rainy, clean = pair(20)
    seqs = [bench.Sequence("wet", rainy, clean), bench.Sequence("dry", clean, clean, meta={"rain_free": True})]
    res = bench.run_bench(seqs, bench.parse_methods("identity"), bench.BenchOptions(progress=False),
                          log=lambda m: None)
    assert res["summary"]["identity"]["sequences"] == 1 and res["summary"]["identity"]["mean"]["psnr_y"] < 40
    assert res["summary_rain_free"]["identity"]["mean"]["psnr_y"] == 100
    text = terminal_table(res)
    assert "Mean over 1 rainy sequences" in text and "Rain-free sequences (1)" in text


def test_synthetic_suite_end_to_end(tmp_path):
    # The acceptance command on two tiny cases (one rainy, one rain-free) of the real suite.
    out = tmp_path / "r"
    assert run(["--suite", "synthetic", "--cases", "light_pan,norain_stripes", "--frames", 6, "--height", 48,
                "--width", 64, "--methods", "identity,median", "--out", out]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in res["sequences"]] == ["light_pan", "norain_stripes"]
    assert res["sequences"][1]["rain_free"] and res["summary_rain_free"]["identity"]["mean"]["psnr_y"] == 100
    assert res["summary"]["identity"]["mean"]["psnr_y"] < 60


def test_particle_suite_end_to_end(tmp_path):
    # the held-out renderer's suite through the same command; the median removes flickering drops
    out = tmp_path / "r"
    assert run(["--suite", "particles", "--cases", "p_fast_shutter,p_drizzle_static", "--frames", 8, "--height", 48,
                "--width", 80, "--methods", "identity,median", "--out", out]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in res["sequences"]] == ["p_fast_shutter", "p_drizzle_static"]
    mean = {m: res["summary"][m]["mean"]["psnr_y"] for m in ("identity", "median")}
    assert mean["identity"] < 60 and mean["median"] > mean["identity"]


def test_live_twins_are_builtin_methods(tmp_path):
    out = tmp_path / "r"
    assert run(["--suite", "toy", "--methods", "fast-causal", "--out", out]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["fast-causal"]["status"] == "ok"
    assert res["methods"][0]["kwargs"] == {"causal": True}


# ------------------------------------------------------------------ nothing scored silently wrong

def test_a_damaged_frame_is_not_scored_against_the_wrong_ground_truth(tmp_path, suffixed, capsys):
    (suffixed / "a1_GT" / "4.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")   # one corrupt frame
    rainy, clean = pair(2, n=11, speed=(1.0, 0.5))
    small = cv2.resize(cv2.cvtColor(clean[2], cv2.COLOR_RGB2BGR), (65, 48))
    cv2.imwrite(str(suffixed / "b2_GT" / "3.png"), small)                     # one frame of another size
    out = tmp_path / "r"
    assert run(["--pairs", suffixed, "--methods", "identity", "--out", out]) == 1   # nothing scored
    err = capsys.readouterr().err
    assert "sequence 'a1' not scored" in err and "4.png" in err
    assert "sequence 'b2' not scored" in err and "65x48" in err
    assert "no sequence could be scored" in err and "Traceback" not in err
    assert json.loads((out / "results.json").read_text())["unscored"][0]["name"] == "a1"


def test_sides_that_do_not_pair_up_are_named_not_cut(tmp_path, capsys):
    root = tmp_path / "data"
    rainy, clean = pair(1, n=8)
    write_frames(root / "long_Rain", rainy)
    write_frames(root / "long_GT", clean[:3])          # 8 against 3: which pair up is unknown
    write_frames(root / "plus1_Rain", rainy)
    write_frames(root / "plus1_GT", clean[:7])         # one extra frame: the common part, with a note
    write_frames(root / "street_night_Rain", rainy)    # a name with separators and words of its own
    write_frames(root / "street_night_GT", clean)
    write_frames(root / "orphan_Rain", rainy)          # no clean side
    ext = tmp_path / "ext"
    for name in ("plus1", "street_night"):
        write_frames(ext / name, clean)                # a method that derained all 8 rainy frames
    out = tmp_path / "r"
    assert run(["--pairs", root, "--methods", "identity", "--external", f"oracle={ext}", "--out", out]) == 0
    err = capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in res["sequences"]] == ["plus1", "street_night"]
    assert [s["frames"] for s in res["sequences"]] == [7, 8]
    assert all(s["results"]["oracle"]["mean"]["psnr_y"] == 100 for s in res["sequences"])
    assert "plus1: rainy side 8 frames, clean side 7: scored on the first 7" in err
    assert "sequence 'long' not scored: the rainy side has 8 frames, the clean side 3" in err
    assert "no rainy/clean partner" in err and "orphan_Rain" in err
    assert sorted(u["name"].split(os.sep)[-1] for u in res["unscored"]) == ["long", "orphan_Rain"]
    assert run(["--pairs", root, "--methods", "identity", "--out", out, "--strict"]) == 1
    # a greyscale output of a colour input is scored, with a note
    write_frames(ext / "street_night", np.repeat(clean.mean(-1, keepdims=True).astype(np.uint8), 3, -1))
    assert run(["--pairs", root, "--methods", "identity", "--external", f"oracle={ext}", "--out", out]) == 0
    assert "oracle on street_night: the output is greyscale" in capsys.readouterr().err
    # --max-frames caps external outputs like the pair
    assert run(["--pairs", root, "--methods", "identity", "--external", f"oracle={ext}", "--out", out,
                "--max-frames", 5]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [(s["name"], s["frames"], s["results"]["oracle"]["status"]) for s in res["sequences"]] == \
        [("plus1", 5, "ok"), ("street_night", 5, "ok")]


def test_a_sequence_the_metrics_cannot_take_is_named_not_a_crash(tmp_path, capsys):
    # 8x8 frames made OpenCV's DIS raise (a traceback; thin frames such as 12x50 segfault it):
    # that sequence is now "not scored" with its reason and the others are scored.
    root = tmp_path / "data"
    rainy, clean = pair(1, n=6)
    write_frames(root / "ok_Rain", rainy)
    write_frames(root / "ok_GT", clean)
    write_frames(root / "tiny_Rain", rainy[:, :8, :8])
    write_frames(root / "tiny_GT", clean[:, :8, :8])
    out = tmp_path / "r"
    assert run(["--pairs", root, "--methods", "identity", "--out", out]) == 0
    err = capsys.readouterr().err
    assert "sequence 'tiny' not scored: frames of 8x8 px" in err and "too small" in err and "Traceback" not in err
    res = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in res["sequences"]] == ["ok"] and res["unscored"][0]["name"] == "tiny"
    # --skip that leaves nothing of every sequence: each named, then one error line, exit 1
    assert run(["--pairs", root, "--methods", "identity", "--out", out, "--skip", 3]) == 1
    err = capsys.readouterr().err
    assert "sequence 'ok' not scored: dropping 3 frames" in err and "no sequence could be scored" in err


def test_unknown_cases_are_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "r"
    assert run(["--suite", "toy", "--cases", "toy-pan,nope", "--methods", "identity", "--out", out]) == 1
    err = capsys.readouterr().err
    assert "unknown case(s) nope" in err and "toy-pan:" not in err and not out.exists()
    assert run(["--suite", "toy", "--cases", "toy-pan,toy-pan", "--out", out]) == 1
    assert "names a case twice" in capsys.readouterr().err


def test_real_refuses_a_single_image_with_its_reason(tmp_path, capsys):
    write_frames(tmp_path / "clip", pair(1, n=2)[0])
    assert run(["--real", tmp_path / "clip" / "1.png", "--out", tmp_path / "r"]) == 1
    assert "--real expects a video, a frame folder or a folder of them" in capsys.readouterr().err


def test_ground_truth_row_has_no_ewarp_gap_when_there_is_no_ewarp(tmp_path):
    # one frame per case: no temporal metric, so the reference row's Ewarp-GT is n/a, not 0
    out = tmp_path / "r"
    assert run(["--suite", "toy", "--frames", 1, "--methods", "identity", "--out", out]) == 0
    rows = [r.split(",") for r in (out / "results.csv").read_text().splitlines()]
    head = rows[0]
    gt = next(r for r in rows if r[:2] == ["MEAN", "(ground truth)"])
    assert gt[head.index("ewarp")] == "" and gt[head.index("ewarp_gap")] == ""
