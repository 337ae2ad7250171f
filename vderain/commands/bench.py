"""`vderain bench`: score deraining methods on paired, synthetic or real sequences.

    vderain bench --suite synthetic --methods identity,median,fast,quality
    vderain bench --pairs DATA_DIR --methods identity,median --external other=OUT_DIR
    vderain bench --real rainy.mp4 --methods identity,median      # no ground truth: Ewarp, flicker

Writes table.md, results.csv, results.json, PNG plots and report.html to --out.
"""
from __future__ import annotations

import os
import sys
import time

from vderain import VderainError
from vderain.commands import add_threads_argument, apply_threads


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--suite", help="a built-in test suite by name: synthetic (the synthesiser's fixed "
                                     "cases), particles (rain from a second, independent renderer no model "
                                     "is trained on: 3D particles) or toy (two tiny procedural clips)")
    src.add_argument("--pairs", metavar="DATA_DIR", help="paired rainy/clean sequences (frame folders or "
                     "videos) laid out as rain/+gt/ trees, <name>_Rain beside <name>_GT, or <seq>/rain+gt")
    src.add_argument("--real", metavar="PATH", help="rainy footage without ground truth: a video, a frame "
                     "folder, or a folder of them (scores warping error and flicker only)")
    p.add_argument("--methods", default=None,
                   help="comma-separated: identity, median, fast, quality, quality-framewise, fast-causal, quality-causal, "
                        "fast-nostab, quality-nostab (without the stabiliser), or a .pt "
                        "checkpoint (default identity,median,fast,quality; ones without weights are skipped)")
    p.add_argument("--external", action="append", default=[], metavar="NAME=DIR",
                   help="score another method's outputs: DIR holds one frame folder or video per sequence, "
                        "named like the sequence (repeatable)")
    p.add_argument("--cases", default=None, help="comma-separated subset of the suite's cases")
    p.add_argument("--frames", type=int, default=None, help="suite: frames per case (default: the suite's)")
    p.add_argument("--height", type=int, default=None, help="suite: render height (default: the suite's)")
    p.add_argument("--width", type=int, default=None, help="suite: render width (default: the suite's)")
    p.add_argument("--max-frames", type=int, default=None, help="pairs/real: read at most this many frames")
    p.add_argument("--border", type=int, default=0, help="pixels cropped off every side before scoring")
    p.add_argument("--skip", type=int, default=0, help="frames dropped at each end before scoring")
    p.add_argument("--flow-preset", default="medium", choices=["ultrafast", "fast", "medium"],
                   help="DIS preset for the warping-error and flicker reference flows")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    add_threads_argument(p)
    p.add_argument("--out", default=None, help="report folder (default runs/bench-<date>-<time>)")
    p.add_argument("--save-outputs", action="store_true",
                   help="also write every method's output frames as PNG under OUT/outputs/<method>/<seq>/")
    p.add_argument("--strict", action="store_true",
                   help="exit non-zero when a method asked for is skipped or fails on any sequence")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args) -> int:
    from vderain import bench
    from vderain.metrics.report import terminal_table, write_report

    for name in ("frames", "height", "width", "max_frames"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise VderainError(f"--{name.replace('_', '-')} must be >= 1 (got {v})")
    if args.border < 0 or args.skip < 0:
        raise VderainError("--border and --skip must be >= 0")
    apply_threads(args.threads)

    methods = bench.parse_methods(args.methods, args.external)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    unscored: list[dict] = []
    if args.suite and args.max_frames:
        raise VderainError("--max-frames applies to --pairs and --real; a suite's length is --frames")
    if args.suite:
        cases = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else None
        names = bench.suite_names(args.suite)
        if cases:   # checked before any case is rendered and scored
            unknown = [c for c in cases if c not in names]
            if unknown:
                raise VderainError(f"unknown case(s) {', '.join(unknown)} in suite '{args.suite}' "
                                   f"(cases: {', '.join(names)})")
            if len(set(cases)) < len(cases):
                raise VderainError(f"--cases names a case twice: {args.cases}")
            names = cases
        sequences = bench.suite_sequences(args.suite, cases, args.frames, args.height, args.width)
        total = len(names)
    else:
        if args.cases or args.frames or args.height or args.width:
            raise VderainError("--cases/--frames/--height/--width only apply to --suite")
        unpaired: list[str] = []
        specs = bench.discover_pairs(args.pairs, unpaired) if args.pairs else bench.discover_real(args.real)
        for path in unpaired:
            unscored.append({"name": path, "error": "no partner on the other side (rainy/clean)"})
            log(f"vderain: warning: not scored, no rainy/clean partner: {path}")
        sequences = bench.pair_sequences(specs, args.max_frames, unscored, log)
        total = len(specs)

    out = args.out or os.path.join("runs", time.strftime("bench-%Y%m%d-%H%M%S"))
    if os.path.exists(out) and not os.path.isdir(out):
        raise VderainError(f"--out {out} exists and is not a folder")
    options = bench.BenchOptions(device=args.device, border=args.border, skip=args.skip,
                                 flow_preset=args.flow_preset, progress=not args.no_progress,
                                 save_outputs=os.path.join(out, "outputs") if args.save_outputs else None)
    t0 = time.perf_counter()
    result = bench.run_bench(sequences, methods, options, log=log, total=total, unscored=unscored)
    paths = write_report(result, out)
    print(terminal_table(result))
    overall = bench.summarize(result)               # every sequence, rain-free ones included
    n_ok = sum(1 for m in overall.values() if m["sequences"])
    bad = [(label, s["status"]) for label, s in overall.items() if s["status"] != "ok" or s["problems"]]
    print(f"bench: {len(result['sequences'])} sequence(s) x {len(methods)} method(s) ({n_ok} scored) in "
          f"{time.perf_counter() - t0:.1f} s; report: {paths['report.html']}")
    explicit = {m.label for m in methods if m.explicit}
    loud = [(label, status) for label, status in bad if label in explicit]
    if loud:  # the reasons were logged as they happened and are in the report
        print("vderain: warning: not scored on every sequence: " + ", ".join(label for label, _ in loud),
              file=sys.stderr)
    if not result["sequences"]:
        raise VderainError("no sequence could be scored (reasons above)")
    if unscored:
        print(f"vderain: warning: {len(unscored)} sequence(s) found but not scored: "
              + ", ".join(u["name"] for u in unscored[:5]) + (" ..." if len(unscored) > 5 else "")
              + " (reasons above and in the report)", file=sys.stderr)
    if args.strict and loud:
        raise VderainError(f"{len(loud)} method(s) asked for did not score every sequence (see the report)")
    if args.strict and unscored:
        raise VderainError(f"{len(unscored)} sequence(s) found but not scored (see the report)")
    return 0
