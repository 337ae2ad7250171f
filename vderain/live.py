"""The real-time loop behind `vderain live`.

    source (capture thread, newest frame only) -> ring of the last `window` frames
        -> causal method -> sinks (window / file / stream), stats logged

The method must be causal: its target frame is the last of the window (no
look-ahead) or the one before it (one frame of look-ahead). With look-ahead 1
the output for frame t is produced when frame t+1 arrives, which adds one frame
interval (33 ms at 30 fps) to the latency; the measured latency includes it,
because it is taken from the capture time of the frame being shown.

Compute slower than the source never builds up lag: the source keeps only its
newest frame, so frames are dropped at the input (counted and logged), and the
ring then holds the frames that were actually processed.
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from vderain import VderainError, is_out_of_memory
from vderain.io.live import LatencyLog, LiveSource, Sink
from vderain.models.align import StreamAligner, stack_frames
from vderain.pipeline import to_chw_float, to_hwc_uint8

log = logging.getLogger("vderain.live")


# ---------------------------------------------------------------- method

def build_live_method(name: str = "auto", device: str | torch.device | None = "auto"):
    """The causal flavour of a method; refuses methods that need more than one future frame."""
    from vderain.methods import get_method
    try:
        method = get_method(name, device, causal=True)
    except TypeError as e:
        if "causal" not in str(e):
            raise
        # A method without a causal flavour (identity, median): usable only if its
        # default window already looks at most one frame ahead.
        method = get_method(name, device)
    check_causal(method)
    return method


def lookahead_of(method) -> int:
    return method.window - 1 - method.target


def check_causal(method) -> None:
    ahead = lookahead_of(method)
    if not 0 <= ahead <= 1:
        raise VderainError(f"method '{method.name}' looks {ahead} frames ahead; live needs a causal "
                           "method with at most one frame of look-ahead (fast, quality or identity)")


def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1] on device."""
    if device.type == "cpu":
        # `vderain run`'s converter (OpenCV/numpy, single-threaded): torch's threaded
        # elementwise ops cost far more CPU on a busy 2-core machine, and this runs every frame.
        return torch.from_numpy(to_chw_float(rgb))
    # GPU: upload the 4x smaller uint8 and convert there.
    return torch.from_numpy(rgb).to(device, non_blocking=True).permute(2, 0, 1).float().div_(255)


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded and saturated."""
    if image.device.type != "cpu":
        return image.clamp(0, 1).mul(255).add_(0.5).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    return to_hwc_uint8(image.detach().float().numpy())   # `vderain run`'s converter (OpenCV)


class CausalRunner:
    """Keeps the last `window` frames and runs the method as each new one arrives.

    push(frame) returns the finished output for the frame `lookahead` places back,
    as (output_rgb, input_rgb, capture_time), or None while the look-ahead fills.
    At the start the ring is padded by repeating the first frame.

    A network's windows go through an EdgeHold, as in `vderain run`: its haze gate is eroded in
    time (a one- or two-frame spike does not open it) and the windows padded at the start and
    flushed at the end take the last full window's gate and streak ceiling (at the start,
    before any full window, each keeps its own). From its third full window on, a stream then
    gives the same output as `vderain run --causal` without the stabiliser (on the first two,
    `vderain run` looks ahead for the gate; live cannot).
    """

    def __init__(self, method):
        check_causal(method)
        self.method = method
        self.lookahead = lookahead_of(method)
        self.ring: deque = deque(maxlen=method.window)   # (tensor (3,H,W), rgb, capture_time, seen)
        self.seen = 0        # frames pushed since the last reset; also each frame's key for the aligner
        self._aligner = StreamAligner(method.target) if getattr(method, "aligns", False) else None
        self._hold = self._new_hold()

    def _new_hold(self):
        if not getattr(self.method, "holds_edges", False):
            return None
        from vderain.methods.network import EdgeHold
        return EdgeHold(cap=getattr(self.method, "edge_cap", 1.0), gate_frames=getattr(self.method, "gate_frames", 3))

    def push(self, rgb: np.ndarray, capture_time: float):
        self.seen += 1
        item = (to_tensor(rgb, self.method.device), rgb, capture_time, self.seen)
        if not self.ring:
            self.ring.extend([item] * self.method.window)
        else:
            self.ring.append(item)
        if self.seen <= self.lookahead:
            return None
        return self._run()

    def flush(self):
        """At the end: outputs still waiting on look-ahead, padding with the last frame."""
        outs = []
        if self.ring:
            for _ in range(min(self.lookahead, self.seen)):
                self.ring.append(self.ring[-1])
                outs.append(self._run())
        return outs

    def reset(self):
        self.ring.clear()
        self.seen = 0
        if self._aligner is not None:   # keys restart with `seen`: so must the cache
            self._aligner = StreamAligner(self.method.target)
        self._hold = self._new_hold()   # a new stream: no gate history

    def _run(self):
        frames = [t for t, _, _, _ in self.ring]
        seen = [k for _, _, _, k in self.ring]
        held = {}
        if self._hold is not None:
            # a window of distinct frames is a full one, even across dropped input frames (they
            # are still consecutive in time); a padded one repeats a frame
            full = len(set(seen)) == len(seen)
            held = dict(keys=[list(range(seen[0], seen[0] + len(seen))) if full else seen], hold=self._hold)
        with torch.inference_mode():
            if self._aligner is not None:   # it writes the (1, T, 3, H, W) window itself: no stack first
                out = self.method(self._aligner([frames], [seen]), aligned=True, **held)[0]
            elif len(frames) == 1:
                out = self.method(frames[0][None, None], **held)[0]           # no copy
            else:
                out = self.method(stack_frames(frames)[None], **held)[0]      # (3, H, W)
        _, rgb, t, _ = self.ring[self.method.target]
        return to_rgb(out), rgb, t


# ---------------------------------------------------------------- stats

@dataclass
class LiveStats:
    source: str = ""
    method: str = ""
    device: str = ""
    size: tuple[int, int] | None = None
    source_fps: float | None = None
    lookahead: int = 0
    captured: int = 0            # frames the source delivered after warm-up
    #   captured = processed + dropped_input (+ 1 if a frame was still waiting when stopped)
    processed: int = 0           # frames the method ran on
    dropped_input: int = 0       # captured but never processed (the model was busy)
    warmup_dropped: int = 0      # dropped while the method warmed up (first calls are slow)
    seconds: float = 0.0
    # capture -> output ready (method done); per sink: capture -> displayed / written
    ready_latencies: LatencyLog = field(default_factory=LatencyLog, repr=False)
    sinks: dict = field(default_factory=dict)
    stopped_by: str = ""

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def drop_share(self) -> float:
        return self.dropped_input / self.captured if self.captured else 0.0

    def latencies(self) -> LatencyLog:
        """The headline latency: to the first sink's display/write, else to output ready."""
        for s in self.sinks.values():
            return s["latencies"]
        return self.ready_latencies

    def to_dict(self) -> dict:
        lat = self.latencies()
        return {
            "source": self.source, "method": self.method, "device": self.device,
            "size": list(self.size) if self.size else None, "source_fps": self.source_fps,
            "lookahead": self.lookahead, "seconds": round(self.seconds, 3),
            "captured": self.captured, "processed": self.processed,
            "dropped_input": self.dropped_input, "drop_share": round(self.drop_share, 4),
            "warmup_dropped": self.warmup_dropped, "fps": round(self.fps, 2),
            "latency_ms_p50": lat.percentile_ms(50), "latency_ms_p95": lat.percentile_ms(95),
            "ready_latency_ms_p50": self.ready_latencies.percentile_ms(50),
            "ready_latency_ms_p95": self.ready_latencies.percentile_ms(95),
            "sinks": {name: {"written": s["written"], "dropped": s["dropped"],
                             "latency_ms_p50": s["latencies"].percentile_ms(50),
                             "latency_ms_p95": s["latencies"].percentile_ms(95)}
                      for name, s in self.sinks.items()},
            "stopped_by": self.stopped_by,
        }

    def summary(self) -> str:
        d = self.to_dict()
        lat = (f"latency p50 {d['latency_ms_p50']} ms, p95 {d['latency_ms_p95']} ms"
               if d["latency_ms_p50"] is not None else "no latency measured")
        return (f"live: {self.processed} frames in {self.seconds:.1f} s = {self.fps:.1f} fps, "
                f"dropped {self.dropped_input}/{self.captured} at the input ({100 * self.drop_share:.1f}%), "
                f"{lat} [{self.method} on {self.device}, stopped by {self.stopped_by}]")

    def write_json(self, path: str) -> None:
        try:
            with open(path, "w") as f:
                json.dump(self.to_dict(), f, indent=2)
        except OSError as e:
            raise VderainError(f"cannot write stats to {path}: {e.strerror or e}") from None


# ---------------------------------------------------------------- drawing

def compose(out: np.ndarray, inp: np.ndarray, split: bool, text: str | None) -> np.ndarray:
    """The picture a sink shows: output, or input | output, with an optional text overlay."""
    import cv2
    if split:
        img = np.concatenate([inp, out], axis=1)
        w = inp.shape[1]
        for label, x in (("input", 8), ("derained", w + 8)):
            _text(cv2, img, label, x, img.shape[0] - 10)
    else:
        img = out
    if text:
        img = img.copy() if img is out else img
        _text(cv2, img, text, 8, 22)
    return img


def _text(cv2, img, text, x, y):
    # A dark outline keeps the text readable on any background.
    for color, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, thick, cv2.LINE_AA)


class _Rate:
    """Frames per second over the last second, for the overlay."""

    def __init__(self):
        self.times: deque = deque()

    def tick(self, now: float) -> float:
        self.times.append(now)
        while self.times and now - self.times[0] > 1.0:
            self.times.popleft()
        span = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
        return (len(self.times) - 1) / span if span > 0 else 0.0


# ---------------------------------------------------------------- loop

def run_live(source: LiveSource, method, sinks: list[Sink], *, max_frames: int | None = None,
             duration: float | None = None, max_height: int | None = None, log_every: float = 5.0,
             warmup: int = 2, first_frame_timeout: float = 30.0) -> LiveStats:
    """Run until the source ends, `max_frames` are processed, `duration` s pass, a sink asks
    to stop (q in the window) or Ctrl-C. Sinks are always closed (files finished) before
    returning; a source that failed for good is re-raised as VderainError after that.
    Frames taller than `max_height` are scaled down first (a 1080p camera on a CPU).
    """
    runner = CausalRunner(method)
    stats = LiveStats(source=getattr(source, "name", "source"), method=method.name,
                      device=str(method.device), lookahead=runner.lookahead)
    rate = _Rate()
    error: BaseException | None = None
    started = None
    try:
        source.start()
        first = _first_frame(source, first_frame_timeout)
        stats.size = _working_size(first.rgb.shape[1::-1], max_height)
        stats.source_fps = source.fps
        _warm_up(method, _resize(first.rgb, stats.size), warmup)
        stats.warmup_dropped = source.dropped
        # The first frame and a frame already waiting in the slot count as captured after warm-up.
        base_captured, base_dropped = source.captured - source.pending - 1, source.dropped
        # The first frame is processed too (every frame with --no-realtime). It waited through
        # the warm-up; restamp it so that start-up cost stays out of the latency figures, as the
        # frames dropped during warm-up stay out of the drop counts, but keep it a frame before
        # one captured meanwhile (else the file's first two frames were 1 ms apart).
        restamp = time.perf_counter()
        waiting = source.read(timeout=0) if source.pending else None
        if waiting is not None:
            restamp = min(restamp, waiting.time - 1 / (source.fps or 30.0))
        pending = [waiting] if waiting is not None else []
        pending.append(replace(first, time=max(first.time, restamp)))
        opened = first.opened
        started = last_log = time.perf_counter()
        interval = _Interval(source, sinks)
        log.info("live: %s %dx%d @ %s fps -> %s, method %s on %s (look-ahead %d)",
                 stats.source, *stats.size, f"{source.fps:.3g}" if source.fps else "?",
                 ", ".join(s.name for s in sinks) or "no sink", method.name, method.device,
                 runner.lookahead)
        stats.stopped_by = "end of source"
        while True:
            try:
                frame = pending.pop() if pending else source.read(timeout=0.5)
                if frame is None and source.ended:
                    source.read(0)   # raises the source's error if it ended after the read above
                    break
            except VderainError as e:   # the source is lost for good: still finish what it gave
                stats.stopped_by, error = "error", e
                break
            if frame is None:
                for sink in sinks:
                    sink.poll()
                if _should_stop(stats, sinks, max_frames, duration, started):
                    break
                continue
            if frame.opened != opened:
                # A reconnect: the frames before the gap are another stream, not this frame's past.
                for done in runner.flush():
                    _emit(sinks, done, stats, rate.tick(time.perf_counter()))
                runner.reset()
                opened = frame.opened
                log.info("live: source reopened; its windows start afresh")
            rgb = frame.rgb
            if rgb.shape[1::-1] != stats.size:
                rgb = _resize(rgb, stats.size)
            done = runner.push(rgb, frame.time)
            stats.processed += 1
            stats.dropped_input = source.dropped - base_dropped
            now = time.perf_counter()
            if done is not None:
                stats.ready_latencies.append(now - done[2])
                _emit(sinks, done, stats, rate.tick(now))
            if now - last_log >= log_every:
                log.info("live: %s", interval.line(now))
                last_log = now
            if _should_stop(stats, sinks, max_frames, duration, started):
                break
        for done in runner.flush():
            _emit(sinks, done, stats, rate.tick(time.perf_counter()))
    except KeyboardInterrupt:
        stats.stopped_by = "interrupt"
        if started is not None:   # the frame waiting for its look-ahead is finished too
            for done in runner.flush():
                _emit(sinks, done, stats, rate.tick(time.perf_counter()))
    except VderainError as e:
        stats.stopped_by = "error"
        error = e
    except (RuntimeError, MemoryError) as e:
        # (a 4K camera on a small GPU, or a laptop's CPU): one line, and what was recorded is kept
        if not is_out_of_memory(e):
            raise
        stats.stopped_by = "error"
        w, h = stats.size or (0, 0)
        where = "GPU " if isinstance(method.device, torch.device) and method.device.type == "cuda" else ""
        error = VderainError(f"out of {where}memory running {method.name} on {w}x{h} frames; "
                             f"try --max-height {max(16, h // 2 - h // 2 % 2)} or a smaller camera mode")
    finally:
        end = time.perf_counter()
        source.stop()
        for sink in sinks:
            try:
                sink.close()
            except VderainError as e:
                error = error or e
        if started is not None:
            stats.seconds = end - started
            stats.captured = source.captured - base_captured
            stats.dropped_input = source.dropped - base_dropped
        for sink in sinks:
            stats.sinks[_unique(stats.sinks, sink.name)] = {
                "latencies": sink.latencies, "written": sink.written, "dropped": sink.dropped}
    if started is not None:
        log.info("%s", stats.summary())
    if error is not None:
        error.stats = stats   # the caller may still want the numbers (--stats-json)
        raise error
    return stats


def _should_stop(stats: LiveStats, sinks, max_frames, duration, started) -> bool:
    if any(s.wants_stop for s in sinks):
        stats.stopped_by = "user (q)"
    elif max_frames is not None and stats.processed >= max_frames:
        stats.stopped_by = "max frames"
    elif duration is not None and time.perf_counter() - started >= duration:
        stats.stopped_by = "duration"
    else:
        return False
    return True


def _first_frame(source: LiveSource, timeout: float):
    """The first frame, waiting `timeout` for each try a live source may make: one that is not
    up yet (an IP camera booting) is retried as its `retries` say, not given up on at `timeout`."""
    retries = getattr(source, "retries", 0) if getattr(source, "live", False) else 0
    timeout = timeout * (1 + retries) + retries * getattr(source, "retry_delay", 0.0)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        frame = source.read(timeout=0.5)
        if frame is not None:
            return frame
        if source.ended:
            source.read(0)   # raises the source's error
            raise VderainError(f"{source.name} ended before delivering a frame")
    raise VderainError(f"no frame from {source.name} within {timeout:.0f} s")


def _warm_up(method, rgb: np.ndarray, calls: int) -> None:
    """First calls allocate memory and pick kernels: keep them out of the timing."""
    clip = to_tensor(rgb, method.device)[None, None].expand(1, method.window, -1, -1, -1)
    with torch.inference_mode():
        for _ in range(calls):
            to_rgb(method(clip.contiguous())[0])


def _emit(sinks, done, stats: LiveStats, fps_now: float) -> None:
    out, inp, capture_time = done
    lat = (time.perf_counter() - capture_time) * 1000
    seen = stats.processed + stats.dropped_input
    text = f"{fps_now:4.1f} fps  {lat:3.0f} ms  dropped {stats.dropped_input / max(seen, 1):.0%}"
    cache = {}
    for sink in sinks:
        key = (sink.split, sink.overlay)
        if key not in cache:
            cache[key] = compose(out, inp, sink.split, text if sink.overlay else None)
        sink.write(cache[key], capture_time)


class _Interval:
    """Stats since the last log line."""

    def __init__(self, source, sinks):
        self.source, self.sinks = source, sinks
        self.t = time.perf_counter()
        self.captured, self.dropped = source.captured, source.dropped
        self.lat_seen = [s.latencies.snapshot() for s in sinks]

    def line(self, now: float) -> str:
        captured = self.source.captured - self.captured
        dropped = self.source.dropped - self.dropped
        fps = (captured - dropped) / (now - self.t)
        parts = [f"{fps:.1f} fps, dropped {dropped}/{captured}"]
        for i, s in enumerate(self.sinks):
            seen = self.lat_seen[i]
            p50 = s.latencies.percentile_ms(50, since=seen)
            if p50 is not None:
                parts.append(f"{s.name} latency p50 {p50} ms p95 {s.latencies.percentile_ms(95, since=seen)} ms")
            self.lat_seen[i] = s.latencies.snapshot()
        self.t, self.captured, self.dropped = now, self.source.captured, self.source.dropped
        return ", ".join(parts)


def _working_size(size, max_height: int | None) -> tuple[int, int]:
    w, h = size
    if max_height is None or h <= max_height:
        return (w, h)
    # even sizes: the encoders want 4:2:0
    return (max(2, round(w * max_height / h / 2) * 2), max(2, max_height - max_height % 2))


def _resize(rgb: np.ndarray, size) -> np.ndarray:
    # --max-height, or a stream that reconnects at another size: the sinks keep their geometry.
    if rgb.shape[1::-1] == tuple(size):
        return rgb
    import cv2
    return cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA)


def _unique(existing: dict, name: str) -> str:
    n, key = 2, name
    while key in existing:
        key, n = f"{name}{n}", n + 1
    return key
