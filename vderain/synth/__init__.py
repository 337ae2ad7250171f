"""Synthetic rain for training and benchmarking (pure torch, batched, CPU and GPU).

    from vderain.synth import RainSynth, CleanClipSource, PRESETS
    src = CleanClipSource(paths, frames=6, size=192, device="cuda")
    synth = RainSynth("train", device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    out = synth(src.sample(16, g), g, fps=30.0)   # rainy, clean, layer, masks, params
"""
from vderain.synth.presets import PRESETS, PRESET_NAMES, TRAIN_MIX
from vderain.synth.rain import RainSynth
from vderain.synth.source import CleanClipSource

__all__ = ["RainSynth", "CleanClipSource", "PRESETS", "PRESET_NAMES", "TRAIN_MIX"]
