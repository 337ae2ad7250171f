"""`vderain run INPUT... -o OUT_DIR/`: folders and many files, resumable, sharded, failures isolated."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import vderain.pipeline as pipeline
from vderain import VderainError
from vderain.batch import parse_shard, plan
from vderain.cli import main
from videogen import make_frame_folder, make_video, read_all

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(capsys, *argv):
    rc = main(["run", *map(str, argv), "--method", "identity", "--preset", "ultrafast", "-q"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _files(folder) -> list[str]:
    """Visible files under `folder`, relative, sorted (hidden temp files would show as a failure)."""
    found = []
    for root, _, names in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, n), folder) for n in names]
    return sorted(found)


def _summary(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("vderain: batch:")]
    assert len(lines) == 1, out
    return lines[0]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A dashcam-like folder: videos at the top and in a subfolder, a thumbnail, a note."""
    root = tmp_path_factory.mktemp("cam")
    make_video(root / "a.mp4", n=6, width=64, height=48)
    make_video(root / "b.mkv", n=6, width=64, height=48, audio=True)
    make_video(root / "c.MOV", n=6, width=64, height=48)
    make_video(root / "d.mp4", n=5, width=64, height=48)
    (root / "2024").mkdir()
    make_video(root / "2024" / "e.mp4", n=7, width=64, height=48)
    make_video(root / "2024" / "f.webm", n=6, width=64, height=48, codec="libvpx-vp9")
    make_frame_folder(root / "thumbs", n=2)  # not videos: ignored
    (root / "notes.txt").write_text("not a video\n")
    return root


def test_folder_in_folder_out_then_skip_then_overwrite(capsys, tmp_path, tree):
    out = tmp_path / "clean"  # does not exist yet: created
    rc, stdout, err = _run(capsys, tree, "-o", f"{out}/", "--recursive")
    assert rc == 0, err
    assert _summary(stdout) == f"vderain: batch: 6 done, 0 skipped (exist), 0 failed -> {out}/"
    # same relative names; containers kept where they hold H.264, webm -> mp4
    assert _files(out) == ["2024/e.mp4", "2024/f.mp4", "a.mp4", "b.mkv", "c.MOV", "d.mp4",
                           "vderain-batch.json"]
    assert len(read_all(out / "2024" / "e.mp4")[0]) == 7
    assert len(read_all(out / "d.mp4")[0]) == 5
    log = json.loads((out / "vderain-batch.json").read_text())
    assert log["counts"]["done"] == 6 and log["finished"]
    by_name = {os.path.relpath(f["output"], out): f for f in log["files"]}
    assert by_name["2024/e.mp4"]["status"] == "done" and by_name["2024/e.mp4"]["frames"] == 7
    assert by_name["a.mp4"]["seconds"] > 0 and by_name["a.mp4"]["fps"] > 0
    stamp = {p: os.stat(out / p).st_mtime_ns for p in _files(out) if p.endswith(("mp4", "mkv", "MOV"))}

    rc, stdout, _ = _run(capsys, tree, "-o", f"{out}/", "--recursive")  # resumes: nothing to do
    assert rc == 0
    assert _summary(stdout) == f"vderain: batch: 0 done, 6 skipped (exist), 0 failed -> {out}/"
    assert all(os.stat(out / p).st_mtime_ns == t for p, t in stamp.items())
    assert {f["status"] for f in json.loads((out / "vderain-batch.json").read_text())["files"]} == {"skipped"}

    os.remove(out / "b.mkv")  # as if the batch had stopped before b
    rc, stdout, _ = _run(capsys, tree, "-o", out, "--recursive")
    assert rc == 0 and "1 done, 5 skipped" in _summary(stdout) and (out / "b.mkv").exists()

    rc, stdout, _ = _run(capsys, tree, "-o", out, "--recursive", "--overwrite")
    assert rc == 0 and "6 done, 0 skipped" in _summary(stdout)
    assert all(os.stat(out / p).st_mtime_ns != t for p, t in stamp.items())


def test_not_recursive_takes_top_level_only(capsys, tmp_path, tree):
    rc, stdout, _ = _run(capsys, tree, "-o", tmp_path / "o")
    assert rc == 0 and "4 done" in _summary(stdout)
    assert _files(tmp_path / "o") == ["a.mp4", "b.mkv", "c.MOV", "d.mp4", "vderain-batch.json"]


def test_ext_and_output_inside_input_folder(capsys, tmp_path, tree):
    src = tmp_path / "cam"
    shutil.copytree(tree, src)
    out = src / "derained"  # inside the input: must not be read back as input on re-runs
    rc, stdout, err = _run(capsys, src, "-o", out, "--recursive", "--ext", "mkv")
    assert rc == 0, err
    assert _files(out) == ["2024/e.mkv", "2024/f.mkv", "a.mkv", "b.mkv", "c.mkv", "d.mkv",
                           "vderain-batch.json"]
    rc, stdout, _ = _run(capsys, src, "-o", out, "--recursive", "--ext", "mkv")
    assert rc == 0 and "0 done, 6 skipped" in _summary(stdout)


def test_corrupt_file_fails_alone(capsys, tmp_path, tree):
    src = tmp_path / "cam"
    src.mkdir()
    for name in ("a.mp4", "d.mp4"):
        shutil.copy(tree / name, src / name)
    (src / "b.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))  # garbage after a header
    data = open(tree / "a.mp4", "rb").read()
    (src / "c.mp4").write_bytes(data[: len(data) // 2])  # truncated, index lost
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, src, "-o", out)
    assert rc == 1 and "Traceback" not in err
    assert _summary(stdout) == f"vderain: batch: 2 done, 0 skipped (exist), 2 failed -> {out}"
    failed = [ln for ln in err.splitlines() if ln.startswith("vderain: failed:")]
    assert len(failed) == 2 and str(src / "b.mp4") in failed[0] and str(src / "c.mp4") in failed[1]
    assert _files(out) == ["a.mp4", "d.mp4", "vderain-batch.json"]  # nothing half-written
    log = {os.path.basename(f["input"]): f for f in json.loads((out / "vderain-batch.json").read_text())["files"]}
    assert log["b.mp4"]["status"] == "failed" and log["b.mp4"]["error"]
    assert log["c.mp4"]["status"] == "failed" and "truncated" in log["c.mp4"]["error"]
    assert log["a.mp4"]["status"] == "done"
    # a re-run retries only the failures (still failing), skips the rest
    rc, stdout, _ = _run(capsys, src, "-o", out)
    assert rc == 1 and "0 done, 2 skipped (exist), 2 failed" in _summary(stdout)


def test_shards_partition_the_files(capsys, tmp_path, tree):
    out = tmp_path / "out"
    got = []
    for i in range(2):
        rc, stdout, _ = _run(capsys, tree, "-o", out, "--recursive", "--shard", f"{i}/2")
        assert rc == 0
        log = json.loads((out / f"vderain-batch.shard-{i}-of-2.json").read_text())
        assert log["shard"] == f"{i}/2"
        got.append({os.path.relpath(f["output"], out) for f in log["files"] if f["status"] == "done"})
    every = ["2024/e.mp4", "2024/f.mp4", "a.mp4", "b.mkv", "c.MOV", "d.mp4"]  # sorted order
    assert got == [set(every[0::2]), set(every[1::2])]
    assert _files(out) == sorted(every + ["vderain-batch.shard-0-of-2.json", "vderain-batch.shard-1-of-2.json"])
    rc, stdout, _ = _run(capsys, tree, "-o", out, "--recursive", "--shard", "1/2")  # re-run is safe
    assert rc == 0 and "0 done, 3 skipped" in _summary(stdout)


def test_several_explicit_files_and_a_frame_folder(capsys, tmp_path, tree):
    frames = make_frame_folder(tmp_path / "seq", n=4)
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, tree / "a.mp4", tree / "2024" / "e.mp4", frames, "-o", out)
    assert rc == 0, err
    # relative to the deepest folder holding all inputs (tmp_path's parent holds tree and seq)
    names = [p for p in _files(out) if not p.endswith(".json")]
    assert len(names) == 3 and any(p.endswith("seq.mp4") for p in names)
    assert any(p.endswith(os.path.join("2024", "e.mp4")) for p in names)
    assert len(read_all(out / [p for p in names if p.endswith("seq.mp4")][0])[0]) == 4
    lines = [ln for ln in stdout.splitlines() if ln.startswith("vderain: [")]
    assert len(lines) == 3 and lines[0].startswith("vderain: [1/3] ")


def test_globbed_files_go_flat(capsys, tmp_path, tree):
    out = tmp_path / "out"
    rc, stdout, _ = _run(capsys, tree / "a.mp4", tree / "d.mp4", "-o", f"{out}/")
    assert rc == 0 and _files(out) == ["a.mp4", "d.mp4", "vderain-batch.json"]


def test_the_same_glob_run_again_skips_its_own_output_folder(capsys, tmp_path):
    cam = tmp_path / "cam"
    cam.mkdir()
    make_video(cam / "a.mp4", n=6, width=64, height=48)
    make_video(cam / "b.mp4", n=6, width=64, height=48)
    out = cam / "clean"

    def glob():   # what the shell passes for `cam/*`
        return sorted(str(p) for p in cam.iterdir())
    rc, stdout, _ = _run(capsys, *glob(), "-o", f"{out}/")
    assert rc == 0 and "2 done" in _summary(stdout)
    assert str(out) in glob()
    rc, stdout, _ = _run(capsys, *glob(), "-o", f"{out}/")
    assert rc == 0 and "0 done, 2 skipped" in _summary(stdout)
    assert _files(out) == ["a.mp4", "b.mp4", "vderain-batch.json"]


def test_model_loaded_once(capsys, tmp_path, tree, monkeypatch):
    calls = []
    real = pipeline.get_method

    def counting(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "get_method", counting)
    rc, stdout, _ = _run(capsys, tree, "-o", tmp_path / "out")
    assert rc == 0 and "4 done" in stdout and len(calls) == 1
    calls.clear()
    rc, stdout, _ = _run(capsys, tree, "-o", tmp_path / "out")  # all skipped: no model at all
    assert rc == 0 and "4 skipped" in stdout and calls == []


def _one_error(capsys, argv, match):
    rc, out, err = _run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("vderain: error: "), err
    assert match in lines[0] and "Traceback" not in err


def test_output_file_with_several_inputs_is_an_error(capsys, tmp_path, tree):
    _one_error(capsys, [tree / "a.mp4", tree / "d.mp4", "-o", tmp_path / "o.mp4"], "must be a folder")
    (tmp_path / "exists").write_text("x")
    _one_error(capsys, [tree / "a.mp4", tree / "d.mp4", "-o", tmp_path / "exists"], "is a file")
    _one_error(capsys, [tree, "-o", tmp_path / "o.mp4"], "must be a folder")
    assert sorted(os.listdir(tmp_path)) == ["exists"]


def test_batch_argument_errors(capsys, tmp_path, tree):
    out = tmp_path / "out"
    _one_error(capsys, [tree / "a.mp4", tmp_path / "missing.mp4", "-o", out], "input not found")
    _one_error(capsys, [tree, "-o", out, "--shard", "2/2"], "0 <= I < N")
    _one_error(capsys, [tree, "-o", out, "--shard", "x"], "I/N")
    _one_error(capsys, [tree, "-o", out, "--ext", "webm", "--codec", "h264"], "cannot hold h264")
    _one_error(capsys, [tree, "-o", out, "--rain-layer", tmp_path / "r.mp4"], "--rain-layer")
    _one_error(capsys, [tree, "-o", tree], "output folder is the input folder")
    _one_error(capsys, [tree / "a.mp4", "-o", tmp_path / "o.mp4", "--ext", "mkv"], "--ext is for batch")
    _one_error(capsys, [tree / "b.mkv", tree / "a.mp4", "-o", out, "--ext", "mp4", "--codec", "png"],
               "--codec png")
    empty = tmp_path / "nested"
    (empty / "deeper").mkdir(parents=True)
    shutil.copy(tree / "a.mp4", empty / "deeper" / "a.mp4")
    _one_error(capsys, [empty, "-o", out], "--recursive")
    assert not out.exists()


def test_a_name_clash_fails_both_files_and_the_batch_goes_on(capsys, tmp_path, tree):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(tree / "a.mp4", src / "x.mp4")
    shutil.copy(tree / "b.mkv", src / "x.mkv")
    shutil.copy(tree / "d.mp4", src / "y.mp4")
    assert [j.rel for j in plan([str(src)], str(tmp_path / "o"))] == ["x.mkv", "x.mp4", "y.mp4"]
    jobs = plan([str(src)], str(tmp_path / "o"), ext="mp4")
    assert [(os.path.basename(j.input), j.status) for j in jobs] == \
        [("x.mkv", "failed"), ("x.mp4", "failed"), ("y.mp4", "pending")]
    assert all("would both be written" in j.record["error"] and "--ext" in j.record["error"] for j in jobs[:2])
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, src, "-o", out, "--ext", "mp4")
    assert rc == 1 and "1 done, 0 skipped (exist), 2 failed" in _summary(stdout), err
    assert err.count("would both be written") == 2 and "Traceback" not in err
    assert _files(out) == ["vderain-batch.json", "y.mp4"]
    log = json.loads((out / "vderain-batch.json").read_text())
    assert [f["status"] for f in log["files"]] == ["failed", "failed", "done"]


def test_parse_shard():
    assert parse_shard(None) is None and parse_shard("0/1") == (0, 1) and parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/2", "1/0", "1", "a/b"):
        with pytest.raises(VderainError):
            parse_shard(bad)


def test_single_frame_folder_is_still_one_input(capsys, tmp_path):
    frames = make_frame_folder(tmp_path / "seq", n=4)
    rc, out, err = _run(capsys, frames, "-o", tmp_path / "o.mp4")
    assert rc == 0 and "vderain: 4 frames" in out and "batch" not in out


_SLOW_BATCH = textwrap.dedent("""
    import sys, time
    import vderain.pipeline as p
    from vderain.methods import Identity

    class Slow(Identity):
        def __call__(self, clips):
            time.sleep(0.05)
            return super().__call__(clips)

    p.resolve_method = lambda *a, **k: Slow()
    from vderain.cli import main
    sys.exit(main(["run", *sys.argv[1:], "--preset", "ultrafast", "-q"]))
""")


def test_ctrl_c_keeps_finished_files_and_resumes(capsys, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        make_video(src / name, n=40, width=64, height=48)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_BATCH, str(src), "-o", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("vderain: [1/3] ")  # a.mp4 finished, b.mp4 under way
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=60)
    stderr = proc.stderr.read()
    assert rc == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert sorted(os.listdir(out)) == ["a.mp4", "vderain-batch.json"]  # no temp file, no half b
    log = json.loads((out / "vderain-batch.json").read_text())
    assert [f["status"] for f in log["files"]] == ["done", "interrupted", "pending"]
    rc, stdout, _ = _run(capsys, src, "-o", out)
    assert rc == 0 and "2 done, 1 skipped (exist), 0 failed" in _summary(stdout)


# ------------------------------------------------------------------ --claim: jobs share a folder

def _claim_file(out, rel):
    from vderain.batch import claim_path
    return claim_path(str(out / rel))


def _hold(path, host, pid, age_s=0.0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(f"{host} {pid}\n" if host else "")
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))


def test_claim_skips_files_live_jobs_hold_and_takes_over_dead_ones(capsys, tmp_path, tree):
    from vderain.io.writer import HOST_ID
    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _hold(_claim_file(out, "a.mp4"), "other-node", 4242)                  # another host, touched now
        _hold(_claim_file(out, "b.mkv"), "other-node", 4242, age_s=3600)      # another host, gone quiet
        _hold(_claim_file(out, "c.MOV"), HOST_ID, sleeper.pid)                # this host, alive
        _hold(_claim_file(out, "d.mp4"), HOST_ID, 999999999)                  # this host, dead
        _hold(_claim_file(out, "2024/e.mp4"), HOST_ID, sleeper.pid, age_s=3600)   # a dead job's PID, reused
        _hold(_claim_file(out, "2024/f.mp4"), "", "", age_s=3600)                 # left empty by a full disk
        rc, stdout, _ = _run(capsys, tree, "-o", out, "--claim", "--recursive")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert rc == 0 and "4 done, 0 skipped (exist), 2 taken by other jobs, 0 failed" in _summary(stdout)
    logs = [n for n in os.listdir(out) if n.startswith("vderain-batch.")]
    assert len(logs) == 1 and f"-{os.getpid()}-" in logs[0]   # one log per job
    log = json.loads((out / logs[0]).read_text())
    assert log["claim"] is True and log["counts"]["elsewhere"] == 2
    assert {os.path.basename(f["output"]): f["status"] for f in log["files"]} == \
        {"a.mp4": "elsewhere", "b.mkv": "done", "c.MOV": "elsewhere", "d.mp4": "done", "e.mp4": "done",
         "f.mp4": "done"}
    # the live jobs' claims are theirs to remove; the two taken over were released when done
    assert sorted(n for n in os.listdir(out) if n.endswith(".vderain-claim")) == \
        [".a.mp4.vderain-claim", ".c.MOV.vderain-claim"]
    assert len(read_all(out / "b.mkv")[0]) == 6 and len(read_all(out / "d.mp4")[0]) == 5


def test_claim_picks_up_files_that_arrive_while_it_runs(capsys, tmp_path, tree, monkeypatch):
    src = tmp_path / "incoming"
    src.mkdir()
    shutil.copy(tree / "a.mp4", src / "a.mp4")
    real = pipeline.derain_video
    seen = []

    def arrive_during_first(inp, *a, **k):
        seen.append(os.path.basename(inp))
        if len(seen) == 1:
            shutil.copy(tree / "d.mp4", src / "0_early_name.mp4")   # sorts before a.mp4
        return real(inp, *a, **k)

    monkeypatch.setattr(pipeline, "derain_video", arrive_during_first)
    out = tmp_path / "out"
    rc, stdout, _ = _run(capsys, src, "-o", out, "--claim")
    assert rc == 0 and "2 done" in _summary(stdout)
    assert seen == ["a.mp4", "0_early_name.mp4"]
    assert sorted(n for n in os.listdir(out) if n.endswith(".mp4")) == ["0_early_name.mp4", "a.mp4"]
    assert not [n for n in os.listdir(out) if n.startswith(".")]   # no claim or temp file left
    # the static split does not: a plain run lists the folder once
    shutil.copy(tree / "d.mp4", src / "1_late.mp4")
    seen.clear()
    monkeypatch.setattr(pipeline, "derain_video", lambda inp, *a, **k: (
        seen.append(1), shutil.copy(tree / "d.mp4", src / "2_later.mp4"), real(inp, *a, **k))[-1])
    rc, stdout, _ = _run(capsys, src, "-o", out)
    assert rc == 0 and "1 done, 2 skipped" in _summary(stdout) and not (out / "2_later.mp4").exists()


def test_input_that_changes_while_read_leaves_no_output(capsys, tmp_path, tree, monkeypatch):
    src = tmp_path / "incoming"
    src.mkdir()
    shutil.copy(tree / "a.mp4", src / "a.mp4")
    shutil.copy(tree / "d.mp4", src / "d.mp4")
    real = pipeline.derain_video

    def still_copying(inp, *a, **k):
        s = real(inp, *a, **k)
        if inp.endswith("a.mp4"):
            with open(inp, "ab") as f:   # the copy into the folder goes on after we reached its end
                f.write(b"\0" * 100)
        return s

    monkeypatch.setattr(pipeline, "derain_video", still_copying)
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, src, "-o", out)
    assert rc == 1 and "1 done, 0 skipped (exist), 0 failed" not in stdout
    assert "1 done, 0 skipped (exist), 1 failed" in _summary(stdout)
    assert "a.mp4: the input changed while it was read" in err and "Traceback" not in err
    assert sorted(n for n in os.listdir(out) if not n.endswith(".json")) == ["d.mp4"]


_CLAIM_JOB = _SLOW_BATCH.replace('"--preset", "ultrafast", "-q"', '"--preset", "ultrafast", "-q", "--claim"')


def test_two_claiming_jobs_split_a_folder_without_doing_a_file_twice(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(6):
        make_video(src / f"{k}.mp4", n=12 + 4 * k, width=64, height=48)   # long and short files
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIM_JOB, str(src), "-o", str(out)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert all(rc == 0 and "Traceback" not in err for rc, _, err in results), results
    logs = [json.loads((out / n).read_text()) for n in os.listdir(out) if n.startswith("vderain-batch.")]
    assert len(logs) == 2
    done = [os.path.basename(f["output"]) for log in logs for f in log["files"] if f["status"] == "done"]
    assert sorted(done) == [f"{k}.mp4" for k in range(6)]    # each file once, by one of the jobs
    assert all(log["counts"]["done"] >= 1 for log in logs)   # both worked
    assert sorted(os.listdir(out)) == sorted([f"{k}.mp4" for k in range(6)] + [
        n for n in os.listdir(out) if n.startswith("vderain-batch.")])   # no claim or temp file left
    assert [len(read_all(out / f"{k}.mp4")[0]) for k in range(6)] == [12 + 4 * k for k in range(6)]


def test_claim_argument_errors(capsys, tmp_path, tree):
    out = tmp_path / "out"
    _one_error(capsys, [tree, "-o", out, "--claim", "--shard", "0/2"], "--claim and --shard")
    _one_error(capsys, [tree, "-o", out, "--claim", "--overwrite"], "--overwrite")
    assert not out.exists()


def test_keepalive_touches_the_claim_while_the_job_works(tmp_path):
    from vderain.io.writer import Keepalive
    claim = tmp_path / ".x.mp4.vderain-claim"
    _hold(str(claim), "h", 1, age_s=3600)
    with Keepalive(str(claim), 0.05):
        time.sleep(0.3)
    assert time.time() - os.path.getmtime(claim) < 5   # other hosts judge it by this
    _hold(str(claim), "h", 1, age_s=3600)
    time.sleep(0.2)                                     # stopped with the block: no more touches
    assert time.time() - os.path.getmtime(claim) > 3000


def test_a_file_that_cannot_be_claimed_fails_alone(capsys, tmp_path, tree):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.mp4", "L" * 240 + ".mp4", "z.mp4"):   # the claim's name (.NAME.vderain-claim) is too long
        shutil.copy(tree / "d.mp4", src / name)
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, src, "-o", out, "--claim")
    assert rc == 1 and "2 done, 0 skipped (exist), 1 failed" in _summary(stdout)
    assert "LLLL" in err and "Traceback" not in err
    assert (out / "a.mp4").exists() and (out / "z.mp4").exists()


def test_a_file_one_job_failed_is_not_retried_by_the_others_of_that_run(capsys, tmp_path, tree):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        shutil.copy(tree / "d.mp4", src / name)
    out = tmp_path / "out"
    out.mkdir()
    later = time.time() + 3600
    (out / ".a.mp4.vderain-failed").write_text("failed by a job running beside us\n")
    os.utime(out / ".a.mp4.vderain-failed", (later, later))        # ... after we started
    (out / ".b.mp4.vderain-failed").write_text("failed by an earlier run\n")
    os.utime(out / ".b.mp4.vderain-failed", (1e9, 1e9))            # ... before we started: retried
    (src / "c.mp4").write_bytes(b"not a video")                     # fails here, and says so
    rc, stdout, err = _run(capsys, src, "-o", out, "--claim")
    assert rc == 1 and "1 done, 0 skipped (exist), 1 taken by other jobs, 1 failed" in _summary(stdout)
    assert (out / "b.mp4").exists() and not (out / ".b.mp4.vderain-failed").exists()
    assert not (out / "a.mp4").exists()                              # left to the job that failed it
    assert (out / ".c.mp4.vderain-failed").read_text().strip()       # its reason, for the other jobs


def test_output_ext_follows_what_the_writer_can_write(tmp_path):
    from vderain.batch import output_ext
    for name in ("x.ts", "x.webm"):
        (tmp_path / name).write_bytes(b"")
    assert output_ext(str(tmp_path / "x.ts"), None, None) == ".ts"   # MPEG-TS holds H.264 (PyAV's table omits it)
    assert output_ext("x.mp4", "webm", None) == ".webm"             # --ext webm: VP9, as `run -o x.webm`
    assert output_ext(str(tmp_path / "x.webm"), None, None) == ".mp4"  # kept: VP9 is slow to encode; H.264 in .mp4


# ------------------------------------------------------------------ review fixes

def test_recursive_takes_the_videos_below_a_folder_with_a_thumbnail_at_its_top(capsys, tmp_path, tree):
    import cv2
    import numpy as np
    dcim = tmp_path / "DCIM"
    (dcim / "100MEDIA").mkdir(parents=True)
    shutil.copy(tree / "a.mp4", dcim / "100MEDIA" / "a.mp4")
    cv2.imwrite(str(dcim / "thumb.jpg"), np.zeros((48, 64, 3), np.uint8))   # was read as a frame folder
    rc, stdout, err = _run(capsys, dcim, "-o", f"{tmp_path / 'out'}/", "--recursive")
    assert rc == 0 and "1 done" in _summary(stdout), err
    assert _files(tmp_path / "out") == ["100MEDIA/a.mp4", "vderain-batch.json"]
    rc, stdout, err = _run(capsys, dcim, "-o", tmp_path / "t.mp4")   # no --recursive: still a frame folder
    assert rc == 0 and "vderain: 1 frames" in stdout and "batch" not in stdout, err


def test_a_clash_names_a_way_out_that_works(tmp_path, tree):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(tree / "a.mp4", src / "x.mp4")
    shutil.copy(tree / "2024" / "f.webm", src / "x.webm")   # -> x.mp4 too; no --ext can part them
    errors = [j.record["error"] for j in plan([str(src)], str(tmp_path / "o"))]
    assert len(errors) == 2 and all("rename one or process them separately" in e and "--ext" not in e
                                    for e in errors)


def test_an_output_finished_by_another_run_meanwhile_is_not_done_again(capsys, tmp_path, tree, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(tree / "d.mp4", src / name)
    out = tmp_path / "out"
    real = pipeline.derain_video
    seen = []

    def other_run_finishes_b(inp, *a, **k):
        seen.append(os.path.basename(inp))
        shutil.copy(tree / "a.mp4", out / "b.mp4")   # a resubmitted shard of the same batch, say
        return real(inp, *a, **k)

    monkeypatch.setattr(pipeline, "derain_video", other_run_finishes_b)
    rc, stdout, _ = _run(capsys, src, "-o", out)
    assert rc == 0 and "1 done, 1 skipped (exist), 0 failed" in _summary(stdout)
    assert seen == ["a.mp4"] and len(read_all(out / "b.mp4")[0]) == 6   # the other run's b.mp4, kept


def test_a_dangling_link_fails_alone_under_its_own_name(capsys, tmp_path, tree):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(tree / "d.mp4", src / "a.mp4")
    os.symlink(tmp_path / "gone.mp4", src / "b.mp4")
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, src, "-o", out)
    assert rc == 1 and "1 done, 0 skipped (exist), 1 failed" in _summary(stdout) and "Traceback" not in err
    log = json.loads((out / "vderain-batch.json").read_text())
    assert [os.path.basename(f["output"]) for f in log["files"]] == ["a.mp4", "b.mp4"]   # not b.mp4.mp4


def test_one_file_with_shard_or_claim_and_a_file_output_says_why(capsys, tmp_path, tree):
    _one_error(capsys, [tree / "a.mp4", "-o", tmp_path / "clean.mp4", "--shard", "0/2"], "--resume --shard")
    _one_error(capsys, [tree / "a.mp4", "-o", tmp_path / "clean.mp4", "--claim"], "--claim with one input file")
    assert os.listdir(tmp_path) == []


def test_claim_fails_a_file_that_arrives_with_a_clashing_name_and_goes_on(capsys, tmp_path, tree, monkeypatch):
    src = tmp_path / "incoming"
    src.mkdir()
    shutil.copy(tree / "a.mp4", src / "x.mp4")
    real = pipeline.derain_video

    def files_arrive(inp, *a, **k):
        if os.path.basename(inp) == "x.mp4":
            shutil.copy(tree / "2024" / "f.webm", src / "x.webm")   # would be written to x.mp4 too
            shutil.copy(tree / "d.mp4", src / "z.mp4")
        return real(inp, *a, **k)

    monkeypatch.setattr(pipeline, "derain_video", files_arrive)
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, src, "-o", out, "--claim")
    assert rc == 1 and "2 done, 0 skipped (exist), 1 failed" in _summary(stdout), err
    assert f"vderain: failed: {src / 'x.webm'}: " in err and "would both be written" in err
    assert "stopped looking" not in err and _files(out)[-2:] == ["x.mp4", "z.mp4"]
    # the next cron run says it again for both (which one x.mp4 holds is no longer known; it is
    # kept, not overwritten) until one is renamed
    rc, stdout, err = _run(capsys, src, "-o", out, "--claim")
    assert rc == 1 and "0 done, 1 skipped (exist), 2 failed" in _summary(stdout), err
    os.rename(src / "x.webm", src / "x2.webm")
    rc, stdout, err = _run(capsys, src, "-o", out, "--claim")
    assert rc == 0 and "1 done, 2 skipped (exist), 0 failed" in _summary(stdout), err
