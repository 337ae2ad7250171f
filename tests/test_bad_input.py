"""Every bad input: one clear line, a non-zero exit, no traceback, nothing lost.

Inputs that are unusual but valid (odd sizes, 10-bit, rotated phone video) must work.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat

import av
import numpy as np
import pytest

from vderain.cli import main
from videogen import (break_adts, make_audio_only, make_size_change_ts, make_video, make_zero_frame_video,
                      read_all, stream_summary)


def _run(capsys, *argv):
    rc = main(["run", *map(str, argv), "-q"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("vderain: error: ") and "Traceback" not in err
    return lines[0]


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _fails_cleanly(capsys, tmp_path, argv, match):
    listing = sorted(os.listdir(tmp_path))
    rc, out, err = _run(capsys, *argv)
    assert rc == 1
    assert match in _one_error_line(err)
    assert sorted(os.listdir(tmp_path)) == listing  # no output, no temp files


def test_missing_file(capsys, tmp_path):
    _fails_cleanly(capsys, tmp_path, [tmp_path / "nope.mp4", "-o", tmp_path / "o.mp4"], "input not found")


def test_not_a_video(capsys, tmp_path):
    txt = tmp_path / "notes.mp4"
    txt.write_text("this is a shopping list, not a video\n" * 20)
    _fails_cleanly(capsys, tmp_path, [txt, "-o", tmp_path / "o.mp4"], "not a video")


def test_truncated_mp4_index_at_the_end(capsys, tmp_path, clips):
    data = open(clips["audio"], "rb").read()  # plain mp4: the index (moov) is written last
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    _fails_cleanly(capsys, tmp_path, [cut, "-o", tmp_path / "o.mp4"], "truncated")


def test_truncated_mp4_processes_what_decodes(capsys, tmp_path, clips):
    data = open(clips["faststart"], "rb").read()  # index first: the frames that arrived are usable
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    rc, out, err = _run(capsys, cut, "-o", tmp_path / "o.mp4", "--method", "identity")
    assert rc == 3 and "Traceback" not in err
    warning = [ln for ln in err.splitlines() if ln.startswith("vderain: warning:")]
    assert len(warning) == 1 and "of 48 announced frames never arrived" in warning[0]
    n = len(read_all(tmp_path / "o.mp4")[0])
    assert 5 < n < 48 and f"{n} frames" in out


def test_corrupt_mp4_processes_what_decodes(capsys, tmp_path, clips):
    data = bytearray(open(clips["faststart"], "rb").read())
    mid = len(data) // 2
    data[mid:mid + 1500] = np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    rc, out, err = _run(capsys, bad, "-o", tmp_path / "o.mp4", "--method", "identity")
    assert rc == 3 and "Traceback" not in err and "damaged input" in err
    assert len(read_all(tmp_path / "o.mp4")[0]) > 10


def test_damaged_audio_packet_costs_that_packet_not_the_run(capsys, tmp_path):
    # an AAC packet without its ADTS header: the .mp4 muxer refused it and the whole run failed
    # with "Invalid data found when processing input: .../.o.mp4.<temp name>"
    bad = break_adts(make_video(tmp_path / "in.ts", n=48, audio=True), tmp_path / "bad.ts")
    rc, out, err = _run(capsys, bad, "-o", tmp_path / "o.mp4", "--method", "identity")
    assert rc == 0 and "1 audio/subtitle/data packet(s)" in err and "48 frames" in out
    summary = stream_summary(tmp_path / "o.mp4")
    assert [s[:2] for s in summary] == [("video", "h264"), ("audio", "aac")]
    assert summary[1][2] == stream_summary(bad)[1][2] - 1


def test_cut_short_mkv_is_reported(capsys, tmp_path):
    data = open(make_video(tmp_path / "in.mkv", n=96, audio=True), "rb").read()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])  # Matroska has no frame count: it decoded as a clean file
    rc, out, err = _run(capsys, cut, "-o", tmp_path / "o.mp4", "--method", "identity")
    assert rc == 3 and "damaged input" in err and "the video stops at" in err


def test_zero_video_frames(capsys, tmp_path):
    src = make_zero_frame_video(tmp_path / "empty.mkv")
    _fails_cleanly(capsys, tmp_path, [src, "-o", tmp_path / "o.mp4"], "no video frames")


def test_audio_only(capsys, tmp_path):
    src = make_audio_only(tmp_path / "song.m4a")
    _fails_cleanly(capsys, tmp_path, [src, "-o", tmp_path / "o.mp4"], "audio-only")


def test_odd_width_height_works(capsys, tmp_path, clips):
    rc, out, err = _run(capsys, clips["odd"], "-o", tmp_path / "o.mp4", "--method", "identity")
    assert rc == 0 and "padded to 98x66" in err and "Traceback" not in err
    frames, _, info = read_all(tmp_path / "o.mp4")
    assert frames.shape == (12, 66, 98, 3)


def test_size_change_mid_stream_works(capsys, tmp_path):
    src = make_size_change_ts(tmp_path / "two.ts", sizes=((96, 64), (128, 96)), n=6)
    rc, out, err = _run(capsys, src, "-o", tmp_path / "o.mp4", "--method", "identity")
    assert rc == 0 and "Traceback" not in err, err
    notes = [ln for ln in err.splitlines() if "size changed" in ln]
    assert len(notes) == 1 and notes[0].startswith("vderain: note: ")
    frames, _, _ = read_all(tmp_path / "o.mp4")
    assert frames.shape == (12, 64, 96, 3)


def test_ten_bit_input_works(capsys, tmp_path, clips):
    rc, out, err = _run(capsys, clips["tenbit"], "-o", tmp_path / "o.mp4", "--method", "identity")
    assert rc == 0, err
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert np.abs(read_all(tmp_path / "o.mp4")[0].astype(int) - read_all(clips["tenbit"])[0]).mean() < 4


def test_rotated_phone_video_keeps_rotation(capsys, tmp_path, clips):
    rc, out, err = _run(capsys, clips["rotated"], "-o", tmp_path / "o.mp4", "--method", "identity")
    assert rc == 0
    frames, _, info = read_all(tmp_path / "o.mp4")
    assert info.rotation == 90 and frames.shape[1:] == (64, 96, 3)
    assert [s.type for s in av.open(str(tmp_path / "o.mp4")).streams] == ["video", "audio"]


def test_a_relative_name_with_colons_is_a_file_not_a_protocol(capsys, tmp_path, clips, monkeypatch):
    # FFmpeg reads '12:00:00.mp4' as protocol '12:'; dashcams name files by time
    shutil.copy(clips["audio"], tmp_path / "12:00:00.mp4")
    monkeypatch.chdir(tmp_path)
    rc, out, err = _run(capsys, "12:00:00.mp4", "-o", "12:00:00 clean.mp4", "--method", "identity")
    assert rc == 0, err
    frames, _, _ = read_all(tmp_path / "12:00:00 clean.mp4")
    assert len(frames) == 24


def test_output_equal_to_input(capsys, tmp_path, clips):
    src = shutil.copy(clips["basic"], tmp_path / "in.mp4")
    before = _digest(src)
    _fails_cleanly(capsys, tmp_path, [src, "-o", src], "is the input")
    # also through another spelling of the same path
    _fails_cleanly(capsys, tmp_path, [src, "-o", f"{tmp_path}/./in.mp4"], "is the input")
    assert _digest(src) == before


def test_output_is_a_link_to_the_input_or_a_device(capsys, tmp_path, clips):
    src = shutil.copy(clips["basic"], tmp_path / "in.mp4")
    before = _digest(src)
    os.link(src, tmp_path / "hard.mp4")
    os.symlink(src, tmp_path / "soft.mp4")
    for name in ("hard.mp4", "soft.mp4"):
        _fails_cleanly(capsys, tmp_path, [src, "-o", tmp_path / name], "is the input")
    _fails_cleanly(capsys, tmp_path, [tmp_path / "soft.mp4", "-o", src], "is the input")
    assert _digest(src) == before
    # `-o /dev/null` (a benchmark habit): a name without extension is a PNG folder, and the
    # run ended in "Not a directory: /dev/.null.<temp name>" after decoding everything
    _fails_cleanly(capsys, tmp_path, [src, "-o", os.devnull, "--method", "identity"],
                   "not a regular file or folder")


def test_output_folder_missing(capsys, tmp_path, clips):
    _fails_cleanly(capsys, tmp_path, [clips["basic"], "-o", tmp_path / "no" / "such" / "o.mp4"],
                   "does not exist")


def test_output_folder_not_writable(capsys, tmp_path, clips):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        # root ignores permission bits; sysfs refuses new files even to root
        target = (locked / "o.mp4") if os.geteuid() != 0 else "/sys/vderain-test.mp4"
        _fails_cleanly(capsys, tmp_path, [clips["basic"], "-o", target, "--method", "identity"],
                       "not writable" if os.geteuid() != 0 else "cannot write to output folder")
        assert os.listdir(locked) == []
    finally:
        locked.chmod(stat.S_IRWXU)


def test_unknown_codec(capsys, tmp_path, clips):
    _fails_cleanly(capsys, tmp_path, [clips["basic"], "-o", tmp_path / "o.mp4", "--codec", "h266"],
                   "unknown codec 'h266'")


def test_codec_the_container_cannot_hold(capsys, tmp_path, clips):
    _fails_cleanly(capsys, tmp_path, [clips["basic"], "-o", tmp_path / "o.webm", "--codec", "h264",
                                      "--method", "identity"], "cannot hold")


def test_unknown_method_and_bad_numbers(capsys, tmp_path, clips):
    _fails_cleanly(capsys, tmp_path, [clips["basic"], "-o", tmp_path / "o.mp4", "--method", "magic"],
                   "unknown method")
    _fails_cleanly(capsys, tmp_path, [clips["basic"], "-o", tmp_path / "o.mp4", "--start", "soon"],
                   "cannot read time")
    _fails_cleanly(capsys, tmp_path, [clips["basic"], "-o", tmp_path / "o.mp4", "--window", "0"],
                   "--window must be >= 1")
    _fails_cleanly(capsys, tmp_path, [clips["basic"], "-o", tmp_path / "o.mp4", "--threads", "0"],
                   "--threads must be >= 1")
    _fails_cleanly(capsys, tmp_path, [clips["basic"], "-o", tmp_path / "o.mp4", "--method", "identity",
                                      "--start", "99"], "past the end")


def test_disk_full_mid_run_is_one_line_and_leaves_nothing(capsys, tmp_path, clips, monkeypatch):
    import errno
    from vderain.io import writer
    real = writer.VideoWriter.write
    calls = []

    def full(self, *a, **k):
        calls.append(1)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device", self._tmp)
        return real(self, *a, **k)
    monkeypatch.setattr(writer.VideoWriter, "write", full)
    _fails_cleanly(capsys, tmp_path, [clips["basic"], "-o", tmp_path / "o.mp4", "--method", "identity"],
                   "No space left on device")
