"""The shipped networks (`fast`, `quality`, and their causal / frame-wise variants) as methods."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from vderain import VderainError
from vderain.methods import Method

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def weights_path(name: str, causal: bool = False, framewise: bool = False) -> Path:
    if name.endswith(".pt"):
        return Path(name)
    suffix = "_framewise" if framewise else "_causal" if causal else ""
    return WEIGHTS_DIR / f"{name}{suffix}.pt"


class NetworkMethod(Method):
    """Runs an STRNet on (B,T,3,H,W) clips; bf16 autocast on CUDA, fp32 on CPU."""

    def __init__(self, model, device: torch.device, name: str = "network", half: bool | None = None, meta=None):
        self.device = torch.device(device)
        self.half = (self.device.type == "cuda") if half is None else half
        # bf16 weights and activations throughout on GPU: faster than autocast, and the
        # network's residual form keeps the rounding in R, not in the passed-through frame.
        self.dtype = torch.bfloat16 if self.half else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        # channels-last is ~2x faster for these convs on CPU (oneDNN) and on GPU (cuDNN)
        self.model = self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cpu":
            # except the patch conv: its input is the NCHW window, which oneDNN would first copy
            # whole to channels-last to match a channels-last weight (5.5 of fast's ~35 ms per
            # 640x360 frame); with an NCHW weight it reads the window as it lies (1.7 ms)
            self.model.fuse.weight.data = self.model.fuse.weight.data.contiguous()
        self.window = model.cfg.frames
        self.target = model.cfg.target
        # the haze estimate reads frame-wide statistics (and its gate the frame's rain): a tile
        # would get its own (tiled and whole-frame outputs agreed to only 26-34 dB)
        self.tileable = not getattr(model.cfg, "dehaze", 0) > 0
        # tiles start on the network's own grid: its strided patch conv and downsampling (and the
        # guard's and veil's cells) then fall where the whole frame's do (vderain.io.tiling)
        cfg = model.cfg
        self.tile_grid = math.lcm(model.multiple, cfg.guard if cfg.guard > 1 else 1, 8 * cfg.scale if cfg.veil > 0 else 1)
        # the pipeline runs a clip's reflected end windows through an EdgeHold (set False to not),
        # whose ceiling on their streak level is this times the nearest full window's (None: none)
        self.holds_edges = self.window > 1
        self.edge_cap: float | None = 1.0
        # ... and the haze gate opens only as far as it is open in this many consecutive frames
        self.gate_frames: int = 3
        self.name = name
        self.meta = meta or {}

    @classmethod
    def from_name(cls, name: str, device="cpu", causal: bool = False, framewise: bool = False,
                  weights: str | None = None, **kwargs) -> "NetworkMethod":
        from vderain.train.checkpoint import load_weights
        path = Path(weights) if weights else weights_path(name, causal, framewise)
        if not path.is_file():
            if name.endswith(".pt") or weights:
                raise VderainError(f"weights file not found: {path}")
            raise VderainError(f"weights for '{name}' not found at {path}; train them with "
                               f"`vderain train --config configs/{name}.yaml` or use --method median (live: identity)")
        model, meta = load_weights(path)
        label = name if name.endswith(".pt") else name + ("-framewise" if framewise else "-causal" if causal else "")
        return cls(model, device, name=label, meta=meta, **kwargs)

    @property
    def aligns(self) -> bool:
        """Whether the network shifts neighbours onto the target first (model.align)."""
        return bool(self.model.cfg.align) and self.window > 1

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor, aligned: bool = False, keys: list[list[int]] | None = None,
                 hold: "EdgeHold | None" = None, tile=None, overlap: int = 32,
                 targets: torch.Tensor | None = None) -> torch.Tensor:
        """clips (B,T,3,H,W) in [0,1] -> derained targets (B,3,H,W). aligned: the caller has
        shifted the neighbours already (the pipeline's StreamAligner), skip the model's own.
        keys, hold: each window's frame indices and the stream's EdgeHold (see there).
        tile, overlap: run the network on tiles (TiledLayer), the frame-wide levels taken whole.
        targets: the target frames (B,3,H,W) in fp32 when clips come in the network's lower
        precision (the pipeline's GPU path): the rain layer is subtracted from them."""
        clips = clips.to(self.device, non_blocking=True)
        x = clips.to(self.dtype)
        target = clips[:, self.target] if targets is None else targets.to(self.device, non_blocking=True)
        align = False if aligned else None
        model = self.model if not tile else TiledLayer(self.model, tile, overlap, self.tile_grid)
        if hold is None or keys is None:
            r = model.rain_layer(x, align=align)
        else:
            r = hold.run(model, x, align, keys, self.target)
        r = r.float()
        # subtract in fp32 from the original frame so bf16 only ever rounds the rain layer
        # (in place: r is this call's own fp32 copy, or the model's fp32 output)
        return r.neg_().add_(target).clamp_(0, 1)


class TiledLayer:
    """A network's rain_layer run on spatial tiles (vderain.io.tiling), with what is frame-wide
    taken on the whole frame, as in an untiled run.

    The EdgeHold compares an end window's streak level (mean |R|) with the nearest full
    window's; a tile's level is not its frame's, so tiled runs used to go without the hold, and
    fast-causal's end frames then differed from an untiled run's all over the frame (256x192
    synthetic clip, tile 128 / overlap 64: up to 20 levels 32 px or more from any cut, now 1).
    Here the tiles' rain layers are blended first and the level is the frame's; its ceiling is
    one scale per frame, so it costs no second pass.
    The haze step's gate and estimate would need one: networks with it are not tiled
    (NetworkMethod.tileable)."""

    def __init__(self, model, tile, overlap: int, grid: int = 1):
        if model.cfg.dehaze > 0:
            raise ValueError("a network with the haze step needs whole frames")
        self.model, self.cfg = model, model.cfg
        self.tile, self.overlap, self.grid = tile, overlap, grid

    def rain_layer(self, clip: torch.Tensor, align: bool | None = None, gate=None, return_gate: bool = False,
                   streak_cap: torch.Tensor | None = None):
        """STRNet.rain_layer's arguments and results (gate: no haze step, nothing to gate)."""
        from vderain.io.tiling import tiled_apply
        from vderain.models.align import align_window
        from vderain.models.strnet import cap_scale, streak_level
        if (self.cfg.align if align is None else align) and clip.shape[1] > 1:
            clip = align_window(clip, self.cfg.target)   # one shift for the frame, not one per tile
        r = tiled_apply(lambda part: self.model.rain_layer(part, align=False), clip, self.tile, self.overlap,
                        grid=self.grid)
        streak = streak_level(r)
        if streak_cap is not None:
            r = r * cap_scale(streak, streak_cap).to(r.dtype)
        return (r, None, streak) if return_gate else r


class EdgeHold:
    """One stream's reflected end windows, held to the nearest full window.

    A clip's first `target` windows and its last `window - 1 - target` are mirrored ((2, 1, [0],
    1, 2) and (1, [1], 0, 1, 2) for a centred 5-frame window), and an end frame has
    neighbours on one side only: where the scene drifts (clouds, light) it is the window's
    temporal extreme, so the streak network finds 3-7x more "rain" there than mid-clip
    (docs/bench_stage15.md). On real clips the shipped `fast` changed end frames by up to 1.94
    grey levels against 0.23 between them, and a faint-trained `fast` opened the haze gate on a
    rain-free cloudy sky and "dehazed" its end frames by 13 levels. Rain's intensity does not
    jump within a frame or two, so a reflected window takes, from the nearest full window (the
    first full one at the start, which the pipeline batches with it; the last one seen at the
    end):
      * its haze gate (model.dehaze_gate), and
      * a ceiling on the streak layer's mean |R|: `cap` times that window's (None: no ceiling).
    With no full window at all (a clip shorter than the window) each keeps its own.

    The same reasoning holds mid-clip: a faint-trained `fast` opened the gate on one frame of that
    rain-free sky and "dehazed" it by 2.5 levels, a flash (flicker 1.26x the input's). So a full
    window's gate is the least of its own and those of the `gate_frames` - 1 full windows before
    it (an erosion in time): mid-clip, a spike shorter than that never opens it; real rain opens
    it `gate_frames` - 1 frames late and closes it at once. A stream's first full windows have
    less history, so they look ahead instead: each of the first `gate_frames` full windows takes
    the least over all of them when the call that brings the first one holds them (`vderain run`
    batches them with the start's reflected windows, which then take that gate too). Live
    streams have no look-ahead: there the first full window uses its own gate."""

    def __init__(self, cap: float | None = 1.0, gate_frames: int = 3):
        self.cap = cap
        self.gate_frames = max(1, int(gate_frames))
        self.last: tuple[torch.Tensor | None, torch.Tensor] | None = None   # the last full window's (gate, streak)
        self._own: list[torch.Tensor] = []         # the last full windows' own gates, oldest first

    def _erode(self, own: torch.Tensor) -> torch.Tensor:
        """Own gates of consecutive full windows (B,1,1,1) -> the gates used: each the least over
        itself and the stream's gate_frames - 1 full windows before it (across calls); while the
        stream has seen fewer than gate_frames (self._own not yet full), the span is completed
        with the windows after it in this call (a one-frame spike on the first full window would
        otherwise open the gate for it and the reflected windows that take its gate)."""
        out = own.clone()
        g = self.gate_frames
        for b in range(len(own)):
            self._own = (self._own + [own[b]])[-g:]
            span = self._own + list(own[b + 1:b + 1 + g - len(self._own)])
            out[b] = torch.stack(span).amin(0)
        return out

    def _full(self, model, x: torch.Tensor, align):
        """Consecutive full windows (B,T,3,H,W) -> (R, the gates used or None, streak levels)."""
        ahead = min(len(x), self.gate_frames - 1 - len(self._own))   # windows here that need look-ahead
        if ahead <= 1 or not (model.cfg.dehaze > 0 and model.cfg.dehaze_gate > 0):   # no gate: nothing to erode
            return model.rain_layer(x, align=align, gate=self._erode, return_gate=True)
        # The stream's first full windows: their gates look ahead to the windows after them,
        # which are not computed yet. Batched together they would hold that many windows'
        # activations at once (`quality` at 1080p, CPU fp32, batch 1: peak RSS 2.67 GiB against
        # 1.90 GiB this way; 1.47 before the look-ahead), so each runs alone with its own gate, and again only where the
        # eroded gate differs; the windows after them are batched as usual.
        parts = [model.rain_layer(x[i:i + 1], align=align, return_gate=True) for i in range(ahead)]
        own = torch.cat([g for _, g, _ in parts])
        eroded = []

        def erode_after(o):                          # the batch after them, eroded with them
            eroded.append(self._erode(torch.cat([own, o])))
            return eroded[0][ahead:]
        if len(x) > ahead:
            r_rest, _, s_rest = model.rain_layer(x[ahead:], align=align, gate=erode_after, return_gate=True)
            used = eroded[0]
        else:
            used, r_rest, s_rest = self._erode(own), None, None
        r = [r_ if torch.equal(g, used[i:i + 1]) else model.rain_layer(x[i:i + 1], align=align, gate=used[i:i + 1])
             for i, (r_, g, _) in enumerate(parts)]
        streak = torch.cat([s for _, _, s in parts] + ([s_rest] if s_rest is not None else []))
        return torch.cat(r + ([r_rest] if r_rest is not None else [])), used, streak

    def run(self, model, x: torch.Tensor, align, keys: list[list[int]], target: int) -> torch.Tensor:
        full = [k == list(range(k[0], k[0] + len(k))) for k in keys]
        if all(full):
            r, gate, streak = self._full(model, x, align)
            self.last = (None if gate is None else gate[-1], streak[-1])
            return r
        rows = [i for i, f in enumerate(full) if f]
        edges = [i for i, f in enumerate(full) if not f]
        r = None
        if rows:
            # full windows are consecutive: a slice is a view, where x[rows] would copy them
            r_full, gate_full, streak_full = self._full(model, x[rows[0]:rows[-1] + 1], align)
            r = x.new_empty((len(keys),) + r_full.shape[1:], dtype=r_full.dtype)
            r[rows] = r_full
        held = torch.full((len(edges), 1, 1, 1), float("nan"), device=x.device)
        cap = held.clone()
        for n, i in enumerate(edges):
            t = keys[i][target]
            if rows:   # the full window in this batch whose target frame is nearest
                j = min(range(len(rows)), key=lambda j: abs(keys[rows[j]][target] - t))
                gate, streak = (None if gate_full is None else gate_full[j]), streak_full[j]
            elif self.last is not None:
                gate, streak = self.last
            else:
                continue
            if gate is not None:
                held[n] = gate
            cap[n] = streak
        if rows:
            self.last = (None if gate_full is None else gate_full[-1], streak_full[-1])
        if self.cap is not None:
            cap = cap * self.cap
        # one window at a time: the first batch is widened to reach the first full windows, and
        # a CPU run at batch 1 must not hold that many windows' activations at once (4K)
        for n, i in enumerate(edges):
            r_edge = model.rain_layer(x[i:i + 1], align=align, gate=held[n:n + 1],
                                      streak_cap=None if self.cap is None else cap[n:n + 1])
            if r is None:
                r = x.new_empty((len(keys),) + r_edge.shape[1:], dtype=r_edge.dtype)
            r[i] = r_edge[0]
        return r
