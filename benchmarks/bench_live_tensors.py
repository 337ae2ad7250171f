"""Peak memory of one network forward pass, counted tensor by tensor on the CPU.

    python benchmarks/bench_live_tensors.py --models quality --size 1920x1080 --batch 1,2,4 --dtype bf16

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="quality")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--batch", default="1,2,4")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--top", type=int, default=6, help="largest tensors to list at the peak")
    args = ap.parse_args()
    w, h = map(int, args.size.lower().split("x"))
    for name in args.models.split(","):
        m = NetworkMethod.from_name(name, device="cpu", half=args.dtype == "bf16")
        for b in map(int, args.batch.split(",")):
            clips = torch.rand(b, m.window, 3, h, w)
            with LiveTensors(clips, *m.model.parameters(), *m.model.buffers()) as track:
                m(clips, aligned=True)
            print(f"{name} {w}x{h} batch {b} {args.dtype} (CPU, counted tensors): peak {track.peak / 2**30:.2f} GiB "
                  f"beyond the input window ({clips.nbytes / 2**30:.2f} GiB), at {track.peak_op}")
            for n, op, where in sorted(track.at_peak.values(), key=lambda v: -v[0])[:args.top]:
                print(f"    {n / 2**20:7.1f} MiB  {op}  {where}")


if __name__ == "__main__":
    main()
