"""Batch mode of `vderain run`: many files or whole folders, unattended, resumable, sharded.

    vderain run dashcam/ -o clean/ --recursive
    vderain run a.mp4 b.mov -o clean/
    vderain run dashcam/ -o clean/ --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT

Every input maps to one output under the output folder, keeping its relative path. An
output that exists is complete (the writer renames a finished temp file onto it), so it is
skipped: an interrupted batch, or a re-run, picks up where it stopped. A file that fails is
reported on one line and the batch goes on; the log `vderain-batch.json` says what happened
to each file. `--shard I/N` takes every N-th file of the sorted list, so N jobs can share a
folder without talking to each other or to a scheduler. `--claim` shares it dynamically
instead: each job takes the next file no other job has claimed (a hidden claim file beside the
output), and looks again for files that arrived when its list is done, so jobs of any number,
started at any time, balance long and short files and pick up a folder that grows.
"""
from __future__ import annotations

import datetime
import functools
import json
import math
import os
import re
import secrets
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field

from vderain import VderainError

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".flv",
              ".3gp", ".wmv", ".asf", ".mpg", ".mpeg", ".mxf", ".ogv", ".nut", ".vob", ".dv")
LOG_NAME = "vderain-batch.json"
EXIT_FAILED = 1
EXIT_DAMAGED_INPUT = 3
CLAIM_STALE_S = 600   # another host's claim untouched this long: its job is gone, take the file over
CLAIM_TOUCH_S = 60    # a job touches its claim this often while it works
_LOG_TOKEN = secrets.token_hex(2)


@dataclass
class Job:
    input: str    # as found (a video file, or a folder of frames)
    rel: str      # output path relative to the output folder, with extension
    output: str   # out_dir/rel
    status: str = "pending"  # pending | done | skipped | failed | interrupted | elsewhere (--claim)
    record: dict = field(default_factory=dict)


# ------------------------------------------------------------------ what is an input

def _is_video(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(VIDEO_EXTS)


def _is_image(name: str) -> bool:
    from vderain.io.reader import IMAGE_EXTS
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTS)


def _walk_videos(folder: str, recursive: bool, skip: str | None = None) -> list[str]:
    """Video files in `folder` (and below if `recursive`), hidden names and `skip` left out.

    Hidden names matter: they include the writer's temp files (.NAME.HOST-PID-TOKEN.vderain-tmp.EXT)
    and `skip` is the output folder when it sits inside the input folder, so outputs of an
    earlier run are never read back as inputs.
    """
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not (skip and os.path.realpath(os.path.join(root, d)) == skip))
        found.extend(os.path.join(root, f) for f in sorted(files) if _is_video(f))
        if not recursive:
            break
    return found


def folder_holds_videos(folder: str, recursive: bool) -> bool:
    """True if `folder` is a batch of videos; False if it is one frame-folder input (as before).

    Videos at the top level make it a batch even if images sit beside them (dashcams write
    thumbnails); so do videos in subfolders with `recursive`, which asks for them (a DCIM
    folder with a thumbnail at its top); otherwise it is not (images alone: a frame folder).
    """
    names = os.listdir(folder)
    if any(_is_video(n) and os.path.isfile(os.path.join(folder, n)) for n in names):
        return True
    return recursive and bool(_walk_videos(folder, True))


def folder_holds_images(folder: str) -> bool:
    """True if `folder` has image frames at its top level (a frame-folder input)."""
    return any(_is_image(n) for n in os.listdir(folder))


def is_batch(inputs: list[str], recursive: bool = False, shard: str | None = None,
             claim: bool = False) -> bool:
    """Batch mode: several inputs, a folder of videos, or a shard or claimed share of anything."""
    if len(inputs) > 1 or shard is not None or claim:
        return True
    return os.path.isdir(inputs[0]) and folder_holds_videos(inputs[0], recursive)


# ------------------------------------------------------------------ output names

@functools.lru_cache(maxsize=None)
def _container_holds(ext: str, codec_id: str) -> bool | None:
    """Whether FFmpeg's muxer for `ext` accepts `codec_id`; None if `ext` is no known container.

    Opening a container for writing only picks the muxer; no file is created until encoding
    starts, and the probe name lives in a fresh temp folder anyway. Same test as the writer's.
    """
    import av
    with tempfile.TemporaryDirectory() as tmp:
        try:
            c = av.open(os.path.join(tmp, "probe" + ext), "w")
        except (ValueError, av.error.FFmpegError):
            return None
        try:
            from vderain.io.writer import _ALSO_HOLDS   # muxers whose tag table is partial (mpegts)
            return codec_id in c.supported_codecs or codec_id in _ALSO_HOLDS.get(c.format.name.split(",")[0], ())
        finally:
            c.close()


def _codec_for(codec: str | None, ext: str) -> str:
    from vderain.io.writer import resolve_codec
    return resolve_codec(codec, "x" + ext)  # 'lossless' depends on the container


def output_ext(src: str, ext: str | None, codec: str | None) -> str:
    """The output extension: `ext` if given, else the input's container if it can hold the
    codec (h264 by default), else .mp4 (.mkv for ffv1, which mp4 players rarely read)."""
    from vderain.io.writer import CODEC_IDS
    if ext:
        e = "." + ext.lstrip(".")
        if codec is None and e == ".webm":
            codec = "vp9"   # as the writer chooses for a .webm output (WebM never holds H.264)
        holds = _container_holds(e, CODEC_IDS[_codec_for(codec, e)])
        if holds is None:
            raise VderainError(f"unknown container --ext {ext} (use mp4, mkv, mov, ...)")
        if not holds:
            raise VderainError(f"a {e} file cannot hold {_codec_for(codec, e)} video; "
                               f"choose another --ext or --codec")
        return e
    src_ext = os.path.splitext(src)[1] if os.path.isfile(src) else ""
    for e in ([src_ext] if src_ext else []) + [".mp4", ".mkv"]:
        if _container_holds(e, CODEC_IDS[_codec_for(codec, e)]):
            return e
    raise VderainError(f"no container found for codec {codec}; give --ext")


def plan(inputs: list[str], out_dir: str, recursive: bool = False, ext: str | None = None,
         codec: str | None = None) -> list[Job]:
    """Every (input, output) pair, sorted by output path (the same order on every machine).

    Paths are kept relative to one anchor: the folder itself when the only input is a
    folder, else the deepest folder holding all inputs (so `a/ b/` gives out/a/..., out/b/...).
    """
    from vderain.io.reader import is_url
    if codec and codec.lower() == "png":
        raise VderainError("--codec png writes one folder of frames; it is not available with "
                           "several inputs (use a video codec)")
    out_real = os.path.realpath(out_dir)
    for src in inputs:
        if is_url(src):
            raise VderainError(f"stream URLs cannot be batched ({src}); run them one at a time")
        if not os.path.exists(src):
            raise VderainError(f"input not found: {src}")
    absolute = [os.path.abspath(s) for s in inputs]
    if len(inputs) == 1 and os.path.isdir(inputs[0]) and folder_holds_videos(inputs[0], recursive):
        anchor = absolute[0]
    else:
        anchor = os.path.commonpath([os.path.dirname(a) for a in absolute])
    sources: list[str] = []
    for src, a in zip(inputs, absolute):
        if len(inputs) > 1 and os.path.isdir(src) and os.path.realpath(src) == out_real:
            continue   # `vderain run cam/* -o cam/clean/` run again: the glob now names the outputs
        if not os.path.isdir(src):
            sources.append(a)
        elif folder_holds_videos(src, recursive):
            if os.path.realpath(src) == out_real:
                raise VderainError(f"the output folder is the input folder {src}; outputs would "
                                   f"mix with inputs: choose another -o")
            sources.extend(os.path.abspath(p) for p in _walk_videos(src, recursive, out_real))
        elif any(_is_image(n) for n in os.listdir(src)):
            sources.append(a)  # a folder of numbered frames: one input, as in single mode
        else:
            hint = "" if recursive else " (add --recursive to look in subfolders)"
            raise VderainError(f"no video files or frames in {src}{hint}")
    jobs: dict[str, list[Job]] = {}
    seen: set[str] = set()
    for a in sources:
        if os.path.realpath(a) in seen:
            continue  # the same file twice (overlapping globs)
        seen.add(os.path.realpath(a))
        # a file, or a name that is no folder (a dangling link: it fails alone, as a.mp4, not a.mp4.mp4)
        stem = os.path.relpath(a, anchor) if os.path.isdir(a) \
            else os.path.splitext(os.path.relpath(a, anchor))[0]
        rel = stem + output_ext(a, ext, codec)
        output = os.path.join(out_dir, rel)
        if os.path.realpath(output) == os.path.realpath(a):
            raise VderainError(f"output {output} is the input {a}; choose another -o (the input "
                               f"is never overwritten)")
        jobs.setdefault(rel, []).append(Job(a, rel, output))
    if not jobs:
        hint = "" if recursive else " (add --recursive to look in subfolders)"
        raise VderainError(f"no video files found in {', '.join(inputs)}{hint}")
    for rel, clash in jobs.items():
        if len(clash) > 1:
            # one stem, two extensions: neither is made (which one would be a guess that a file
            # arriving later could change), and the rest of the batch goes on: a folder that a
            # cron job runs with --claim must not stall on one pair of names
            why = " (--ext gives every output the same extension)" if ext else ""
            names = " and ".join(j.input for j in clash)
            for j in clash:
                j.status = "failed"
                j.record = {"error": f"{names} would both be written to {j.output}{why}; "
                                     f"rename one or process them separately"}
    return [j for r in sorted(jobs) for j in jobs[r]]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' -> (I, N), 0 <= I < N."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise VderainError(f"--shard takes I/N, e.g. 0/4 (got '{text}')") from None
    if n < 1 or not 0 <= i < n:
        raise VderainError(f"--shard I/N needs 0 <= I < N (got '{text}')")
    return i, n


def check_out_dir(out_dir: str) -> None:
    """With several inputs -o must be a folder: an existing one, or a path ending in '/'
    or without extension (created when the batch starts)."""
    if os.path.isfile(out_dir):
        raise VderainError(f"with several inputs, -o must be a folder; {out_dir} is a file")
    if not (out_dir.endswith(("/", os.sep)) or os.path.isdir(out_dir)
            or os.path.splitext(os.path.basename(out_dir))[1] == ""):
        raise VderainError(f"with several inputs, -o must be a folder (end it with '/'), "
                           f"not a file name: {out_dir}")


# ------------------------------------------------------------------ running

def _log_path(out_dir: str, shard, claim: bool = False) -> str:
    # Shards of one batch run at once into one folder: each keeps its own log.
    if claim:
        # hostname and PID say which job wrote it; the token keeps containers that share a
        # hostname (each with its own PID 1) from writing one file
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
        name = f"vderain-batch.{host}-{os.getpid()}-{_LOG_TOKEN}.json"
    else:
        name = LOG_NAME if shard is None else f"vderain-batch.shard-{shard[0]}-of-{shard[1]}.json"
    return os.path.join(out_dir, name)


def claim_path(output: str, kind: str = "claim") -> str:
    """The hidden file beside `output` that says which job is making it (--claim), or, with
    kind="failed", that a job failed it (other jobs of the same run then leave it alone)."""
    parent, name = os.path.split(output)
    return os.path.join(parent, f".{name}.vderain-{kind}")


def _input_state(path: str) -> tuple | None:
    """What tells whether an input changed while it was read: size and mtime (a frame folder's
    mtime moves when a frame is added)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _write_log(path: str, header: dict, jobs: list[Job]) -> None:
    """Rewritten after every file (temp + rename), so a killed batch still leaves a true log."""
    data = dict(header)
    data["counts"] = {s: sum(j.status == s for j in jobs)
                      for s in ("done", "skipped", "elsewhere", "failed", "interrupted", "pending")}
    data["files"] = [{"input": j.input, "output": j.output, "status": j.status, **j.record}
                     for j in jobs]
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def _one_line(e: BaseException) -> str:
    text = str(e) if isinstance(e, VderainError) else f"{type(e).__name__}: {e}"
    return " ".join(text.split()) or type(e).__name__


def _say_failed(j: Job) -> None:
    print(f"vderain: failed: {j.input}: {j.record['error']}", file=sys.stderr, flush=True)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def run_batch(inputs: list[str], out_dir: str, *, recursive: bool = False, ext: str | None = None,
              overwrite: bool = False, shard: tuple[int, int] | None = None, claim: bool = False,
              method="auto", device: str = "auto", window: int | None = None, codec: str | None = None,
              progress: bool = True, stabilise: bool | None = None, **derain_kwargs) -> dict:
    """Derain every input into `out_dir`; returns {'done', 'skipped', 'elsewhere', 'failed',
    'damaged', 'jobs', 'log'}. Prints one line per processed or failed file; raises VderainError
    only for problems with the whole batch (bad arguments, a method that cannot load).

    claim: share the inputs with other jobs running the same batch (any number, on any host that
    sees the output folder): a file goes to the first job to claim it, and when its list is done a
    job lists the inputs again for files that arrived meanwhile."""
    from vderain import pipeline
    from vderain.io.writer import _remove
    out_dir = os.fspath(out_dir)
    check_out_dir(out_dir)
    if claim and shard is not None:
        raise VderainError("--claim and --shard split the files two ways; use one of them")
    if claim and overwrite:
        raise VderainError("--claim cannot be combined with --overwrite: jobs would redo each "
                           "other's outputs; delete the outputs to redo them")
    from vderain.io.reader import local_path
    inputs = [local_path(os.fspath(x)) for x in inputs]   # file:// URLs name local files
    jobs = plan(inputs, out_dir, recursive, ext, codec)
    if shard is not None:
        jobs = jobs[shard[0]::shard[1]]  # of the full sorted list: the same split on every machine
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise VderainError(f"cannot create output folder {out_dir}: {e.strerror}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise VderainError(f"output folder is not writable: {out_dir}")
    log = _log_path(out_dir, shard, claim)
    header = {"started": _now(), "finished": None, "output_dir": os.path.abspath(out_dir),
              "shard": f"{shard[0]}/{shard[1]}" if shard else None, "claim": claim,
              "method": method if isinstance(method, str) else getattr(method, "name", "custom"),
              "device": str(device)}
    for j in jobs:
        if j.status == "failed":   # a name clash (plan)
            _say_failed(j)
        elif os.path.exists(j.output) and not overwrite:
            j.status = "skipped"
    m = None  # loaded at the first file that needs it: a re-run with nothing to do loads nothing
    damaged = tried = 0
    todo_count = sum(j.status == "pending" for j in jobs)
    _write_log(log, header, jobs)

    def fail(j: Job, e: BaseException) -> None:
        j.status, j.record = "failed", {"error": _one_line(e)}
        _say_failed(j)

    def process(j: Job) -> None:
        nonlocal m, damaged, tried
        if m is None:
            m = pipeline.resolve_method(method, device, window, stabilise)  # once for the batch
            header["method"] = getattr(m, "name", type(m).__name__)
            header["device"] = str(getattr(m, "device", device))
        tried += 1
        before = _input_state(j.input)
        try:
            os.makedirs(os.path.dirname(j.output) or ".", exist_ok=True)
            s = pipeline.derain_video(j.input, j.output, method=m, codec=codec,
                                      progress=progress, **derain_kwargs)
            if _input_state(j.input) != before:
                # still being copied in (a folder that fills while jobs run): the output holds
                # whatever had arrived, and would be skipped as complete by every later run
                _remove(j.output)
                raise VderainError("the input changed while it was read (still being written?); "
                                   "its output was removed: run again once it is complete")
        except KeyboardInterrupt:
            j.status = "interrupted"
            raise
        except Exception as e:  # noqa: BLE001 - unattended: one file's failure is not the batch's
            fail(j, e)
        else:
            j.status = "done"
            j.record = {"frames": s["frames"], "fps": round(s["fps"], 3),
                        "seconds": round(s["seconds"], 3), "notes": s["notes"],
                        "decode_problems": s["decode_problems"]}
            for note in s["notes"]:
                print(f"vderain: note: {j.rel}: {note}", file=sys.stderr)
            if s["decode_problems"]:
                damaged += 1
                print(f"vderain: warning: {j.rel}: damaged input, output has only the frames "
                      f"that decoded: {s['decode_problems']}", file=sys.stderr)
            count = f"{tried}" if claim else f"{tried}/{todo_count}"
            print(f"vderain: [{count}] {pipeline.summary_line(s)}", flush=True)

    try:
        if not claim:
            for j in [j for j in jobs if j.status == "pending"]:
                if not overwrite and os.path.exists(j.output):
                    j.status = "skipped"   # finished meanwhile by another run (a resubmitted shard)
                    continue
                process(j)
                _write_log(log, header, jobs)
        else:
            _run_claimed(jobs, lambda: plan(inputs, out_dir, recursive, ext, codec), process, fail,
                         lambda: _write_log(log, header, jobs))
    finally:
        header["finished"] = _now()
        _write_log(log, header, jobs)
    return {"done": sum(j.status == "done" for j in jobs),
            "skipped": sum(j.status == "skipped" for j in jobs),
            "elsewhere": sum(j.status == "elsewhere" for j in jobs),
            "failed": sum(j.status == "failed" for j in jobs),
            "damaged": damaged, "jobs": jobs, "log": log}


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return -math.inf


def _record_failure(path: str, j: Job) -> None:
    """Leave the failure's reason beside the output for the other jobs of this run (jobs started
    later try again), or clear an earlier run's once the file is done."""
    from vderain.io.writer import _remove
    try:
        if j.status != "failed":
            _remove(path)
            return
        with open(path, "w") as f:
            f.write(j.record.get("error", "") + "\n")
    except OSError:
        pass   # it only saves other jobs a retry


def _run_claimed(jobs: list[Job], replan, process, fail, write_log) -> None:
    """--claim: pass over the files, each taken only if no live job holds its claim, until a pass
    finds nothing to do; every pass after the first lists the inputs again (files that arrived)
    and looks again at files other jobs held (a claim whose job died is taken over)."""
    from vderain.io.writer import Keepalive, create_owner_file
    started = time.time()
    while True:
        worked = False
        for j in jobs:
            if j.status not in ("pending", "elsewhere"):
                continue
            if os.path.exists(j.output):
                j.status = "skipped" if j.status == "pending" else j.status
                continue
            failed_file = claim_path(j.output, "failed")
            if _mtime(failed_file) >= started:   # another job of this run failed it: one try per run
                j.status = "elsewhere"
                continue
            claim_file = claim_path(j.output)
            try:
                os.makedirs(os.path.dirname(j.output) or ".", exist_ok=True)
                claimed = create_owner_file(claim_file, CLAIM_STALE_S)
            except OSError as e:   # a name too long, no permission, no space: this file's failure
                fail(j, e)
            else:
                if not claimed:
                    j.status = "elsewhere"
                else:
                    with Keepalive(claim_file, CLAIM_TOUCH_S, release=True):
                        if os.path.exists(j.output):   # finished by another job between our look and our claim
                            j.status = "elsewhere"
                        else:
                            worked = True
                            process(j)
                            _record_failure(failed_file, j)
            write_log()
        if not worked:
            return
        try:
            fresh = replan()
        except VderainError as e:   # the inputs went away (a clash fails only its files): what was found is done
            print(f"vderain: note: stopped looking for new files: {_one_line(e)}", file=sys.stderr)
            return
        known = {j.input for j in jobs}
        # files only: a folder whose videos were moved away would now read as one frame-folder input
        arrived = [j for j in fresh if j.input not in known and os.path.isfile(j.input)]
        for j in arrived:
            if j.status == "failed":   # it clashes by name with a file found before or with it
                _say_failed(j)
            elif os.path.exists(j.output):
                j.status = "skipped"
        jobs.extend(arrived)


def batch_summary_line(result: dict, out_dir: str) -> str:
    elsewhere = f"{result['elsewhere']} taken by other jobs, " if result.get("elsewhere") else ""
    return (f"batch: {result['done']} done, {result['skipped']} skipped (exist), {elsewhere}"
            f"{result['failed']} failed -> {out_dir}")


def exit_status(result: dict) -> int:
    if result["failed"]:
        return EXIT_FAILED
    return EXIT_DAMAGED_INPUT if result["damaged"] else 0
