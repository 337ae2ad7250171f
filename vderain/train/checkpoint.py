"""Checkpoints (resumable training state) and exported weights (what `vderain run` loads).

Both are plain dicts of tensors, numbers and strings so they load with
`torch.load(..., weights_only=True)`: a checkpoint can never execute code.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from vderain import VderainError
from vderain.models.strnet import STRNet, STRNetConfig

WEIGHTS_FORMAT = "vderain.strnet/1"


def atomic_save(obj, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def safe_load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise VderainError(f"weights not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle refusing a non-tensor object lands here too
        import pickle
        if isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e).lower().replace(" ", "_"):
            # torch's own text advises loading it with weights_only=False (code execution) in
            # terminal colour codes: vderain never does, so it must not pass that advice on
            raise VderainError(f"cannot load weights {path}: the safe loader (weights_only=True) refused it: "
                               "not a torch weights file, damaged, or holding objects other than "
                               "tensors and plain data") from None
        # an empty file's error has no text (it was an IndexError here) and junk's is a bare number
        msg = (str(e).splitlines() or [""])[0]
        raise VderainError(f"cannot load weights {path}: {type(e).__name__}{': ' + msg if msg else ''} "
                           "(not a torch weights file, or damaged?)") from None
    if not isinstance(blob, dict):
        raise VderainError(f"{path} is not a vderain weights file or checkpoint (a {type(blob).__name__})")
    return blob


def deployable_state(module: torch.nn.Module, half: bool = True) -> dict:
    """The module's state dict as shipped: detached CPU copies, floats in fp16 (half the file)."""
    return {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
            for k, v in module.state_dict().items()}


def export_weights(model: STRNet, path: str | Path, meta: dict | None = None, half: bool = True) -> None:
    """Write the deployable weights: config + (fp16) state dict + provenance."""
    state = deployable_state(model, half)
    atomic_save({"format": WEIGHTS_FORMAT, "config": model.cfg.to_dict(), "state_dict": state,
                 "meta": meta or {}}, path)


def read_weights(path: str | Path) -> tuple[STRNetConfig, dict, dict]:
    """(network config, fp32 state dict, meta) of a weights file or a training checkpoint.

    A checkpoint trained with an EMA gives its averaged weights, the ones the run will export:
    `vderain bench --methods runs/x/last.pt` then scores a run in flight as it would ship.
    """
    blob = safe_load(path)
    if blob.get("format") != WEIGHTS_FORMAT and "model" not in blob:
        raise VderainError(f"{path} is not a vderain weights file")
    state = blob.get("state_dict") or blob.get("ema") or blob["model"]
    try:
        cfg = STRNetConfig(**blob["config"]["model"] if "model" in blob["config"] else blob["config"])
    except (KeyError, TypeError) as e:
        raise VderainError(f"{path}: its network config is not one this version knows ({e})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return cfg, state, blob.get("meta", {})


def load_weights(path: str | Path) -> tuple[STRNet, dict]:
    """Build the network a weights file (or a training checkpoint) describes."""
    cfg, state, meta = read_weights(path)
    try:
        model = STRNet(cfg)
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as e:
        raise VderainError(f"{path}: its weights do not fit the network it describes "
                           f"({str(e).splitlines()[0]})") from None
    return model.eval(), meta
