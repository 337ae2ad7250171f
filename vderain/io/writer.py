"""Writers: an encoded video file or a folder of PNG frames, behind one interface.

Output goes to a hidden temporary file (or folder) beside the target and is renamed
onto it only when complete, so an interrupted run leaves the old target (or nothing),
never a half-written file, and the input is never touched.
"""
from __future__ import annotations

import hashlib
import io
import os
import secrets
import socket
import threading
import time
import weakref
from fractions import Fraction

import numpy as np

from vderain import VderainError
from vderain.io import color
from vderain.io.reader import ClockMender, ffmpeg_path, local_path, main_video_stream
from vderain.io.types import VideoInfo, quarter_turns, turn

# name -> (FFmpeg encoder, pixel format, default crf). RGB formats keep frames bit-exact.
CODECS = {
    "h264": ("libx264", "yuv420p", 18),
    "hevc": ("libx265", "yuv420p", 20),
    "av1": ("libsvtav1", "yuv420p", 30),
    "vp9": ("libvpx-vp9", "yuv420p", 31),
    "ffv1": ("ffv1", "bgr0", None),
    "x264-lossless": ("libx264rgb", "bgr24", None),
    # NVIDIA's hardware encoders (in PyAV's FFmpeg; need an NVIDIA GPU and driver): a 1080p
    # GPU run is otherwise bound by libx264 on the CPU. crf maps to NVENC's constant quality (cq).
    "h264-nvenc": ("h264_nvenc", "yuv420p", 23),
    "hevc-nvenc": ("hevc_nvenc", "yuv420p", 25),
    "png": (None, None, None),
}
# name -> the codec a container must accept to hold it (what the muxer checks)
CODEC_IDS = {"h264": "h264", "x264-lossless": "h264", "h264-nvenc": "h264", "hevc": "hevc",
             "hevc-nvenc": "hevc", "av1": "av1", "vp9": "vp9", "ffv1": "ffv1"}
ALIASES = {"h265": "hevc", "x264": "h264", "avc": "h264", "x265": "hevc", "svt-av1": "av1",
           "nvenc": "h264-nvenc", "h264_nvenc": "h264-nvenc", "hevc_nvenc": "hevc-nvenc"}
CODEC_CHOICES = ("h264", "hevc", "av1", "vp9", "ffv1", "x264-lossless", "lossless", "h264-nvenc", "hevc-nvenc",
                 "png")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
_SVT_PRESET = dict(zip(X264_PRESETS, (12, 11, 10, 9, 8, 7, 5, 4, 2, 1)))
_VP9_CPU_USED = dict(zip(X264_PRESETS, (8, 7, 6, 5, 4, 2, 1, 1, 0, 0)))
_NVENC_PRESET = dict(zip(X264_PRESETS, ("p1", "p2", "p3", "p3", "p4", "p5", "p6", "p7", "p7", "p7")))
_SWS_COLORSPACES = {1, 4, 5, 6, 7, 9, 10}
_REENCODE_AUDIO = {"webm": "libopus", "ogg": "libopus"}  # everything else gets AAC
# Muxers whose tag table (`supported_codecs`) is empty or partial but that hold these codecs.
_ALSO_HOLDS = {"mpegts": {"h264", "hevc", "av1", "aac", "aac_latm", "mp3", "mp2", "ac3", "eac3", "opus",
                          "dvb_subtitle", "dvb_teletext"}}
# Muxers that store a display rotation (the matrix of mov/mp4, Matroska's projection); in the
# others (avi, flv, mpegts, nut, PNG frames) a rotated video is turned upright in the pixels.
_ROTATION_FORMATS = {"mov", "mp4", "ipod", "3gp", "3g2", "psp", "ismv", "f4v", "matroska", "webm"}
# Pixel formats without a YUV matrix: their colour tags (colorspace RGB, full range) say
# nothing about the YUV the encoder gets, so the writer picks and tags the matrix itself.
_RGB_PREFIXES = ("rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr", "gray", "ya", "pal", "mono")


def is_folder_target(path: str, codec: str | None = None) -> bool:
    """A path ending in a separator, an existing folder, or a name without extension is a PNG folder."""
    path = os.fspath(path)
    if codec == "png" or path.endswith(("/", os.sep)) or os.path.isdir(path):
        return True
    return os.path.splitext(os.path.basename(path))[1] == ""


def resolve_codec(codec: str | None, path: str) -> str:
    """Canonical codec name for this target; raises VderainError for unknown names."""
    folder = is_folder_target(path, codec)
    if codec in (None, "", "auto"):
        return "png" if folder else "h264"
    name = ALIASES.get(codec.lower(), codec.lower())
    if name == "lossless":
        ext = os.path.splitext(path)[1].lower()
        return "png" if folder else ("ffv1" if ext in (".mkv", ".avi", ".nut") else "x264-lossless")
    if name not in CODECS:
        raise VderainError(f"unknown codec '{codec}' (choose from {', '.join(CODEC_CHOICES)})")
    if folder and name != "png":
        raise VderainError(f"{path} is a folder target (PNG frames); --codec {codec} needs a file "
                           f"name with an extension such as .mp4 or .mkv")
    if not folder and name == "png":
        raise VderainError(f"--codec png writes a folder of frames; give a folder path ending in '/' "
                           f"(got {path})")
    return name


def same_file(a: str, b: str) -> bool:
    """One file under two names: the same path once resolved, or a hard link (both existing)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path, inputs=(), codec: str | None = None) -> str:
    """Fail early (before any decoding) if `path` cannot be written or would clobber an input."""
    path = os.fspath(path)
    folder = is_folder_target(path, codec)
    target = path.rstrip("/" + os.sep) or path
    for src in inputs:
        if src and same_file(local_path(src), target):
            raise VderainError(f"output {path} is the input; choose another output name "
                               f"(the input is never overwritten)")
    if os.path.exists(target) and not (os.path.isfile(target) or os.path.isdir(target)):
        # /dev/null, a FIFO: the output is written beside it and renamed onto it, which cannot
        # work (and must not replace a device node)
        raise VderainError(f"output {path} is not a regular file or folder (a device or pipe); "
                           f"give a file name")
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise VderainError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VderainError(f"output folder is not writable: {parent}")
    if folder:
        if os.path.isfile(target):
            raise VderainError(f"{target} is a file, but the output is a folder of PNG frames")
        if os.path.isdir(target) and os.listdir(target):
            raise VderainError(f"output folder {target} already exists and is not empty")
    elif os.path.isdir(target):
        raise VderainError(f"output {target} is an existing folder; give a file name")
    return target


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_namespace() -> str:
    """Linux's id of our PID namespace ('' elsewhere): containers that share the hostname
    (`docker --network host`, apptainer) each count PIDs from 1, so a PID names a process only
    within its namespace."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        return ""


# Where a PID can be checked: this hostname and PID namespace. Lock and claim files hold it.
HOST_ID = socket.gethostname() + (f"/{_pid_namespace()}" if _pid_namespace() else "")
# Temp files are named .NAME.HOST-PID-TOKEN.vderain-tmp.EXT. HOST (a hash of HOST_ID) tells
# whether a PID can be checked here: folders shared by cluster nodes hold other hosts' temps.
# TOKEN differs on every call: a container restarts with the same PID, so a temp left by a
# killed earlier start carries our own PID and must not block (or be taken for) ours.
_HOST = hashlib.sha1(HOST_ID.encode()).hexdigest()[:8]
_OTHER_HOST_STALE_S = 3600   # a temp being written is touched every few seconds


def owner_gone(same_host: bool, pid: int, path: str, idle_s: float) -> bool:
    """Whether the process that owns a temp or lock file at `path` is gone: on this host its PID
    is dead, or is ours (a container restarts with the same PID, so a file of our PID is an
    earlier start's); on another host, where PIDs cannot be checked, it left the file untouched
    for `idle_s` seconds."""
    if same_host:
        return pid == os.getpid() or not _pid_alive(pid)
    return _idle_s(path) > idle_s


def _idle_s(path: str) -> float:
    """Seconds since `path` was last written or touched (0 when it is gone)."""
    try:
        return time.time() - os.path.getmtime(path)
    except OSError:
        return 0.0


def owner_file_stale(path: str, idle_s: float) -> bool:
    """Whether the lock or claim file at `path` ("HOST_ID PID") belongs to a process that is gone:
    owner_gone, or, on any host, untouched for `idle_s` (its owner touches it while it works:
    on this host a dead job's PID may have been given to another process since). A file that
    does not say whose it is (being written this instant, or left empty by a full disk) is
    stale once untouched for `idle_s`."""
    try:
        with open(path) as f:
            host, pid = f.read().split()
        pid = int(pid)
    except FileNotFoundError:
        return False   # gone: not ours to take
    except (OSError, ValueError):
        return _idle_s(path) > idle_s
    return (host == HOST_ID and owner_gone(True, pid, path, idle_s)) or _idle_s(path) > idle_s


def create_owner_file(path: str, idle_s: float) -> bool:
    """Create `path` naming this process ("HOSTNAME PID") unless a live owner holds it; a file
    whose owner is gone (owner_file_stale) is taken over. Two processes that find the same stale
    file at once may both take it: the cost is work done twice, never a broken output (every
    output is renamed into place whole). False also when the folder is gone; other OSErrors
    (a name too long, no permission, no space) are raised."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not owner_file_stale(path, idle_s):
                return False
            _remove(path)
            continue
        except FileNotFoundError:
            return False
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{HOST_ID} {os.getpid()}\n")
        except BaseException:
            _remove(path)   # an empty file (disk full) would say nothing about whose it is
            raise
        return True
    return False


class Keepalive:
    """Touches `path` every `every_s` seconds while the `with` block runs, so that other hosts,
    which cannot check our PID, see its owner is alive (owner_gone's idle test); `release`:
    and removes it when the block ends, however it ends."""

    def __init__(self, path: str, every_s: float, release: bool = False):
        self.path, self.every_s, self.release = path, every_s, release
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vderain-keepalive", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def __enter__(self) -> "Keepalive":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.release:
            _remove(self.path)


def _temp_is_stale(path: str, tag: str) -> bool:
    parts = tag.split("-")
    if len(parts) == 1 and parts[0].isdigit():      # the older name: PID only, this host's
        return owner_gone(True, int(parts[0]), path, _OTHER_HOST_STALE_S)
    if len(parts) == 3 and parts[1].isdigit():
        return owner_gone(parts[0] == _HOST, int(parts[1]), path, _OTHER_HOST_STALE_S)
    return False


def _temp_path(target: str) -> str:
    parent, name = os.path.split(os.path.abspath(target))
    prefix = f".{name}."
    # A run killed with SIGKILL cannot clean up after itself; the next run to the same target does.
    try:
        others = os.listdir(parent)
    except OSError:
        others = []
    for other in others:
        if other.startswith(prefix) and ".vderain-tmp" in other:
            tag = other[len(prefix):].split(".", 1)[0]
            if _temp_is_stale(os.path.join(parent, other), tag):
                _remove(os.path.join(parent, other))
    ext = os.path.splitext(name)[1]
    return os.path.join(parent, f"{prefix}{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.vderain-tmp{ext}")


def sync_file(path: str) -> None:
    """Data on disk before the rename that publishes it: after a power cut the name then holds
    the whole video, not an empty file (a resumed run trusts a part whose record exists)."""
    if os.path.isdir(path):
        return   # PNG frames: each is small; a folder's fsync is not portable
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path):
            for n in os.listdir(path):
                os.remove(os.path.join(path, n))
            os.rmdir(path)
        elif os.path.exists(path):
            os.remove(path)
    except OSError:
        pass


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(25)


class VideoWriter:
    """Encode RGB frames to `path`, or to a folder of PNGs when `path` is a folder target.

    info:       geometry, timing and colour tags to reproduce (usually the reader's `.info`;
                give a copy with another width for side-by-side output).
    codec:      h264 (default) | hevc | av1 | vp9 | ffv1 | x264-lossless | lossless | png.
    crf/preset: quality and speed (x264 names; mapped for av1/vp9). crf=None: codec default.
    audio_from: path of a source whose audio/subtitle/data streams are copied alongside.
    trim_aux:   only copy side streams inside the written video's time span (for --start/--duration).
    """

    def __init__(self, path, info: VideoInfo, codec: str | None = None, crf: int | None = None,
                 preset: str = "medium", audio_from: str | None = None, trim_aux: bool = False,
                 inputs=(), options: dict | None = None):
        self.path = check_output(path, tuple(inputs) + ((audio_from,) if audio_from else ()), codec)
        self.codec = resolve_codec(codec, os.fspath(path))
        if codec in (None, "", "auto") and os.path.splitext(self.path)[1].lower() == ".webm":
            self.codec = "vp9"  # the extension chooses: WebM holds VP9/AV1, never H.264
        self.info = info
        self.notes: list[str] = []  # one-line remarks for the user (audio re-encoded, stream dropped...)
        self.frames_written = 0
        self._closed = False
        self._tmp = _temp_path(self.path)
        self._last_pts = None
        self._pts0 = None  # the first frame's source pts: output time 0
        self._tb = Fraction(info.time_base)
        # pts units per frame, for frames written without a pts (computed once: Fraction is slow)
        self._step = max(1, round(1 / (_fps_fraction(info.fps) * self._tb)))
        try:
            try:  # fail fast on permissions/full disks, before any encoding
                if self.codec == "png":
                    os.mkdir(self._tmp)
                else:
                    open(self._tmp, "xb").close()
            except OSError as e:
                raise VderainError(f"cannot write to output folder {os.path.dirname(self._tmp)}: "
                                   f"{e.strerror}") from None
            if self.codec == "png":
                self._sink = _PngSink(self._tmp, _quarter_turns(info.rotation, "PNG frames", self.notes))
            else:
                self._sink = _ContainerSink(self._tmp, info, self.codec, crf, preset, audio_from,
                                            trim_aux, options or {}, self.notes)
        except BaseException:
            _remove(self._tmp)
            raise
        # a writer dropped without close() or abort() (no `with` block): its temp goes when it is
        # collected, or at exit, not at the next run to this target; never renamed into place
        self._finalizer = weakref.finalize(self, _discard, self._sink, self._tmp)

    # -- frames ---------------------------------------------------------------------------
    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        """Append one (H, W, 3) uint8 RGB frame; pts in info.time_base units (None: next frame)."""
        if self._closed:
            raise RuntimeError("writer is closed")
        h, w = self.info.height, self.info.width
        if rgb.shape != (h, w, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frame must be ({h}, {w}, 3) uint8, got {rgb.shape} {rgb.dtype}")
        out_pts = self._next_pts(pts)
        # Side streams are timed in the source's clock: hand the sink both clocks.
        src_time = float((out_pts + (self._pts0 or 0)) * self._tb)
        self._sink.write(np.ascontiguousarray(rgb), out_pts, src_time)
        self.frames_written += 1

    @property
    def first_pts(self) -> int | None:
        """Source pts of the first frame written (output time 0); None before any."""
        return self._pts0

    def _next_pts(self, pts):
        if pts is None:
            pts = (self._last_pts + self._step) if self._last_pts is not None else 0
        else:
            if self._pts0 is None:
                self._pts0 = pts
            pts = pts - self._pts0  # the output starts at 0 (matters after --start)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders and muxers need strictly increasing timestamps
        self._last_pts = pts
        return pts

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> str:
        """Finish encoding and move the result onto the target path; returns the path."""
        if self._closed:
            return self.path
        self._closed = True
        self._finalizer.detach()
        try:
            if self.frames_written == 0:
                raise VderainError("no frames were written; output not created")
            self._sink.close()
            if os.path.isdir(self._tmp) and os.path.isdir(self.path):
                os.rmdir(self.path)  # checked empty at open; rename cannot replace a full folder
            sync_file(self._tmp)
            os.replace(self._tmp, self.path)
        except BaseException:
            self._sink.abort()
            _remove(self._tmp)
            raise
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the target path is left as it was."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()   # _discard now, once: the encoder closed, the temp removed

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _discard(sink, tmp: str) -> None:
    """An unfinished writer's cleanup (its finalizer): the encoder closed, the temp removed."""
    try:
        sink.abort()
    finally:
        _remove(tmp)


def _quarter_turns(rotation, where: str, notes: list) -> int:
    """Counter-clockwise quarter turns that show a frame upright, for outputs that cannot carry
    the display rotation (noted); 0 when there is none."""
    k = quarter_turns(rotation)
    if k:
        notes.append(f"rotation {rotation:g} degrees applied to the pixels: {where} cannot hold rotation metadata")
    return k


class _PngSink:
    def __init__(self, folder: str, turns: int = 0):
        import cv2
        self._cv2 = cv2
        self.folder = folder
        self.turns = turns
        self.n = 0

    def write(self, rgb, pts, src_time):
        cv2 = self._cv2
        rgb = turn(rgb, self.turns)
        path = os.path.join(self.folder, f"{self.n:06d}.png")
        if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise VderainError(f"cannot write {path}")
        self.n += 1

    def close(self):
        pass

    def abort(self):
        pass


def _check_size(codec: str, encoder: str, w: int, h: int) -> None:
    """Frame sizes an encoder refuses with a bare "Invalid argument", or hangs on (measured with
    PyAV 18.1's libx265 and SVT-AV1): one line that names the limit instead."""
    small, large = min(w, h), max(w, h)
    if encoder == "libx265" and small < 16:
        why = "needs at least 16 px on each side"
    elif encoder == "libsvtav1" and small < 4:
        why = "needs at least 4 px on each side"
    elif encoder == "libsvtav1" and small < 26 and large > 64:
        why = "hangs when one side is under 26 px and the other over 64 px"
    else:
        return
    raise VderainError(f"{codec} ({encoder}) cannot encode {w}x{h} frames: it {why}; "
                       f"use --codec h264 (or vp9, ffv1)")


class _ContainerSink:
    def __init__(self, tmp, info: VideoInfo, codec, crf, preset, audio_from, trim_aux, options, notes):
        import av
        self._av = av
        self.notes = notes
        encoder, pix_fmt, default_crf = CODECS[codec]
        self.pix_fmt = pix_fmt
        self.tb = Fraction(info.time_base)
        try:
            self.container = av.open(tmp, "w")
        except (ValueError, av.error.FFmpegError) as e:
            raise VderainError(f"cannot write {os.path.splitext(tmp)[1] or 'this'} files: "
                               f"FFmpeg does not know the format ({e})") from None
        try:
            self._setup_video(info, codec, encoder, pix_fmt, default_crf if crf is None else crf,
                              preset, options)
            self.aux = _AuxCopier(self.container, audio_from, trim_aux, notes) if audio_from else None
            try:
                self.container.start_encoding()  # opens the encoder: bad settings fail here, early
            except av.error.FFmpegError as e:
                hint = " (NVENC needs an NVIDIA GPU and its driver; use --codec h264 here)" if "nvenc" in encoder else ""
                raise VderainError(f"cannot start the {encoder} encoder: {e.strerror or e}{hint}") from None
        except BaseException:
            self.abort()
            raise

    def _setup_video(self, info, codec, encoder, pix_fmt, crf, preset, options):
        av = self._av
        fmt_name = self.container.format.name.split(",")[0]
        codec_id = CODEC_IDS[codec]
        if codec_id not in self.container.supported_codecs and codec_id not in _ALSO_HOLDS.get(fmt_name, ()):
            ext = os.path.splitext(self.container.name)[1]
            raise VderainError(f"a {ext} file cannot hold {codec} video; use .mkv or .mp4 "
                               f"(or another --codec)")
        if preset not in X264_PRESETS and not str(preset).isdigit():
            raise VderainError(f"unknown preset '{preset}' (choose from {', '.join(X264_PRESETS)})")
        subsampled = pix_fmt.startswith("yuv4")
        self.turns = 0 if fmt_name in _ROTATION_FORMATS else \
            _quarter_turns(info.rotation, f"a {os.path.splitext(self.container.name)[1]} file", self.notes)
        width, height = (info.height, info.width) if self.turns % 2 else (info.width, info.height)
        # 4:2:0 needs even sizes: pad the last row/column by repeating it (nothing is cropped).
        self.pad_h = height % 2 if subsampled else 0
        self.pad_w = width % 2 if subsampled else 0
        if self.pad_w or self.pad_h:
            self.notes.append(f"odd size {width}x{height} padded to "
                              f"{width + self.pad_w}x{height + self.pad_h} (4:2:0 needs even sizes)")
        _check_size(codec, encoder, width + self.pad_w, height + self.pad_h)
        self.fps = _fps_fraction(info.fps)
        stream = self.stream = self.container.add_stream(encoder, rate=self.fps)
        stream.width = width + self.pad_w
        stream.height = height + self.pad_h
        stream.pix_fmt = pix_fmt
        # VFR survives only if the encoder works in the input's time base (NOTES.md). AVI has
        # no timestamps, only a frame rate: in a finer time base its muxer writes an empty
        # index entry per tick (600 "frames" a second) and the first frame lands one frame late.
        self.out_tb = 1 / self.fps if fmt_name == "avi" else self.tb
        self._last_out = None
        stream.codec_context.time_base = self.out_tb
        stream.time_base = self.out_tb
        opts = {}
        if encoder in ("libx264", "libx265"):
            opts.update(crf=str(crf), preset=preset if preset in X264_PRESETS else "medium")
            if encoder == "libx265":
                opts["x265-params"] = "log-level=error"
                if fmt_name in ("mov", "mp4"):
                    stream.codec_tag = "hvc1"  # Apple players only accept this tag
        elif encoder == "libx264rgb":
            opts.update(qp="0", preset=preset if preset in X264_PRESETS else "medium")
        elif encoder == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT prints its banner to stdout otherwise
            opts.update(crf=str(crf), preset=str(_SVT_PRESET.get(preset, preset)))
        elif encoder == "libvpx-vp9":
            opts.update(crf=str(crf), b="0", deadline="good", **{"cpu-used": str(_VP9_CPU_USED.get(preset, 4)),
                                                                  "row-mt": "1"})
        elif encoder in ("h264_nvenc", "hevc_nvenc"):
            opts.update(preset=_NVENC_PRESET.get(preset, "p5"), rc="vbr", cq=str(crf), b="0")
            if encoder == "hevc_nvenc" and fmt_name in ("mov", "mp4"):
                stream.codec_tag = "hvc1"
        elif encoder == "ffv1":
            opts.update(level="3", slices="4", slicecrc="1")
        opts.update(options)
        stream.options = opts
        self.rotation = info.rotation
        if info.rotation and not self.turns:
            stream.set_display_rotation(info.rotation)  # metadata only: pixels stay as coded
        cc = stream.codec_context
        self.colorspace = info.color_space if info.color_space in _SWS_COLORSPACES else None
        self.color_range = info.color_range if info.color_range in (1, 2) else None
        if info.color_space == 0 or info.pix_fmt.startswith(_RGB_PREFIXES):
            # An RGB (or grey) source: its tags (matrix "RGB", full range) copied onto YUV would
            # tell players to show Y/U/V as G/B/R. Encode with the matrix players assume for an
            # untagged video of this size, limited range, and say so in the tags.
            self.colorspace = 1 if height > 576 else 6
            self.color_range = 1
        if subsampled:
            # tags of the matrix actually used (an unsupported one, e.g. YCgCo, is not claimed)
            for attr, value in (("color_range", self.color_range), ("colorspace", self.colorspace),
                                ("color_primaries", info.color_primaries), ("color_trc", info.color_trc)):
                if value is not None:
                    setattr(cc, attr, value)
        else:
            self.colorspace = self.color_range = None  # RGB output: no matrix to tag

    def write(self, rgb, pts, src_time):
        """pts: output time base units from 0; src_time: the same frame in source seconds."""
        av = self._av
        rgb = turn(rgb, self.turns)
        if self.pad_h or self.pad_w:
            rgb = np.pad(rgb, ((0, self.pad_h), (0, self.pad_w), (0, 0)), mode="edge")
        if self.pix_fmt == "yuv420p":  # OpenCV: exact rounding, releases the GIL (io/color.py)
            frame = color.rgb_to_yuv420(rgb, self.colorspace, self.color_range)
        else:  # RGB formats for the lossless codecs: a plain repacking
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=self.pix_fmt)
        if self.out_tb != self.tb:  # AVI: the frame slot nearest its time
            pts = round(pts * self.tb / self.out_tb)
            if self._last_out is not None and pts <= self._last_out:
                pts = self._last_out + 1
            self._last_out = pts
        frame.pts = pts
        frame.time_base = self.out_tb
        if self.aux is not None:
            self.aux.copy_until(src_time)  # the copier works in source time (it shifts to 0 itself)
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self._last_src_time = src_time

    def close(self):
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        if self.aux is not None:
            end = getattr(self, "_last_src_time", 0.0) + 1 / float(self.fps)
            self.aux.finish(end)
        self.container.close()

    def abort(self):
        try:
            if getattr(self, "aux", None) is not None:
                self.aux.close()
            self.container.close()
        except Exception:
            pass


# Tags a muxer writes itself, or that no longer hold for the output: durations, statistics and
# encoder names (mkvmerge's DURATION-eng, BPS, NUMBER_OF_FRAMES...), MP4 brands, and the
# timecode (movenc would add a second timecode track beside the copied one).
_MUXER_TAGS = {"duration", "encoder", "major_brand", "minor_version", "compatible_brands",
               "handler_name", "vendor_id", "bps", "number_of_frames", "number_of_bytes",
               "rotate", "timecode", "encoder_options"}


def _carried_tags(metadata) -> dict:
    return {k: v for k, v in dict(metadata).items()
            if k.lower().split("-")[0] not in _MUXER_TAGS and not k.upper().startswith("_STATISTICS")}


class _AuxCopier:
    """Copies audio/subtitle/data streams packet by packet, interleaved with the video.

    Packets are remuxed unchanged when the output container accepts the codec; audio that
    it does not accept is re-encoded (AAC, or Opus for WebM); other streams are dropped with a note.
    Times are shifted by the first video frame's time so that the output starts at 0.
    """

    def __init__(self, out, source: str, trim: bool, notes: list):
        import av
        self._av = av
        self.out = out
        self.trim = trim
        self.notes = notes
        self.shift = None  # seconds subtracted from every side-stream timestamp
        # AVI has no timestamps: audio from before the first frame would not be placed before
        # the video (the muxer pads the video with empty frames instead, out of sync), so it goes
        self.from_video_start = trim or out.format.name == "avi"
        try:
            self.src = av.open(ffmpeg_path(source))
        except (av.error.FFmpegError, OSError) as e:
            raise VderainError(f"cannot open {source} to copy its audio: {e}") from None
        fmt = out.format.name.split(",")[0]
        self.map = {}  # source stream index -> (output stream, encoder state or None)
        main = main_video_stream(self.src)  # the stream the reader derains
        for s in self.src.streams:
            if s.type in ("video", "attachment") and s is not main:
                # not silently: a second camera angle, a preview, cover art, Matroska's fonts
                name = s.codec_context.name if s.codec_context else s.type
                which = f" (#{main.index})" if main is not None else ""
                notes.append(f"{s.type} stream #{s.index} ({name}) dropped: only the main video "
                             f"stream{which} is derained, and other pictures are not copied")
            if s.type not in ("audio", "subtitle", "data"):
                continue
            pcm_in_mp4 = fmt == "mp4" and s.type == "audio" and s.codec_context.name.startswith("pcm_")
            if not pcm_in_mp4 and self._can_copy(fmt, s):
                self.map[s.index] = (out.add_stream_from_template(s), None)
            elif s.type == "audio":
                # FFmpeg writes PCM into .mp4 ('ipcm'), but browsers, QuickTime and most players
                # then play the video silent: AAC, as for audio the container refuses
                why = ("few .mp4 players play PCM audio (.mov or .mkv keep it as is)" if pcm_in_mp4
                       else f"a .{fmt} file cannot hold it")
                reencoder = self._reencoder(s, fmt, why)
                if reencoder is not None:
                    self.map[s.index] = reencoder
                else:  # a raw stream (.h264, .hevc, .ivf) holds no audio at all
                    notes.append(f"audio stream #{s.index} ({s.codec_context.name}) dropped: a .{fmt} "
                                 f"file cannot hold audio")
            else:
                name = s.codec_context.name if s.codec_context else "data"
                notes.append(f"{s.type} stream #{s.index} ({name}) dropped: a .{fmt} file cannot hold it")
        self.streams = [self.src.streams[i] for i in self.map]
        # the tags that tell tracks apart (language, title) and the default/forced/commentary
        # flags, which a player picks its audio and subtitles by; the file's title, date, place
        self.out.metadata.update(_carried_tags(self.src.metadata))
        copied = [(self.src.streams[i], o) for i, (o, _) in self.map.items()]
        if main is not None and self.out.streams.video:
            copied.append((main, self.out.streams.video[0]))  # the output's one video stream
        for s, o in copied:
            o.metadata.update(_carried_tags(s.metadata))
            try:
                o.disposition = s.disposition
            except (AttributeError, TypeError, ValueError):
                pass
        # MPEG-TS/PS whose clock jumps back: mended as the reader mends the video's (all streams)
        self.mender = None
        if self.streams and self.src.format.name in ClockMender.FORMATS:
            # from the clock the reader's mender starts from (the video's start), to agree with it
            self.mender = ClockMender(main.start_time if main is not None else None)
        self.packets = (self.src.demux() if self.mender else self.src.demux(*self.streams)) if self.streams else iter(())
        self.held = None  # next packet not yet due
        self.done = not self.streams
        self.refused = 0  # damaged side packets the muxer would not take (skipped)

    def _can_copy(self, fmt, s) -> bool:
        av = self._av
        name = s.codec_context.name if s.codec_context else None
        if name and name not in self.out.supported_codecs and name not in _ALSO_HOLDS.get(fmt, ()):
            return False
        try:  # the muxer has the final word: try writing a header with this stream alone
            probe = av.open(io.BytesIO(), "w", format=fmt)
            probe.add_stream_from_template(s)
            probe.start_encoding()
            return True
        except (ValueError, av.error.FFmpegError):
            return False

    def _reencoder(self, s, fmt, why: str):
        av = self._av
        encoder = _REENCODE_AUDIO.get(fmt, "aac")
        rates = av.codec.Codec(encoder, "w").audio_rates or ()
        rate = s.rate if (not rates or s.rate in rates) else 48000
        try:
            o = self.out.add_stream(encoder, rate=rate)
        except ValueError:  # the container holds no audio of this kind (PyAV checks the muxer)
            return None
        # by channel count: Matroska/WAV PCM often has an unordered layout ("1 channels"),
        # which the encoders refuse
        layout = "mono" if s.layout and s.layout.nb_channels == 1 else "stereo"
        o.layout = layout
        fmt_name = av.codec.Codec(encoder, "w").audio_formats[0].name
        resampler = av.AudioResampler(format=fmt_name, layout=layout, rate=rate)
        self.notes.append(f"audio stream #{s.index} ({s.codec_context.name}) re-encoded to "
                          f"{encoder}: {why}")
        return o, resampler

    def _time(self, packet):
        ts = packet.pts if packet.pts is not None else packet.dts
        return None if ts is None or packet.time_base is None else float(ts * packet.time_base)

    def _next(self):
        while self.held is None and not self.done:
            try:
                packet = next(self.packets)
            except (StopIteration, self._av.error.FFmpegError):
                self.done = True
                return
            if self.mender is not None:
                offset = self.mender.feed(packet)[0]
                if packet.stream.index not in self.map:
                    continue  # the video's (and unmapped streams'): only their clock counts
                if offset and packet.time_base:
                    step = round(offset / packet.time_base)
                    if packet.pts is not None:
                        packet.pts += step
                    if packet.dts is not None:
                        packet.dts += step
            self.held = packet

    def copy_until(self, t_video: float) -> None:
        """Mux every side packet due at or before `t_video` (absolute source time, seconds)."""
        if self.shift is None:
            self.shift = t_video
        while True:
            self._next()
            if self.held is None:
                return
            t = self._time(self.held)
            if t is not None and t > t_video:
                return
            self._emit(self.held, t)
            self.held = None

    def finish(self, end_time: float) -> None:
        """Copy what remains: all of it, or only up to `end_time` when trimming."""
        if self.shift is None:
            self.shift = 0.0
        while True:
            self._next()
            if self.held is None:
                break
            t = self._time(self.held)
            if self.trim and t is not None and t >= end_time:
                break
            self._emit(self.held, t)
            self.held = None
        for out_stream, resampler in self.map.values():
            if resampler is not None:
                for f in resampler.resample(None):
                    for p in out_stream.encode(f):
                        self.out.mux(p)
                for p in out_stream.encode(None):
                    self.out.mux(p)
        if self.refused:
            self.notes.append(f"{self.refused} audio/subtitle/data packet(s) of the input could not be "
                              f"copied (damaged, or overlapping where its timestamps jump back) and "
                              f"were left out")
        self.close()

    def _emit(self, packet, t):
        if packet.size == 0 and packet.pts is None:
            return  # demuxer flush packet
        if self.from_video_start and t is not None and t < self.shift - 1e-6:
            return  # before the trimmed start (or the video's, in AVI)
        out_stream, resampler = self.map[packet.stream.index]
        shift = round(self.shift / packet.time_base) if packet.time_base else 0
        if resampler is None:
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = out_stream
            try:
                self.out.mux(packet)
            except (self._av.error.InvalidDataError, self._av.error.ArgumentError):
                # a damaged packet (a broken ADTS header for mp4's aac_adtstoasc, timestamps
                # going back): one packet lost beats the whole run lost. Disk errors still raise.
                self.refused += 1
            return
        try:
            frames = packet.decode()
        except self._av.error.FFmpegError:
            return
        for f in frames:
            if f.pts is not None:
                f.pts -= shift
                if f.pts < 0:
                    continue
            for rf in resampler.resample(f):
                for p in out_stream.encode(rf):
                    self.out.mux(p)

    def close(self):
        try:
            self.src.close()
        except Exception:
            pass

