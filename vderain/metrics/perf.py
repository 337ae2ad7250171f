"""Speed and memory of a run: frames/s, peak RSS (and peak GPU memory on a GPU).

    with ResourceMeter(device) as meter:
        out = derain(frames)
    meter.result(len(frames))  # {'fps':..., 'seconds':..., 'peak_rss_mb':..., ...}

Peak RSS is sampled from /proc/self/statm by a background thread every few ms while the
block runs (getrusage's ru_maxrss is the peak of the whole process's life, useless for
comparing methods run one after another). Short spikes between samples can be missed;
the process-lifetime peak is reported beside it for that reason.
"""
from __future__ import annotations

import os
import resource
import sys
import threading
import time

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size of this process (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def lifetime_peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024   # Linux reports KiB


class ResourceMeter:
    def __init__(self, device: str | torch.device = "cpu", interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval
        self.seconds = 0.0
        self.base_rss = self.peak_rss = 0
        self.gpu_peak = None
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, rss_bytes())

    def __enter__(self) -> "ResourceMeter":
        self.base_rss = self.peak_rss = rss_bytes()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.gpu_peak = torch.cuda.max_memory_allocated(self.device)
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, rss_bytes())

    def result(self, frames: int, dtype: str = "float32") -> dict:
        mb = 1 / 2 ** 20
        return dict(
            frames=frames,
            seconds=self.seconds,
            fps=frames / self.seconds if self.seconds > 0 else float("nan"),
            peak_rss_mb=self.peak_rss * mb,
            rss_increase_mb=(self.peak_rss - self.base_rss) * mb,
            lifetime_peak_rss_mb=lifetime_peak_rss_bytes() * mb,
            gpu_peak_mb=None if self.gpu_peak is None else self.gpu_peak * mb,
            device=str(self.device),
            threads=torch.get_num_threads(),
            dtype=dtype,
        )
