"""`vderain live SOURCE [--output FILE] [--stream URL] [--show] ...`

SOURCE: a camera index (0, or its Linux device /dev/video0), a stream URL (rtsp://, udp://,
tcp://, http://...) or a video file, which is played at its own frame rate as a stand-in for a
camera.
See docs/live.md.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys

from vderain import VderainError
from vderain.commands import add_threads_argument, apply_threads


def add_arguments(p):
    p.add_argument("source", help="camera index (0; on Linux also /dev/video0), stream URL, "
                                  "or video file played in real time")
    out = p.add_argument_group("outputs (default: a window)")
    out.add_argument("-o", "--output", help="also write the derained video to this file")
    out.add_argument("--stream", metavar="URL",
                     help="serve/send MPEG-TS: udp://HOST:PORT, tcp://HOST:PORT?listen=1, http://HOST:PORT/")
    out.add_argument("--show", action=argparse.BooleanOptionalAction, default=None,
                     help="show an on-screen window (default: only when no --output/--stream)")
    out.add_argument("--split", "--side-by-side", dest="split", action="store_true",
                     help="input | output side by side (all outputs)")
    out.add_argument("--overlay", choices=("window", "all", "none"), default="window",
                     help="where to draw fps / latency text (default: window)")
    m = p.add_argument_group("model")
    m.add_argument("--method", default="auto",
                   help="auto (fast on CPU, quality on GPU) | fast | quality | identity | X.pt")
    m.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_threads_argument(m)
    s = p.add_argument_group("source")
    s.add_argument("--width", type=int, help="camera capture width to ask for")
    s.add_argument("--height", type=int, help="camera capture height to ask for")
    s.add_argument("--fps", type=float, help="camera frame rate to ask for")
    s.add_argument("--max-height", type=int,
                   help="scale taller frames down to this height before the model (e.g. 360 on a CPU)")
    s.add_argument("--loop", action="store_true", help="file source: start again at the end")
    s.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                   help="file source: play at its frame rate, dropping frames the model cannot keep up "
                        "with (default); --no-realtime processes every frame as fast as possible")
    s.add_argument("--retries", type=int, default=3, help="reconnect attempts after a camera/stream is lost")
    s.add_argument("--retry-delay", type=float, default=1.0, help="seconds between reconnect attempts")
    e = p.add_argument_group("encoding")
    e.add_argument("--codec", default=None,
                   help="--output codec (as in `vderain run`: default h264; vp9 for .webm, png for folders)")
    e.add_argument("--crf", type=int, help="--output quality, lower is better (default: the codec's, 18 for h264)")
    e.add_argument("--preset", default="ultrafast",
                   help="--output x264 preset (default ultrafast: leaves the CPU to the model; "
                        "veryfast makes files ~2x smaller where CPU is spare)")
    e.add_argument("--bitrate", help="--stream bitrate, e.g. 2M (default: constant quality)")
    r = p.add_argument_group("run")
    r.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    r.add_argument("--duration", type=float, help="stop after this many seconds")
    r.add_argument("--stats-json", help="write the final stats (fps, drops, latency percentiles) here")
    r.add_argument("--log-every", type=float, default=5.0, help="seconds between stats lines")


def _bitrate(text: str | None) -> int | None:
    if not text:
        return None
    mult = {"k": 1e3, "m": 1e6}.get(text[-1].lower(), 1)
    try:
        value = float(text[:-1] if mult != 1 else text) * mult
    except ValueError:
        value = math.nan
    # inf was an OverflowError traceback; <= 0 or past a C int, FFmpeg's message at the first frame
    if not 1e3 <= value <= 2e9:
        raise VderainError(f"bad --bitrate '{text}': bits per second between 1k and 2000M (e.g. 2M or 800k)")
    return int(value)


def _check_numbers(args) -> None:
    """One line for numbers that would be refused late, ignored, or loop forever (NaN, inf, <= 0)."""
    for name, value, low in (("--max-frames", args.max_frames, 0), ("--duration", args.duration, 0),
                             ("--fps", args.fps, 0), ("--width", args.width, 0), ("--height", args.height, 0),
                             ("--log-every", args.log_every, 0)):
        if value is not None and not (value > low and math.isfinite(value)):
            raise VderainError(f"{name} must be > {low} (got {value})")
    if args.max_height is not None and args.max_height < 16:
        raise VderainError(f"--max-height must be >= 16 (got {args.max_height})")
    if args.retries < 0 or not 0 <= args.retry_delay < 1e6:
        raise VderainError("--retries and --retry-delay must be >= 0 (and the delay finite)")


def _source_spec(spec: str) -> str:
    """SOURCE as `open_source` takes it. A Linux video device (/dev/video2, or a udev link to one
    such as /dev/v4l/by-id/...) is that camera's index: as a path it was "no such video file"
    (a device is not a regular file). A camera index must fit OpenCV's C int."""
    if spec.isdigit():
        try:
            index = int(spec)
        except ValueError:   # "²" is a digit to str.isdigit, not to int()
            index = -1
        if not 0 <= index < 2 ** 31:
            raise VderainError(f"bad camera index '{spec}' (0, 1, 2, ...)")
        return spec
    if sys.platform.startswith("linux") and "://" not in spec:
        m = re.fullmatch(r"/dev/video(\d+)", os.path.realpath(spec))
        if m:
            return m.group(1)
    return spec


def ignored_options(args, source) -> list[str]:
    """Options given that this source or these outputs do not use: each a one-line note (a
    camera-mode request on a file would otherwise look as if it had been honoured)."""
    from vderain.io.live import CameraSource, FileSource
    notes = []
    # --fps is also the outputs' rate where the source has none yet (a stream, before it opens)
    asked = [f"--{n}" for n in ("width", "height", "fps") if getattr(args, n) is not None
             and (n != "fps" or source.fps is not None)]
    if asked and not isinstance(source, CameraSource):
        notes.append(f"{'/'.join(asked)} {'asks' if len(asked) == 1 else 'ask'} a camera for a capture mode; ignored for a "
                     f"{'file' if isinstance(source, FileSource) else 'stream'}")
    played = (["--loop"] if args.loop else []) + ([] if args.realtime else ["--no-realtime"])
    if played and not isinstance(source, FileSource):
        notes.append(f"{' and '.join(played)} only apply to a file source; ignored")
    encoded = [f"--{n}" for n in ("codec", "crf") if getattr(args, n) is not None]
    if encoded and not args.output:
        notes.append(f"{' and '.join(encoded)} set the -o file's encoding; there is no -o")
    if args.bitrate and not args.stream:
        notes.append("--bitrate sets the --stream output's rate; there is no --stream")
    return notes


def _check_stats_path(path: str, protect: dict) -> None:
    from vderain.io.writer import same_file
    folder = os.path.dirname(os.path.abspath(path))
    for what, other in protect.items():   # it is opened with "w" after the run
        if other and same_file(path, other):
            raise VderainError(f"--stats-json {path} is the {what}; choose another name")
    if os.path.isdir(path):
        raise VderainError(f"--stats-json {path} is a folder; give a file name")
    if not os.path.isdir(folder):
        raise VderainError(f"--stats-json: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise VderainError(f"--stats-json: folder {folder} is not writable")


def main(args) -> int:
    from vderain.io.live import (FileSink, FileSource, StreamSink, WindowSink, open_source)
    from vderain.live import build_live_method, run_live

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    _check_numbers(args)
    bitrate = _bitrate(args.bitrate)
    apply_threads(args.threads)

    source = open_source(_source_spec(args.source), width=args.width, height=args.height, fps=args.fps,
                         realtime=args.realtime, loop=args.loop, retries=args.retries,
                         retry_delay=args.retry_delay)
    for note in ignored_options(args, source):
        print(f"vderain: note: {note}", file=sys.stderr)
    if args.stats_json:   # now, not after a whole run
        _check_stats_path(args.stats_json, {"input": getattr(source, "path", None), "output": args.output})
    fps = source.fps or args.fps or 30.0
    window = args.show if args.show is not None else not (args.output or args.stream)
    method = build_live_method(args.method, args.device)   # missing weights: one-line error

    sinks = []
    try:
        if window:
            sinks.append(WindowSink(split=args.split, overlay=args.overlay != "none"))
        if args.output:
            inputs = (source.path,) if isinstance(source, FileSource) else ()
            sinks.append(FileSink(args.output, fps, codec=args.codec, crf=args.crf, preset=args.preset,
                                  split=args.split, overlay=args.overlay == "all", inputs=inputs))
        if args.stream:
            sinks.append(StreamSink(args.stream, fps, bitrate=bitrate,
                                    split=args.split, overlay=args.overlay == "all"))
            host, port = sinks[-1].address
            logging.getLogger("vderain.live").info("live: streaming MPEG-TS on %s (%s:%d)", args.stream, host, port)
    except BaseException:
        for sink in sinks:
            sink.close()
        raise

    # SIGTERM (service managers, `kill`) and SIGHUP (the terminal closed) stop as cleanly as
    # Ctrl-C, files finished: the CLI's stop_signals_as_interrupt, as for every command
    try:
        stats = run_live(source, method, sinks, max_frames=args.max_frames, duration=args.duration,
                         max_height=args.max_height, log_every=args.log_every)
    except VderainError as e:
        if args.stats_json and getattr(e, "stats", None) is not None:
            try:
                e.stats.write_json(args.stats_json)
            except VderainError as write_error:   # keep the run's own error as the message
                logging.getLogger("vderain.live").warning("%s", write_error)
        raise
    if args.stats_json:
        stats.write_json(args.stats_json)
    if stats.stopped_by == "interrupt" and not stats.processed:
        raise KeyboardInterrupt   # before the first frame: nothing was written ("vderain: interrupted")
    if any(isinstance(sink, FileSink) and sink.written for sink in sinks):
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
