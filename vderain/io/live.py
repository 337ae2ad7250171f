"""Live sources and sinks for `vderain live`.

Sources capture in their own thread and keep only the NEWEST frame: when the
consumer (the model) is slower than the source, older frames are dropped at the
input and counted, so what comes out stays live instead of falling behind.

    with FileSource("clip.mp4") as src:        # or CameraSource(0), StreamSource(url)
        frame = src.read(timeout=1.0)          # LiveFrame(rgb, time, index) or None at the end

Sinks take (rgb, capture_time) and record the end-to-end latency (capture ->
displayed/written) of every frame they finish:

    WindowSink()                      on-screen (OpenCV), q / Esc asks the loop to stop
    FileSink("out.mp4", fps)          the same encoder `vderain run` uses, temp file + rename
    StreamSink("udp://127.0.0.1:5000", fps)   MPEG-TS that ffplay / VLC / OBS can open

All times are `time.perf_counter()` seconds.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from urllib.parse import parse_qs, urlsplit

import numpy as np

from vderain import VderainError
from vderain.io.types import quarter_turns, turn
from vderain.io import color
from vderain.io.reader import ffmpeg_path, frame_to_rgb, local_path, main_video_stream

log = logging.getLogger("vderain.live")

# Stream open/read timeouts (seconds): long enough for a camera that starts
# slowly, short enough that a dead stream is noticed and retried.
OPEN_TIMEOUT = 10.0
READ_TIMEOUT = 5.0
TS_PACKET = 188


@dataclass
class LiveFrame:
    rgb: np.ndarray   # (H, W, 3) uint8 RGB
    time: float       # capture time, perf_counter seconds
    index: int        # capture sequence number (counts dropped frames too)
    opened: int = 0   # how many times the source was reopened before this frame (reconnects)


# ---------------------------------------------------------------- helpers

def even_pad(rgb: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: repeat a last odd row/column, as `vderain run`'s writer does
    (cropping it made a 1x1 frame 0x0, which no encoder takes)."""
    h, w = rgb.shape[:2]
    if not (h % 2 or w % 2):
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def upright(rgb: np.ndarray, rotation) -> np.ndarray:
    """Turn a frame as its display rotation tag says (a phone clip): live outputs show pixels
    as they are (a window and MPEG-TS cannot carry the tag). Counter-clockwise quarter turns,
    as `vderain.io.writer` turns PNG frames."""
    return turn(rgb, quarter_turns(rotation))


def display_available() -> bool:
    """Whether an on-screen window can open (Linux needs an X11 or Wayland display)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


_WINDOW_PROBE = ("import cv2; cv2.namedWindow('vderain live'); cv2.waitKey(1); "
                 "cv2.destroyAllWindows(); cv2.waitKey(1)")


def window_problem(timeout: float = 20.0) -> str | None:
    """Why a window cannot open, or None: tried in a child process first, because OpenCV's Qt
    aborts the whole process (SIGABRT, no exception) when DISPLAY names a display it cannot
    reach, e.g. a stale ssh forward or a service that inherited DISPLAY."""
    import subprocess
    try:
        r = subprocess.run([sys.executable, "-c", _WINDOW_PROBE], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"no window within {timeout:.0f} s"
    except OSError as e:
        return str(e)
    if r.returncode == 0:
        return None
    lines = [line.strip() for line in r.stderr.splitlines() if line.strip()]
    # Qt's first line names the display ("could not connect to display :1"); OpenCV's own
    # errors (a build without GUI support) put the reason last.
    display = [line for line in lines if "display" in line.lower()]
    reason = (display or lines[-1:] or [f"exit status {r.returncode}"])[0]
    return reason.split("qpa.xcb: ")[-1]


# ---------------------------------------------------------------- sources

class _Slot:
    """Hand-off between the capture thread and the consumer.

    latest=True keeps one frame and overwrites it (counting a drop) when the
    consumer has not taken it yet; latest=False blocks the producer instead
    (lossless, for a file read as fast as possible).
    """

    def __init__(self, latest: bool):
        self.latest = latest
        self.cond = threading.Condition()
        self.item = None
        self.finished = False
        self.error: BaseException | None = None
        self.dropped = 0
        self.captured = 0

    def put(self, item, stop: threading.Event) -> None:
        with self.cond:
            if not self.latest:
                while self.item is not None and not stop.is_set():
                    self.cond.wait(0.1)
                if self.item is not None:   # stopped while waiting: the run is over, not a drop
                    return
            if self.item is not None:
                self.dropped += 1
            self.item = item
            self.captured += 1
            self.cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self.cond:
            self.finished = True
            self.error = error
            self.cond.notify_all()

    def get(self, timeout: float | None):
        """Newest item; None at the end or on timeout (check .finished); raises the source's error."""
        with self.cond:
            if self.item is None and not self.finished:
                self.cond.wait(timeout)
            item, self.item = self.item, None
            self.cond.notify_all()
            if item is None and self.finished and self.error is not None:
                raise self.error
            return item


class LiveSource:
    """Base class: a capture thread feeding a newest-frame slot.

    Subclasses implement `_frames()`, a generator that opens the device/stream
    and yields raw payloads as they arrive (it may raise on a failure), and
    `_to_rgb(payload)`. Conversion to RGB happens in `read()`, so frames that
    are dropped are never converted. A live source (camera, stream) that fails
    or ends is reopened up to `retries` times, `retry_delay` seconds apart.
    """
    name = "source"
    live = True          # the end of the data is a disconnection, not a normal end

    def __init__(self, *, retries: int = 3, retry_delay: float = 1.0, latest: bool = True):
        self.retries = retries
        self.retry_delay = retry_delay
        self.fps: float | None = None      # nominal rate, known once opened
        self._slot = _Slot(latest)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public
    @property
    def dropped(self) -> int:
        return self._slot.dropped

    @property
    def captured(self) -> int:
        return self._slot.captured

    def start(self) -> "LiveSource":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
            self._thread.start()
        return self

    def read(self, timeout: float | None = 1.0) -> LiveFrame | None:
        """The newest frame, waiting up to `timeout`; None on timeout or at the end (see `ended`)."""
        item = self._slot.get(timeout)
        if item is None:
            return None
        payload, t, index, opened = item
        return LiveFrame(self._to_rgb(payload), t, index, opened)

    @property
    def pending(self) -> int:
        """1 when a captured frame waits to be read, else 0."""
        with self._slot.cond:
            return int(self._slot.item is not None)

    @property
    def ended(self) -> bool:
        with self._slot.cond:
            return self._slot.finished and self._slot.item is None

    def stop(self) -> None:
        self._stop.set()
        with self._slot.cond:
            self._slot.cond.notify_all()
        if self._thread is not None:
            # A network read blocked on a stalled stream only returns at its timeout; the
            # thread is a daemon and closes its input then, so do not make the user wait.
            self._thread.join(1.0)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- subclass hooks
    def _frames(self):
        raise NotImplementedError

    def _to_rgb(self, payload) -> np.ndarray:
        return payload

    def _describe(self) -> str:
        return self.name

    def _scrub(self, text: str) -> str:
        """A message as it may be shown (a stream hides its URL's password)."""
        return text

    # -- capture thread
    def _run(self) -> None:
        failures = 0
        index = 0
        reopened = -1
        try:
            while not self._stop.is_set():
                reopened += 1
                reason = "ended"
                try:
                    for payload in self._frames():
                        failures = 0
                        self._slot.put((payload, time.perf_counter(), index, reopened), self._stop)
                        index += 1
                        if self._stop.is_set():
                            return
                except VderainError:
                    raise
                except Exception as e:  # noqa: BLE001 - any capture failure is a disconnect to retry
                    reason = self._scrub(f"failed: {e}")
                if self._stop.is_set():
                    return
                if not self.live:   # a file: its end is the end, its failure is final
                    if reason == "ended":
                        return
                    raise VderainError(f"{self._describe()} {reason}")
                failures += 1
                if failures > self.retries:
                    tries = (f"; gave up after {self.retries} {'retry' if self.retries == 1 else 'retries'}"
                             if self.retries else "")
                    raise VderainError(f"{self._describe()} {reason}{tries}")
                log.warning("%s %s; retrying in %.1f s (%d/%d)", self._describe(), reason,
                            self.retry_delay, failures, self.retries)
                self._stop.wait(self.retry_delay)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            self._slot.finish(e if isinstance(e, VderainError) else
                              VderainError(self._scrub(f"{self._describe()}: {e}")))
            return
        finally:
            if not self._slot.finished:
                self._slot.finish()


def _pace(frames, stop: threading.Event):
    """Release (payload, seconds) pairs at their presentation times, like a camera would."""
    t0 = None
    for payload, ts in frames:
        now = time.perf_counter()
        if t0 is None:
            t0 = now - ts
        delay = t0 + ts - now
        if delay > 0:
            if stop.wait(delay):
                return
        yield payload


class FileSource(LiveSource):
    """A video file played as a camera: frames are released at their own timestamps.

    realtime=False reads as fast as the consumer takes frames, without drops.
    loop=True starts again at the end (a demo that runs until q / Ctrl-C).
    """
    live = False

    def __init__(self, path: str, *, realtime: bool = True, loop: bool = False, **kw):
        super().__init__(latest=realtime, **kw)
        import av
        self.path = str(path)
        self.name = os.path.basename(self.path)
        self.realtime = realtime
        self.loop = loop
        if os.path.isdir(self.path):
            raise VderainError(f"{self.path} is a folder; live plays a video file, a camera index "
                               "(0) or a stream URL")
        if not os.path.isfile(self.path):
            raise VderainError(f"no such video file: {self.path}")
        try:
            with av.open(ffmpeg_path(self.path)) as c:
                s = main_video_stream(c)
                if s is None:
                    raise VderainError(f"{self.path} has no video stream")
                rate = s.average_rate or s.guessed_rate
                self.fps = float(rate) if rate else 25.0
                self.size = (s.codec_context.width, s.codec_context.height)
        except av.FFmpegError as e:
            raise VderainError(f"cannot open {self.path}: {e}") from None

    def _describe(self) -> str:
        return f"file {self.path}"

    def _decoded(self):
        import av
        for pass_no in range(sys.maxsize):
            with av.open(ffmpeg_path(self.path)) as c:
                s = main_video_stream(c)
                s.thread_type = "AUTO"
                start = None
                for n, f in enumerate(c.decode(s)):
                    # Missing timestamps: fall back to the nominal rate.
                    ts = float(f.pts * f.time_base) if f.pts is not None and f.time_base else n / self.fps
                    start = ts if start is None else start
                    yield f, ts - start, pass_no
            # a pass without a frame: looping would reopen the file in a busy loop forever
            if not self.loop or self._stop.is_set() or start is None:
                return

    def _frames(self):
        if not self.realtime:
            for f, _, _ in self._decoded():
                yield f
            return
        # Looping restarts the clock of each pass, so pace pass by pass.
        yield from _pace(self._loop_clock(), self._stop)

    def _loop_clock(self):
        offset, last, this_pass = 0.0, 0.0, 0
        for f, ts, n in self._decoded():
            if n != this_pass:                    # a new pass of the loop continues the clock
                offset, this_pass = offset + last + 1.0 / self.fps, n
            last = ts
            yield f, offset + ts

    def _to_rgb(self, payload) -> np.ndarray:
        # the frame's own matrix and range, as `vderain run` reads; turned upright (phone clips)
        return upright(frame_to_rgb(payload), payload.rotation)


class CameraSource(LiveSource):
    """A local camera by index through OpenCV (V4L2 on Linux, AVFoundation, DirectShow/MSMF)."""

    def __init__(self, index: int = 0, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, **kw):
        super().__init__(**kw)
        self.index = int(index)
        self.name = f"camera{self.index}"
        self.want = (width, height, fps)

    def _describe(self) -> str:
        return f"camera {self.index}"

    def _frames(self):
        import cv2
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # our message is clearer
        try:
            cap = cv2.VideoCapture(self.index)
        finally:
            cv2.utils.logging.setLogLevel(level)
        try:
            if not cap.isOpened():
                raise OSError("could not be opened (is it connected, and not used by another program?)")
            width, height, fps = self.want
            if width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # do not let the driver queue stale frames
            self.fps = cap.get(cv2.CAP_PROP_FPS) or fps or 30.0
            while not self._stop.is_set():
                ok, bgr = cap.read()
                if not ok:
                    raise OSError("stopped delivering frames (disconnected?)")
                yield bgr
        finally:
            cap.release()

    def _to_rgb(self, payload) -> np.ndarray:
        import cv2
        # OpenCV gives some cameras' frames (IR, thermal, depth) as grey, 16-bit or BGRA
        if payload.dtype == np.uint16:
            payload = (payload >> 8).astype(np.uint8)
        if payload.ndim == 3 and payload.shape[2] == 1:
            payload = payload[..., 0]
        if payload.dtype == np.uint8 and payload.ndim == 2 and min(payload.shape) > 1:
            return cv2.cvtColor(payload, cv2.COLOR_GRAY2RGB)
        if payload.dtype == np.uint8 and payload.ndim == 3 and payload.shape[2] in (3, 4):
            return cv2.cvtColor(payload, cv2.COLOR_BGR2RGB if payload.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
        raise VderainError(f"camera {self.index} delivered an unsupported frame format "
                           f"({payload.dtype} {'x'.join(map(str, payload.shape))}); "
                           "try another --width/--height/--fps mode")


class StreamSource(LiveSource):
    """A network stream through PyAV: rtsp://, rtmp://, http(s)://, udp://, tcp://, srt://.

    udp://HOST:PORT listens for packets sent there; tcp://HOST:PORT connects to a
    server (add ?listen=1 to wait for a sender instead). Only the newest decoded
    frame is kept. Latency is measured from the moment a frame is decoded here:
    the sender's own encoding and network delay happen before that and cannot be
    seen without a shared clock.
    """

    def __init__(self, url: str, *, options: dict | None = None,
                 open_timeout: float = OPEN_TIMEOUT, read_timeout: float = READ_TIMEOUT, **kw):
        super().__init__(**kw)
        self.url = url
        self.name = urlsplit(url).scheme or "stream"
        try:
            urlsplit(url).port   # fail now, not after the retries
        except ValueError:
            raise VderainError(f"bad port in stream URL (use a number 0-65535): {url}") from None
        self.timeouts = (open_timeout, read_timeout)
        # Low-latency demuxing: no input buffering, short probing.
        self.options = {"flags": "low_delay", "analyzeduration": "500000"}
        scheme = urlsplit(url).scheme
        if scheme == "rtsp":
            self.options["rtsp_transport"] = "tcp"   # UDP RTP loses packets -> smeared frames
        if scheme == "udp":
            self.options.update({"overrun_nonfatal": "1", "fifo_size": "1000000"})
        self.options.update(options or {})

    def _describe(self) -> str:
        return f"stream {_redact(self.url)}"

    def _scrub(self, text: str) -> str:
        return text.replace(self.url, _redact(self.url))

    def _frames(self):
        import av
        opened = False
        try:
            with av.open(self.url, options=self.options, timeout=self.timeouts) as c:
                opened = True
                s = main_video_stream(c)
                if s is None:
                    raise VderainError(f"{_redact(self.url)} carries no video stream")
                s.thread_type = "SLICE"  # frame threading would add a frame of delay per thread
                rate = s.average_rate or s.guessed_rate
                self.fps = float(rate) if rate else 30.0
                for f in c.decode(s):
                    if self._stop.is_set():
                        return
                    yield f
        except av.error.ExitError:   # FFmpeg's words for it: "Immediate exit requested"
            raise OSError(f"sent nothing for {self.timeouts[1 if opened else 0]:g} s (timed out)") from None

    def _to_rgb(self, payload) -> np.ndarray:
        # the frame's own matrix and range, as `vderain run` reads; turned upright (phone clips)
        return upright(frame_to_rgb(payload), payload.rotation)


def _redact(url: str) -> str:
    """The URL for messages and logs, its password hidden (rtsp://user:password@camera/...)."""
    u = urlsplit(url)
    if u.password is None:
        return url
    return u._replace(netloc=f"{u.username}:***@{u.netloc.rpartition('@')[2]}").geturl()


def open_source(spec: str, *, width: int | None = None, height: int | None = None,
                fps: float | None = None, realtime: bool = True, loop: bool = False,
                retries: int = 3, retry_delay: float = 1.0) -> LiveSource:
    """'0' -> camera 0; 'scheme://...' -> network stream; anything else -> a video file.

    width/height/fps only apply to cameras, realtime/loop only to files.
    """
    spec = str(spec)
    retry = {"retries": retries, "retry_delay": retry_delay}
    if spec.isdigit():
        return CameraSource(int(spec), width=width, height=height, fps=fps, **retry)
    path = local_path(spec)   # a file:// URL is the local file it names
    if "://" in path:
        return StreamSource(spec, **retry)
    return FileSource(path, realtime=realtime, loop=loop, **retry)


# ---------------------------------------------------------------- sinks

class LatencyLog:
    """Latencies in seconds, counted in bins 1 % wide on a log scale (0.1 ms .. 1,000 s).

    Percentiles over a whole run in constant memory (a camera left running for weeks would
    otherwise keep a float per frame), within 0.5 % of the exact value. `snapshot()` and
    `percentile_ms(q, since=...)` give the percentiles of what came after the snapshot."""
    LOW, STEP = 1e-4, 1.01
    BINS = math.ceil(math.log(1e7) / math.log(STEP))   # LOW * STEP**BINS >= 1,000 s
    _LOG_STEP = math.log(STEP)

    def __init__(self):
        self.counts = np.zeros(self.BINS, np.int64)
        self.max = 0.0

    def append(self, seconds: float) -> None:
        i = int(math.log(max(seconds, self.LOW) / self.LOW) / self._LOG_STEP)
        self.counts[min(i, self.BINS - 1)] += 1
        self.max = max(self.max, seconds)

    def __len__(self) -> int:
        return int(self.counts.sum())

    def snapshot(self) -> np.ndarray:
        return self.counts.copy()

    def percentile_ms(self, q: float, since: np.ndarray | None = None) -> float | None:
        """The q-th percentile in ms (the bin's geometric centre), None when empty."""
        counts = self.counts if since is None else self.counts - since
        n = int(counts.sum())
        if n == 0:
            return None
        i = int(np.searchsorted(np.cumsum(counts), max(1, math.ceil(q / 100 * n))))
        return round(self.LOW * self.STEP ** (i + 0.5) * 1000, 1)


class Sink:
    """Receives finished frames; records capture -> written latency (seconds) per frame."""
    name = "sink"
    split = False     # show input | output side by side
    overlay = False   # draw fps / latency text

    def __init__(self):
        self.latencies = LatencyLog()
        self.written = 0
        self.dropped = 0
        self.wants_stop = False

    def write(self, rgb: np.ndarray, capture_time: float) -> None:
        raise NotImplementedError

    def poll(self) -> None:
        """Called while no frame arrives (a stalled stream): keep a window responsive."""

    def close(self) -> None:
        pass

    def _done(self, capture_time: float) -> None:
        self.latencies.append(time.perf_counter() - capture_time)
        self.written += 1


class WindowSink(Sink):
    """An OpenCV window; q or Esc (or closing the window) asks the loop to stop."""
    name = "window"

    def __init__(self, title: str = "vderain live", *, split: bool = False, overlay: bool = True):
        super().__init__()
        if not display_available():
            raise VderainError("no display to open a window on (DISPLAY / WAYLAND_DISPLAY unset); "
                               "use --output FILE or --stream URL instead")
        problem = window_problem()
        if problem:
            raise VderainError(f"cannot open a window ({problem}); "
                               "use --output FILE or --stream URL instead, or --no-show")
        self.title = title
        self.split = split
        self.overlay = overlay
        self._shown = False

    def write(self, rgb, capture_time):
        import cv2
        try:
            cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        except cv2.error as e:
            raise VderainError(f"cannot show a window (OpenCV built without GUI support?): {e}") from None
        self._shown = True
        self.poll()
        self._done(capture_time)

    def poll(self):
        import cv2
        if not self._shown:
            return
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            self.wants_stop = True
        # Closing the window with the mouse: the property drops below 1 once it is gone.
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.wants_stop = True

    def close(self):
        import cv2
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


class _ThreadedSink(Sink):
    """Encodes in its own thread, so encoding overlaps the model's next frame.

    drop_when_full=True (network): a frame is dropped when the encoder is still busy
    with the previous ones, so a slow client never stalls the loop.
    drop_when_full=False (file): the loop waits, keeping every frame; the input
    side then drops instead, so the output still stays live.
    """

    def __init__(self, *, drop_when_full: bool, maxsize: int = 2):
        super().__init__()
        self._q: queue.Queue = queue.Queue(maxsize)
        self._drop = drop_when_full
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def write(self, rgb, capture_time):
        self._raise()
        item = (rgb, capture_time)
        if self._drop:
            try:
                self._q.put_nowait(item)
            except queue.Full:
                self.dropped += 1
            return
        while True:
            try:
                self._q.put(item, timeout=0.5)
                return
            except queue.Full:
                self._raise()

    def close(self):
        while self._thread.is_alive():
            try:
                self._q.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self._thread.join()
        self._raise()

    def _raise(self):
        if self._error is not None:
            e, self._error = self._error, None
            raise e if isinstance(e, VderainError) else VderainError(f"{self.name} sink failed: {e}")

    def _run(self):
        first = None
        try:
            while True:
                item = self._q.get()
                if item is None:
                    break
                rgb, t = item
                rgb = self._fit(rgb)
                if first is None:
                    first = t
                    self._open(rgb.shape[1::-1])
                self._write(rgb, t - first)
                self._done(t)
        except BaseException as e:  # noqa: BLE001 - reported on the loop's next write/close
            self._error = e
            # Keep consuming so the producer never blocks on a dead sink.
            while self._q.get() is not None:
                pass
        finally:
            try:
                self._close(ok=self._error is None)
            except BaseException as e:  # noqa: BLE001
                self._error = self._error or e

    def _fit(self, rgb):
        return even_pad(rgb)   # yuv420p

    def _open(self, size):
        raise NotImplementedError

    def _write(self, rgb, seconds: float):
        raise NotImplementedError

    def _close(self, ok: bool):
        pass


class FileSink(_ThreadedSink):
    """Writes the live output to a file with `vderain.io.VideoWriter` (temp file + rename).

    Timestamps come from capture times, so the file plays at real speed even where
    frames were dropped.
    """
    name = "file"

    def __init__(self, path: str, fps: float, *, codec: str = "h264", crf: int | None = None,
                 preset: str = "ultrafast", split: bool = False, overlay: bool = False, inputs=()):
        self.path = str(path)
        self.inputs = tuple(inputs)
        self.fps = fps or 30.0
        self.codec, self.crf, self.preset = codec, crf, preset
        # Fail now, not at the first frame (after the camera opened and the model loaded): bad
        # folder, output == input, unknown codec or preset, a container that cannot hold the
        # codec, a bad crf. A 64x64 encoder is opened and dropped (its temp file removed): a
        # size every codec takes (x265 refuses under 16 px, SVT-AV1 under 4).
        self._new_writer((64, 64)).abort()
        self.split, self.overlay = split, overlay
        self._writer = None
        self._last_pts = -1
        super().__init__(drop_when_full=False)

    def _fit(self, rgb):
        return rgb   # the writer pads odd sizes itself, as in `vderain run`

    def _new_writer(self, size):
        from vderain.io.writer import VideoWriter
        from vderain.io.types import VideoInfo
        info = VideoInfo(width=size[0], height=size[1], fps=self.fps, time_base=Fraction(1, 1000),
                         source="live")
        return VideoWriter(self.path, info, codec=self.codec, crf=self.crf, preset=self.preset,
                           inputs=self.inputs)

    def _open(self, size):
        self._writer = self._new_writer(size)
        self._writer.__enter__()

    def _write(self, rgb, seconds):
        pts = max(self._last_pts + 1, round(seconds * 1000))
        self._last_pts = pts
        self._writer.write(rgb, pts=pts)

    def _close(self, ok):
        if self._writer is not None:
            exc = (None, None, None) if ok else (VderainError, VderainError("live output failed"), None)
            self._writer.__exit__(*exc)


class StreamSink(_ThreadedSink):
    """MPEG-TS (H.264, x264 ultrafast/zerolatency) to the network.

    udp://HOST:PORT           send datagrams there (players listen: `ffplay udp://@:PORT`)
    tcp://HOST:PORT?listen=1  serve any number of players (`ffplay tcp://HOST:PORT`)
    tcp://HOST:PORT           connect to a player that listens
    http://HOST:PORT/         serve over HTTP (VLC, OBS media source, ffplay, browsers' players)

    The sockets are ours rather than FFmpeg's, because PyAV holds the GIL while
    an output URL opens: a listening FFmpeg socket would freeze the whole program
    until a player connected.
    """
    name = "stream"
    COLOR = (6, 1)   # (AVColorSpace SMPTE 170M = BT.601, limited range)

    def __init__(self, url: str, fps: float, *, bitrate: int | None = None, gop: float = 1.0,
                 split: bool = False, overlay: bool = False):
        self.url = url
        self.fps = fps or 30.0
        self.bitrate = bitrate
        self.gop = max(1, round(gop * self.fps))   # a keyframe every `gop` s: players can join mid-stream
        self.gop_s = gop       # ... by time too: a model slower than the source sends fewer frames
        self._last_key = None
        self.split, self.overlay = split, overlay
        self.out = _open_ts_output(url)           # fails here, in the caller, on a bad URL/port
        self._container = None
        self._stream = None
        self._last_pts = -1
        super().__init__(drop_when_full=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.out.address

    def _open(self, size):
        import av
        c = av.open(self.out, mode="w", format="mpegts",
                    # flush every packet: no 32 KB of buffered video between us and the player
                    container_options={"flush_packets": "1"})
        s = c.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        s.codec_context.gop_size = self.gop
        # Tagged, because players guess BT.709 for untagged HD and would shift the colours.
        s.codec_context.colorspace, s.codec_context.color_range = self.COLOR
        if self.bitrate:
            s.codec_context.bit_rate = self.bitrate
        s.options = {"preset": "ultrafast", "tune": "zerolatency", **({} if self.bitrate else {"crf": "23"})}
        self._container, self._stream = c, s

    def _write(self, rgb, seconds):
        pts = max(self._last_pts + 1, round(seconds * 1000))
        self._last_pts = pts
        f = color.rgb_to_yuv420(rgb, *self.COLOR)
        f.pts, f.time_base = pts, Fraction(1, 1000)
        if self._last_key is None or seconds - self._last_key >= self.gop_s:
            from av.video.frame import PictureType
            f.pict_type = PictureType.I   # forced: an IDR frame (closed GOP)
            self._last_key = seconds
        for p in self._stream.encode(f):
            self._container.mux(p)

    def _close(self, ok):
        try:
            if self._container is not None:
                for p in self._stream.encode():
                    self._container.mux(p)
                self._container.close()
        finally:
            self.out.close()


# ---------------------------------------------------------------- MPEG-TS outputs

def _host_port(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    try:
        port = u.port
    except ValueError:   # not a number, or outside 0-65535
        raise VderainError(f"bad port in stream URL (use a number 0-65535): {url}") from None
    if port is None:
        raise VderainError(f"stream URL needs a port: {url}")
    host = u.hostname or "0.0.0.0"
    return ("0.0.0.0" if host == "@" else host), port


def _open_ts_output(url: str):
    scheme = urlsplit(url).scheme
    query = parse_qs(urlsplit(url).query)
    host, port = _host_port(url)
    try:
        if scheme == "udp":
            return _UdpOut(host, port)
        if scheme == "tcp" and query.get("listen", ["0"])[0] not in ("0", ""):
            return _ServerOut(host, port, http=False)
        if scheme == "tcp":
            return _TcpClientOut(host, port)
        if scheme == "http":
            return _ServerOut(host, port, http=True)
    except OSError as e:
        raise VderainError(f"cannot open stream output {url}: {e}") from None
    raise VderainError(f"unsupported stream output '{url}' (use udp://, tcp:// or http://)")


class _TsOut:
    """A write-only file object for PyAV's muxer that sends whole TS packets."""
    address: tuple[str, int]

    def writable(self):
        return True

    def seekable(self):
        return False

    def flush(self):
        pass


class _UdpOut(_TsOut):
    CHUNK = 7 * TS_PACKET   # 1316 bytes: the usual MPEG-TS datagram, fits any MTU

    def __init__(self, host, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.address = (host, port)
        self.sock.connect(self.address)
        self.pending = b""

    def write(self, data):
        # Datagrams carry whole TS packets (some players insist); the muxer's writes end on
        # a packet boundary after each frame (flush_packets), so nothing waits here for long.
        data = self.pending + bytes(data)
        whole = len(data) - len(data) % TS_PACKET
        self.pending = data[whole:]
        for i in range(0, whole, self.CHUNK):
            try:
                self.sock.send(data[i:min(i + self.CHUNK, whole)])
            except OSError:
                pass  # nobody listening yet (ICMP refused): UDP just moves on
        return len(data)

    def close(self):
        self.sock.close()


class _TcpClientOut(_TsOut):
    def __init__(self, host, port):
        self.address = (host, port)
        self.sock = socket.create_connection(self.address, timeout=OPEN_TIMEOUT)

    def write(self, data):
        try:
            self.sock.sendall(bytes(data))
        except OSError as e:
            raise VderainError(f"stream receiver at {self.address[0]}:{self.address[1]} went away: {e}") from None
        return len(data)

    def close(self):
        self.sock.close()


class _ServerOut(_TsOut):
    """Listens and fans the stream out to every connected player.

    A player that joins mid-stream starts on a TS packet boundary; it can decode
    from the next keyframe. A player too slow to keep up (send blocks > 2 s) is cut.
    """

    def __init__(self, host, port, http: bool):
        self.http = http
        self.lsock = socket.create_server((host, port), reuse_port=False)
        self.lsock.settimeout(0.2)
        self.address = self.lsock.getsockname()[:2]
        self.clients: list[socket.socket] = []
        self.fresh: set[socket.socket] = set()   # joined since the last write
        self.lock = threading.Lock()
        self.sent = 0            # bytes written so far: tells where the next TS packet starts
        self.closed = threading.Event()
        threading.Thread(target=self._accept, name="stream-accept", daemon=True).start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                conn, addr = self.lsock.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(2.0)
            try:
                if self.http:
                    self._http_handshake(conn)
            except OSError:
                conn.close()
                continue
            log.info("stream: player connected from %s:%d", *addr[:2])
            with self.lock:
                self.clients.append(conn)
                self.fresh.add(conn)

    @staticmethod
    def _http_handshake(conn):
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 8192:
            chunk = conn.recv(1024)
            if not chunk:
                raise OSError("closed")
            request += chunk
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n"
                     b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n")

    def write(self, data):
        data = bytes(data)
        with self.lock:
            start = (-self.sent) % TS_PACKET   # a newcomer skips to the next packet boundary
            self.sent += len(data)
            for conn in list(self.clients):
                offset = start if conn in self.fresh else 0
                self.fresh.discard(conn)
                try:
                    conn.sendall(data[offset:])
                except OSError:
                    log.info("stream: a player left or could not keep up")
                    conn.close()
                    self.clients.remove(conn)
        return len(data)

    def close(self):
        self.closed.set()
        with self.lock:
            for conn in self.clients:
                try:
                    conn.close()
                except OSError:
                    pass
            self.clients.clear()
            self.fresh.clear()
        self.lsock.close()
