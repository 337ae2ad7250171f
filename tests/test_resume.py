"""--resume: a long file written in parts that survive an interruption and are joined at the end."""
import os

import numpy as np
import pytest
import torch

from videogen import make_joined_ts, make_video, read_all, stream_summary, tone_onset, tone_onsets
from vderain import VderainError
from vderain.cli import main
from vderain.io import segments
from vderain.methods import Method
from vderain.pipeline import derain_video


class WindowMean(Method):
    """Mean of a 5-frame window: cheap, deterministic, and wrong without its temporal context."""
    name = "window-mean"
    window, target = 5, 2

    def __init__(self, stop_after=None):
        self.calls, self.stop_after = 0, stop_after

    def __call__(self, clips):
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        return clips.mean(1)


LOSSLESS = dict(codec="ffv1", progress=False, segment_seconds=0.25)  # 6 frames a part at 24 fps


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("resume") / "in.mkv", n=40, audio=True)


def test_interrupted_run_resumes_and_matches_an_uninterrupted_one(source, tmp_path):
    straight = tmp_path / "straight.mkv"
    derain_video(source, straight, method=WindowMean(), resume=True, **LOSSLESS)
    out = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        derain_video(source, out, method=WindowMean(stop_after=70), resume=True, **LOSSLESS)
    assert not out.exists()
    kept = sorted(os.listdir(segments.parts_dir(str(out))))
    # parts of 0.25 s = 6 frames at 24 fps; each also reads 12 context frames on each side
    assert "part_00001.mkv" in kept and "part_00003.mkv" not in kept
    done = sum(1 for n in kept if n.endswith(".json") and n.startswith("part_"))
    again = WindowMean()
    summary = derain_video(source, out, method=again, resume=True, **LOSSLESS)
    assert summary["frames"] == 40 - 6 * done  # the finished parts were not redone
    assert any(f"resuming: {done} of 7 parts already done" in n for n in summary["notes"])
    assert not os.path.exists(segments.parts_dir(str(out)))
    a, ta, _ = read_all(straight)
    b, tb, _ = read_all(out)
    assert a.shape == b.shape == (40,) + a.shape[1:] and np.array_equal(a, b)  # context frames were used
    assert ta == tb
    assert stream_summary(out) == stream_summary(straight)  # audio joined once, whole


def test_timestamps_and_audio_survive_the_join(clips, tmp_path):
    out = tmp_path / "vfr.mp4"
    derain_video(clips["vfr"], out, method="identity", resume=True, progress=False, segment_seconds=0.1)
    _, t_in, _ = read_all(clips["vfr"])
    _, t_out, _ = read_all(out)
    assert t_out == pytest.approx(t_in, abs=1e-3)
    out2 = tmp_path / "dash.mp4"
    derain_video(clips["audio"], out2, method="identity", resume=True, progress=False, segment_seconds=0.2)
    assert stream_summary(out2) == stream_summary(clips["audio"])


@pytest.mark.parametrize("ext", ["avi", "mp4"])
def test_audio_starts_where_it_does_in_one_run(tmp_path, ext):
    """AVI's demuxer gives a part's packets pts = dts + 1, and the join took that for the first
    frame's time: 64 ms of audio cut from the start of a resumed .avi, sound ahead of picture."""
    src = make_video(tmp_path / "in.mp4", n=24, audio=True, tone_from=0.5)
    derain_video(src, tmp_path / f"one.{ext}", method="identity", progress=False)
    derain_video(src, tmp_path / f"parts.{ext}", method="identity", progress=False, resume=True,
                 segment_seconds=0.25)
    assert tone_onset(tmp_path / f"parts.{ext}") == pytest.approx(tone_onset(tmp_path / f"one.{ext}"), abs=0.005)


def test_mpeg_ts_joined_end_to_end_resumes(tmp_path):
    """Each part seeks to its start, and in `cat a.ts a.ts` the file's own timestamps start again
    at the join: the parts overlapped and the join failed ('their timestamps overlap')."""
    src = make_joined_ts(tmp_path / "ab.ts")
    derain_video(src, tmp_path / "one.mkv", method="identity", **LOSSLESS)
    derain_video(src, tmp_path / "parts.mkv", method="identity", resume=True, **LOSSLESS)
    one, t_one, _ = read_all(tmp_path / "one.mkv")
    parts, t_parts, _ = read_all(tmp_path / "parts.mkv")
    assert len(one) == 96
    np.testing.assert_array_equal(parts, one)
    assert t_parts == pytest.approx(t_one, abs=1e-3)
    assert len(tone_onsets(tmp_path / "one.mkv")) == 2
    assert tone_onsets(tmp_path / "parts.mkv") == pytest.approx(tone_onsets(tmp_path / "one.mkv"), abs=0.005)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_matroska_parts_with_b_frames_join(clips, tmp_path, codec):
    # Matroska stores no dts: a part's first packets come back without one, and the join must
    # still hand the muxer rising dts (it raised "non monotonically increasing dts" here).
    straight, out = tmp_path / "straight.mkv", tmp_path / "out.mkv"
    opts = dict(method="identity", codec=codec, progress=False)
    derain_video(clips["audio"], straight, **opts)
    derain_video(clips["audio"], out, resume=True, segment_seconds=0.2, **opts)
    _, ta, _ = read_all(straight)
    _, tb, info = read_all(out)
    # within Matroska's 1 ms clock (a part's start and its frames are each rounded to it)
    assert len(tb) == 24 and tb == pytest.approx(ta, abs=1.5e-3) and info.codec == codec
    assert stream_summary(out) == stream_summary(straight)


def test_interrupted_join_is_retried(source, tmp_path, monkeypatch):
    out = tmp_path / "out.mkv"
    real_join = segments.join_parts

    def broken_join(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(segments, "join_parts", broken_join)
    with pytest.raises(KeyboardInterrupt):
        derain_video(source, out, method=WindowMean(), resume=True, **LOSSLESS)
    assert not out.exists()
    monkeypatch.setattr(segments, "join_parts", real_join)
    m = WindowMean()
    summary = derain_video(source, out, method=m, resume=True, **LOSSLESS)
    assert m.calls == 0 and summary["frames"] == 0  # nothing recomputed: only joined
    assert summary["parts"] == {"done": 7, "total": 7, "dir": segments.parts_dir(str(out)), "joined": True}
    assert read_all(out)[0].shape[0] == 40


def test_other_settings_are_refused_not_mixed(source, tmp_path):
    out = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        derain_video(source, out, method=WindowMean(stop_after=10), resume=True, **LOSSLESS)
    with pytest.raises(VderainError, match="another --codec, --crf;"):
        derain_video(source, out, method=WindowMean(), resume=True, **dict(LOSSLESS, codec="h264"), crf=30)
    with pytest.raises(VderainError, match="another --method"):
        derain_video(source, out, method="identity", resume=True, **LOSSLESS)
    with pytest.raises(VderainError, match="another --segment;"):
        derain_video(source, out, method=WindowMean(), resume=True, **dict(LOSSLESS, segment_seconds=1))


@pytest.mark.parametrize("extra, message", [
    (["--rain-layer", "{tmp}/r.mp4"], "--rain-layer"),
    (["--start", "1"], "--start"),
    (["--segment", "0"], "--segment"),
])
def test_cli_refuses_what_resume_cannot_do(source, tmp_path, capsys, extra, message):
    args = ["run", str(source), "-o", str(tmp_path / "o.mp4"), "--method", "identity", "--resume", "-q"]
    assert main(args + [a.format(tmp=tmp_path) for a in extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o.mp4").exists()


def test_cli_resume_runs_and_reports(source, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    assert main(["run", str(source), "-o", str(out), "--method", "identity", "--resume", "--segment", "0.5",
                 "-q"]) == 0
    assert "40 frames" in capsys.readouterr().out and read_all(out)[0].shape[0] == 40


def test_batch_mode_resumes_the_file_it_was_in(source, tmp_path, monkeypatch):
    import shutil
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mkv", "b.mkv"):
        shutil.copy(source, folder / name)
    from vderain import pipeline
    real = pipeline.resolve_method
    stopping = WindowMean(stop_after=90)
    monkeypatch.setattr(pipeline, "resolve_method", lambda *a, **k: stopping)
    args = ["run", str(folder), "-o", str(tmp_path / "out") + "/", "--resume", "--segment", "0.25", "-q",
            "--codec", "ffv1"]
    assert main(args) == 130
    kept = os.listdir(segments.parts_dir(str(tmp_path / "out" / "a.mkv")))
    assert "part_00002.mkv" in kept  # a.mkv was half done when Ctrl-C came
    monkeypatch.setattr(pipeline, "resolve_method", lambda *a, **k: WindowMean())
    assert main(args) == 0
    monkeypatch.setattr(pipeline, "resolve_method", real)
    outs = sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".mkv")
    assert outs == ["a.mkv", "b.mkv"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith("vderain-parts")]
    assert all(read_all(tmp_path / "out" / n)[0].shape[0] == 40 for n in outs)


def test_rotation_and_colour_tags_survive_the_join(clips, tmp_path):
    from vderain.io import open_video
    for name in ("rotated", "bt709"):
        out = tmp_path / f"{name}.mp4"
        derain_video(clips[name], out, method="identity", resume=True, progress=False, segment_seconds=0.2)
        with open_video(clips[name]) as a, open_video(out) as b:
            ia, ib = a.info, b.info
        assert (ib.rotation, ib.color_space, ib.color_range, ib.color_primaries, ib.color_trc) == \
               (ia.rotation, ia.color_space, ia.color_range, ia.color_primaries, ia.color_trc), name


def test_one_file_sharded_over_jobs_joins_when_the_last_shard_ends(source, tmp_path, capsys):
    straight = tmp_path / "straight.mkv"
    derain_video(source, straight, method="median", resume=True, **LOSSLESS)
    out = tmp_path / "out.mkv"
    args = ["run", str(source), "-o", str(out), "--method", "median", "--resume", "--segment", "0.25",
            "--codec", "ffv1", "-q", "--shard"]
    assert main(args + ["1/2"]) == 0
    line = capsys.readouterr().out
    assert "shard 1/2" in line and "3 of 7 parts done" in line and not out.exists()
    assert main(args + ["0/2"]) == 0
    line = capsys.readouterr().out
    assert "-> " + str(out) in line
    n = len(read_all(straight)[0])
    # the joiner derained its own parts only, and says how many frames the output holds
    assert not line.split("vderain: ")[-1].startswith(f"{n} frames") and f"({n} frames in all" in line
    assert np.array_equal(read_all(out)[0], read_all(straight)[0])
    assert not os.path.exists(segments.parts_dir(str(out)))
    # a job of the array requeued after the join: nothing to do, no orphan parts folder
    assert main(args + ["1/2"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert not os.path.exists(segments.parts_dir(str(out)))


def test_a_join_lock_whose_joiner_is_gone_is_taken_over(source, tmp_path, capsys):
    import socket
    import time
    out = tmp_path / "out.mkv"
    args = ["run", str(source), "-o", str(out), "--method", "median", "--resume", "--segment", "0.25",
            "--codec", "ffv1", "-q", "--shard"]
    assert main(args + ["1/2"]) == 0
    lock = os.path.join(segments.parts_dir(str(out)), segments.JOIN_LOCK)
    # another node is joining (its lock is fresh): this shard leaves the join to it
    with open(lock, "w") as f:
        f.write("some-other-node 4242\n")
    assert main(args + ["0/2"]) == 0
    assert "7 of 7 parts done" in capsys.readouterr().out and not out.exists()
    # ... and was killed: its lock went untouched, so the next run of any shard joins
    old = time.time() - segments.LOCK_STALE_S - 60
    os.utime(lock, (old, old))
    assert main(args + ["1/2"]) == 0
    assert "-> " + str(out) in capsys.readouterr().out and out.exists()
    # a joiner on this host killed with SIGKILL: its PID is dead
    from vderain.io.writer import HOST_ID
    out2 = tmp_path / "out2.mkv"
    args2 = [a if a != str(out) else str(out2) for a in args]
    assert main(args2 + ["1/2"]) == 0
    with open(os.path.join(segments.parts_dir(str(out2)), segments.JOIN_LOCK), "w") as f:
        f.write(f"{HOST_ID} 999999999\n")
    assert main(args2 + ["0/2"]) == 0
    assert np.array_equal(read_all(out2)[0], read_all(out)[0])


def test_a_failed_join_releases_its_lock(source, tmp_path, monkeypatch):
    out = tmp_path / "out.mkv"
    kw = dict(method="median", resume=True, **LOSSLESS)

    def killed(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(segments, "join_parts", killed)
    with pytest.raises(KeyboardInterrupt):
        derain_video(source, out, shard=(0, 1), **kw)
    assert not os.path.exists(os.path.join(segments.parts_dir(str(out)), segments.JOIN_LOCK))
    monkeypatch.undo()
    summary = derain_video(source, out, shard=(0, 1), **kw)
    assert summary["parts"]["joined"] and summary["frames"] == 0 and len(read_all(out)[0]) == 40


def test_damage_found_before_a_restart_is_still_reported(clips, tmp_path, capsys):
    data = bytearray(open(clips["faststart"], "rb").read())
    mid = int(len(data) * 0.8)
    data[mid:mid + 1500] = np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    args = ["run", str(bad), "-o", str(tmp_path / "o.mp4"), "--method", "identity", "-q",
            "--resume", "--segment", "0.5"]
    for i in (1, 2, 3):        # the parts after the first, done before a kill
        main(args + ["--shard", f"{i}/4"])
    capsys.readouterr()
    assert main(args) == 3     # the restart decodes only part 0, which is whole
    err = capsys.readouterr().err
    assert "vderain: warning: damaged input" in err and "failed to decode" in err
