"""Peak memory of one network forward pass, counted tensor by tensor on the CPU.

    python benchmarks/bench_live_tensors.py --models quality --size 1920x1080 --batch 1,2,4 --dtype bf16
    python benchmarks/bench_live_tensors.py --models quality --batch 1,4 --pipeline 12

--pipeline N: the whole GPU path of `vderain run` instead (vderain.pipeline.derain_iter over an N-frame
panning stream: frames uploaded as uint8, windows assembled and aligned on the device with the
GPU's sampler, the stream's first batch widened for the end-frame hold), every tensor counted
from the uploads on; the peak is what the GPU's allocator would hold for the run (the H200 run
of stage 25 peaked at 1.95 / 2.10 GiB at batch 1 / 4 by torch.cuda.max_memory_allocated).

A proxy for GPU memory where no GPU is at hand: every tensor the forward pass creates is
counted from its creation until it is freed (a TorchDispatchMode with weakref finalisers), so
the peak is what the model itself holds at once, beyond the input window (B,5,3,H,W) fp32 that
the pipeline hands it. bf16 runs the weights and activations in bf16 as the GPU path does.
Not counted: the CUDA caching allocator's rounding and cuDNN's workspaces. For the stage-10
code this counted 0.48 GiB at batch 1 and 3.83 at batch 8; one forward pass on an H200 (bf16,
docs/bench_stage10.md) peaked 0.54 and 4.0 GiB beyond its input: within ~12 %. Windows stacked
into a batch (`bench_model.py`, the pipeline) come on top. Prints the peak, the op at the peak
and the largest tensors held there.
"""
from __future__ import annotations

import argparse
import traceback
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vderain.methods.network import NetworkMethod


class LiveTensors(TorchDispatchMode):
    """Bytes of the storages created inside the mode and still alive; the peak and a snapshot."""

    def __init__(self, *outside: torch.Tensor):
        """outside: tensors made before the mode (the input, the weights): their storages and
        every view of them are not counted."""
        super().__init__()
        self.outside = {t.untyped_storage().data_ptr() for t in outside}
        self.live = self.peak = 0
        self.held: dict[int, tuple[int, str, str]] = {}      # data_ptr -> (bytes, op, source line)
        self.at_peak: dict = {}
        self.peak_op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            key, n = st.data_ptr(), st.nbytes()
            if n == 0 or key in self.held or key in self.outside:   # views, no-op casts, the input
                continue
            frames = [f for f in traceback.extract_stack()[:-1] if "/vderain/" in f.filename]
            where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"
            self.held[key] = (n, str(func), where)
            self.live += n
            weakref.finalize(st, self._free, key, n)
        if self.live > self.peak:
            self.peak, self.at_peak, self.peak_op = self.live, dict(self.held), str(func)
        return out

    def _free(self, key: int, n: int):
        self.held.pop(key, None)
        self.live -= n


def pipeline_peak(m: NetworkMethod, batch: int, h: int, w: int, frames: int) -> "LiveTensors":
    """derain_iter's device path on the CPU, counted: what `vderain run` holds on a GPU."""
    import functools
    from unittest import mock
    import numpy as np
    from vderain import pipeline
    from vderain.io.types import Frame
    from vderain.models import align
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (h + frames, w + 2 * frames, 3), dtype=np.uint8)
    stream = [Frame(np.ascontiguousarray(big[i:i + h, 2 * i:2 * i + w]), i, i, i / 30) for i in range(frames)]
    gpu = type("FakeDevice", (), {"type": "cuda"})()
    init = pipeline._Runner.__init__

    def fake_init(self, *a, **k):
        init(self, *a, **k)
        self.device = gpu                       # the device path (_clips_device), not the CPU ring

    def upload(self, new):                      # the uint8 frames as the GPU receives them
        return torch.from_numpy(np.stack([f.rgb for f in new])).clone()
    with mock.patch.object(pipeline._Runner, "__init__", fake_init), \
            mock.patch.object(pipeline._Runner, "_upload", upload), \
            mock.patch.object(align, "shift_frames", functools.partial(align.shift_frames, sampler="grid")), \
            LiveTensors(*m.model.parameters(), *m.model.buffers()) as track:
        for _ in pipeline.derain_iter(iter(stream), m, batch=batch):
            pass
    return track


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="quality")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--batch", default="1,2,4")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--top", type=int, default=6, help="largest tensors to list at the peak")
    ap.add_argument("--pipeline", type=int, default=0, metavar="N",
                    help="count `vderain run`'s GPU path over an N-frame panning stream instead")
    args = ap.parse_args()
    w, h = map(int, args.size.lower().split("x"))
    for name in args.models.split(","):
        m = NetworkMethod.from_name(name, device="cpu", half=args.dtype == "bf16")
        for b in map(int, args.batch.split(",")):
            if args.pipeline:
                track = pipeline_peak(m, b, h, w, args.pipeline)
                print(f"{name} {w}x{h} batch {b} {args.dtype} pipeline GPU path, {args.pipeline} frames "
                      f"(CPU, counted tensors): peak {track.peak / 2**30:.2f} GiB, at {track.peak_op}")
                for n, op, where in sorted(track.at_peak.values(), key=lambda v: -v[0])[:args.top]:
                    print(f"    {n / 2**20:7.1f} MiB  {op}  {where}")
                continue
            clips = torch.rand(b, m.window, 3, h, w)
            with LiveTensors(clips, *m.model.parameters(), *m.model.buffers()) as track:
                m(clips, aligned=True)
            print(f"{name} {w}x{h} batch {b} {args.dtype} (CPU, counted tensors): peak {track.peak / 2**30:.2f} GiB "
                  f"beyond the input window ({clips.nbytes / 2**30:.2f} GiB), at {track.peak_op}")
            for n, op, where in sorted(track.at_peak.values(), key=lambda v: -v[0])[:args.top]:
                print(f"    {n / 2**20:7.1f} MiB  {op}  {where}")


if __name__ == "__main__":
    main()
