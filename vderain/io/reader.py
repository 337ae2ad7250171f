"""Streaming readers: video files, network streams and folders of numbered frames.

Every reader yields `Frame`s one at a time, so memory does not grow with the
video's length. Damaged input is decoded as far as it goes: packets that fail
to decode are skipped and listed in `reader.errors` instead of stopping the run.
"""
from __future__ import annotations

import bisect
import heapq
import os
import re
from collections import deque
from fractions import Fraction
from typing import Iterator

import numpy as np

from vderain import VderainError
from vderain.io import color
from vderain.io.types import Frame, VideoInfo, quarter_turns, turn

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "rtmpts", "rtmpe", "udp", "tcp", "tls",
               "http", "https", "ftp", "mmsh", "mmst", "srt", "rist", "rtp")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
NETWORK_TIMEOUT_S = 15.0
# Frames a decoder may hold back before the first comes out: up to 16 frame threads plus up
# to 16 reordered (B-)frames in H.264/HEVC. Bounds how far a seek probe reads past `start`.
DECODER_DELAY_PACKETS = 40
# A video that ends this much before the end its file declares was cut short (seconds; at
# least 3 frames): Matroska and AVI, whose frame count is missing or counts empty entries.
CUT_SHORT_S = 0.5


class ClockMender:
    """Timestamps that jump back in MPEG-TS/PS (recordings joined end to end, an encoder or
    camera restarted): one offset for the whole file, raised when any stream's time goes back,
    so every stream goes on from where it was and the streams stay in sync, as FFmpeg's
    command line does. The reader and the writer's audio copier each run one over the same
    packets (every stream's, from the start), so they arrive at the same offsets."""
    FORMATS = ("mpegts", "mpeg")
    SLACK_S = 0.1  # a stream's clock going back more than this is a jump
    JOIN_S = 2.0   # jumps of other streams this close to one are the same join
    WRAP = 1 << 33  # their timestamps are 33 bits of a 90 kHz clock: they wrap every 26.5 h

    def __init__(self, start_ticks: int | None = None):
        # where the clock is (90 kHz ticks) before the first packet: the video's start time.
        # A timestamp is read as the one nearest the last packet's, modulo WRAP, so a wrap is
        # no jump, and an audio pre-roll written as -0.064 s (stored as 26.5 h - 0.064 s) is
        # not 26.5 h ahead of the video (it sent every later frame 26.5 h on).
        self._ticks = start_ticks
        self.epoch = [0.0]  # the offset (s) of the packets since the last join: raised while
        #                     the other streams reach that join (their parts end a little apart)
        self.jumps: list[float] = []  # where the joins are, in mended seconds
        self._next: dict[int, float] = {}  # stream index -> where its next packet should start
        self._epoch_of: dict[int, list] = {}  # stream index -> the epoch of its last packet

    @property
    def offset(self) -> float:
        return self.epoch[0]

    def _unwrap(self, packet) -> None:
        ts = packet.dts if packet.dts is not None else packet.pts
        if ts is None or packet.time_base != Fraction(1, 90000):
            return
        if self._ticks is None:
            self._ticks = ts
        step = (ts - self._ticks) % self.WRAP
        if step >= self.WRAP // 2:
            step -= self.WRAP
        shift = self._ticks + step - ts  # a multiple of WRAP
        if shift:
            if packet.pts is not None:
                packet.pts += shift
            if packet.dts is not None:
                packet.dts += shift
        self._ticks = ts + shift

    def feed(self, packet) -> list:
        """Take a packet (any stream, file order) into account; its epoch: [offset in seconds],
        final once the streams have all passed the join. 33-bit timestamps are unwrapped in
        the packet itself."""
        self._unwrap(packet)
        ts = packet.dts if packet.dts is not None else packet.pts
        tb = packet.time_base
        if ts is None or not tb or packet.stream.type not in ("video", "audio"):
            return self.epoch  # (subtitle and data times are sparse, SCTE-35 cues point ahead)
        t = float(ts * tb) + self.epoch[0]
        index = packet.stream.index
        expected = self._next.get(index)
        # the same join only for a stream that has not been past it yet: one that has (it jumped
        # there, or went on after it) and goes back again is at the next join, however near
        # (parts shorter than JOIN_S: their frames were put a part later, then back)
        near_join = (expected is not None and self.jumps and abs(expected - self.jumps[-1]) < self.JOIN_S
                     and self._epoch_of.get(index) is not self.epoch)
        # at a join any step back counts (a muxer refuses it), elsewhere beyond the slack
        if expected is not None and t < expected - (1e-3 if near_join else self.SLACK_S):
            if near_join:
                self.epoch[0] += expected - t  # a stream whose part ran longer: all of this join move
            else:
                self.epoch = [self.epoch[0] + expected - t]
                self.jumps.append(expected)
            t = expected
        self._next[index] = t + (float(packet.duration * tb) if packet.duration else 0.0)
        self._epoch_of[index] = self.epoch
        return self.epoch


def _hms(text) -> float | None:
    """Seconds from Matroska's DURATION tag ('00:01:02.500000000'); None if absent or unreadable."""
    try:
        h, m, sec = str(text).split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (TypeError, ValueError):
        return None



def is_url(source: str) -> bool:
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", str(source))
    return bool(m) and m.group(1).lower() in URL_SCHEMES


def local_path(source: str) -> str:
    """A file:// URL (file:///a/b%20c.mp4, file://localhost/..., as file managers and browsers
    copy them) as the local path it names, percent-decoded; anything else as it is."""
    source = str(source)
    if not source[:7].lower() == "file://":
        return source
    import urllib.parse
    url = urllib.parse.urlsplit(source)
    if url.netloc.lower() not in ("", "localhost"):
        raise VderainError(f"{source} names a file on another host ({url.netloc}); "
                           f"give a local path or mount the share")
    return urllib.parse.unquote(url.path)


def main_video_stream(container):
    """The video stream to derain (None if none): not cover art (attached pictures); of the rest
    those at least half the largest's area (smaller ones are previews or thumbnails), the one
    flagged default first, then the largest, then the first in the file. Size before the flag:
    MP4/MOV flag the first video track default by themselves, a preview stored first included."""
    import av
    videos = [s for s in container.streams.video
              if not (s.disposition & av.stream.Disposition.attached_pic)]
    if len(videos) < 2:
        return videos[0] if videos else None

    def area(s):
        return (s.codec_context.width or 0) * (s.codec_context.height or 0)
    biggest = max(area(s) for s in videos)
    return max((s for s in videos if 2 * area(s) >= biggest),
               key=lambda s: (bool(s.disposition & av.stream.Disposition.default), area(s), -s.index))


def ffmpeg_path(source: str) -> str:
    """What to hand FFmpeg for `source`: a local name with a colon ('12:00:00.mp4', 'cam:1.mp4')
    would be read as a protocol ('12:'), so it goes as an absolute path; a file:// URL as its path."""
    source = local_path(source)
    if ":" in source and not is_url(source) and not os.path.isabs(source) and os.path.exists(source):
        return os.path.abspath(source)
    return source


def open_video(source, backend: str = "pyav", start: float | None = None,
               duration: float | None = None, fps: float | None = None,
               options: dict | None = None) -> "VideoReader":
    """Open a video file, a network URL or a folder of numbered frames for streaming.

    start/duration are in seconds from the start of the stream. `fps` only applies to
    frame folders (default 25). `options` are passed to FFmpeg (e.g. {"rtsp_transport": "udp"}).
    """
    source = local_path(os.fspath(source) if not isinstance(source, str) else source)
    if start is not None and start < 0:
        raise VderainError(f"--start must be >= 0 (got {start})")
    if duration is not None and duration <= 0:
        raise VderainError(f"--duration must be > 0 (got {duration})")
    if is_url(source):
        if backend != "pyav":
            raise VderainError(f"backend '{backend}' cannot read network streams; use pyav")
        return PyAVReader(source, start=start, duration=duration, options=options)
    if not os.path.exists(source):
        raise VderainError(f"input not found: {source}")
    if os.path.isdir(source):
        return FrameFolderReader(source, start=start, duration=duration, fps=fps)
    if backend == "pyav":
        return PyAVReader(source, start=start, duration=duration, options=options)
    if backend == "decord":
        return DecordReader(source, start=start, duration=duration)
    raise VderainError(f"unknown backend '{backend}' (choose pyav or decord)")


class VideoReader:
    """Iterator of Frame with `.info`, `.errors` (skipped decode failures) and `.frames_read`."""
    info: VideoInfo

    def __init__(self):
        self.errors: list[str] = []
        self.notes: list[str] = []  # one-line remarks for the user that are not damage
        self.frames_read = 0
        self._started = False

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError("a reader can only be iterated once; open the video again")
        self._started = True
        for frame in self._frames():
            self.frames_read += 1
            yield frame

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    @property
    def missing_frames(self) -> int:
        """Frames the container announced but that never decoded (0 when unknown)."""
        if self.info.n_frames is None or self.info.is_stream:
            return 0
        return max(0, self.info.n_frames - self.frames_read)

    def problems(self) -> str | None:
        """One line describing what was skipped, or None if the input decoded cleanly."""
        parts = []
        if self.errors:
            parts.append(f"{len(self.errors)} packet(s) failed to decode ({self.errors[0]})")
        if self.missing_frames:
            parts.append(f"{self.missing_frames} of {self.info.n_frames} announced frames never "
                         f"arrived (truncated file?)")
        return "; ".join(parts) or None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _time_window(start, duration):
    lo = start or 0.0
    hi = None if duration is None else lo + duration
    return lo, hi


def _rgb_flags():
    from av.video.reformatter import Interpolation as I
    return I.BILINEAR | I.ACCURATE_RND | I.FULL_CHR_H_INT


_RGB_FLAGS = None


def frame_to_rgb(frame) -> np.ndarray:
    """PyAV VideoFrame -> (H, W, 3) uint8 RGB, with the frame's own colour matrix and range.

    8-bit 4:2:0 (nearly all video) goes through OpenCV (vderain.io.color: exact, and it
    releases the GIL). Everything else uses swscale in accurate mode: its default fast
    path truncates (every pixel ~1 level too dark), which would darken each generation.
    """
    if color.fast_path(frame):
        return color.yuv420_to_rgb(frame)
    global _RGB_FLAGS
    if _RGB_FLAGS is None:
        _RGB_FLAGS = _rgb_flags()
    return frame.to_ndarray(format="rgb24", interpolation=_RGB_FLAGS)


class PyAVReader(VideoReader):
    def __init__(self, source: str, start=None, duration=None, options=None):
        super().__init__()
        import av
        self._av = av
        self.source = source
        self._lo, self._hi = _time_window(start, duration)
        url = is_url(source)
        opts = dict(options or {})
        if url and source.lower().startswith("rtsp") and "rtsp_transport" not in opts:
            opts["rtsp_transport"] = "tcp"  # UDP loses packets -> smeared frames
        self._open_args = dict(options=opts, timeout=NETWORK_TIMEOUT_S if url else None)
        try:
            self.container = av.open(ffmpeg_path(source), **self._open_args)
        except FileNotFoundError:
            raise VderainError(f"input not found: {source}") from None
        except IsADirectoryError:
            raise VderainError(f"input is a folder without frames: {source}") from None
        except PermissionError:
            raise VderainError(f"no permission to read {source}") from None
        except av.error.InvalidDataError:
            raise VderainError(f"cannot read {source}: not a video FFmpeg can open "
                               f"(wrong file type, or damaged/truncated beyond repair)") from None
        except (av.error.FFmpegError, OSError) as e:
            raise VderainError(f"cannot open {source}: {getattr(e, 'strerror', None) or e}") from None
        try:
            self._setup(url)
        except BaseException:
            self.container.close()
            raise

    def _setup(self, url: bool):
        stream = main_video_stream(self.container)  # not cover art, nor a preview
        if stream is None:
            kind = "audio-only file" if self.container.streams.audio else "no picture streams"
            raise VderainError(f"{self.source} has no video stream ({kind})")
        self.stream = stream
        stream.thread_type = "AUTO"
        cc = stream.codec_context
        tb = stream.time_base or Fraction(1, 90000)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        n = stream.frames or None
        duration = None
        if stream.duration is not None:
            duration = float(stream.duration * tb)
        elif self.container.duration is not None:
            duration = self.container.duration / 1_000_000
        fmt = cc.format
        self.info = VideoInfo(
            width=cc.width, height=cc.height, fps=fps, time_base=tb, n_frames=n,
            duration=duration, codec=cc.name, pix_fmt=fmt.name if fmt else "",
            source=self.source, has_audio=bool(self.container.streams.audio), is_stream=url,
            bit_depth=max((c.bits for c in fmt.components), default=8) if fmt else 8,
        )
        self._t0 = stream.start_time if stream.start_time is not None else None
        if fmt and any(c.is_alpha for c in fmt.components):
            self.notes.append(f"the input's alpha channel ({fmt.name}) is dropped: frames are "
                              f"derained and written opaque")
        # Where the video should end (seconds, the stream's clock), to tell a file cut short from
        # a short file where no frame count can: Matroska's per-track DURATION tag; AVI's length
        # (its frame count also counts the empty entries that stand for dropped frames).
        self._declared_end, self._count_is_frames, self._reorder = None, True, False
        self._delayed = None  # AVI: whether FFmpeg's pts guesses are the next packet's slot
        self._seen_end, self._at_eof = None, False
        kind = self.container.format.name
        self._mender = ClockMender(self._t0) if kind in ClockMender.FORMATS else None
        if not url and "matroska" in kind:
            self._declared_end = _hms(stream.metadata.get("DURATION"))
        elif not url and kind == "avi":
            # one index entry per tick of the time base, empty ones included (the header's
            # count: a cut file keeps it, while FFmpeg's duration is of what it found)
            self._declared_end = float(stream.frames * tb) if stream.frames else duration
            self._count_is_frames = False
            # AVI has no timestamps, only each packet's slot: FFmpeg's pts guesses are a slot
            # late, and with B-frames they come out of the decoder permuted (1, 4, 3, 5, 2 ...)
            self._reorder = True
        # Decode the first frame now: it carries rotation/colour tags and proves the file has
        # pictures before the output is created.
        if self._lo > 0:
            if url:
                raise VderainError("--start cannot seek in a network stream")
            first = self._seek_to_start()
        else:
            self._restart_decoding()
            first = self._next_decoded()
        if first is None:
            raise VderainError(f"no video frames could be decoded from {self.source}"
                               + (f" ({self.errors[0]})" if self.errors else ""))
        self._pending.insert(0, first)
        self.info.rotation = int(first.rotation or 0)
        cs = first.colorspace if first.colorspace != 2 else cc.colorspace
        self.info.color_space = cs if cs not in (None, 2) else None
        cr = first.color_range or cc.color_range
        self.info.color_range = cr if cr in (1, 2) else None
        prim = first.color_primaries if first.color_primaries != 2 else cc.color_primaries
        self.info.color_primaries = prim if prim not in (None, 2) else None
        trc = first.color_trc if first.color_trc != 2 else cc.color_trc
        self.info.color_trc = trc if trc not in (None, 2) else None
        if self.info.width != first.width or self.info.height != first.height or not self.info.width:
            self.info.width, self.info.height = first.width, first.height
        if self._lo > 0 and self.info.n_frames:
            self.info.n_frames = None  # the whole file's count no longer applies
        if self._lo > 0 or self._hi is not None:
            left = (duration - self._lo) if duration else None
            span = self._hi - self._lo if self._hi is not None else left
            if span is not None:
                self.info.duration = max(0.0, min(span, left) if left is not None else span)
                self.info.n_frames = None

    def _restart_decoding(self):
        if self._mender is not None:  # every stream's packets: any may show a jump first
            self._mender = ClockMender(self._t0)
            self._offsets: dict[int, deque] = {}  # video packet pts -> its epochs, in order
        self._packets = self.container.demux() if self._mender is not None else self.container.demux(self.stream)
        self._replay = deque()  # (video packet, its epoch): demuxed and mended already, to decode
        self._pending = []
        self._eof = False
        self._slots = []  # AVI (self._reorder): the dts (slots) of the packets so far, ascending
        # video packets an MP4/MOV edit list leaves out (flagged discard: the decoder drops their
        # frames); the header's frame count includes them, so they are not missing frames
        self._discarded = 0

    def _seek_to_start(self):
        """Seek so that every frame from `start` on decodes; returns the first decoded frame
        (or None). _frames then drops the frames before `start`.

        In MP4/MKV a seek lands on the keyframe before `start`, but in a file without an index it
        lands on whatever packet is near that time: the decoder drops everything up to the next
        keyframe, so the frames from `start` to there would be lost without a word (or all of
        them, if no keyframe follows). So while the first frame out is missing or later than
        `start`, seek again from 1, 2, 4 ... s further back, and last from the very beginning.
        MPEG-TS/PS do not seek at all (_demux_to_start).
        """
        if self._mender is not None:
            return self._demux_to_start()
        tb = self.info.time_base
        half = 0.5 / max(self.info.fps, 1e-3)
        t0 = self._t0 or 0
        latest_ok = t0 + (self._lo + half) / tb  # pts of the latest acceptable first frame
        back = 0.0
        while True:
            at = self._lo - back
            from_beginning = at <= 0
            if from_beginning:
                self._reopen()
            else:
                try:
                    self.container.seek(int(at / tb) + t0, stream=self.stream, backward=True)
                except self._av.error.FFmpegError:
                    from_beginning = True  # not seekable: decode from the start, drop frames
                    self._reopen()
            self.errors.clear()  # failures of a try we discard are not the file's damage
            self._restart_decoding()
            if from_beginning:
                return self._next_decoded()
            first = self._next_decoded(give_up_after_pts=latest_ok)
            if first is not None and (first.pts is None or first.pts <= latest_ok):
                return first
            back = 2 * back if back else 1.0

    # packets held from the last keyframe before `start` (MPEG-TS/PS); a stream that flags no
    # keyframes would hold the whole file, so past this many they are decoded (slower, still right)
    HOLD_PACKETS = 4096

    def _demux_to_start(self):
        """MPEG-TS/PS: demux from the file's start without decoding, mending the clock, and
        decode from the last keyframe before `start`. A seek goes by the file's own timestamps,
        which in recordings joined end to end (`cat a.ts b.ts`) start again at each join: 0.5 s
        in was also 2.5 s in, and a seek landed in either half, or nowhere."""
        tb = self.info.time_base
        t0 = float((self._t0 or 0) * tb)
        self._restart_decoding()
        held: deque = deque()
        while (packet := self._next_packet()) is not None:
            epoch = self._feed(packet)
            if packet.stream.index != self.stream.index:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            t = float(ts * tb) + epoch[0] - t0 if ts is not None else None
            if packet.is_keyframe and t is not None:
                if t > self._lo:
                    held.append((packet, epoch))
                    break
                held.clear()
            held.append((packet, epoch))
            if len(held) > self.HOLD_PACKETS:
                break
        self._replay = held
        return self._next_decoded()

    def _next_packet(self):
        """The next demuxed packet, or None at the end (then _eof is set; a demuxer that hits
        garbage stops there, with the error kept, and what came before is decoded)."""
        try:
            return next(self._packets)
        except StopIteration:
            pass
        except self._av.error.FFmpegError as e:
            self.errors.append(f"demux: {e.strerror or e}")
        self._eof = True
        return None

    def _feed(self, packet) -> list:
        """The ClockMender's epoch of a packet (any stream); notes the first jump back."""
        jumps = len(self._mender.jumps)
        epoch = self._mender.feed(packet)
        if len(self._mender.jumps) > jumps and not any("jump back" in n for n in self.notes):
            at = self._mender.jumps[-1] - float((self._t0 or 0) * self.info.time_base)
            self.notes.append(f"timestamps jump back at about {at:.1f} s (recordings "
                              f"joined end to end?): what follows is placed after what came before")
        return epoch

    def _reopen(self):
        """Open the file again: the one sure way back to its first packet (in MPEG-TS a seek
        to the first timestamp can land a few packets in, as decode order runs ahead)."""
        index = self.stream.index
        self.container.close()
        try:
            self.container = self._av.open(ffmpeg_path(self.source), **self._open_args)
        except (self._av.error.FFmpegError, OSError) as e:
            raise VderainError(f"cannot reopen {self.source} to decode from its start: "
                               f"{getattr(e, 'strerror', None) or e}") from None
        self.stream = self.container.streams[index]
        self.stream.thread_type = "AUTO"

    def _next_decoded(self, give_up_after_pts=None):
        """Next decoded PyAV frame (or None at the end), skipping packets that fail.

        give_up_after_pts: return None once DECODER_DELAY_PACKETS packets later than this
        have gone in without a frame coming out (a seek probe that is already too late)."""
        av = self._av
        late = 0
        while not self._pending:
            if self._eof and not self._replay:
                return None
            if self._replay:
                packet, epoch = self._replay.popleft()
            else:
                if (packet := self._next_packet()) is None:
                    return None
                epoch = self._feed(packet) if self._mender is not None else None
            if self._mender is not None:
                if packet.stream.index != self.stream.index:
                    continue
                if packet.pts is not None:
                    if len(self._offsets) > 1024:  # frames the decoder dropped leave theirs
                        del self._offsets[next(iter(self._offsets))]
                    self._offsets.setdefault(packet.pts, deque()).append(epoch)
            if give_up_after_pts is not None and packet.pts is not None and packet.pts > give_up_after_pts:
                late += 1
                if late > DECODER_DELAY_PACKETS:
                    return None
            if self._reorder and packet.size and packet.dts is not None:
                bisect.insort(self._slots, packet.dts)
            if packet.is_discard and packet.size:
                self._discarded += 1
            try:
                self._pending.extend(packet.decode())
            except av.error.FFmpegError as e:
                t = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else None
                where = f" at {t:.2f}s" if t is not None else ""
                self.errors.append(f"{e.strerror or type(e).__name__}{where}")
        return self._pending.pop(0)

    @property
    def missing_frames(self) -> int:
        return max(0, super().missing_frames - self._discarded) if self._count_is_frames else 0

    def problems(self) -> str | None:
        parts = [super().problems()]
        end, seen = self._declared_end, self._seen_end
        if self._at_eof and end is not None and seen is not None and not self.missing_frames \
                and seen < end - max(CUT_SHORT_S, 3 / max(self.info.fps, 1e-3)):
            parts.append(f"the video stops at {seen:.2f} s of the {end:.2f} s the file declares "
                         f"(truncated or damaged file?)")
        return "; ".join(p for p in parts if p) or None

    def _decoded(self):
        """Decoded frames (display order) and their pts.

        AVI stores no timestamps, only one slot (tick) per packet; FFmpeg guesses each frame's
        pts from them: the next packet's slot for decoders with a delay (so one frame late, and
        with B-frames permuted: 1, 4, 3, 5, 2 ...), else its own. Here the guesses of the
        frames around each one are sorted (display order is right) and taken back to the slot
        before, for decoders with a delay. Guesses, not slots counted out per frame: a decoder
        drops the B-frames that follow the keyframe a seek lands on, which would shift those.
        """
        if not self._reorder:
            while (f := self._next_decoded()) is not None:
                yield f, self._mended(f.pts)
            self._at_eof = True
            return
        held, guesses = deque(), []
        while True:
            f = self._next_decoded()
            if f is not None:
                held.append(f)
                if f.pts is not None:
                    heapq.heappush(guesses, f.pts)
            elif not held:
                self._at_eof = True
                return
            if f is None or len(held) > 16:  # beyond any B-pyramid's reach
                g = held.popleft()
                yield g, (self._avi_slot(heapq.heappop(guesses)) if g.pts is not None else None)

    def _mended(self, pts):
        """pts with the ClockMender's offset of its packet (MPEG-TS/PS; else as it is)."""
        if self._mender is None or pts is None:
            return pts
        queue = self._offsets.get(pts)
        offset = queue.popleft()[0] if queue else self._mender.offset
        if queue is not None and not queue:
            del self._offsets[pts]
        return pts + round(offset / self.info.time_base) if offset else pts

    def _avi_slot(self, guess: int) -> int:
        if self._delayed is None:  # the first frame out: guessed from its own packet, or the next
            self._delayed = bool(self._slots) and guess > self._slots[0]
        i = bisect.bisect_left(self._slots, guess)
        slot = self._slots[i - 1] if self._delayed and i else guess
        if i > 4096:  # a long file: forget the slots far behind
            del self._slots[:i - 256]
        return slot

    def _frames(self) -> Iterator[Frame]:
        tb = self.info.time_base
        half = 0.5 / max(self.info.fps, 1e-3)
        index = 0
        last_pts = None
        for f, pts in self._decoded():
            if pts is None:  # raw streams without timestamps: synthesise from the frame rate
                pts = (last_pts + max(1, round(1 / (self.info.fps * tb)))) if last_pts is not None else 0
            if self._t0 is None:
                self._t0 = pts
            t = float((pts - self._t0) * tb)
            last_pts = pts
            # the end of this frame, for problems(): its own duration where the file gives one
            step = float(f.duration * tb) if f.duration else 1 / max(self.info.fps, 1e-3)
            self._seen_end = max(self._seen_end or 0.0, float(pts * tb) + step)
            if t < self._lo - half:
                continue
            if self._hi is not None and t >= self._hi - half:
                return
            rgb = frame_to_rgb(f)
            if rgb.shape[:2] != (self.info.height, self.info.width):
                rgb = self._fit(rgb, t)
            yield Frame(rgb=rgb, index=index, pts=pts, time=t)
            index += 1

    def _fit(self, rgb, t: float):
        """A frame whose size differs from the stream's first (MPEG-TS and live streams may
        switch resolution mid-stream): resized to the first size, so the output stays one size."""
        import cv2
        w, h = self.info.width, self.info.height
        size = f"{rgb.shape[1]}x{rgb.shape[0]}"
        if not any(size in n for n in self.notes):
            self.notes.append(f"picture size changed to {size} at {t:.2f} s; those frames are "
                              f"resized to the stream's first size {w}x{h}")
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)

    def close(self):
        try:
            self.container.close()
        except Exception:
            pass


def _natural_key(name: str):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


class FrameFolderReader(VideoReader):
    """A folder of numbered images (png/jpg/...), in natural order (2.png before 10.png)."""

    def __init__(self, folder: str, start=None, duration=None, fps: float | None = None,
                 orientation: bool = True):
        super().__init__()
        import cv2
        self._cv2 = cv2
        # orientation: turn JPEGs upright by their EXIF tag, as a viewer shows them (what `vderain
        # run` encodes); False gives the stored pixels, as other tools (PIL, torchvision) decode
        # them: what a benchmark compares
        self._flags = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | (0 if orientation else cv2.IMREAD_IGNORE_ORIENTATION)
        self.source = folder
        # hidden names are not frames: macOS leaves '._frame_1.png' (AppleDouble metadata, not
        # an image) beside every file copied to a USB disk or network share
        names = sorted((n for n in os.listdir(folder)
                        if n.lower().endswith(IMAGE_EXTS) and not n.startswith(".")),
                       key=_natural_key)
        if not names:
            raise VderainError(f"{folder} is a folder without image frames ({', '.join(IMAGE_EXTS)})")
        fps = float(fps or 25.0)
        if fps <= 0:
            raise VderainError(f"--fps must be > 0 (got {fps})")
        tb = Fraction(fps).limit_denominator(1001) ** -1
        lo, hi = _time_window(start, duration)
        first_i = int(np.ceil(lo * fps - 1e-6))
        last_i = len(names) if hi is None else min(len(names), int(np.ceil(hi * fps - 1e-6)))
        self.paths = [os.path.join(folder, n) for n in names[first_i:last_i]]
        self.first_index = first_i
        if not self.paths:
            raise VderainError(f"no frames in {folder} between {lo}s and {hi}s")
        # the first image that reads sets the size; unreadable ones before it are skipped and
        # reported, as later ones are (one damaged first frame must not fail the whole folder)
        self._first_k, first = 0, self._read(self.paths[0])
        while first is None and self._first_k + 1 < len(self.paths):
            self._first_k += 1
            first = self._read(self.paths[self._first_k])
        if first is None:
            raise VderainError(f"cannot read image {self.paths[0]}"
                               + (f" (nor any of the {len(self.paths) - 1} after it)" if len(self.paths) > 1 else ""))
        h, w = first.shape[:2]
        self.info = VideoInfo(width=w, height=h, fps=fps, time_base=tb, n_frames=len(self.paths),
                              duration=len(self.paths) / fps, codec="png" if names[0].lower().endswith(".png") else "image",
                              pix_fmt="rgb24", source=folder)
        self._first = first

    def _read(self, path):
        cv2 = self._cv2
        img = cv2.imread(path, self._flags)  # grey/alpha -> BGR; 16 bits kept, to round below
        if img is None:
            return None
        if img.dtype == np.uint16:
            # 65535 is white: /257 rounded (OpenCV's own conversion drops the low byte: v // 256)
            img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        elif img.dtype != np.uint8:
            return None   # float TIFF/EXR: not a frame format this reader takes
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def _frames(self) -> Iterator[Frame]:
        step = round(1 / (self.info.fps * self.info.time_base))
        index = 0
        for k, path in enumerate(self.paths):
            if k < self._first_k:
                rgb = None  # read (and failed) when the folder was opened
            elif k == self._first_k:
                rgb, self._first = self._first, None
            else:
                rgb = self._read(path)
            if rgb is None:
                self.errors.append(f"unreadable image {os.path.basename(path)}")
                continue
            if rgb.shape[:2] != (self.info.height, self.info.width):
                self.errors.append(f"{os.path.basename(path)} is {rgb.shape[1]}x{rgb.shape[0]}, "
                                   f"not {self.info.width}x{self.info.height}")
                continue
            i = self.first_index + k
            yield Frame(rgb=rgb, index=index, pts=i * step, time=i / self.info.fps)
            index += 1

    @property
    def missing_frames(self) -> int:
        return 0  # skipped images are already counted in .errors


class DecordReader(VideoReader):
    """decord backend: PyAV probes the metadata (rotation, colour), decord decodes."""

    def __init__(self, source: str, start=None, duration=None):
        super().__init__()
        try:
            import decord
        except ImportError:
            raise VderainError("backend 'decord' is not installed (pip install vderain[decord])") from None
        with PyAVReader(source) as probe:
            self.info = probe.info
            t0 = float((probe._t0 or 0) * probe.info.time_base)  # where PyAV's times start
            first = frame_to_rgb(probe._pending[0]) if quarter_turns(self.info.rotation) else None
            several = len(probe.container.streams.video) > 1
        self.source = source
        try:
            self.vr = decord.VideoReader(source, ctx=decord.cpu(0))
        except Exception as e:  # decord raises its own DECORDError for everything
            raise VderainError(f"decord cannot read {source}: {str(e).splitlines()[0][:200]}") from None
        n = len(self.vr)
        self.info.fps = float(self.vr.get_avg_fps()) or self.info.fps
        # Times as PyAV gives them: seconds from the stream's start. decord counts frames an MP4
        # edit list leaves out (times before the start: PyAV never shows them), and gives
        # nonsense times for some containers (MPEG-PS): then each frame's slot at the frame rate.
        times = self.vr.get_frame_timestamp(np.arange(n))[:, 0].astype(np.float64) - t0 if n else np.zeros(0)
        if n > 1 and not (np.all(np.diff(times) > 0) and abs(times[0]) < 60):
            times = np.arange(n) / self.info.fps
        self._times, self._t0 = times, t0
        # decord's sequential decode leaves out what an edit list leaves out, though its index
        # and timestamps count those frames: frame i comes i - _skip frames into the decode
        self._skip = int(np.searchsorted(times, -0.5 / max(self.info.fps, 1e-3)))
        # decord turns MP4 frames upright by their rotation tag (not Matroska's): frames are
        # given as coded, the rotation kept as metadata, as PyAVReader gives them
        self._undo = 0
        got = None
        if n and (several or first is not None):
            self.vr.seek(0)
            got = self.vr.next().asnumpy()
        if got is not None and several:
            # decord takes FFmpeg's "best" stream (in Matroska the first), which may be a preview
            h, w = got.shape[:2]
            if sorted((h, w)) != sorted((self.info.height, self.info.width)):
                raise VderainError(f"decord would decode another video stream of {source} ({w}x{h}, "
                                   f"not the main {self.info.width}x{self.info.height}); use --backend pyav")
        if got is not None and first is not None:
            k = quarter_turns(self.info.rotation)
            got = got.astype(np.int16)
            upright = turn(first, k)
            if got.shape == upright.shape and (got.shape != first.shape or
                                               np.abs(got - upright).mean() < np.abs(got - first).mean()):
                self._undo = -k
        # the frames PyAVReader keeps: from half a frame before `start` to half a frame before the end
        lo, hi = _time_window(start, duration)
        half = 0.5 / max(self.info.fps, 1e-3)
        self._first = int(np.searchsorted(times, lo - half))
        self._stop = n if hi is None else max(self._first, int(np.searchsorted(times, hi - half)))
        self.info.n_frames = self._stop - self._first

    def _frames(self) -> Iterator[Frame]:
        tb = self.info.time_base
        if self._first >= self._stop:
            return  # `start` is past the end (decord's seek asserts on that)
        if self._first > self._skip:
            self.vr.seek_accurate(self._first - self._skip)
        else:
            self.vr.seek(0)
        for k, i in enumerate(range(self._first, self._stop)):
            try:
                rgb = self.vr.next().asnumpy()
            except StopIteration:
                return
            except Exception as e:
                self.errors.append(str(e).splitlines()[0][:200])
                return
            if self._undo:
                rgb = turn(rgb, self._undo)
            t = float(self._times[i])
            yield Frame(rgb=rgb, index=k, pts=round((t + self._t0) / tb), time=t)

    def close(self):
        self.vr = None
