"""Deraining methods share one interface so the pipeline does not care which runs.

A method is a callable on a batch of clips returning the derained centre frames:

    method(clips)  # clips: (B, T, 3, H, W) float32 RGB in [0, 1] -> (B, 3, H, W) in [0, 1]

`method.window` is T; `method.target` is the index inside the window of the frame
being restored (T // 2 for a centred window, T - 1 - lookahead for a causal one).
The pipeline builds the windows (reflecting at the edges), moves them to
`method.device`, and tiles large frames.
"""
from __future__ import annotations

import torch

from vderain import VderainError


class Method:
    name: str = "method"
    window: int = 1
    target: int = 0
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    # Some methods (flow-based) need the whole frame; the pipeline will not tile them.
    tileable: bool = True
    # the pipeline's temporal stabiliser after the method (vderain/methods/stabilise.py), or None
    stabiliser = None

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:  # (B,T,3,H,W) -> (B,3,H,W)
        raise NotImplementedError


class Identity(Method):
    """Returns the target frame unchanged: the floor every method is compared with."""
    name = "identity"

    def __init__(self, window: int = 1, device: str | torch.device = "cpu", causal: bool = False):
        self.window = window
        self.target = window - 1 if causal else window // 2
        self.device = torch.device(device)

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        return clips[:, self.target]


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise VderainError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VderainError("--device cuda was asked for, but no CUDA GPU is available")
    return device


METHODS = ("identity", "median", "fast", "quality", "auto")
# the shipped networks' twins by name, as `vderain bench` labels them (name -> (network, kwargs))
VARIANTS = {
    "fast-causal": ("fast", {"causal": True}),          # the live models (3 past frames + 1 ahead)
    "quality-causal": ("quality", {"causal": True}),
    "quality-framewise": ("quality", {"framewise": True}),
}


def get_method(name: str = "auto", device: str | torch.device | None = "auto",
               stabilise: bool | None = None, **kwargs) -> Method:
    """Build a method by name.

    `auto` is the shipped network: `quality` on a GPU, `fast` on a CPU.
    stabilise: run the temporal stabiliser on the method's output (None: on for the shipped
    networks with a centred window, off for the causal, frame-wise and non-network methods).
    Extra kwargs go to the method (e.g. window=, causal=, weights=).
    """
    dev = resolve_device(device)
    if name == "auto":
        name = "quality" if dev.type == "cuda" else "fast"
    if name in VARIANTS:
        name, extra = VARIANTS[name]
        kwargs = {**extra, **kwargs}
    if name == "identity":
        m = Identity(device=dev, **kwargs)
    elif name == "median":
        from vderain.methods.median import TemporalMedian
        m = TemporalMedian(device=dev, **kwargs)
    elif name in ("fast", "quality") or name.endswith(".pt"):
        from vderain.methods.network import NetworkMethod
        m = NetworkMethod.from_name(name, device=dev, **kwargs)
        if stabilise is None:  # a centred window: files, where waiting K more frames costs nothing
            stabilise = m.window > 1 and m.target == m.window // 2
    else:
        raise VderainError(f"unknown method '{name}' (choose from {', '.join(METHODS + tuple(VARIANTS))} "
                           f"or a .pt checkpoint)")
    if stabilise:
        from vderain.methods.stabilise import StabiliserConfig
        m.stabiliser = StabiliserConfig()
    return m
