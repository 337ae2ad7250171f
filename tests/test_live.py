"""The live loop end to end without a camera: causal ring, frame drops, sinks, the CLI."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

from live_helpers import FPS, Waits, free_port, index_of, make_clip, read_all, wait_for
from vderain import VderainError
from vderain.cli import main as cli
from vderain.io.live import FileSink, FileSource, LiveSource, Sink, StreamSink, StreamSource
from vderain.live import CausalRunner, build_live_method, run_live
from vderain.methods import Identity, Method


class Pick(Method):
    """Returns the target frame; optionally sleeps, to play a model slower than the source."""

    def __init__(self, window=1, target=None, sleep=0.0, name="pick"):
        self.window = window
        self.target = window - 1 if target is None else target
        self.sleep = sleep
        self.name = name
        self.calls = 0

    def __call__(self, clips):   # (B,T,3,H,W) -> (B,3,H,W)
        self.calls += 1
        time.sleep(self.sleep)
        return clips[:, self.target]


class Mean(Pick):
    def __call__(self, clips):
        return clips.mean(dim=1)


class Record(Sink):
    """Keeps what it is given; can ask to stop like the window's q key."""
    name = "record"

    def __init__(self, stop_after=None):
        super().__init__()
        self.frames, self.times = [], []
        self.stop_after = stop_after

    def write(self, rgb, capture_time):
        self.frames.append(rgb.copy())
        self.times.append(capture_time)
        self._done(capture_time)
        if self.stop_after and self.written >= self.stop_after:
            self.wants_stop = True


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("live") / "clip.mp4", n=20)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("live") / "long.mp4", n=45)


def frames_of(path):
    return [round(index_of(f)) for f in read_all(path)]


# ------------------------------------------------------------------ causal ring

def push_all(runner, n):
    outs = []
    for i in range(n):
        rgb = np.full((4, 6, 3), 10 * i, np.uint8)
        done = runner.push(rgb, float(i))
        if done is not None:
            outs.append(done)
    return outs + runner.flush()


@pytest.mark.parametrize("window,target", [(1, 0), (3, 2), (3, 1), (5, 3)])
def test_causal_runner_emits_each_frame_once_in_order(window, target):
    outs = push_all(CausalRunner(Pick(window, target)), 6)
    # output for frame t is frame t itself (Pick returns its target), look-ahead or not
    assert [t for _, _, t in outs] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert [int(o[0, 0, 0]) for o, _, _ in outs] == [0, 10, 20, 30, 40, 50]


def test_causal_runner_pads_the_start_with_the_first_frame():
    outs = push_all(CausalRunner(Mean(window=3)), 3)
    # means over [f0 f0 f0], [f0 f0 f1], [f0 f1 f2]
    assert [int(o[0, 0, 0]) for o, _, _ in outs] == [0, 3, 10]


def test_lookahead_one_waits_for_the_next_frame():
    runner = CausalRunner(Pick(window=3, target=1))
    assert runner.lookahead == 1
    assert runner.push(np.zeros((4, 6, 3), np.uint8), 0.0) is None
    assert runner.push(np.ones((4, 6, 3), np.uint8), 1.0)[2] == 0.0


def test_methods_that_look_further_ahead_are_refused():
    with pytest.raises(VderainError, match="looks 2 frames ahead"):
        CausalRunner(Pick(window=5, target=2))
    with pytest.raises(VderainError, match="causal"):
        build_live_method("median", "cpu")
    assert build_live_method("identity", "cpu").window == 1


# ------------------------------------------------------------------ loop

def test_realtime_file_through_the_loop_keeps_up(clip):
    sink = Record()
    stats = run_live(FileSource(clip), Identity(), [sink])
    # every frame, the first (which also warms the method up) included, is processed or dropped
    assert stats.processed + stats.dropped_input == stats.captured
    assert stats.captured + stats.warmup_dropped == 20
    assert sink.written == stats.processed
    idx = [round(index_of(f)) for f in sink.frames]
    assert idx == sorted(set(idx)) and idx[-1] == 19
    assert stats.seconds >= 17 / FPS             # it ran at the file's pace, not faster
    assert stats.stopped_by == "end of source"


def test_slow_model_drops_input_frames_instead_of_lagging(long_clip):
    # 45 frames at 30 fps = 1.5 s; a 80 ms model handles ~12 fps. Without dropping, the
    # last frame would come out ~2 s after its capture; with it the lag stays ~1 frame + 80 ms.
    slow = Pick(sleep=0.08, name="slow")
    sink = Record()
    stats = run_live(FileSource(long_clip), slow, [sink])
    assert stats.dropped_input > 0.3 * stats.captured
    assert stats.processed + stats.dropped_input == stats.captured
    assert stats.processed <= 1.5 / 0.08 + 2
    assert sink.latencies.max < 0.5
    # the newest frame is the one processed: the output reaches the end of the clip
    assert round(index_of(sink.frames[-1])) == 44
    d = stats.to_dict()
    assert d["drop_share"] == pytest.approx(stats.dropped_input / stats.captured, abs=1e-3)
    assert d["latency_ms_p50"] <= d["latency_ms_p95"] < 500


def test_lossless_file_mode_processes_every_frame(clip):
    sink = Record()
    stats = run_live(FileSource(clip, realtime=False), Pick(window=3, target=1), [sink])
    assert stats.dropped_input == 0
    # look-ahead 1: the last frame comes out at the end, padded with itself
    assert [round(index_of(f)) for f in sink.frames] == list(range(20))


def test_q_and_ctrl_c_stop_cleanly_and_finish_the_file(clip, tmp_path):
    stats = run_live(FileSource(clip, realtime=False), Identity(), [Record(stop_after=5)])
    assert stats.stopped_by == "user (q)" and stats.processed == 5

    class Interrupting(Pick):
        def __call__(self, clips):
            if self.calls == 8:      # 2 warm-up calls, then 6 frames
                raise KeyboardInterrupt
            return super().__call__(clips)

    out = tmp_path / "interrupted.mp4"
    stats = run_live(FileSource(clip, realtime=False), Interrupting(),
                     [FileSink(out, FPS, crf=10, inputs=(clip,))])
    assert stats.stopped_by == "interrupt"
    assert frames_of(out) == list(range(6))


def test_max_height_scales_frames_down(clip):
    sink = Record()
    stats = run_live(FileSource(clip, realtime=False), Identity(), [sink], max_height=32)
    assert stats.size == (48, 32)
    assert {f.shape for f in sink.frames} == {(32, 48, 3)}
    assert [round(index_of(f)) for f in sink.frames] == list(range(20))


def test_max_frames_and_duration_stop(clip):
    stats = run_live(FileSource(clip, realtime=False), Identity(), [], max_frames=4)
    # --no-realtime drops nothing, also when stopped early (the frame the reader was holding
    # when the run stopped was counted as dropped)
    assert stats.processed == 4 and stats.dropped_input == 0
    stats = run_live(FileSource(clip, loop=True), Identity(), [], duration=0.3)
    assert stats.stopped_by == "duration" and 0.3 <= stats.seconds < 1.0


def test_lost_stream_is_retried_then_ends_with_a_clear_error_and_a_finished_file(tmp_path):
    sender = StreamSink("tcp://127.0.0.1:0?listen=1", FPS, gop=0.2)
    port = sender.address[1]
    out = tmp_path / "from_stream.mp4"
    src = StreamSource(f"tcp://127.0.0.1:{port}", retries=2, retry_delay=0.1)
    file_sink = FileSink(out, FPS, crf=10)
    from test_live_io import send
    feeder = threading.Thread(target=lambda: wait_for(lambda: sender.out.clients) and send(sender, 30))
    feeder.start()
    with pytest.raises(VderainError, match="gave up after 2 retries") as err:
        run_live(src, Identity(), [file_sink])
    feeder.join()
    stats = err.value.stats
    assert stats.processed >= 10
    got = frames_of(out)
    assert len(got) == file_sink.written == stats.processed
    assert got == sorted(set(got)) and got[-1] == 29


class WindowMean(Method):
    """Mean of a causal window with one frame of look-ahead: shows which frames a window held."""
    window, target, name = 3, 1, "window-mean"

    def __call__(self, clips):   # (B,T,3,H,W) -> (B,3,H,W)
        return clips.mean(1)


class DropsOnce(LiveSource):
    """A camera that sends frames 0..7, drops the connection, comes back with frames 20..27."""
    name = "flaky camera"

    def __init__(self):
        super().__init__(retries=1, retry_delay=0.0, latest=False)
        self.fps = FPS
        self.runs = [range(0, 8), range(20, 28)]

    def _frames(self):
        from live_helpers import frame
        for i in self.runs.pop(0) if self.runs else ():
            yield frame(i)


def test_a_reconnected_stream_starts_its_windows_afresh():
    sink = Record()
    with pytest.raises(VderainError, match="gave up after 1 retry") as err:
        run_live(DropsOnce(), WindowMean(), [sink])
    assert err.value.stats.processed == 16
    got = [round(index_of(f), 1) for f in sink.frames]
    # Each output is the mean of its window's frame indices; a window never mixes the two
    # connections (without the reset, frame 7 would give mean(6, 7, 20) = 11 and 20 mean(7, 20, 21)),
    # and the frame waiting for its look-ahead when the camera is lost for good still comes out.
    first = [1 / 3] + [float(i) for i in range(1, 7)] + [20 / 3]
    second = [20 + 1 / 3] + [float(i) for i in range(21, 27)] + [26 + 2 / 3]
    assert got == pytest.approx(first + second, abs=0.15)


# ------------------------------------------------------------------ CLI

def test_cli_file_to_file_and_stats(clip, tmp_path, capsys):
    out, js = tmp_path / "out.mp4", tmp_path / "stats.json"
    assert cli(["live", clip, "-o", str(out), "--method", "identity", "--stats-json", str(js),
                "--crf", "10"]) == 0
    stats = json.loads(js.read_text())
    got = frames_of(out)
    assert len(got) == stats["processed"] == stats["sinks"]["file"]["written"]
    assert got == sorted(set(got)) and got[-1] == 19
    assert stats["latency_ms_p95"] is not None and stats["fps"] > 0
    assert "wrote" in capsys.readouterr().err


def test_cli_no_realtime_keeps_every_frame_the_first_included(clip, tmp_path):
    out, js = tmp_path / "all.mp4", tmp_path / "all.json"
    assert cli(["live", clip, "-o", str(out), "--method", "identity", "--no-realtime",
                "--crf", "10", "--stats-json", str(js)]) == 0
    assert frames_of(out) == list(range(20))
    stats = json.loads(js.read_text())
    assert stats["processed"] == stats["captured"] == 20 and stats["dropped_input"] == 0


def test_cli_stream_read_back_by_a_player(clip):
    port = free_port()
    got = []

    def player():   # keeps trying until the server is up, like a user starting ffplay
        for _ in range(200):
            frames = read_all(f"tcp://127.0.0.1:{port}", timeout=(1, 2))
            if frames:
                got.extend(frames)
                return
            time.sleep(0.02)

    reader = threading.Thread(target=player)
    reader.start()
    # looped for 3 s so a player that connects late (slow CI) still sees frames
    assert cli(["live", clip, "--stream", f"tcp://127.0.0.1:{port}?listen=1", "--method", "identity",
                "--split", "--overlay", "all", "--loop", "--max-frames", "90"]) == 0
    reader.join(10)
    assert len(got) >= 5
    assert got[0].shape == (64, 192, 3)   # input | output
    left, right = got[-1][:, :96].astype(int), got[-1][:, 96:].astype(int)
    # identity: both halves alike between the fps text (top) and the labels (bottom)
    assert np.abs(left[28:42] - right[28:42]).mean() < 3


def test_cli_errors_are_one_line(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    cases = [
        (["live", clip, "--method", "identity"], "no display"),
        (["live", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o.mp4")], "no such video file"),
        (["live", clip, "-o", clip, "--method", "identity"], "is the input"),
        (["live", clip, "-o", str(tmp_path / "o.mp4"), "--method", str(tmp_path / "none.pt")], "not found"),
        (["live", clip, "--stream", "rtmp://127.0.0.1:1/x", "--method", "identity"], "unsupported"),
        (["live", clip, "--stream", "udp://127.0.0.1:99999", "--method", "identity"], "bad port"),
        (["live", clip, "-o", str(tmp_path / "o.mp4"), "--max-frames", "0"], "must be > 0"),
        (["live", clip, "-o", str(tmp_path / "o.mp4"), "--method", "identity",
          "--stats-json", str(tmp_path / "missing" / "s.json")], "--stats-json"),
        (["live", clip, "-o", str(tmp_path / "o.mp4"), "--method", "identity",
          "--stats-json", str(tmp_path)], "--stats-json"),
    ]
    for argv, message in cases:
        assert cli(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("vderain: error: ") and message in err[-1], err
        assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "o.mp4").exists()


def test_stats_json_write_failure_is_a_clear_error(tmp_path):
    from vderain.live import LiveStats
    with pytest.raises(VderainError, match="cannot write stats"):
        LiveStats().write_json(str(tmp_path))   # a folder: open() fails


def test_to_tensor_round_trip():
    from vderain.live import to_rgb, to_tensor
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = to_tensor(rgb, torch.device("cpu"))
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32 and float(t.max()) <= 1
    assert np.array_equal(to_rgb(t), rgb)


def test_live_converts_frames_exactly_like_vderain_run():
    from vderain.live import to_rgb, to_tensor
    from vderain.pipeline import to_chw_float, to_hwc_uint8
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    assert np.array_equal(to_tensor(rgb, torch.device("cpu")).numpy(), to_chw_float(rgb))
    out = torch.from_numpy(rng.uniform(-0.2, 1.2, (3, 6, 10)).astype(np.float32))  # out of range too
    assert np.array_equal(to_rgb(out), to_hwc_uint8(out.numpy()))
    assert to_rgb(out).min() == 0 and to_rgb(out).max() == 255


def test_a_stalled_stream_still_stops_on_time():
    sender = StreamSink("tcp://127.0.0.1:0?listen=1", FPS, gop=0.1)
    port = sender.address[1]
    src = StreamSource(f"tcp://127.0.0.1:{port}", retries=0)
    from live_helpers import frame

    def feed_then_stall():   # a few frames, then silence with the connection open
        wait_for(lambda: sender.out.clients)
        for i in range(24):   # enough for the reader to finish probing the stream
            sender.write(frame(i), time.perf_counter())
            time.sleep(1 / FPS)

    feeder = threading.Thread(target=feed_then_stall)
    feeder.start()
    try:
        t0 = time.perf_counter()
        stats = run_live(src, Identity(), [], duration=1.5)
        # the stall is noticed by the loop, not by waiting for the 5 s read timeout
        assert time.perf_counter() - t0 < 4.0
    finally:
        feeder.join()
        sender.close()
    assert stats.stopped_by == "duration"
    assert 1.5 <= stats.seconds < 2.5 and stats.processed >= 1


def test_live_network_erodes_the_haze_gate_and_matches_vderain_run_on_full_windows():
    """Live runs a network's windows through the same EdgeHold as `vderain run`: on every full
    window (all but the padded start and the flushed end) from the third on the output equals the
    file pipeline's without the stabiliser, eroded gate included (on the first two the file
    pipeline looks ahead for the gate), and differs from a run without the hold where
    a gate opened for fewer than three frames."""
    from vderain.methods.network import NetworkMethod
    from vderain.models import STRNet, STRNetConfig
    from vderain.pipeline import derain_frames
    torch.manual_seed(3)
    net = STRNet(STRNetConfig(frames=5, target=3, scale=2, channels=8, enc_blocks=1, body_blocks=1,
                              dec_blocks=1, guard=4, dehaze=1.0))
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    with torch.no_grad():
        net.haze.out.bias[:3] = 0.0                   # a strong haze step wherever the gate opens
    n = 14
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(1, 3, 24, 32, generator=g) * 0.5 + 0.2).expand(n, 3, 24, 32).clone()
    x += 0.3 * torch.rand(n, 1, 1, 1, generator=g) * (torch.rand(n, 3, 24, 32, generator=g) > 0.8)
    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    x = u8.float() / 255
    full = range(3, n - 1)                            # targets whose causal window is all real frames
    net.cfg.dehaze = 0.0
    with torch.no_grad():
        streak = [float(net.rain_layer(x[i - 3:i + 2][None]).abs().mean()) for i in full]
    net.cfg.dehaze, net.cfg.dehaze_gate = 1.0, float(np.median(streak))   # about half the gates open
    rgb = u8.permute(0, 2, 3, 1).numpy()
    method = NetworkMethod(net, "cpu")
    expect = derain_frames(rgb, method=method, stabilise=False)
    plain = NetworkMethod(net, "cpu")
    plain.holds_edges = False
    unheld = derain_frames(rgb, method=plain, stabilise=False)
    runner = CausalRunner(method)
    outs = [o for i in range(n) if (o := runner.push(rgb[i], float(i))) is not None] + runner.flush()
    live = np.stack([o for o, _, _ in outs])
    assert live.shape == rgb.shape
    assert (live[5:n - 1] == expect[5:n - 1]).all()   # full windows 3, 4: the file pipeline looks ahead
    assert (expect[5:n - 1] != unheld[5:n - 1]).any()  # the erosion changed something here
    runner.reset()                                    # a new stream: no history from the last one
    again = [o for i in range(n) if (o := runner.push(rgb[i], float(i))) is not None] + runner.flush()
    assert (np.stack([o for o, _, _ in again]) == live).all()


# ------------------------------------------------------------------ found in review (stage 21)

def test_cli_stats_json_never_overwrites_the_input_or_the_output(clip, tmp_path, capsys):
    """--stats-json FILE was opened with "w" after the run: naming the input video (or -o)
    replaced it with JSON."""
    import shutil
    src = tmp_path / "in.mp4"
    shutil.copy(clip, src)
    before = src.read_bytes()
    out = tmp_path / "out.mp4"
    for target, what in ((src, "input"), (out, "output")):
        assert cli(["live", str(src), "-o", str(out), "--method", "identity",
                    "--stats-json", str(target)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("vderain: error: --stats-json") and what in err[-1], err
    assert src.read_bytes() == before and not out.exists()


def test_cli_bad_numbers_are_one_line_errors(clip, tmp_path, capsys):
    """--bitrate 1e400 was an OverflowError traceback; --bitrate -2M / 1e30 failed only at the
    first frame with FFmpeg's message; NaN durations and rates were accepted and ignored."""
    out = tmp_path / "o.mp4"
    cases = [(["--stream", "udp://127.0.0.1:5000", "--bitrate", "1e400"], "--bitrate"),
             (["--stream", "udp://127.0.0.1:5000", "--bitrate=-2M"], "--bitrate"),
             (["--stream", "udp://127.0.0.1:5000", "--bitrate", "1e30"], "--bitrate"),
             (["-o", str(out), "--duration", "nan"], "--duration"),
             (["-o", str(out), "--fps", "0"], "--fps"),
             (["-o", str(out), "--width", "-4"], "--width"),
             (["-o", str(out), "--log-every", "nan"], "--log-every"),
             (["-o", str(out), "--retry-delay", "inf"], "--retry-delay")]
    for extra, message in cases:
        assert cli(["live", clip, "--method", "identity", *extra]) == 1, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("vderain: error: ") and message in err[0], (extra, err)
    assert not out.exists()


def test_cli_bad_file_settings_fail_before_the_source_opens(tmp_path, capsys):
    """An unknown preset, a negative crf, a container that cannot hold the codec or a format
    FFmpeg does not know were found at the first frame, after the camera had opened and the
    model had loaded; now before anything starts (the source here would hang for 10 s)."""
    import socket
    server = socket.create_server(("127.0.0.1", 0))   # accepts, never sends: a stalled camera
    port = server.getsockname()[1]
    try:
        for extra, message in (([".mp4", "--preset", "bogus"], "preset"), ([".mp4", "--crf", "-5"], "encoder"),
                               ([".webm", "--codec", "h264"], "cannot hold"), ([".xyz"], "does not know")):
            t0 = time.perf_counter()
            assert cli(["live", f"tcp://127.0.0.1:{port}", "-o", str(tmp_path / "o") + extra[0],
                        "--method", "identity", "--retries", "0", *extra[1:]]) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert err[-1].startswith("vderain: error: ") and message in err[-1], err
            assert time.perf_counter() - t0 < 5
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == []   # no file, no temp file left


def test_cli_interrupted_before_the_first_frame_does_not_claim_a_file(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the camera was still opening printed 'wrote OUT' and exited 0, with no file."""
    out = tmp_path / "o.mp4"
    monkeypatch.setattr("vderain.io.live.open_source", lambda *a, **k: Waits())
    import _thread
    ctrl_c = threading.Timer(0.5, _thread.interrupt_main)
    ctrl_c.start()
    try:
        rc = cli(["live", "0", "-o", str(out), "--method", "identity"])
    finally:
        ctrl_c.cancel()   # never into pytest itself, should cli return early
    assert rc == 130
    err = capsys.readouterr().err
    assert "wrote" not in err and "interrupted" in err
    assert not out.exists()


def test_ctrl_c_still_writes_the_frame_waiting_for_its_look_ahead(clip, tmp_path):
    """With one frame of look-ahead, Ctrl-C dropped the last processed frame (processed N,
    file N - 1); it is finished as at the end of a stream (padded with itself)."""
    class InterruptingSink(Record):
        def write(self, rgb, capture_time):
            super().write(rgb, capture_time)
            if self.written == 5:
                raise KeyboardInterrupt

    sink = InterruptingSink()
    stats = run_live(FileSource(clip, realtime=False), Pick(window=3, target=1), [sink])
    assert stats.stopped_by == "interrupt"
    assert stats.processed == 6 and sink.written == 6
    assert [round(index_of(f)) for f in sink.frames] == list(range(6))


def test_first_frame_keeps_its_place_in_time_after_a_slow_warm_up(long_clip):
    """The first frame was restamped after the warm-up, later than the frame captured during it:
    the file's first two frames were 1 ms apart (pts clamped). It now stays before it."""
    class SlowStart(Pick):
        def __call__(self, clips):
            if self.calls < 2:
                time.sleep(0.25)   # warm-up calls: the source moves on ~7 frames
            return super().__call__(clips)

    sink = Record()
    run_live(FileSource(long_clip), SlowStart(), [sink], max_frames=5)
    gaps = np.diff(sink.times)
    assert (gaps > 0.5 / FPS).all(), gaps


def test_out_of_memory_is_one_line_and_the_file_is_finished(clip, tmp_path):
    """A GPU out of memory (a 4K camera on a small card) was a traceback; it is now an error
    that suggests --max-height, and what was recorded before it is kept."""
    class Oom(Pick):
        def __call__(self, clips):
            if self.calls == 6:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().__call__(clips)

    out = tmp_path / "oom.mp4"
    with pytest.raises(VderainError, match="out of memory.*--max-height") as err:
        run_live(FileSource(clip, realtime=False), Oom(), [FileSink(out, FPS, crf=10)])
    assert "\n" not in str(err.value)
    assert frames_of(out) == list(range(4))   # 2 warm-up calls, 4 frames, then the error


def test_cli_output_codec_follows_the_target_as_in_vderain_run(clip, tmp_path):
    """--codec defaulted to h264 here (None in `vderain run`, where the writer picks it from the
    target): `-o frames/` was refused ('--codec h264 needs a file name'), where `vderain run`
    writes PNG frames."""
    from vderain.cli import build_parser
    assert build_parser().parse_args(["live", "0"]).codec is None
    assert cli(["live", clip, "-o", str(tmp_path / "frames") + "/", "--method", "identity", "--max-frames", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["000000.png", "000001.png", "000002.png"]
