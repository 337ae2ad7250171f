"""Where training clips come from: clean footage (files/folders/globs) or procedural scenes."""
from __future__ import annotations

import glob

import torch

from vderain import VderainError
from vderain.train.config import DataConfig


class ProceduralSource:
    """Clean clips from the synthesiser's procedural scenes: for tests and smoke runs only
    (the benchmark suite renders held-out seeds from the same generator)."""

    def __init__(self, frames: int, size: int, device: torch.device, seed: int = 0):
        self.frames, self.size, self.device = frames, size, device
        self.seed = 10_000 + seed  # far from the suite's seeds

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        from vderain.synth.scenes import procedural_clip
        motions = ("pan", "static", "zoom", "forward")
        seeds = torch.randint(0, 1 << 30, (batch,), generator=generator, device=generator.device).tolist()
        clips = [procedural_clip(self.frames, self.size, self.size, seed=self.seed + s,
                                 motion=motions[s % len(motions)], stripes=bool(s % 2)) for s in seeds]
        return torch.stack(clips).to(self.device)


def expand_paths(patterns: list[str]) -> list[str]:
    paths = []
    for p in patterns:
        hits = sorted(glob.glob(p))
        if not hits:
            raise VderainError(f"training data not found: {p}")
        paths += hits
    return paths


class MixedSource:
    """Clean footage with a share of each batch drawn from procedural scenes: flat, saturated,
    synthetic surfaces no camera clip has. The haze estimator took their low contrast for haze
    (the `particles` suite, stage 12); seeing them with and without haze teaches it otherwise."""

    def __init__(self, footage, procedural: ProceduralSource, share: float):
        self.footage, self.procedural, self.share = footage, procedural, share
        self.last_fps = None

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        n = int(round(batch * self.share))
        parts = [self.footage.sample(batch - n, generator)] if batch - n > 0 else []
        fps = getattr(self.footage, "last_fps", None) if parts else None
        if n:
            parts.append(self.procedural.sample(n, generator).to(parts[0].device if parts else self.procedural.device))
        if fps is not None and n:
            fps = torch.cat([torch.as_tensor(fps, dtype=torch.float32).reshape(-1).to(parts[0].device),
                             torch.full((n,), 30.0, device=parts[0].device)])
        self.last_fps = fps
        return torch.cat(parts)


def make_source(cfg: DataConfig, frames: int, device: torch.device, seed: int):
    if not cfg.clean:
        return ProceduralSource(frames, cfg.crop, device, seed)
    from vderain.synth import CleanClipSource
    footage = CleanClipSource(expand_paths(cfg.clean), frames=frames, size=cfg.crop, device=device,
                              max_short_side=cfg.max_short_side, seed=seed)
    if not 0 <= cfg.procedural <= 1:
        raise VderainError(f"data.procedural must be a share in [0, 1], got {cfg.procedural}")
    if cfg.procedural > 0:
        return MixedSource(footage, ProceduralSource(frames, cfg.crop, device, seed), cfg.procedural)
    return footage
