"""`vderain run INPUT -o OUTPUT`: derain a video file, frame folder or stream URL.

Exit status: 0 done; 1 error (nothing written); 2 bad arguments; 3 output written but the
input was damaged (frames that did not decode are missing, see the warning);
130 interrupted (a file input leaves no output; a stream input keeps what was done).
"""
from __future__ import annotations

import re
import sys

from vderain import VderainError

EXIT_DAMAGED_INPUT = 3


def parse_time(text: str) -> float:
    """Seconds from '12.5', '1:30' or '01:02:03.5'."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?|\.\d+)\s*", str(text))
    if not m:
        raise VderainError(f"cannot read time '{text}' (use seconds, MM:SS or HH:MM:SS)")
    parts = [p for p in m.groups() if p is not None]
    value = 0.0
    for p in parts:
        value = value * 60 + float(p)
    return value


def add_arguments(p) -> None:
    from vderain.io.writer import CODEC_CHOICES, X264_PRESETS
    p.add_argument("input", help="video file, folder of numbered frames, or stream URL (rtsp/udp/http)")
    p.add_argument("-o", "--output", required=True,
                   help="output video (.mp4/.mkv/.mov/.webm), or a folder ending in '/' for PNG frames")
    p.add_argument("--method", default="auto",
                   help="auto (the shipped network), fast, quality, median, identity, or a .pt checkpoint")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--window", type=int, help="frames per temporal window (methods that allow it)")
    p.add_argument("--tile", type=int, help="process frames in tiles of N pixels (large frames, small GPUs)")
    p.add_argument("--tile-overlap", type=int, default=32, help="pixels shared by neighbouring tiles (32)")
    p.add_argument("--batch", type=int, help="windows per method call (default 1 on CPU, 4 on GPU)")
    p.add_argument("--codec", default=None, help=f"{' | '.join(CODEC_CHOICES)} (default h264; png for folders)")
    p.add_argument("--crf", type=int, help="quality: lower is better (default 18 h264, 20 hevc, 30 av1, 31 vp9)")
    p.add_argument("--preset", default="medium", help=f"encoder speed: {', '.join(X264_PRESETS[:-1])}")
    p.add_argument("--side-by-side", action="store_true", help="write input | output next to each other")
    p.add_argument("--rain-layer", metavar="PATH", help="also write the removed rain as its own video")
    p.add_argument("--start", help="start time (seconds or [HH:]MM:SS)")
    p.add_argument("--duration", help="length to process (seconds or [HH:]MM:SS)")
    p.add_argument("--fps", type=float, help="frame rate of a frame-folder input (default 25)")
    p.add_argument("--backend", default="pyav", choices=("pyav", "decord"), help="decoder (default pyav)")
    p.add_argument("--no-audio", action="store_true", help="do not copy audio/subtitle/data streams")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    from vderain.pipeline import derain_video, summary_line
    for name in ("window", "tile", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise VderainError(f"--{name} must be >= 1 (got {value})")
    if args.tile_overlap < 0:
        raise VderainError(f"--tile-overlap must be >= 0 (got {args.tile_overlap})")
    summary = derain_video(
        args.input, args.output, method=args.method, device=args.device, window=args.window,
        tile=args.tile, tile_overlap=args.tile_overlap, batch=args.batch, crf=args.crf,
        preset=args.preset, codec=args.codec, side_by_side=args.side_by_side,
        rain_layer=args.rain_layer, start=parse_time(args.start), duration=parse_time(args.duration),
        fps=args.fps, backend=args.backend, audio=not args.no_audio, progress=not args.quiet)
    for note in summary["notes"]:
        print(f"vderain: note: {note}", file=sys.stderr)
    problems = summary["decode_problems"]
    if problems:
        print(f"vderain: warning: damaged input, output has only the frames that decoded: {problems}",
              file=sys.stderr)
    print(f"vderain: {summary_line(summary)}")
    if summary["interrupted"]:
        return 130
    return EXIT_DAMAGED_INPUT if problems else 0
