"""Synthetic rain for training and benchmarking (pure torch, batched, CPU and GPU).

    from vderain.synth import RainSynth, CleanClipSource, PRESETS
    src = CleanClipSource(paths, frames=6, size=192, device="cuda")
    synth = RainSynth("train", device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    out = synth(src.sample(16, g), g, fps=30.0)   # rainy, clean, layer, masks, params
"""
from vderain.synth.presets import PRESETS, PRESET_NAMES, TRAIN_MIX

__all__ = ["RainSynth", "CleanClipSource", "PRESETS", "PRESET_NAMES", "TRAIN_MIX"]


def __getattr__(name: str):
    # the renderers need torch; the preset table does not, and the CLI builds its parser from it
    # before any command has imported torch
    if name == "RainSynth":
        from vderain.synth.rain import RainSynth
        return RainSynth
    if name == "CleanClipSource":
        from vderain.synth.source import CleanClipSource
        return CleanClipSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
