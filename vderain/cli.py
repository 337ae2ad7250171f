"""`vderain run|live|bench|train|synth`: a thin layer over the Python API.

Each subcommand lives in `vderain/commands/<name>.py` and exposes
`add_arguments(parser)` and `main(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from vderain import VderainError, __version__, stop_signals_as_interrupt

COMMANDS = {
    "run": "derain a video file, frame folder or stream",
    "live": "derain a live camera or stream in real time",
    "bench": "score methods on paired/synthetic sequences",
    "train": "train a deraining network from a YAML config",
    "synth": "add synthetic rain to a clip (with its clean reference)",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given the command line, only its command's arguments are added (some
    commands import the writer and with it torch: ~2 s before `--version` or an argument error)."""
    parser = argparse.ArgumentParser(prog="vderain", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vderain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    # the top level takes only -h and --version: its first other word is the command
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if wanted is not None and name != wanted:
            continue
        try:
            module = importlib.import_module(f"vderain.commands.{name}")
        except ModuleNotFoundError:
            p.set_defaults(_module=None)
            continue
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def _ffmpeg_error() -> type:
    import av   # evaluated only when an exception is being handled
    return av.FFmpegError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args._module is None:
        print(f"vderain: error: '{args.command}' is not available in this build", file=sys.stderr)
        return 2
    stop_signals_as_interrupt()   # every command: SIGTERM cleans up as Ctrl-C does (exit 130)
    try:
        return int(args._module.main(args) or 0)
    except VderainError as e:
        print(f"vderain: error: {e}", file=sys.stderr)
        return 1
    except (OSError, _ffmpeg_error()) as e:
        # A full disk, a vanished mount, a file over a size limit, an FFmpeg failure: the
        # writers have already removed their temp files, so say what happened on one line.
        if os.environ.get("VDERAIN_DEBUG"):
            raise
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"vderain: error: {getattr(e, 'strerror', None) or e}{where} "
              f"(VDERAIN_DEBUG=1 shows where)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vderain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
