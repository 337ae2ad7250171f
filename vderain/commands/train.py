"""`vderain train --config configs/X.yaml [--out DIR] [--set key=value ...]`"""
from __future__ import annotations


def add_arguments(p):
    p.add_argument("--config", required=True, help="YAML training config (see configs/)")
    p.add_argument("--out", default=None, help="output folder (default runs/<name>)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.time_limit_s=600 (repeatable)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.add_argument("--no-progress", action="store_true")


LOCK_NAME = ".vderain-train.lock"
LOCK_STALE_S = 600   # a training run touches its lock every minute


def main(args) -> int:
    import contextlib
    import os

    from vderain import VderainError
    from vderain.io.writer import Keepalive, create_owner_file
    from vderain.train.config import load_config
    from vderain.train.loop import train

    cfg = load_config(args.config, args.overrides)
    out = args.out or f"runs/{cfg.name}"
    lock = os.path.join(out, LOCK_NAME)
    held = contextlib.nullcontext()
    if int(os.environ.get("RANK", "0")) == 0:
        # two runs into one folder would interleave their logs and replace each other's checkpoint
        try:
            os.makedirs(out, exist_ok=True)
            taken = create_owner_file(lock, LOCK_STALE_S)
        except OSError as e:
            raise VderainError(f"cannot use output folder {out}: {e.strerror or e}") from None
        if not taken:
            raise VderainError(f"another run is training into {out} (its lock: {lock}); "
                               f"give another --out")
        held = Keepalive(lock, 60, release=True)
    with held:
        summary = train(cfg, out, device=args.device, resume=not args.no_resume,
                        progress=not args.no_progress)
    line = summary_line(cfg.name, summary, out)
    if line:
        print(line)
    return 0


def summary_line(name: str, summary: dict, out: str) -> str | None:
    """The run's one-line summary; None on a DDP rank other than 0 (every rank printed it, with
    its own validation-free numbers, for one run)."""
    if summary.get("steps") is None or not summary.get("main_process", True):
        return None
    extras = "".join(f" {k}={v:.2f}" for k, v in summary.items() if k.startswith("val_"))
    return f"trained {name}: {summary['steps']} steps in {summary['seconds']:.0f} s{extras} -> {out}/{name}.pt"
