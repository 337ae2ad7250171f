"""Edge cases found reviewing the I/O layer: each test failed before its fix."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from vderain.io import VideoWriter, open_video
from videogen import make_video, pattern_frames, read_all, stream_summary


def test_mp4_edit_list_that_skips_leading_frames_is_not_damage(tmp_path):
    # An .mp4 whose edit list starts a few frames into the media (a trimmed phone video, or an
    # encode whose first timestamps are negative): the demuxer flags those packets discard and
    # the decoder drops them. The header's count includes them, so a clean file was reported
    # "3 of 24 announced frames never arrived (truncated file?)".
    src = make_video(tmp_path / "el.mp4", n=24, pts=[i - 3 for i in range(24)], time_base=Fraction(1, 24))
    with open_video(src) as r:
        times = [f.time for f in r]
    assert len(times) == 21 and times[0] == 0.0
    assert r.missing_frames == 0 and r.problems() is None
    # and a file cut short is still reported
    data = open(src, "rb").read()
    make_video(tmp_path / "fs.mp4", n=48, pts=[i - 3 for i in range(48)], time_base=Fraction(1, 24),
               container_options={"movflags": "+faststart"})
    data = open(tmp_path / "fs.mp4", "rb").read()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    with open_video(tmp_path / "cut.mp4") as r:
        n = len(list(r))
    assert n < 45 and r.missing_frames == 45 - n and "truncated" in r.problems()


def test_frame_folder_ignores_hidden_files_and_survives_a_bad_first_image(tmp_path):
    # A folder copied from a Mac to a USB disk holds '._frame_1.png' (AppleDouble metadata, not
    # an image) beside each frame; it sorted first and the run died: "cannot read image ._frame_1.png"
    from videogen import make_frame_folder
    folder = make_frame_folder(tmp_path / "seq", n=5)
    for name in list((tmp_path / "seq").iterdir()):
        (tmp_path / "seq" / f"._{name.name}").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    with open_video(folder) as r:
        frames = list(r)
    assert len(frames) == 5 and r.errors == []
    # a damaged first frame costs that frame, as a damaged later one does
    (tmp_path / "seq" / "frame_1.png").write_bytes(b"not a png")
    with open_video(folder) as r:
        frames = list(r)
    assert len(frames) == 4 and len(r.errors) == 1 and "frame_1.png" in r.errors[0]
    assert frames[0].time == pytest.approx(1 / 25) and (r.info.width, r.info.height) == (64, 48)


def _both(path, **kw):
    """(frames, times, pts) from the pyav and the decord backends."""
    out = []
    for backend in ("pyav", "decord"):
        with open_video(path, backend=backend, **kw) as r:
            frames = list(r)
        out.append((np.stack([f.rgb for f in frames]) if frames else None, [f.time for f in frames],
                    [f.pts for f in frames]))
    return out


@pytest.mark.parametrize("rotation", [90, 180])
def test_decord_gives_rotated_mp4_frames_as_coded(tmp_path, rotation):
    # decord turns MP4 frames upright by their rotation tag: a 90-degree phone video came out
    # 64x96 against the reported 96x64 (the writer refused every frame), a 180-degree one
    # upside down, and then turned again by the output's rotation tag
    pytest.importorskip("decord")
    src = make_video(tmp_path / "r.mp4", n=4, rotation=rotation)
    (a, ta, pa), (b, tb, pb) = _both(src)
    assert b.shape == a.shape == (4, 64, 96, 3)
    assert np.abs(a.astype(int) - b).mean() < 6 and tb == pytest.approx(ta, abs=2e-3) and pb == pa


def test_decord_start_past_the_end_and_edit_lists(tmp_path):
    # decord: a start past the last frame died with a bare AssertionError in its seek; an edit
    # list's left-out frames were given (times before 0), and a seek landed 3 frames late
    pytest.importorskip("decord")
    src = make_video(tmp_path / "el.mp4", n=24, pts=[i - 3 for i in range(24)], time_base=Fraction(1, 24))
    for kw in ({}, dict(start=0.3, duration=0.2)):
        (a, ta, pa), (b, tb, pb) = _both(src, **kw)
        assert b.shape == a.shape and tb == pytest.approx(ta, abs=2e-3) and pb == pa
        assert np.abs(a.astype(int) - b).mean() < 6
    with open_video(src, backend="decord", start=5.0) as r:
        assert list(r) == []


def test_raw_h264_output_drops_the_audio_with_a_note(tmp_path):
    # a raw elementary stream holds no audio: re-encoding the input's audio to AAC for it died
    # with a bare "ValueError: 'h264' format does not support 'aac' codec" before any frame
    src = make_video(tmp_path / "a.mp4", n=6, audio=True)
    with open_video(src) as r, VideoWriter(tmp_path / "o.h264", r.info, preset="ultrafast",
                                           audio_from=src) as w:
        for f in r:
            w.write(f.rgb, f.pts)
    assert [s[0] for s in stream_summary(tmp_path / "o.h264")] == ["video"]
    assert any("audio stream #1 (aac) dropped" in n for n in w.notes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "o.h264"]


def test_rtmps_and_ftp_urls_are_streams_not_missing_files():
    # `vderain run rtmps://...` (RTMP over TLS, what most live platforms take) said
    # "input not found: rtmps://..." without trying to connect
    from vderain import VderainError
    from vderain.io import is_url
    for url in ("rtmps://live.example.com/app/key", "ftp://cam.local/rain.mp4", "RTMPS://h/a"):
        assert is_url(url)
    with pytest.raises(VderainError) as e:
        open_video("rtmps://127.0.0.1:1/app/key")  # nothing listens there: refused at once
    assert "not found" not in str(e.value)


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_track_languages_titles_and_flags_are_kept(tmp_path, ext):
    # a film with English and Japanese-commentary audio came out with both tracks untagged
    # ("und"), no default/commentary flags and no title: players picked the wrong track
    src = make_video(tmp_path / "a.mkv", n=6, audio=True)
    two = str(tmp_path / "two.mkv")
    with av.open(src) as i, av.open(two, "w") as o:
        v = o.add_stream_from_template(i.streams.video[0])
        a1, a2 = (o.add_stream_from_template(i.streams.audio[0]) for _ in range(2))
        a1.metadata.update(language="eng", title="English")
        a2.metadata.update(language="jpn", title="Commentary")
        a1.disposition, a2.disposition = av.stream.Disposition.default, av.stream.Disposition.comment
        o.metadata["title"] = "Rainy street"
        for p in i.demux():
            if p.size == 0:
                continue
            if p.stream.type == "audio":
                q = av.Packet(bytes(p))
                q.pts, q.dts, q.time_base, q.duration, q.stream = p.pts, p.dts, p.time_base, p.duration, a2
                o.mux(q)
            p.stream = v if p.stream.type == "video" else a1
            o.mux(p)
    out = tmp_path / f"o.{ext}"
    with open_video(two) as r, VideoWriter(out, r.info, preset="ultrafast", audio_from=two) as w:
        for f in r:
            w.write(f.rgb, f.pts)
    with av.open(str(out)) as c:
        assert c.metadata.get("title") == "Rainy street"
        a = c.streams.audio
        assert [s.metadata.get("language") for s in a] == ["eng", "jpn"]
        assert [s.metadata.get("title", s.metadata.get("name")) for s in a] == ["English", "Commentary"]
        assert a[0].disposition & av.stream.Disposition.default
        assert a[1].disposition & av.stream.Disposition.comment
        if ext == "mkv":  # the muxer's own tags, not the source's, and not twice
            assert list(c.streams.video[0].metadata) == ["DURATION"]


def test_mpegts_joins_closer_than_two_seconds_are_each_mended(tmp_path):
    # `cat a.ts a.ts a.ts` with 1 s parts: the second join, 1 s after the first, was taken for
    # the first one's other streams catching up, and moved that join's offset instead of adding
    # one: the frames before the join still in the decoder were put 1 s later, then the times
    # went back (..., 1.79, 2.83, 2.88, 2.92, 2.96, 2.0, ...)
    one = make_video(tmp_path / "half.ts", n=24, width=64, height=48, options={"preset": "ultrafast"})
    src = tmp_path / "abc.ts"
    src.write_bytes(open(one, "rb").read() * 3)
    with open_video(src) as r:
        times = [f.time for f in r]
    assert len(times) == 72
    assert np.diff(times) == pytest.approx(np.full(71, 1 / 24), abs=1e-3)
    with open_video(src, start=1.5) as r:
        assert [f.time for f in r][:2] == pytest.approx([1.5, 1.5 + 1 / 24], abs=1e-3)
