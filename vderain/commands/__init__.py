"""The CLI's subcommands: each module adds its arguments and runs the Python API."""
from __future__ import annotations

from vderain import VderainError


def add_threads_argument(p) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the network and OpenCV (default: all cores); e.g. 2 per "
                        "job when several jobs share a machine")


def apply_threads(threads) -> None:
    """Cap torch's and OpenCV's CPU threads for the whole process (every pipeline thread)."""
    if threads is None:
        return
    if threads < 1:
        raise VderainError(f"--threads must be >= 1 (got {threads})")
    import cv2
    import torch
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
