"""Streaming reader: containers, timestamps, metadata, frame folders, URLs, damaged files."""
from __future__ import annotations

import functools
from fractions import Fraction
import http.server
import shutil
import threading

import av
import numpy as np
import pytest

from vderain import VderainError
from vderain.io import open_video
from videogen import make_frame_folder, make_joined_ts, make_size_change_ts, make_video, pattern_frames, read_all


def test_reads_every_frame_with_timestamps(clips):
    frames, times, info = read_all(clips["basic"])
    assert frames.shape == (24, 64, 96, 3) and frames.dtype == np.uint8
    assert (info.width, info.height, info.n_frames) == (96, 64, 24)
    assert info.fps == pytest.approx(24)
    assert times == pytest.approx([i / 24 for i in range(24)], abs=1e-3)
    err = np.abs(frames.astype(int) - pattern_frames(24)).mean()
    assert err < 6, err  # lossy H.264, but the right picture in the right order


def test_lossless_input_decodes_exactly(clips):
    frames, _, info = read_all(clips["lossless"])
    np.testing.assert_array_equal(frames, pattern_frames(16))
    assert info.codec == "ffv1"


def test_variable_frame_rate_timestamps_kept(clips):
    _, times, info = read_all(clips["vfr"])
    want = [0, 40, 80, 200, 240, 280, 500, 510, 520, 530, 700, 740]
    assert times == pytest.approx([p / 1000 for p in want], abs=1e-3)


def test_rotation_is_reported_not_applied(clips):
    frames, _, info = read_all(clips["rotated"])
    assert info.rotation == 90
    assert frames.shape[1:] == (64, 96, 3)  # pixels stay as coded
    assert info.has_audio


def test_odd_size_decodes_exactly(clips):
    frames, _, info = read_all(clips["odd"])
    assert (info.width, info.height) == (97, 65)
    np.testing.assert_array_equal(frames, pattern_frames(12, 97, 65))


def test_ten_bit_input_becomes_8bit_rgb(clips):
    frames, _, info = read_all(clips["tenbit"])
    assert info.bit_depth == 10 and "10" in info.pix_fmt
    assert frames.dtype == np.uint8 and frames.shape == (12, 64, 96, 3)
    assert np.abs(frames.astype(int) - pattern_frames(12)).mean() < 5


def test_colour_tags_read_and_matrix_honoured(clips):
    frames, _, info = read_all(clips["bt709"])
    assert (info.color_space, info.color_range, info.color_primaries, info.color_trc) == (1, 1, 1, 1)
    # make_video encoded with swscale's default (BT.601) matrix but tagged BT.709, so a reader
    # that honours the tag sees slightly different colours than one that ignores it: the
    # tag must change the decoded pixels.
    untagged, _, _ = read_all(clips["basic"])
    assert np.abs(frames.astype(int) - untagged[:12]).mean() > 0.5


def test_start_and_duration_select_frames(clips):
    with open_video(clips["basic"], start=0.5, duration=0.25) as r:
        frames = list(r)
    assert [round(f.time * 24) for f in frames] == list(range(12, 18))
    assert [f.index for f in frames] == list(range(6))
    ref = pattern_frames(18)[12]
    assert np.abs(frames[0].rgb.astype(int) - ref).mean() < 6


def test_start_in_mpeg_ts_joined_end_to_end(tmp_path):
    """In `cat a.ts a.ts` the clock starts again at the join, so 0.5 s in is also 2.5 s in by the
    file's timestamps: a seek landed in either half or nowhere (0 frames from --start 0.5)."""
    src = make_joined_ts(tmp_path / "ab.ts")
    whole, times, _ = read_all(src)
    assert len(whole) == 96 and times[-1] > 4
    for start in (0.5, 1.5, 2.5, 3.5):
        keep = [i for i, t in enumerate(times) if start - 1 / 48 <= t < start + 0.5 - 1 / 48]  # half a frame
        with open_video(src, start=start, duration=0.5) as r:
            frames = list(r)
        assert r.errors == [] and len(frames) == len(keep) == 12, start
        assert frames[0].time == pytest.approx(times[keep[0]], abs=1e-3)
        np.testing.assert_array_equal(np.stack([f.rgb for f in frames]), whole[keep])


@pytest.mark.parametrize("keyint", [20, 250], ids=["keyframe_each_second", "one_keyframe"])
def test_start_in_mpeg_ts_keeps_every_frame_from_start(tmp_path, keyint):
    # MPEG-TS has no index: a seek lands on a non-keyframe, and the decoder drops everything
    # up to the next keyframe (1 s later here, or none at all with one keyframe).
    opts = {"g": str(keyint), "bf": "2"}
    ts = make_video(tmp_path / "clip.ts", n=60, fps=20, options=opts)
    mp4 = make_video(tmp_path / "clip.mp4", n=60, fps=20, options=opts)
    whole, times, _ = read_all(ts)
    keep = [i for i, t in enumerate(times) if t >= 1.3 - 1e-6]
    assert len(keep) == 34  # frames 26..59 at 20 fps
    with open_video(ts, start=1.3) as r:
        frames = list(r)
    assert r.errors == []
    assert len(frames) == len(keep)
    assert frames[0].time == pytest.approx(1.3, abs=1e-3)
    assert [f.index for f in frames] == list(range(len(keep)))
    np.testing.assert_array_equal(np.stack([f.rgb for f in frames]), whole[keep])
    with open_video(mp4, start=1.3) as r:
        assert len(list(r)) == len(keep)


def test_frame_folder_in_natural_order(tmp_path):
    folder = make_frame_folder(tmp_path / "seq", n=12, width=64, height=48)
    with open_video(folder, fps=30) as r:
        frames = list(r)
    assert r.info.fps == 30 and r.info.n_frames == 12
    np.testing.assert_array_equal(np.stack([f.rgb for f in frames]), pattern_frames(12, 64, 48))
    assert frames[11].time == pytest.approx(11 / 30)


def test_frame_folder_skips_unreadable_images(tmp_path):
    folder = make_frame_folder(tmp_path / "seq", n=5)
    (tmp_path / "seq" / "frame_3.png").write_bytes(b"not a png")
    with open_video(folder) as r:
        n = len(list(r))
    assert n == 4 and len(r.errors) == 1 and "frame_3" in r.problems()


def test_decord_backend_matches_pyav(clips):
    pytest.importorskip("decord")
    a, ta, _ = read_all(clips["basic"])
    b, tb, info = read_all(clips["basic"], backend="decord")
    assert b.shape == a.shape and info.n_frames == 24
    assert np.abs(a.astype(int) - b).mean() < 5  # decord converts YUV->RGB its own way
    assert tb == pytest.approx(ta, abs=2e-3)
    with open_video(clips["basic"], backend="decord", start=0.5, duration=0.25) as r:
        assert len(list(r)) == 6


def test_http_url(clips):
    folder = str(clips.folder)
    clips["basic"]
    handler = functools.partial(_QuietHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/basic.mp4"
        with open_video(url) as r:
            n = len(list(r))
        assert n == 24 and r.info.is_stream
    finally:
        server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_reader_is_single_pass(clips):
    with open_video(clips["basic"]) as r:
        list(r)
        with pytest.raises(RuntimeError):
            list(r)


def test_truncated_file_decodes_what_is_there(clips, tmp_path):
    data = open(clips["faststart"], "rb").read()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: len(data) * 6 // 10])
    with open_video(bad) as r:
        n = len(list(r))
    assert 5 < n < 48
    assert r.missing_frames == 48 - n
    assert "truncated" in r.problems()


def test_corrupt_bytes_are_skipped_and_reported(clips, tmp_path):
    data = bytearray(open(clips["faststart"], "rb").read())
    mid = len(data) // 2
    data[mid:mid + 1500] = np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    with open_video(bad) as r:
        n = len(list(r))
    assert n > 10
    assert r.problems() is not None


def test_missing_and_non_video_inputs(tmp_path):
    with pytest.raises(VderainError, match="not found"):
        open_video(tmp_path / "nope.mp4")
    txt = tmp_path / "notes.mp4"
    txt.write_text("hello, I am not a video\n" * 50)
    with pytest.raises(VderainError, match="cannot read"):
        open_video(txt)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VderainError, match="without image frames"):
        open_video(empty)


def test_size_change_mid_stream_is_resized_to_the_first_size(tmp_path):
    src = make_size_change_ts(tmp_path / "two.ts", sizes=((96, 64), (128, 96)), n=6)
    with open_video(src) as r:
        frames = list(r)
    assert [f.rgb.shape for f in frames] == [(64, 96, 3)] * 12
    assert len(r.notes) == 1 and "128x96" in r.notes[0] and "96x64" in r.notes[0]
    assert r.problems() is None  # a size change is not damage
    # the later frames are the new pictures scaled down, not garbage
    import cv2
    expected = cv2.resize(pattern_frames(12, 128, 96)[8], (96, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(frames[8].rgb.astype(int) - expected).mean() < 6


def test_frame_converters_are_public_and_shared_with_live():
    # The uint8 RGB <-> float CHW converters are the pipeline's public API; live must use
    # those same functions (not private copies), so `run` and `live` convert identically.
    import vderain.live as live
    from vderain.pipeline import to_chw_float, to_hwc_uint8
    rgb = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    chw = to_chw_float(rgb)
    assert chw.shape == (3, 5, 7) and chw.dtype == np.float32
    np.testing.assert_array_equal(to_hwc_uint8(chw), rgb)
    assert live.to_chw_float is to_chw_float and live.to_hwc_uint8 is to_hwc_uint8


def _jpeg_turned_180(img_bgr) -> bytes:
    """A JPEG whose EXIF says "show me turned by 180 degrees" (orientation 3)."""
    import struct

    import cv2
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 3, 0) \
        + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    jpg = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    return jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpg[2:]


def test_frame_folder_exif_orientation_and_16_bit_pngs(tmp_path):
    import cv2

    from vderain.io.reader import FrameFolderReader
    img = np.zeros((32, 48, 3), np.uint8)
    img[:8, :8] = 255                                   # a white corner, top left as stored
    (tmp_path / "jpg").mkdir()
    (tmp_path / "jpg" / "0.jpg").write_bytes(_jpeg_turned_180(img))
    with open_video(tmp_path / "jpg") as r:             # `vderain run`: upright, as a viewer shows it
        shown = next(iter(r)).rgb
    with FrameFolderReader(str(tmp_path / "jpg"), orientation=False) as r:   # the bench: as stored
        stored = next(iter(r)).rgb
    assert stored[:8, :8].mean() > 240 and stored[-8:, -8:].mean() < 15
    assert shown[-8:, -8:].mean() > 240 and shown[:8, :8].mean() < 15
    # 16-bit PNG: v/257 rounded (OpenCV alone would give v // 256: 0.5 level darker on average)
    values = np.arange(0, 65536, 64, dtype=np.uint16)[:32 * 32].reshape(32, 32)
    (tmp_path / "png16").mkdir()
    cv2.imwrite(str(tmp_path / "png16" / "0.png"), np.dstack([values] * 3))
    with open_video(tmp_path / "png16") as r:
        got = next(iter(r)).rgb[..., 0]
    np.testing.assert_array_equal(got, np.round(values / 257.0).astype(np.uint8))


def test_cut_short_matroska_is_reported(tmp_path):
    # Matroska has no frame count: a cut (or, past a damaged cluster, silently ended) file
    # decoded as a short clean one. Its per-track DURATION tag says where the video should end.
    src = make_video(tmp_path / "in.mkv", n=96, audio=True)
    late = make_video(tmp_path / "late.mkv", n=24, pts=list(range(24, 48)))  # starts at 1 s
    for whole in (src, late):
        with open_video(whole) as r:
            list(r)
        assert r.problems() is None
    data = open(src, "rb").read()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    with open_video(tmp_path / "cut.mkv") as r:
        n = len(list(r))
    assert 10 < n < 80 and "the video stops at" in r.problems() and "4.00 s" in r.problems()
    with open_video(tmp_path / "cut.mkv", duration=0.5) as r:  # stopped before the cut: fine
        list(r)
    assert r.problems() is None


def test_avi_b_frames_keep_display_times(tmp_path):
    # AVI has no timestamps: FFmpeg's guesses are a frame late and, with B-frames, come out of
    # the decoder permuted (1, 4, 3, 5, 2, ...): the writer's "strictly increasing" fix-up made
    # the output judder
    src = make_video(tmp_path / "b.avi", n=24, options={"bf": "3"})
    with av.open(src) as c:
        raw = [f.pts for f in c.decode(video=0)]
    assert raw != sorted(raw)  # the case at hand
    got, times, _ = read_all(src)
    assert times == pytest.approx([i / 24 for i in range(24)], abs=1e-3)
    np.testing.assert_allclose(got.mean(axis=(1, 2, 3)), pattern_frames(24).mean(axis=(1, 2, 3)), atol=2)
    # MPEG-4 ASP (Xvid), open GOPs: a seek mid-GOP drops the B-frames that follow the keyframe
    # it lands on, which must not shift the times of the frames after them
    src = make_video(tmp_path / "x.avi", n=48, codec="mpeg4", options={"bf": "2", "g": "12"})
    truth = pattern_frames(48).astype(np.float32)
    for start in (0, 1.3):
        got, times, _ = read_all(src, start=start)
        shown = [int(np.abs(truth - g).mean(axis=(1, 2, 3)).argmin()) for g in got]
        assert [round(t * 24) for t in times] == shown == list(range(round(start * 24), 48))


def test_avi_dropped_frame_entries_are_not_missing_frames(tmp_path):
    # a variable-rate AVI marks gaps with empty index entries: its frame count counts them
    # (no B-frames: AVI stores decode times, so with them a VFR AVI's display times are lost)
    pts = [0, 25, 50, 100, 125, 200, 225, 250]
    src = make_video(tmp_path / "gaps.avi", n=8, time_base=Fraction(1, 600), pts=pts, options={"bf": "0"})
    with av.open(src) as c:
        assert c.streams.video[0].frames > 8
    with open_video(src) as r:
        times = [f.time for f in r]
    assert [round(t * 600) for t in times] == pts and r.problems() is None
    data = open(make_video(tmp_path / "long.avi", n=96), "rb").read()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    with open_video(tmp_path / "cut.avi") as r:
        list(r)
    assert "the video stops at" in r.problems()


def test_alpha_input_says_its_transparency_is_dropped(tmp_path):
    src = make_video(tmp_path / "a.mov", n=3, codec="png", pix_fmt="rgba")
    got, _, _ = read_all(src)
    with open_video(src) as r:
        assert any("alpha channel (rgba) is dropped" in n for n in r.notes)
    np.testing.assert_array_equal(got, pattern_frames(3))
    with open_video(make_video(tmp_path / "b.mov", n=3, codec="png", pix_fmt="rgb24")) as r:
        assert r.notes == []
