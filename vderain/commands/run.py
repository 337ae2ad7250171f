"""`vderain run INPUT -o OUTPUT`: derain a video file, frame folder or stream URL.

`vderain run INPUT... -o OUT_DIR/`: batch mode (several files, or a folder of videos),
see vderain/batch.py.

Exit status: 0 done; 1 error (nothing written; in batch mode: some file failed);
2 bad arguments; 3 output written but the input was damaged (frames that did not decode
are missing, see the warning); 130 interrupted (a file input leaves no output, or with
--resume its finished parts; a stream input keeps what was done; a batch keeps the files it
finished).
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from vderain import VderainError
from vderain.commands import add_threads_argument, apply_threads

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
    p.add_argument("input", nargs="+",
                   help="video file, folder of numbered frames, or stream URL (rtsp/udp/http); "
                        "several files or a folder of videos: batch mode")
    p.add_argument("-o", "--output", required=True,
                   help="output video (.mp4/.mkv/.mov/.webm), or a folder ending in '/' for PNG frames; "
                        "in batch mode the output folder")
    p.add_argument("--method", default="auto",
                   help="auto (the shipped network), fast, quality, median, identity, fast-causal, "
                        "quality-causal, quality-framewise, or a .pt checkpoint")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--window", type=int, help="frames per temporal window (methods that allow it)")
    p.add_argument("--tile", type=int, help="process frames in tiles of N pixels (large frames, small GPUs); ignored for "
                        "methods that need whole frames (median, and fast/quality: their haze estimator)")
    p.add_argument("--tile-overlap", type=int, default=32, help="pixels shared by neighbouring tiles (32)")
    p.add_argument("--stabilise", action=argparse.BooleanOptionalAction, default=None,
                   help="temporal stabiliser after the network: a motion-compensated median of the "
                        "output where rain was removed (default: on for networks with a centred "
                        "window: fast, quality, auto, their .pt files; off for median, identity, "
                        "causal and frame-wise models)")
    p.add_argument("--batch", type=int, help="windows per method call (default 1 on CPU, 4 on GPU)")
    add_threads_argument(p)
    p.add_argument("--codec", default=None, help=f"{' | '.join(CODEC_CHOICES)} (default h264; vp9 for .webm; png for folders)")
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
    r = p.add_argument_group("resumable runs (long files)")
    r.add_argument("--resume", action="store_true",
                   help="write the output in parts kept across interruptions: run the same command "
                        "again to continue where it stopped (file inputs and outputs only)")
    r.add_argument("--segment", type=float, default=60.0, metavar="SECONDS",
                   help="length of each resumable part (default 60 s)")
    b = p.add_argument_group("batch mode (several inputs, or a folder of videos)")
    b.add_argument("--recursive", action="store_true", help="also take videos in subfolders")
    b.add_argument("--ext", help="output container, e.g. mp4 (default: the input's if it can hold "
                                 "the codec, else mp4)")
    b.add_argument("--overwrite", action="store_true",
                   help="redo files whose output exists (default: skip them, so re-runs resume; "
                        "also a joined --resume --shard output)")
    b.add_argument("--shard", metavar="I/N",
                   help="process every N-th file of the sorted list starting at I (0-based), "
                        "e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; with --resume and one "
                        "file: every N-th part of that file")
    b.add_argument("--claim", action="store_true",
                   help="share the files with other jobs running the same command (any number, "
                        "started at any time, on hosts sharing the output folder): each takes the "
                        "next file nobody has claimed, then looks again for files that arrived")


def main(args) -> int:
    from vderain.pipeline import derain_video, summary_line
    for name in ("window", "tile", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise VderainError(f"--{name} must be >= 1 (got {value})")
    if args.tile_overlap < 0:
        raise VderainError(f"--tile-overlap must be >= 0 (got {args.tile_overlap})")
    apply_threads(args.threads)
    from vderain import batch
    inputs = list(args.input)
    if args.claim and args.shard:
        raise VderainError("--claim and --shard split the files two ways; use one of them")
    one_file_shards = args.resume and args.shard and len(inputs) == 1 and os.path.isfile(inputs[0])
    if one_file_shards and not args.overwrite and os.path.exists(args.output):
        from vderain.io.segments import parts_dir
        if not os.path.exists(parts_dir(args.output)):
            # A job of the array started (or was requeued) after another joined the parts:
            # redoing its parts would leave a folder that nothing joins.
            print(f"vderain: shard {args.shard}: {args.output} exists and no parts are in progress: "
                  f"nothing to do (--overwrite redoes it)")
            return 0
    if not one_file_shards and batch.is_batch(inputs, args.recursive, args.shard, args.claim):
        return _main_batch(args, inputs)
    if args.ext:
        raise VderainError("--ext is for batch mode (several inputs or a folder of videos); "
                           "with one input, name the output file")
    if not args.recursive and os.path.isdir(inputs[0]) and not batch.folder_holds_images(inputs[0]) \
            and batch.folder_holds_videos(inputs[0], True):
        raise VderainError(f"{inputs[0]} holds no videos or frames at its top level; add --recursive "
                           f"to process the videos in its subfolders")
    try:
        summary = derain_video(
            inputs[0], args.output, method=args.method, device=args.device, window=args.window,
            tile=args.tile, tile_overlap=args.tile_overlap, batch=args.batch, crf=args.crf,
            preset=args.preset, codec=args.codec, side_by_side=args.side_by_side,
            rain_layer=args.rain_layer, start=parse_time(args.start), duration=parse_time(args.duration),
            fps=args.fps, backend=args.backend, audio=not args.no_audio, progress=not args.quiet,
            resume=args.resume, segment_seconds=args.segment, stabilise=args.stabilise,
            shard=batch.parse_shard(args.shard) if one_file_shards else None)
    except KeyboardInterrupt:
        if not args.resume:
            raise
        from vderain.io.segments import parts_dir
        print(f"vderain: interrupted; finished parts are kept in {parts_dir(args.output)}: "
              f"run the same command again to continue", file=sys.stderr)
        return 130
    for note in summary["notes"]:
        print(f"vderain: note: {note}", file=sys.stderr)
    problems = summary["decode_problems"]
    if problems:
        print(f"vderain: warning: damaged input, output has only the frames that decoded: {problems}",
              file=sys.stderr)
    parts = summary.get("parts")
    if parts and not parts["joined"]:
        print(f"vderain: shard {args.shard}: {summary['frames']} frames in {summary['seconds']:.1f} s; "
              f"{parts['done']} of {parts['total']} parts done in {parts['dir']}; the last shard to finish "
              f"joins them (or run again without --shard)")
        return 0
    print(f"vderain: {summary_line(summary)}")
    if summary["interrupted"]:
        return 130
    return EXIT_DAMAGED_INPUT if problems else 0


def _main_batch(args, inputs) -> int:
    from vderain import batch
    if args.rain_layer:
        raise VderainError("--rain-layer names one file; it is not available with several inputs")
    if len(inputs) == 1 and os.path.isfile(inputs[0]) and os.path.splitext(args.output)[1] \
            and not os.path.isdir(args.output):
        # one file with --shard or --claim: say why -o must be a folder ("several inputs" would not)
        hint = "; --resume --shard I/N spreads one file's parts over jobs" if args.shard else ""
        raise VderainError(f"--{'shard' if args.shard else 'claim'} with one input file is batch "
                           f"mode: -o must be a folder, not {args.output}{hint}")
    result = batch.run_batch(
        inputs, args.output, recursive=args.recursive, ext=args.ext, overwrite=args.overwrite,
        shard=batch.parse_shard(args.shard), claim=args.claim, method=args.method, device=args.device,
        window=args.window, stabilise=args.stabilise, codec=args.codec, progress=not args.quiet, tile=args.tile,
        tile_overlap=args.tile_overlap, batch=args.batch, crf=args.crf, preset=args.preset,
        side_by_side=args.side_by_side, start=parse_time(args.start),
        duration=parse_time(args.duration), fps=args.fps, backend=args.backend,
        audio=not args.no_audio, **({"resume": True, "segment_seconds": args.segment} if args.resume else {}))
    if result["damaged"]:
        print(f"vderain: warning: {result['damaged']} input(s) were damaged; their outputs hold only "
              f"the frames that decoded (see {result['log']})", file=sys.stderr)
    print(f"vderain: {batch.batch_summary_line(result, args.output)}")
    return batch.exit_status(result)
