"""derain_frames / derain_video: windows reach the method, outputs land in order, nothing leaks."""
from __future__ import annotations

import os
import tracemalloc

import av
import numpy as np
import pytest
import torch

from vderain import VderainError, derain_frames, derain_video
from vderain.io import reflect_index
from vderain.methods import Identity, Method
from videogen import make_video, pattern_frames, read_all, stream_summary


class FirstOfWindow(Method):
    """Returns the window's first frame: shows which frames the pipeline put in each window."""
    name = "first"

    def __init__(self, window=5):
        self.window, self.target = window, window // 2

    def __call__(self, clips):
        return clips[:, 0]


class Darken(Method):
    name = "darken"
    tileable = True

    def __call__(self, clips):
        return clips[:, self.target] * 0.5


class Fails(Identity):
    def __init__(self, after, exc):
        super().__init__()
        self.calls, self.after, self.exc = 0, after, exc

    def __call__(self, clips):
        self.calls += 1
        if self.calls > self.after:
            raise self.exc
        return super().__call__(clips)


def _index_frames(n, h=8, w=8):
    return np.stack([np.full((h, w, 3), 10 * i, np.uint8) for i in range(n)])


def test_identity_is_exact():
    frames = pattern_frames(7)
    np.testing.assert_array_equal(derain_frames(frames, method="identity"), frames)


@pytest.mark.parametrize("batch", [1, 3])
def test_windows_are_reflected_and_in_order(batch):
    n, window = 9, 5
    out = derain_frames(_index_frames(n), method=FirstOfWindow(window), batch=batch)
    got = [int(o[0, 0, 0]) // 10 for o in out]
    assert got == [reflect_index(i - 2, n) for i in range(n)]  # [2, 1, 0, 1, 2, ...]


def test_tiled_equals_untiled_for_a_pointwise_method():
    frames = pattern_frames(4, 97, 70)
    tiled = derain_frames(frames, method=Darken(), tile=32, tile_overlap=8).astype(int)
    whole = derain_frames(frames, method=Darken()).astype(int)
    # blending is exact up to float rounding, which can flip a value sitting on .5
    assert np.abs(tiled - whole).max() <= 1 and (tiled != whole).mean() < 0.02


class OomAbove(Darken):
    """Runs out of (pretend) GPU memory on frames with a side over `limit`."""

    def __init__(self, limit, tileable=True, error=None):
        self.limit, self.tileable, self.sizes = limit, tileable, []
        self.error = error or torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def __call__(self, clips):
        self.sizes.append(tuple(clips.shape[-2:]))
        if max(clips.shape[-2:]) > self.limit:
            raise self.error
        return super().__call__(clips)


CPU_OOM = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8294400000 bytes.")


@pytest.mark.parametrize("error", [None, CPU_OOM], ids=["cuda", "cpu"])
def test_out_of_memory_falls_back_to_tiles_and_says_so(monkeypatch, error):
    from vderain.pipeline import derain_iter
    from vderain.io import Frame
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    frames = pattern_frames(5, 320, 200)
    whole = derain_frames(frames, method=Darken()).astype(int)
    m, notes = OomAbove(160, error=error), []
    items = (Frame(rgb=f, index=i, pts=None, time=i / 25) for i, f in enumerate(frames))
    got = np.stack([rgb for _, rgb, _ in derain_iter(items, m, batch=2, notes=notes, stabilise=False)])
    # first whole frames (out of memory), then half the long side, kept for every later batch
    assert m.sizes[0] == (200, 320) and max(max(s) for s in m.sizes[1:]) <= 160
    assert sum(s == (200, 320) for s in m.sizes) == 1
    assert np.abs(got.astype(int) - whole).max() <= 1
    assert notes == ["out of memory: tiling frames in 160-pixel tiles"]   # (a CPU method)
    # halving again until it fits; a floor of 128 pixels, then a clear error
    m = OomAbove(100, error=error)
    with pytest.raises(VderainError, match="even with 128-pixel tiles"):
        derain_frames(frames, method=m)
    assert [max(s) for s in m.sizes][:2] == [320, 160]
    with pytest.raises(VderainError, match="cannot be tiled"):
        derain_frames(frames, method=OomAbove(160, tileable=False, error=error))


def test_a_runtime_error_that_is_not_out_of_memory_is_not_tiled_away():
    m = OomAbove(160, error=RuntimeError("Given groups=1, weight of size [8, 3, 3, 3]"))
    with pytest.raises(RuntimeError, match="groups"):
        derain_frames(pattern_frames(3, 320, 200), method=m)
    assert len(m.sizes) == 1


def test_named_methods_and_window():
    frames = pattern_frames(6)
    out = derain_frames(frames, method="median", window=3)
    assert out.shape == frames.shape and out.dtype == np.uint8
    with pytest.raises(VderainError, match="unknown method"):
        derain_frames(frames, method="nope")


def test_bad_arrays():
    with pytest.raises(VderainError, match="uint8"):
        derain_frames(np.zeros((2, 8, 8, 3), np.float32), method="identity")
    with pytest.raises(VderainError, match="RGB"):
        derain_frames(np.zeros((8, 8, 3), np.uint8), method="identity")


def test_video_identity_lossless_keeps_pixels_time_and_audio(clips, tmp_path):
    src = make_video(tmp_path / "in.mkv", n=10, codec="ffv1", pix_fmt="bgr0", audio=True)
    s = derain_video(src, tmp_path / "out.mkv", method="identity", codec="ffv1", progress=False)
    assert s["frames"] == 10 and s["output"] == str(tmp_path / "out.mkv")
    a, ta, _ = read_all(src)
    b, tb, _ = read_all(tmp_path / "out.mkv")
    np.testing.assert_array_equal(a, b)
    assert ta == pytest.approx(tb, abs=1e-3)
    assert [x[:2] for x in stream_summary(tmp_path / "out.mkv")] == [("video", "ffv1"), ("audio", "aac")]


def test_video_vfr_and_rotation(clips, tmp_path):
    derain_video(clips["vfr"], tmp_path / "v.mp4", method="median", window=3, progress=False)
    assert read_all(tmp_path / "v.mp4")[1] == pytest.approx(read_all(clips["vfr"])[1], abs=1e-3)
    derain_video(clips["rotated"], tmp_path / "r.mp4", method="identity", progress=False)
    assert read_all(tmp_path / "r.mp4")[2].rotation == 90


class Upright(Method):
    """Darkens the top rows of what it is given and records the shapes: shows which way up the
    pipeline hands a rotated clip to the method."""
    name = "upright"

    def __init__(self):
        self.shapes = []

    def __call__(self, clips):
        self.shapes.append(tuple(clips.shape[-2:]))
        out = clips[:, self.target].clone()
        out[..., :8, :] = 0          # the top of the picture as the method sees it
        return out


def test_a_rotated_clip_reaches_the_method_upright(tmp_path):
    # a phone clip coded 96x64 with a 90-degree display rotation is shown 64 wide, 96 high: rain
    # falls down those 96 rows, so that is what the method must see; the output keeps the tag
    src = make_video(tmp_path / "in.mp4", n=4, width=96, height=64, rotation=90)
    m = Upright()
    derain_video(src, tmp_path / "o.mp4", method=m, rain_layer=tmp_path / "r.mp4", progress=False)
    assert set(m.shapes) == {(96, 64)}
    out, _, info = read_all(tmp_path / "o.mp4")
    assert info.rotation == 90 and out.shape[1:3] == (64, 96)
    # the shown picture's top rows are dark: FFmpeg's 90 degrees (counter-clockwise) puts the
    # coded last column there
    shown = np.rot90(out, 1, axes=(1, 2))
    assert shown[:, :7].mean() < 8 and shown[:, -8:].mean() > 40 and shown[:, 20:].mean() > 40
    assert read_all(tmp_path / "r.mp4")[0].shape[1:3] == (64, 96)


def test_side_by_side_and_rain_layer(tmp_path):
    src = make_video(tmp_path / "in.mkv", n=6, codec="ffv1", pix_fmt="bgr0")
    s = derain_video(src, tmp_path / "sbs.mkv", method=Darken(), codec="ffv1", side_by_side=True,
                     rain_layer=tmp_path / "rain.mkv", progress=False)
    inp = read_all(src)[0].astype(int)
    sbs = read_all(tmp_path / "sbs.mkv")[0].astype(int)
    rain = read_all(tmp_path / "rain.mkv")[0].astype(int)
    assert sbs.shape == (6, 64, 192, 3) and s["rain_layer"] == str(tmp_path / "rain.mkv")
    np.testing.assert_array_equal(sbs[:, :, :96], inp)
    assert np.abs(sbs[:, :, 96:] - inp / 2).max() <= 1
    assert np.abs(rain - inp / 2).max() <= 1  # removed layer = input - output


def test_start_duration(clips, tmp_path):
    s = derain_video(clips["audio"], tmp_path / "o.mp4", method="identity", start=0.5, duration=0.25,
                     progress=False)
    frames, times, _ = read_all(tmp_path / "o.mp4")
    assert s["frames"] == len(frames) == 6
    assert times[0] == pytest.approx(0, abs=1e-3)
    ref = read_all(clips["audio"])[0][12]
    assert np.abs(frames[0].astype(int) - ref).mean() < 3
    with pytest.raises(VderainError, match="past the end"):
        derain_video(clips["audio"], tmp_path / "p.mp4", method="identity", start=60, progress=False)


def test_frame_folder_in_png_folder_out(tmp_path):
    from videogen import make_frame_folder
    folder = make_frame_folder(tmp_path / "seq", n=5)
    derain_video(folder, tmp_path / "out/", method="identity", progress=False)
    out = read_all(tmp_path / "out")[0]
    np.testing.assert_array_equal(out, pattern_frames(5, 64, 48))


@pytest.mark.parametrize("exc", [RuntimeError("model crashed"), KeyboardInterrupt()])
def test_failure_mid_run_leaves_nothing(clips, tmp_path, exc):
    before = open(clips["audio"], "rb").read()
    with pytest.raises(type(exc)):
        derain_video(clips["audio"], tmp_path / "o.mp4", method=Fails(5, exc),
                     rain_layer=tmp_path / "rain.mp4", progress=False)
    assert os.listdir(tmp_path) == []
    assert open(clips["audio"], "rb").read() == before


def test_slow_encoder_does_not_hang_the_end_of_a_run(tmp_path, monkeypatch):
    """The end marker must reach the encoder even when its queue stays full for a while."""
    import threading
    import time
    from vderain.io.writer import VideoWriter

    write = VideoWriter.write

    def slow_write(self, rgb, pts=None):
        time.sleep(0.3)  # a slow encode: the output queue is still full when the input ends
        return write(self, rgb, pts)

    monkeypatch.setattr(VideoWriter, "write", slow_write)
    src = make_video(tmp_path / "in.mp4", n=7)
    result = {}
    run = threading.Thread(target=lambda: result.update(derain_video(
        src, tmp_path / "o.mp4", method="identity", progress=False)), daemon=True)
    run.start()
    run.join(timeout=30)
    assert not run.is_alive(), "derain_video hung waiting for the encoder thread"
    assert result["frames"] == 7


def test_memory_does_not_grow_with_length(tmp_path):
    short = make_video(tmp_path / "short.mp4", n=16)
    long = make_video(tmp_path / "long.mp4", n=128)

    def peak(path):
        tracemalloc.start()
        derain_video(path, tmp_path / f"o_{os.path.basename(path)}", method="identity", progress=False)
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p

    peak(short)  # warm-up: first-use imports and caches
    p_short, p_long = peak(short), peak(long)
    frame_bytes = 96 * 64 * 3
    # holding the long clip's frames would add 112 frames (~2 MB) to the peak
    assert p_long - p_short < 20 * frame_bytes, (p_short, p_long)


def test_method_instance_and_summary(clips, tmp_path):
    s = derain_video(clips["basic"], tmp_path / "o.mp4", method=Identity(window=3), progress=False)
    assert s["method"] == "identity" and s["device"] == "cpu" and s["fps"] > 0
    assert s["decode_problems"] is None and s["notes"] == []
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.video[0].frames == 24


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_path_matches_cpu(clips, tmp_path):
    frames = pattern_frames(6)
    cpu = derain_frames(frames, method=Darken())
    m = Darken()
    m.device = torch.device("cuda")
    gpu = derain_frames(frames, method=m, batch=3)
    assert np.abs(cpu.astype(int) - gpu).max() <= 1


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_mpegts(port: int, n: int = 20, tries: int = 400):
    """Push n frames as MPEG-TS over TCP from a thread, the way a camera or encoder would.

    The thread's `.error` says why it sent nothing (the reader never listened), for the test to report.
    """
    import threading
    import time

    def send():
        out = None
        for _ in range(tries):  # until the reader listens
            try:
                out = av.open(f"tcp://127.0.0.1:{port}", "w", format="mpegts")
                v = out.add_stream("libx264", rate=24)
                v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
                out.start_encoding()  # PyAV connects here, not in av.open
                break
            except (av.error.FFmpegError, OSError):
                if out is not None:
                    try:
                        out.close()
                    except (av.error.FFmpegError, OSError):
                        pass
                out = None
                time.sleep(0.05)
        if out is None:
            sender.error = f"test sender never connected to tcp://127.0.0.1:{port} ({tries} tries)"
            return
        try:
            for img in pattern_frames(n):
                for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
            for p in v.encode(None):
                out.mux(p)
            out.close()
        except (av.error.FFmpegError, OSError):
            pass  # the reader hung up (interrupt test)

    sender = threading.Thread(target=send, daemon=True)
    sender.error = None
    sender.start()
    return sender


def _derain_stream(sender, port, out, **kw):
    """derain_video on the sender's stream; a sender that never connected is named as the cause."""
    try:
        return derain_video(f"tcp://127.0.0.1:{port}?listen=1", out, progress=False, **kw)
    except Exception:
        sender.join(1)
        if sender.error:
            pytest.fail(sender.error)
        raise


def test_stream_sender_reports_when_nobody_listens():
    sender = _serve_mpegts(_free_port(), tries=2)
    sender.join(5)
    assert not sender.is_alive() and "never connected" in sender.error


def test_network_stream_input(tmp_path):
    port = _free_port()
    sender = _serve_mpegts(port)
    s = _derain_stream(sender, port, tmp_path / "o.mp4", method="identity")
    sender.join(10)
    assert sender.error is None, sender.error
    frames, times, _ = read_all(tmp_path / "o.mp4")
    assert s["frames"] == len(frames) == 20 and not s["interrupted"]
    assert times[0] == pytest.approx(0, abs=1e-3) and times[-1] == pytest.approx(19 / 24, abs=2e-3)


def test_ctrl_c_on_a_stream_keeps_what_was_done(tmp_path):
    port = _free_port()
    sender = _serve_mpegts(port, n=40)
    s = _derain_stream(sender, port, tmp_path / "o.mp4", method=Fails(8, KeyboardInterrupt()))
    assert s["interrupted"] and s["frames"] == 8
    assert len(read_all(tmp_path / "o.mp4")[0]) == 8  # a complete, playable file
    assert os.listdir(tmp_path) == ["o.mp4"]


@pytest.mark.parametrize("batch", [1, 3])
def test_device_frame_cache_gives_the_clips_the_cpu_path_gives(batch):
    """The GPU path uploads each frame once and assembles windows on the device; run that code
    on the CPU and compare it with the CPU path, window by window, edges (reflection) included."""
    from vderain.io import Frame, batched, iter_windows
    from vderain.pipeline import _Runner

    class Five(Method):
        window, target = 5, 2

    rng = np.random.default_rng(0)
    frames = [Frame(rgb=rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), index=i, pts=i, time=i / 25)
              for i in range(11)]
    cpu, dev = _Runner(Five()), _Runner(Five())
    uploads = []
    real_upload = dev._upload
    dev._upload = lambda fs: (uploads.append(len(fs)), real_upload(fs))[1]
    for group in batched(iter_windows(iter(frames), 5, 2), batch):
        a, _ = cpu._clips_cpu(group)
        b, target = dev._clips_device(group)
        assert torch.allclose(a, b, atol=1e-6, rtol=0) and torch.equal(target, b[:, 2])  # x/255 vs x*(1/255)
        assert len(dev._on_device) <= 8  # [last target - window, last target + 2]: bounded, not growing
    assert sum(uploads) == len(frames)  # every frame crossed once


def test_bad_tiling_window_and_sizes_are_clear_errors():
    frames = pattern_frames(3, 24, 16)
    # a negative overlap left unblended gaps: NaN pixels, written out as garbage (189 levels off)
    with pytest.raises(VderainError, match="overlap"):
        derain_frames(frames, method="identity", tile=8, tile_overlap=-3)
    with pytest.raises(VderainError, match="tile"):
        derain_frames(frames, method="identity", tile=(0, 16))
    with pytest.raises(VderainError, match="window"):   # was a bare ValueError from iter_windows
        derain_frames(frames, method="identity", window=0)
    with pytest.raises(VderainError, match="1x1"):      # was a RuntimeError from deep in the reader
        derain_frames(frames[:, :, :0], method="identity")
    with pytest.raises(VderainError, match="one size"):  # a ragged list: numpy's ValueError
        derain_frames([frames[0], frames[1][:10]], method="identity")


def test_derain_frames_output_is_c_contiguous_for_any_input_strides():
    frames = pattern_frames(4, 24, 16)
    for arr in (np.broadcast_to(frames[0], frames.shape), frames[:, ::-1], frames[..., ::-1],
                np.asfortranarray(frames)):
        out = derain_frames(arr, method="identity")
        assert out.flags.c_contiguous
        np.testing.assert_array_equal(out, arr)


def test_a_tile_as_large_as_the_frame_changes_nothing():
    """--tile 1000 on a small clip tiles nothing, but it used to switch off the EdgeHold of the
    clip's reflected end windows: fast-causal's end frames then moved by up to 23 levels."""
    from vderain.metrics.toy import add_streaks, translating
    n = 6
    clean = translating(n, 40, 56, speed=(0.4, 0.1)).astype(int) + 6 * np.arange(n)[:, None, None, None]
    rainy = add_streaks(np.clip(clean, 0, 255).astype(np.uint8), density=0.01, seed=n)
    whole = derain_frames(rainy, method="fast-causal", device="cpu")
    np.testing.assert_array_equal(derain_frames(rainy, method="fast-causal", device="cpu", tile=1000), whole)
