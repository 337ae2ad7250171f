"""Live sources and sinks, without a camera: a file at real speed, loopback UDP/TCP/HTTP streams."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from live_helpers import (FPS, frame, free_port, index_of, make_clip, make_color_clip, read_all,
                          wait_for)
from vderain import VderainError
from vderain.io.live import (CameraSource, LatencyLog, FileSource, StreamSink, StreamSource, WindowSink,
                             open_source)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("live") / "clip.mp4", n=15)


def drain(source, limit_s=10.0, work_s=0.0):
    """Read a source to its end; returns the frames read."""
    got = []
    deadline = time.perf_counter() + limit_s
    with source:
        while time.perf_counter() < deadline:
            f = source.read(timeout=0.5)
            if f is None:
                if source.ended:
                    break
                continue
            got.append(f)
            time.sleep(work_s)
    return got


def test_latency_log_percentiles_in_constant_memory():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0.02, 0.05, 9000), rng.uniform(0.2, 0.4, 1000)])
    log = LatencyLog()
    assert log.percentile_ms(50) is None
    for v in values:
        log.append(float(v))
    size = log.counts.nbytes
    for q in (5, 50, 90, 95, 99):
        exact = np.percentile(values, q, method="inverted_cdf") * 1000   # nearest rank
        assert abs(log.percentile_ms(q) - exact) <= 0.006 * exact + 0.1, q
    assert len(log) == 10000 and log.max == values.max()
    seen = log.snapshot()
    for _ in range(100_000):
        log.append(1.5)
    assert log.counts.nbytes == size                      # a week-long camera: still the same bins
    assert abs(log.percentile_ms(50, since=seen) - 1500) <= 8   # only what came after the snapshot
    assert log.percentile_ms(5) < 60 < 1000 < log.percentile_ms(50)   # the whole run: 9 % fast, the rest 1.5 s
    log.append(0.0)
    log.append(5000.0)                                     # out of range: counted in the end bins
    assert len(log) == 110_002


def test_file_source_plays_at_its_frame_rate(clip):
    t0 = time.perf_counter()
    got = drain(FileSource(clip))
    elapsed = time.perf_counter() - t0
    # 15 frames at 30 fps: the last one is released ~14/30 s after the first.
    assert elapsed >= 14 / FPS * 0.9
    gaps = np.diff([f.time for f in got])
    assert 0.7 / FPS < np.median(gaps) < 1.5 / FPS
    # every frame is either read or counted as dropped
    src_total = len(got) + (got[-1].index + 1 - len(got))
    assert src_total == 15
    assert [round(index_of(f.rgb)) for f in got] == [f.index for f in got]


def test_file_source_drops_old_frames_for_a_slow_reader(clip):
    src = FileSource(clip)
    got = drain(src, work_s=0.1)     # 10 fps reader, 30 fps source
    assert src.dropped > 0
    assert len(got) + src.dropped == src.captured == 15
    # what is read is always the newest frame: indices jump, never repeat
    idx = [f.index for f in got]
    assert idx == sorted(set(idx)) and idx[-1] == 14


def test_file_source_without_realtime_keeps_every_frame(clip):
    t0 = time.perf_counter()
    got = drain(FileSource(clip, realtime=False), work_s=0.002)
    assert [f.index for f in got] == list(range(15))
    assert [round(index_of(f.rgb)) for f in got] == list(range(15))
    assert time.perf_counter() - t0 < 14 / FPS   # faster than real time


@pytest.mark.parametrize("pix_fmt, color_range", [("yuv420p", 1), ("yuvj420p", 2)])
def test_sources_decode_colours_like_the_reader(tmp_path, pix_fmt, color_range):
    """A BT.709 clip (HD) must not be read with BT.601: green (30,200,30) came out (43,229,34)."""
    from vderain.io import open_video
    path = make_color_clip(tmp_path / f"{pix_fmt}.mp4", n=3, colorspace=1, color_range=color_range,
                           pix_fmt=pix_fmt)
    with open_video(path) as reader:
        want = [f.rgb.astype(int) for f in reader]
    assert np.abs(want[0][10, 5] - (30, 200, 30)).max() <= 3      # the reference reads it right
    got = drain(FileSource(path, realtime=False))
    assert [f.index for f in got] == list(range(len(want)))
    # The network path, fed by a file: it keeps only the newest frame, and the end of the
    # data is a lost stream (an error once retries run out), so compare what it delivered.
    streamed = []
    with StreamSource(f"file:{path}", retries=0) as src:
        with pytest.raises(VderainError, match="ended"):
            while (f := src.read(timeout=5.0)) is not None:
                streamed.append(f)
    assert streamed
    got += streamed
    for f in got:
        assert np.abs(f.rgb.astype(int) - want[f.index]).max() <= 2


def test_file_source_loops(clip):
    src = FileSource(clip, realtime=False, loop=True).start()
    try:
        idx = [round(index_of(src.read(2.0).rgb)) for _ in range(20)]
    finally:
        src.stop()
    assert idx == list(range(15)) + list(range(5))


def test_open_source_picks_the_kind(clip):
    assert isinstance(open_source("3"), CameraSource)
    assert isinstance(open_source("udp://127.0.0.1:5000"), StreamSource)
    assert isinstance(open_source(clip), FileSource)
    with pytest.raises(VderainError, match="no such video file"):
        open_source("missing.mp4")


def test_missing_camera_is_a_clear_error_after_retries():
    src = CameraSource(99, retries=1, retry_delay=0.05).start()
    try:
        assert wait_for(lambda: src.ended, timeout=10)
        with pytest.raises(VderainError, match=r"camera 99 .*could not be opened.*gave up after 1 retry"):
            src.read(0.1)
    finally:
        src.stop()


def test_window_sink_needs_a_display(monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(VderainError, match="no display"):
        WindowSink()


def send(sink, n, fps=FPS):
    """Feed n indexed frames to a sink at fps, then close it (the stream ends)."""
    try:
        for i in range(n):
            sink.write(frame(i), time.perf_counter())
            time.sleep(1 / fps)
    finally:
        sink.close()


def check_sequence(frames, at_least):
    idx = [index_of(f) for f in frames]
    assert len(idx) >= at_least
    # decoded pictures are the sent ones, in order (H.264 at crf 23 keeps the level within 1 step)
    assert all(abs(i - round(i)) < 0.3 for i in idx)
    assert all(b > a for a, b in zip(idx, idx[1:]))


def _tcp_sink_with_reader():
    """A TCP-server stream sink with a reader connected: (sink, the frames read, the reader thread)."""
    sink = StreamSink("tcp://127.0.0.1:0?listen=1", FPS, gop=0.2)
    port = sink.address[1]
    got = []
    reader = threading.Thread(target=lambda: got.extend(read_all(f"tcp://127.0.0.1:{port}")))
    reader.start()
    assert wait_for(lambda: sink.out.clients, timeout=5)
    return sink, got, reader


def test_stream_sink_tcp_server_read_back_by_a_second_reader():
    sink, got, reader = _tcp_sink_with_reader()
    send(sink, 30)
    reader.join(10)
    assert not reader.is_alive()
    assert sink.written == 30 and sink.dropped == 0
    check_sequence(got, at_least=25)
    assert len(sink.latencies) == 30 and sink.latencies.max < 0.5


def test_stream_sink_http_serves_a_player():
    sink = StreamSink("http://127.0.0.1:0/", FPS, gop=0.2)
    port = sink.address[1]
    got = []
    reader = threading.Thread(target=lambda: got.extend(read_all(f"http://127.0.0.1:{port}/live.ts")))
    reader.start()
    assert wait_for(lambda: sink.out.clients, timeout=5)
    send(sink, 30)
    reader.join(10)
    check_sequence(got, at_least=25)


def test_stream_sink_udp_read_back_by_a_second_reader():
    port = free_port(kind=2)   # SOCK_DGRAM
    got = []
    reader = threading.Thread(target=lambda: got.extend(
        read_all(f"udp://127.0.0.1:{port}?overrun_nonfatal=1", timeout=(5, 1))))
    reader.start()
    time.sleep(0.3)   # the reader binds the port; datagrams sent earlier would be lost
    send(StreamSink(f"udp://127.0.0.1:{port}", FPS, gop=0.2), 30)
    reader.join(10)
    check_sequence(got, at_least=15)


def read_until_error(src, match: str, seconds: float = 10.0) -> list:
    """Frames a source delivers until it ends with the expected one-line error (bounded wait)."""
    got = []
    deadline = time.perf_counter() + seconds
    with pytest.raises(VderainError, match=match):
        while time.perf_counter() < deadline:
            f = src.read(0.5)
            if f is not None:
                got.append(f)
    return got


def test_stream_source_tcp_loopback_and_reconnect_gives_up():
    sink = StreamSink("tcp://127.0.0.1:0?listen=1", FPS, gop=0.2)
    port = sink.address[1]
    src = StreamSource(f"tcp://127.0.0.1:{port}", retries=2, retry_delay=0.1).start()
    try:
        assert wait_for(lambda: sink.out.clients, timeout=5)
        sender = threading.Thread(target=send, args=(sink, 30))
        sender.start()
        got = read_until_error(src, r"stream tcp://.*gave up after 2 retries")
        sender.join()
    finally:
        src.stop()
    # The reader discards what it sees while probing the stream (fflags nobuffer: no
    # start-up backlog), so it joins a few frames in; from there on it sees them all.
    check_sequence([f.rgb for f in got], at_least=12)
    assert round(index_of(got[-1].rgb)) == 29
    assert len(got) + src.dropped == src.captured


def test_stream_source_udp_loopback():
    port = free_port(kind=2)
    src = StreamSource(f"udp://127.0.0.1:{port}", retries=0, read_timeout=1.0).start()
    try:
        time.sleep(0.3)
        sender = threading.Thread(target=send, args=(StreamSink(f"udp://127.0.0.1:{port}", FPS, gop=0.2), 30))
        sender.start()
        got = read_until_error(src, "stream udp://")
        sender.join()
    finally:
        src.stop()
    check_sequence([f.rgb for f in got], at_least=12)
    assert round(index_of(got[-1].rgb)) == 29


def test_stream_sink_rejects_bad_urls():
    with pytest.raises(VderainError, match="needs a port"):
        StreamSink("udp://127.0.0.1", FPS)
    with pytest.raises(VderainError, match="unsupported"):
        StreamSink("rtmp://127.0.0.1:1935/live", FPS)
    for url in ("udp://127.0.0.1:99999", "udp://127.0.0.1:abc", "tcp://127.0.0.1:-1?listen=1"):
        with pytest.raises(VderainError, match="bad port") as e:
            StreamSink(url, FPS)
        assert "\n" not in str(e.value) and url in str(e.value)
        with pytest.raises(VderainError, match="bad port"):
            StreamSource(url)


def test_udp_datagrams_carry_whole_ts_packets():
    import socket
    from vderain.io.live import _UdpOut
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    out = _UdpOut("127.0.0.1", rx.getsockname()[1])
    try:
        out.write(b"\x47" * 200)            # one packet and a bit: only the packet goes
        assert len(rx.recv(4096)) == 188
        out.write(b"\x47" * (176 + 188 * 8))  # completes the second; 9 packets -> 7 + 2
        assert [len(rx.recv(4096)), len(rx.recv(4096))] == [7 * 188, 2 * 188]
    finally:
        out.close()
        rx.close()


# ------------------------------------------------------------------ found in review (stage 21)

def make_rotated_clip(path, rotation: int, n: int = 3) -> str:
    """A phone-style clip: frames coded landscape, a display rotation tag to show them upright."""
    import av
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.set_display_rotation(rotation)
        for i in range(n):
            img = np.full((64, 96, 3), 50 + i, np.uint8)
            img[:8, :8] = 255   # a white mark in the coded top-left corner
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_file_source_is_shown_upright(tmp_path, rotation):
    """A phone clip with a display rotation came out sideways in every live output (the window,
    MPEG-TS and the file), which players show upright: the pixels are turned as the tag says
    (counter-clockwise quarter turns, as the writer turns PNG frames)."""
    path = make_rotated_clip(tmp_path / "rot.mp4", rotation)
    got = drain(FileSource(path, realtime=False))
    assert len(got) == 3
    coded = np.zeros((64, 96), bool)
    coded[:8, :8] = True
    expect = np.rot90(coded, (rotation // 90) % 4)
    assert got[0].rgb.shape[:2] == expect.shape
    assert got[0].rgb.flags.c_contiguous
    bright = got[0].rgb[..., 0] > 150
    assert bright[expect].mean() > 0.9 and bright[~expect].mean() < 0.02


def test_zero_frame_file_with_loop_fails_at_once(tmp_path):
    """A file that opens but decodes to no frame, with --loop, reopened it in a busy loop for
    the 30 s first-frame timeout; it now ends at once ('ended before delivering a frame')."""
    full = make_clip(tmp_path / "full.mkv", n=5)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(open(full, "rb").read()[:700])   # the header and no whole frame
    src = FileSource(str(cut), loop=True)
    t0 = time.perf_counter()
    got = drain(src, limit_s=5)
    assert got == [] and src.ended and time.perf_counter() - t0 < 3


def test_a_folder_as_source_says_so(tmp_path):
    with pytest.raises(VderainError, match="is a folder"):
        open_source(str(tmp_path))


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (95, 63)])
def test_stream_sink_takes_odd_and_tiny_frames(size):
    """even_crop made a 1x1 frame 0x0 and the encoder failed ('stream sink failed'); odd sizes
    are now padded by repeating the last row/column, as `vderain run`'s writer does."""
    w, h = size
    sink, got, reader = _tcp_sink_with_reader()
    t = time.perf_counter()
    for i in range(5):
        sink.write(np.full((h, w, 3), 100, np.uint8), t + i / FPS)
        wait_for(lambda: sink.written == i + 1, timeout=2)
    sink.close()
    reader.join(10)
    assert sink.written == 5
    assert got and got[0].shape == (h + h % 2, w + w % 2, 3)


def test_stream_sink_keyframes_follow_time_not_frame_count():
    """The keyframe interval was counted in frames at the nominal rate (30 = 1 s at 30 fps); with
    a model at 3 fps that was a keyframe every 10 s, so a player joining waited up to 10 s for
    a picture. Keyframes now come every `gop` seconds of stream time, whatever the frame rate."""
    import av
    sink = StreamSink("tcp://127.0.0.1:0?listen=1", FPS, gop=1.0)
    port = sink.address[1]
    keys = []

    def reader():
        with av.open(f"tcp://127.0.0.1:{port}", timeout=(5, 3)) as c:
            for p in c.demux(video=0):
                if p.size:
                    keys.append((float(p.pts * p.time_base), p.is_keyframe))

    t = threading.Thread(target=reader)
    t.start()
    assert wait_for(lambda: sink.out.clients, timeout=5)
    t0 = time.perf_counter()
    for i in range(12):   # 12 frames 0.3 s apart in capture time: a slow model, 3.3 fps
        sink.write(frame(i), t0 + 0.3 * i)
        wait_for(lambda: sink.written == i + 1, timeout=2)
    sink.close()
    t.join(10)
    assert len(keys) == 12
    times = [round(k - keys[0][0], 2) for k, key in keys if key]
    assert times[0] == 0 and len(times) >= 3
    assert all(b - a <= 1.2 for a, b in zip(times, times[1:] + [round(keys[-1][0] - keys[0][0], 2)]))


def test_window_sink_refuses_a_display_it_cannot_reach(monkeypatch):
    """With DISPLAY set to a display that does not answer (a stale ssh forward, a service that
    inherited it), OpenCV's Qt aborted the whole process (SIGABRT, no message, no file finished)
    at the first frame. The window is tried first in a child process: one line instead."""
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("DISPLAY", "127.0.0.1:87")   # nothing listens on port 6087
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    with pytest.raises(VderainError, match="cannot open a window") as e:
        WindowSink()
    assert "\n" not in str(e.value) and "--output" in str(e.value)


def test_camera_frames_in_other_formats_become_rgb():
    """OpenCV hands some cameras' frames over as grey (H, W), 16-bit or BGRA (IR, thermal,
    depth cameras): cvtColor(BGR2RGB) raised cv2.error in the loop, a traceback."""
    cam = CameraSource(0)
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0] = 200   # blue
    assert cam._to_rgb(bgr)[0, 0].tolist() == [0, 0, 200]
    assert cam._to_rgb(np.full((4, 6), 77, np.uint8)).shape == (4, 6, 3)
    assert cam._to_rgb(np.full((4, 6, 1), 77, np.uint8))[0, 0].tolist() == [77, 77, 77]
    assert cam._to_rgb(np.full((4, 6), 256 * 77, np.uint16))[0, 0].tolist() == [77, 77, 77]
    assert cam._to_rgb(np.dstack([bgr, np.full((4, 6), 9, np.uint8)]))[0, 0].tolist() == [0, 0, 200]
    with pytest.raises(VderainError, match="unsupported frame"):
        cam._to_rgb(np.zeros((1, 4096), np.uint8))   # an undecoded buffer (MJPEG, YUYV)


def test_a_stream_that_sends_nothing_says_it_timed_out():
    """A server that accepts and never sends ended with FFmpeg's 'Immediate exit requested'."""
    import socket
    server = socket.create_server(("127.0.0.1", 0))
    src = StreamSource(f"tcp://127.0.0.1:{server.getsockname()[1]}", retries=0, open_timeout=0.5).start()
    try:
        assert wait_for(lambda: src.ended, timeout=5)
        with pytest.raises(VderainError, match=r"sent nothing for 0.5 s \(timed out\)"):
            src.read(0.1)
    finally:
        src.stop()
        server.close()


def test_stream_errors_do_not_print_the_camera_password():
    """`vderain: error: stream rtsp://admin:secret@...` put the camera's password in logs and
    journals; it is hidden in every message."""
    port = free_port()
    src = StreamSource(f"tcp://admin:s3cret@127.0.0.1:{port}", retries=0).start()
    try:
        assert wait_for(lambda: src.ended, timeout=5)
        with pytest.raises(VderainError) as e:
            src.read(0.1)
    finally:
        src.stop()
    assert "s3cret" not in str(e.value) and f"admin:***@127.0.0.1:{port}" in str(e.value)
