"""Found in review: `vderain live` / `vderain synth` at the command line (one-line errors, signals)."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from live_helpers import FPS, Waits, index_of, make_clip, read_all
from vderain import VderainError
from vderain.cli import main as cli
from vderain.io.live import FileSink, FileSource, LiveSource
from vderain.live import run_live
from vderain.methods import Method

CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
           "you tried to allocate 2123366400 bytes. Error code 12 (Cannot allocate memory)")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("live_review") / "clip.mp4", n=12)


class Pick(Method):
    def __init__(self, fail_at=None, error=None):
        self.window, self.target, self.name = 1, 0, "pick"
        self.calls, self.fail_at, self.error = 0, fail_at, error

    def __call__(self, clips):
        if self.calls == self.fail_at:
            raise self.error
        self.calls += 1
        return clips[:, self.target]


def test_cpu_out_of_memory_is_one_line_and_the_file_is_finished(clip, tmp_path):
    """Out of memory on the CPU (a 4K camera on a laptop) is torch's RuntimeError from its
    allocator, not MemoryError: it was a traceback, where a GPU's was one line."""
    out = tmp_path / "oom.mp4"
    with pytest.raises(VderainError, match="out of memory.*--max-height") as err:
        run_live(FileSource(clip, realtime=False), Pick(6, RuntimeError(CPU_OOM)), [FileSink(out, FPS, crf=10)])
    assert "\n" not in str(err.value) and "GPU" not in str(err.value)
    assert [round(index_of(f)) for f in read_all(out)] == list(range(4))


def test_other_runtime_errors_are_not_taken_for_out_of_memory(clip):
    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_live(FileSource(clip, realtime=False), Pick(3, RuntimeError("shape mismatch")), [])


def test_a_camera_index_past_a_c_int_is_a_one_line_error(capsys):
    """99999999999999999999 reached OpenCV, whose overload-resolution message is 6 lines."""
    for spec in ("99999999999999999999", "2147483648"):
        assert cli(["live", spec, "--no-show", "--method", "identity", "--retries", "0"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("vderain: error: ") and "camera index" in err[0], err


def test_a_video_device_path_is_that_camera(tmp_path, capsys):
    """`vderain live /dev/video2` said 'no such video file: /dev/video2' even where the camera
    is there (a device is not a regular file); so did a udev link (/dev/v4l/by-id/...)."""
    if not os.sys.platform.startswith("linux"):
        pytest.skip("V4L2 device paths are Linux's")
    link = tmp_path / "usb-cam-video-index0"
    link.symlink_to("/dev/video97")
    for spec in ("/dev/video97", str(link)):
        assert cli(["live", spec, "--no-show", "--method", "identity", "--retries", "0"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("vderain: error: camera 97 ") and "no such video file" not in err[-1], err


def test_sighup_finishes_the_recording(clip, tmp_path, caplog):
    """Closing the terminal (or an ssh session dropping) sends SIGHUP, whose default action
    killed the process mid-recording: the live file stayed a hidden temp file. It now stops as
    Ctrl-C and SIGTERM do, and the file is finished."""
    if not hasattr(signal, "SIGHUP"):
        pytest.skip("no SIGHUP here")

    class Unhandled(Exception):
        pass

    def not_handled(signum, frame):   # stands in for the default action (which would end pytest)
        raise Unhandled

    caplog.set_level("INFO", logger="vderain.live")
    old = signal.signal(signal.SIGHUP, not_handled)
    hup = threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGHUP))
    out = tmp_path / "rec.mp4"
    try:
        hup.start()
        rc = cli(["live", clip, "-o", str(out), "--method", "identity", "--loop", "--duration", "5"])
    finally:
        hup.cancel()
        signal.signal(signal.SIGHUP, old)
    assert rc == 0
    assert "stopped by interrupt" in caplog.text
    assert len(read_all(out)) >= 3
    assert [p.name for p in tmp_path.iterdir()] == ["rec.mp4"]   # no temp file left


def test_synth_out_of_memory_is_one_line_and_leaves_no_files(tmp_path, capsys, monkeypatch):
    """A 4K clip with --device cuda on a small GPU (or a big --chunk on the CPU) ran out of memory
    with a traceback; it is one line that suggests a smaller --chunk."""
    from vderain.synth.rain import RainSynth
    src = make_clip(tmp_path / "in.mp4", n=6)
    calls = []
    real = RainSynth.__call__

    def oom(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, *a, **k)

    monkeypatch.setattr(RainSynth, "__call__", oom)
    for error in ("cuda", "cpu"):
        calls.clear()
        if error == "cpu":
            monkeypatch.setattr(RainSynth, "__call__", lambda self, *a, **k: (_ for _ in ()).throw(RuntimeError(CPU_OOM)))
        rc = cli(["synth", str(src), "-o", str(tmp_path / "rain.mp4"), "--save-clean", str(tmp_path / "clean.mkv"),
                  "--chunk", "4", "-q"])
        assert rc == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("vderain: error: ") and "--chunk" in err[0], err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    # at one frame a time a smaller --chunk is no way out
    rc = cli(["synth", str(src), "-o", str(tmp_path / "rain.mp4"), "--chunk", "1", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "--chunk" not in err[0] and "1 frame of" in err[0], err


def test_synth_keeps_other_runtime_errors(tmp_path, monkeypatch):
    from vderain.synth.rain import RainSynth
    src = make_clip(tmp_path / "in.mp4", n=3)
    monkeypatch.setattr(RainSynth, "__call__", lambda self, *a, **k: (_ for _ in ()).throw(RuntimeError("bug")))
    with pytest.raises(RuntimeError, match="bug"):
        cli(["synth", str(src), "-o", str(tmp_path / "rain.mp4"), "-q"])


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["live", "--help"], ["bench", "--help"]])
def test_help_and_version_do_not_import_torch(argv):
    """Every command's parser was built at start-up, and `vderain run`'s and `synth`'s import the
    writer, which imports torch: `vderain --version` or a typo in `vderain live` took ~2 s.
    Only the command asked for builds its arguments now."""
    import subprocess
    import sys
    code = ("import sys\nfrom vderain.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "False", r.stderr
    assert r.stdout.strip()


def test_only_the_chosen_command_builds_its_arguments_and_all_still_parse():
    from vderain.cli import build_parser
    assert build_parser(["live", "0"]).parse_args(["live", "0", "--max-height", "360"]).max_height == 360
    assert build_parser().parse_args(["synth", "a.mp4", "-o", "b.mp4"]).preset == "light"
    assert build_parser(["run", "a.mp4"]).parse_args(["run", "a.mp4", "-o", "b.mp4"])._module.__name__ == "vderain.commands.run"


class SlowToStart(LiveSource):
    """A camera that is not there yet (booting, USB still enumerating) for its first `fails` opens."""
    name = "late camera"

    def __init__(self, fails, **kw):
        super().__init__(**kw)
        self.fails, self.fps = fails, FPS

    def _frames(self):
        if self.fails > 0:
            self.fails -= 1
            raise OSError("could not be opened")
        for i in range(50):
            yield np.full((16, 16, 3), 20 + i, np.uint8)
            time.sleep(1 / FPS)


def test_the_first_frame_is_waited_for_as_long_as_the_retries_allow():
    """`--retries 100 --retry-delay 5` (a service started before its camera is up) still gave up
    after the fixed first-frame timeout (30 s), with "no frame within 30 s", retries left."""
    src = SlowToStart(fails=20, retries=40, retry_delay=0.05)   # ~1 s of failed opens
    stats = run_live(src, Pick(), [], max_frames=3, first_frame_timeout=0.15)
    assert stats.processed == 3 and stats.stopped_by == "max frames"
    # a source that opened but sends nothing still times out, after the allowance of its retries
    silent = Silent(retries=1, retry_delay=0.05)
    t0 = time.perf_counter()
    with pytest.raises(VderainError, match="no frame from silent camera within"):
        run_live(silent, Pick(), [], first_frame_timeout=0.15)
    assert 0.3 < time.perf_counter() - t0 < 3


class Silent(Waits):   # a camera that connects but sends nothing
    name = "silent camera"


def test_options_the_source_or_outputs_do_not_use_are_named(clip, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    rc = cli(["live", str(clip), "--method", "identity", "--no-realtime", "--max-frames", "3", "-o", str(out),
              "--width", "1280", "--fps", "60", "--bitrate", "2M", "--crf", "20"])
    err = capsys.readouterr().err
    assert rc == 0 and out.exists()
    assert "vderain: note: --width/--fps ask a camera for a capture mode; ignored for a file" in err
    assert "--bitrate sets the --stream output's rate; there is no --stream" in err
    assert "--crf" not in err and "--no-realtime" not in err      # used: a file source, an -o file
    rc = cli(["live", str(clip), "--method", "identity", "--no-realtime", "--max-frames", "2", "--no-show",
              "--stream", "udp://127.0.0.1:9", "--codec", "h264", "--crf", "20"])
    assert "--codec and --crf set the -o file's encoding; there is no -o" in capsys.readouterr().err
