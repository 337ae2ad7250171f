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
    under particle rain (the `particles` suite, stage 12); seeing them with and without haze
    teaches it otherwise. The rows are shuffled: the haze trainer gives streaks to the first half."""

    def __init__(self, footage, procedural: ProceduralSource, share: float, fps: float = 30.0):
        self.footage, self.procedural, self.share, self.fps = footage, procedural, share, fps
        self.last_fps = None

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        # stochastic rounding: a share of 0.25 gives batch 2 one scene every other batch, not none
        u = float(torch.rand((), generator=generator, device=generator.device))
        n = min(batch, int(batch * self.share + u))
        parts, fps = [], []
        if n < batch:
            parts.append(self.footage.sample(batch - n, generator))
            f = getattr(self.footage, "last_fps", None)
            fps.append(torch.full((batch - n,), self.fps) if f is None else torch.as_tensor(f, dtype=torch.float32).cpu())
        if n:
            parts.append(self.procedural.sample(n, generator))   # on the same device as the footage
            fps.append(torch.full((n,), self.fps))
        x = torch.cat(parts)
        order = torch.randperm(batch, generator=generator, device=generator.device).to(x.device)
        self.last_fps = torch.cat(fps).to(x.device)[order]
        return x[order]


def edge_order(frames: int, target: int) -> list[int]:
    """Frame order that turns a sampled clip of `frames` (= window + 1) consecutive frames into
    the two windows the pipeline builds at a video's start: order[:-1] is frame 0's window,
    order[1:] frame 1's, both mirrored at the edge as vderain.io.clips.iter_windows does.

    Why: an end frame has neighbours on one side only, so where the scene drifts it is its
    window's temporal extreme and looks transient, like rain; consecutive training clips never
    show that (docs/bench_stage15.md). The video's last frames are the same case in reverse.
    """
    from vderain.io.clips import reflect_index
    return [reflect_index(k - target, frames) for k in range(frames)]


def data_for(cfg) -> DataConfig:
    """The data a run reads: none for a zero-step export (a retarget, a new head attached), which
    must not need the training clips (they are not shipped)."""
    import dataclasses
    return dataclasses.replace(cfg.data, clean=[]) if cfg.optim.max_steps == 0 else cfg.data


def make_source(cfg: DataConfig, frames: int, device: torch.device, seed: int):
    if not 0 <= cfg.procedural <= 1:
        raise VderainError(f"data.procedural must be a share in [0, 1], got {cfg.procedural}")
    if not cfg.clean:
        return ProceduralSource(frames, cfg.crop, device, seed)
    from vderain.synth import CleanClipSource
    footage = CleanClipSource(expand_paths(cfg.clean), frames=frames, size=cfg.crop, device=device,
                              max_short_side=cfg.max_short_side, seed=seed)
    if cfg.procedural > 0:
        return MixedSource(footage, ProceduralSource(frames, cfg.crop, device, seed), cfg.procedural, cfg.fps)
    return footage
