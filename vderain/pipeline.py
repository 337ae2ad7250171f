"""read -> windows -> method -> write, with decoding, compute and encoding overlapped.

    from vderain import derain_video, derain_frames
    summary = derain_video("rainy.mp4", "clean.mp4", method="median")
    clean = derain_frames(frames_uint8_NHWC, method="identity")

Three threads share the work: a decoder fills a small queue of frames, the caller's
thread builds reflected windows and runs the method in batches, and an encoder drains
a small queue of results. The queues are bounded, so memory does not depend on the
video's length, and a GPU is not left waiting for the CPU to decode or encode.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import queue
import threading
import time
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch

from vderain import VderainError, is_out_of_memory
from vderain.io import (Frame, VideoWriter, batched, check_output, iter_windows, open_video,
                        resolve_codec, tiled_apply)
from vderain.io.color import to_chw_float, to_hwc_uint8  # noqa: F401 (re-exported)
from vderain.io.tiling import check_tiling
from vderain.io.types import quarter_turns, turn
from vderain.io.reader import NETWORK_TIMEOUT_S, local_path
from vderain.methods import Method, get_method
from vderain.methods.network import NetworkMethod
from vderain.models.align import StreamAligner

_DONE = object()
_STABILISER_THREAD = False  # tests set it to run the GPU arrangement (a stabiliser thread) on a CPU


# ------------------------------------------------------------------ methods

def resolve_method(method="auto", device="auto", window: int | None = None,
                   stabilise: bool | None = None) -> Method:
    """A Method instance from a name (or pass an instance through unchanged).
    stabilise: the temporal stabiliser after the method (None: the method's default; for an
    instance, a shallow copy carries the choice, so the caller's object is left as it was)."""
    if not isinstance(method, str):
        if not all(hasattr(method, a) for a in ("window", "target")) or not callable(method):
            raise VderainError("method must be a name or a callable with .window and .target")
        if stabilise is not None and bool(stabilise) != (getattr(method, "stabiliser", None) is not None):
            from vderain.methods.stabilise import StabiliserConfig
            method = copy.copy(method)
            method.stabiliser = StabiliserConfig() if stabilise else None
        return method
    if window is not None and int(window) < 1:
        raise VderainError(f"window must be >= 1 frame (got {window})")
    kwargs = {} if window is None else {"window": int(window)}
    if stabilise is not None:
        kwargs["stabilise"] = bool(stabilise)
    try:
        return get_method(method, device, **kwargs)
    except TypeError as e:
        if window is not None and "window" in str(e):
            raise VderainError(f"method '{method}' has a fixed window; drop --window") from None
        raise


# ------------------------------------------------------------------ conversions

# to_chw_float / to_hwc_uint8 live in vderain.io.color (also used by live and the median)


def _check_tiling(tile, overlap) -> tuple[int, int] | None:
    """(th, tw), or None for no tiling (a falsy tile, None or 0); a bad tile size or overlap as a
    VderainError."""
    if not tile:
        return None
    try:
        return check_tiling(tile, overlap)
    except ValueError as e:
        raise VderainError(str(e)) from None


class _Runner:
    """Runs the method on batches of windows; returns (target Frame, output rgb, rain rgb | None)."""

    def __init__(self, method: Method, tile=None, tile_overlap: int = 32, rain: bool = False):
        self.method = method
        self.device = torch.device(getattr(method, "device", "cpu"))
        self.tile = _check_tiling(tile, tile_overlap)   # (th, tw) or None
        self.overlap = tile_overlap
        self.rain = rain
        self.notes: list[str] = []
        if tile and not getattr(method, "tileable", True):
            self.notes.append(f"method '{getattr(method, 'name', method)}' needs whole frames; --tile ignored")
            self.tile = None
        self._ring: np.ndarray | None = None       # (2L,3,H,W) float32 frames, CPU path (_clips_cpu)
        self._ring_index: list[int] = []           # frame index held by each of the first L slots
        self._on_device: dict[int, torch.Tensor] = {}  # frame index -> (H,W,3) uint8 on the device
        self._pinned: torch.Tensor | None = None   # (N,H,W,3) uint8 upload buffer, CUDA
        self._uploaded = None                      # CUDA event: the buffer's last upload is done
        # the method shifts neighbours onto the target (model.align): estimated here, on whole
        # frames (tiles then share one shift: no seams), with each frame's features kept across
        # the windows that share it
        self._aligner = StreamAligner(method.target) if getattr(method, "aligns", False) else None
        # a network takes its target frames apart (NetworkMethod(targets=)): on a GPU its window
        # comes in its own precision and R is subtracted from the fp32 targets; any other method
        # gets fp32 windows and takes its targets from them
        self._takes_targets = isinstance(method, NetworkMethod)
        # a clip's reflected end windows take the nearest full window's haze gate and streak
        # level (vderain.methods.network.EdgeHold); derain_iter batches the first full windows
        # with the start's reflected ones so that they are there to take
        self._edges = None
        if getattr(method, "holds_edges", False):
            from vderain.methods.network import EdgeHold
            self._edges = EdgeHold(cap=getattr(method, "edge_cap", 1.0), gate_frames=getattr(method, "gate_frames", 3))

    def __call__(self, group: list[tuple[list[Frame], Frame]]):
        if self.device.type == "cpu":
            clips, targets = self._clips_cpu(group)
        else:
            clips, targets = self._clips_device(group)
        with torch.inference_mode():
            keys = [[f.index for f in frames] for frames, _ in group]
            out = self._apply(clips, keys, targets if self._takes_targets else None)  # (B,3,H,W)
            rain = (targets - out).clamp_(0, 1) if self.rain else None
        results = []
        if self.device.type == "cpu":
            out_np = out.float().numpy()
            rain_np = rain.float().numpy() if rain is not None else None
            for b, (_, frame) in enumerate(group):
                results.append((frame, to_hwc_uint8(out_np[b]),
                                to_hwc_uint8(rain_np[b]) if rain_np is not None else None))
        else:
            out_u8 = _gpu_to_uint8(out)
            rain_u8 = _gpu_to_uint8(rain) if rain is not None else None
            for b, (_, frame) in enumerate(group):
                results.append((frame, out_u8[b], rain_u8[b] if rain_u8 is not None else None))
        return results

    def _clips_cpu(self, group):
        # A doubled frame ring: frame i is converted once into slot i % L and copied to slot
        # i % L + L, so a window of consecutive frames is the contiguous view ring[i0 % L : +T] and
        # costs no stacking (np.stack of T float frames was ~13 % of `fast` at 640x360; batches
        # still stack their windows). L = the group's index span (T + B - 1 for B full windows;
        # the start's mirrored windows add no frames): its distinct frames lie
        # within L consecutive indices, so their slots never collide, and the
        # views are consumed before the next group overwrites them.
        T = len(group[0][0])
        idx_all = [f.index for frames, _ in group for f in frames]
        need = max(T, max(idx_all) - min(idx_all) + 1)   # the group's span: mirrored windows add no frames
        shape = (3,) + group[0][1].rgb.shape[:2]
        # sized to each group's span, down as well as up: the widened first group spans T + 2
        # frames, and keeping that for the whole run held 4 more fp32 frames (~0.4 GB at 4K);
        # a resize costs one conversion of the group's frames
        if self._ring is None or self._ring.shape[1:] != shape or len(self._ring_index) != need:
            self._ring = np.empty((2 * need,) + shape, np.float32)
            self._ring_index = [-1] * need
        ring, L = self._ring, len(self._ring_index)
        for frames, _ in group:
            for f in frames:
                s = f.index % L
                if self._ring_index[s] != f.index:
                    to_chw_float(f.rgb, out=ring[s])
                    ring[s + L] = ring[s]
                    self._ring_index[s] = f.index

        def window(frames):
            idx = [f.index for f in frames]
            if idx == list(range(idx[0], idx[0] + T)):
                return ring[idx[0] % L: idx[0] % L + T]                       # a view
            return ring[[i % L for i in idx]]                                 # a reflected edge

        arr = window(group[0][0])[None] if len(group) == 1 else np.stack([window(f) for f, _ in group])
        targets = torch.from_numpy(np.stack([ring[t.index % L] for _, t in group])) if self.rain else None
        return torch.from_numpy(arr), targets  # (B,T,3,H,W), (B,3,H,W)

    def _clips_device(self, group):
        # Each frame crosses to the device once, as uint8 (4x less traffic than float), and stays
        # there while a later window can still use it: a window of T frames costs one upload per
        # output frame, not T. Clips are then assembled and converted on the device.
        new, seen = [], set()
        for frames, _ in group:
            for f in frames:
                if f.index not in self._on_device and f.index not in seen:
                    seen.add(f.index)
                    new.append(f)
        if new:
            uploaded = self._upload(new)                                      # (N,H,W,3) uint8
            for i, f in enumerate(new):
                self._on_device[f.index] = uploaded[i]
        x = torch.stack([torch.stack([self._on_device[f.index] for f in frames]) for frames, _ in group])
        window = len(group[0][0])
        last = group[-1][1].index
        for k in [k for k in self._on_device if k < last - window]:
            del self._on_device[k]  # no later window reaches back this far
        # The window in the method's own precision (bf16 for a network on a GPU: its first step
        # was this cast; k/255 rounds the same either way), the targets apart in fp32, which the
        # rain layer is subtracted from: one window in memory where there were three (fp32,
        # its aligned copy, the method's bf16 cast; 1080p batch 4 on an H200: 2.10 GiB peak)
        u8 = x.permute(0, 1, 4, 2, 3)                                         # (B,T,3,H,W)
        dtype = self.method.dtype if self._takes_targets else torch.float32
        clips = u8.to(dtype).div_(255)
        t = self.method.target
        targets = clips[:, t] if dtype == torch.float32 else u8[:, t].float().div_(255)
        return clips, targets

    def _upload(self, frames: list[Frame]) -> torch.Tensor:
        if self.device.type != "cuda":  # CPU (tests) or mps: no page-locked memory
            return torch.from_numpy(np.stack([f.rgb for f in frames])).to(self.device)
        # straight into a reused page-locked buffer (np.stack + pin_memory would copy twice)
        shape = frames[0].rgb.shape
        if self._pinned is None or tuple(self._pinned.shape[1:]) != shape or self._pinned.shape[0] < len(frames):
            self._pinned = torch.empty((max(len(frames), 8),) + shape, dtype=torch.uint8, pin_memory=True)
            self._uploaded = None
        if self._uploaded is not None:
            self._uploaded.synchronize()  # the last async upload may still read the buffer
        buf = self._pinned.numpy()
        for i, f in enumerate(frames):
            buf[i] = f.rgb
        x = self._pinned[:len(frames)].to(self.device, non_blocking=True)
        self._uploaded = torch.cuda.Event()
        self._uploaded.record(torch.cuda.current_stream(self.device))  # the stream that copies
        return x

    def tiles(self, h: int, w: int) -> bool:
        """Whether h x w frames are cut into tiles: one tile that holds the whole frame is no
        tiling, and such a run is the untiled one, EdgeHold included (it used to drop it)."""
        return self.tile is not None and (self.tile[0] < h or self.tile[1] < w)

    def _apply(self, clips, keys, targets=None):
        """targets: the target frames in fp32, for a network (None: it takes them from clips)."""
        kwargs = {} if targets is None else {"targets": targets}
        if self._aligner is not None:
            # in place on the device path, whose clips are this batch's own (CPU windows are
            # views of the shared frame ring)
            clips = self._aligner(clips, keys, inplace=self.device.type != "cpu")
            kwargs["aligned"] = True
        while True:
            tile = self.tile if self.tiles(*clips.shape[-2:]) else None
            try:
                # a network tiles itself (NetworkMethod: on its own grid, aligned and held on the
                # frame's levels); any other method is cut here
                if tile and not hasattr(self.method, "tile_grid"):
                    return tiled_apply(lambda part: self.method(part, **kwargs), clips, tile,
                                       self.overlap).to(clips.device)
                args = dict(kwargs, tile=tile, overlap=self.overlap) if tile else dict(kwargs)
                if self._edges is not None:
                    args.update(keys=keys, hold=self._edges)
                return self.method(clips, **args).to(clips.device)
            except (RuntimeError, MemoryError) as e:   # CUDA's OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(e):
                    raise
                # a GPU's, or a CPU's: torch's allocator raises a plain RuntimeError (4K on a laptop)
                gpu = self.device.type == "cuda"
                where, instead = ("GPU ", "try --batch 1 or --device cpu") if gpu else ("", "try --batch 1")
                if not getattr(self.method, "tileable", True):
                    raise VderainError(f"out of {where}memory and this method cannot be tiled; "
                                       f"{instead}") from None
                if gpu:
                    torch.cuda.empty_cache()
                h, w = clips.shape[-2:]
                new = min(1024, max(h, w) // 2) if not self.tile else max(self.tile) // 2
                if new < 128:
                    raise VderainError(f"out of {where}memory even with 128-pixel tiles; {instead}") from None
                self.tile = (new, new)
                self.notes.append(f"out of {where}memory: tiling frames in {new}-pixel tiles")


def _gpu_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) float on any device -> (B,H,W,3) uint8 numpy."""
    u8 = x.float().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def derain_iter(frames: Iterable[Frame], method: Method, batch: int = 1, tile=None,
                tile_overlap: int = 32, rain: bool = False, notes: list | None = None,
                stabilise: bool = True) -> Iterator[tuple[Frame, np.ndarray, np.ndarray | None]]:
    """Core loop: Frames in, (frame, derained rgb, rain rgb or None) out, in order, O(window) memory.
    stabilise=False: leave the method's stabiliser to the caller (derain_video runs it in its own
    thread; the rain layer then comes from the stabilised output, so none is made here)."""
    cfg = getattr(method, "stabiliser", None)
    runner = _Runner(method, tile, tile_overlap, rain and cfg is None)  # else: from the stabilised output
    try:
        # the first batch reaches the first full window (index `target`), whose levels the
        # start's reflected windows take, and the gate_frames - 1 after it, over which the haze
        # gate of the stream's first full windows is eroded (EdgeHold)
        first = 1
        if runner._edges is not None:
            # (where --tile really cuts the first frame, only the first full window: networks with
            # a haze gate are not tiled, and a tiled run keeps its first batch small)
            frames = iter(frames)
            head = next(frames, None)
            if head is not None:
                frames = itertools.chain([head], frames)
                tiled = runner.tiles(*head.rgb.shape[:2])
                first = method.target + (1 if tiled else runner._edges.gate_frames)
        results = (r for group in batched(iter_windows(frames, method.window, method.target), max(1, batch), first)
                   for r in runner(group))
        if cfg is None or not stabilise:
            yield from results
        else:
            yield from _stabilised(results, cfg, rain, runner.device, runner.notes)
    finally:
        if notes is not None:
            notes.extend(n for n in runner.notes if n not in notes)


def _stabilised(results, cfg, rain: bool, device: torch.device, notes: list):
    """The method's outputs through the temporal stabiliser (K x passes frames later, same order); its
    per-pixel work runs where the method does when that is a GPU."""
    from vderain.methods.stabilise import TemporalStabiliser
    st = TemporalStabiliser(cfg, device)

    def done(items):
        for frame, rgb in items:
            # the rain layer written beside the output is what was removed in the end
            r = np.clip(frame.rgb.astype(np.int16) - rgb, 0, 255).astype(np.uint8) if rain else None
            yield frame, rgb, r

    try:
        for frame, rgb, _ in results:
            yield from done(st.push(frame, frame.rgb, rgb))
        yield from done(st.flush())
    finally:
        notes.extend(n for n in st.notes if n not in notes)
        st.close()


def stabiliser_reach(method) -> int:
    """Frames the stabiliser looks ahead of (and behind) each output: 0 when it is off."""
    cfg = getattr(method, "stabiliser", None)
    return cfg.reach if cfg is not None else 0


def _stabiliser_setting(method) -> dict:
    """For a --resume manifest: nothing when off (manifests from before the stabiliser still
    match), else its whole configuration (other tolerances change the pixels too)."""
    cfg = getattr(method, "stabiliser", None)
    return {"stabilise": dataclasses.asdict(cfg)} if cfg is not None else {}


def _default_batch(method) -> int:
    return 4 if torch.device(getattr(method, "device", "cpu")).type == "cuda" else 1


# ------------------------------------------------------------------ arrays

def derain_frames(frames, method="auto", device="auto", window: int | None = None, tile=None,
                  tile_overlap: int = 32, batch: int | None = None, stabilise: bool | None = None) -> np.ndarray:
    """Derain a whole sequence held in memory: (N, H, W, 3) uint8 RGB -> same shape and dtype."""
    try:
        arr = np.asarray(frames)
    except ValueError as e:   # a list of frames of different sizes
        raise VderainError(f"frames must be (N, H, W, 3) RGB, all of one size: {e}") from None
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise VderainError(f"frames must be (N, H, W, 3) RGB, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise VderainError(f"frames must be uint8, got {arr.dtype}")
    if arr.shape[0] and not (arr.shape[1] and arr.shape[2]):
        raise VderainError(f"frames must be at least 1x1 pixels, got shape {arr.shape}")
    _check_tiling(tile, tile_overlap)
    m = resolve_method(method, device, window, stabilise)
    items = (Frame(rgb=np.ascontiguousarray(a), index=i, pts=None, time=i / 25.0) for i, a in enumerate(arr))
    out = np.empty(arr.shape, np.uint8)   # C order whatever the input's strides (a broadcast view's were odd)
    for frame, rgb, _ in derain_iter(items, m, batch or _default_batch(m), tile, tile_overlap):
        out[frame.index] = rgb
    return out


# ------------------------------------------------------------------ files

class _Worker(threading.Thread):
    """A thread whose exception is kept for the caller to re-raise."""

    def __init__(self, target, name):
        super().__init__(name=name, daemon=True)
        self._fn = target
        self.error: BaseException | None = None

    def run(self):
        try:
            self._fn()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.error = e


def _put(q: queue.Queue, item, *stops: threading.Event) -> bool:
    while not any(e.is_set() for e in stops):
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event, others=()):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _DONE
            for t in others:
                if t.error is not None:
                    raise t.error


def derain_video(input, output, method="auto", device="auto", window: int | None = None,
                 tile=None, tile_overlap: int = 32, batch: int | None = None, crf: int | None = None,
                 preset: str = "medium", codec: str | None = None, side_by_side: bool = False,
                 rain_layer=None, start: float | None = None, duration: float | None = None,
                 fps: float | None = None, backend: str = "pyav", audio: bool = True,
                 progress: bool = True, resume: bool = False, segment_seconds: float = 60.0,
                 shard: tuple[int, int] | None = None, stabilise: bool | None = None,
                 _keep: tuple[float, float] | None = None, _bar=None) -> dict:
    """Derain a video file, frame folder or stream URL into `output`.

    Returns a summary dict: frames, seconds, fps, output, rain_layer, method, device,
    notes (one-line remarks), decode_problems (None, or what was skipped in damaged input).
    Output appears only when complete (temp file + rename); on error nothing is left behind.
    resume: write the output as parts of `segment_seconds` (vderain/io/segments.py) that an
    interrupted run keeps and the same call continues from; `frames` then counts this run's.
    shard: (I, N) with resume: do only parts I, I+N, ...; the last shard to finish joins.
    stabilise: the temporal stabiliser after the method (None: the method's default, on for the
    shipped networks' centred windows).
    """
    t0 = time.perf_counter()
    input, output = local_path(os.fspath(input)), os.fspath(output)   # file:// URLs name local files
    rain_path = os.fspath(rain_layer) if rain_layer else None
    # Cheap checks first, so a typo fails before a model loads or a frame decodes.
    if not os.path.exists(input) and "://" not in input:
        raise VderainError(f"input not found: {input}")
    check_output(output, [input], codec)
    resolve_codec(codec, output)
    _check_tiling(tile, tile_overlap)
    if rain_path:
        check_output(rain_path, [input, output], codec)
        if os.path.realpath(rain_path) == os.path.realpath(output):
            raise VderainError("--rain-layer must differ from the output path")
        resolve_codec(codec, rain_path)
    if resume:
        _check_resumable(input, output, codec, rain_path, start, duration, segment_seconds)
    # The input next: a bad file should say so even when the method's weights are missing.
    reader = open_video(input, backend=backend, start=start, duration=duration, fps=fps)
    try:
        m = resolve_method(method, device, window, stabilise)
    except BaseException:
        reader.close()
        raise
    batch = batch or _default_batch(m)
    if resume:
        info = reader.info
        reader.close()
        return _derain_in_parts(
            input, output, m, info, t0, segment_seconds, shard, progress,
            dict(window=window, tile=tile, tile_overlap=tile_overlap, batch=batch, crf=crf, preset=preset,
                 codec=codec, side_by_side=side_by_side, backend=backend),
            audio_from=input if audio else None)
    notes: list[str] = []
    writers: list[VideoWriter] = []
    stop = threading.Event()       # everything stops (error, Ctrl-C on a file)
    stop_read = threading.Event()  # only decoding stops (Ctrl-C on a live stream: keep the rest)
    threads: list[_Worker] = []
    bar = None
    interrupted = False
    try:
        info = reader.info
        out_info = dataclasses.replace(info, width=info.width * 2) if side_by_side else info
        copy_from = input if (audio and not os.path.isdir(input) and "://" not in input) else None
        trim = start is not None or duration is not None
        writers.append(VideoWriter(output, out_info, codec=codec, crf=crf, preset=preset,
                                   audio_from=copy_from, trim_aux=trim, inputs=[input]))
        if rain_path:
            writers.append(VideoWriter(rain_path, info, codec=codec, crf=crf, preset=preset,
                                       inputs=[input, output]))
        total = info.n_frames
        if total is None and info.duration and not info.is_stream:
            total = int(round(info.duration * info.fps))
        bar = _bar if _bar is not None else _progress_bar(total, progress)

        q_in: queue.Queue = queue.Queue(maxsize=m.window + 2 * batch + 2)
        q_out: queue.Queue = queue.Queue(maxsize=2 * batch + 2)

        # The method sees the picture as it is shown: a phone clip is coded sideways with a
        # display rotation, and rain falls down the screen, not down the coded rows (a network
        # trained on falling rain would see it blow sideways). The writer gets the coded
        # orientation back and keeps the tag.
        up = quarter_turns(info.rotation)

        def decode():
            for frame in reader:
                if up:
                    frame = dataclasses.replace(frame, rgb=turn(frame.rgb, up))
                if not _put(q_in, frame, stop, stop_read):
                    return
            _put(q_in, _DONE, stop, stop_read)

        def encode():
            while True:
                item = _get(q_out, stop)
                if item is _DONE:
                    return
                frame, rgb, rain = item
                if _keep is not None and not _keep[0] <= frame.time < _keep[1]:
                    continue  # temporal context for a part's first/last frames: another part's frame
                if up:
                    frame = dataclasses.replace(frame, rgb=turn(frame.rgb, -up)) if side_by_side else frame
                    rgb = turn(rgb, -up)
                    rain = None if rain is None else turn(rain, -up)
                writers[0].write(np.concatenate([frame.rgb, rgb], axis=1) if side_by_side else rgb,
                                 frame.pts)
                if rain is not None:
                    writers[1].write(rain, frame.pts)
                bar.update(1)

        dec, enc = _Worker(decode, "vderain-decode"), _Worker(encode, "vderain-encode")
        threads = [dec, enc]
        dec.start()
        enc.start()

        def frames_from_queue():
            while True:
                item = _get(q_in, stop, others=(dec, enc))
                if item is _DONE:
                    return
                yield item

        # with the method on a GPU, its stabiliser is a stage of its own between the method and
        # the encoder: its flows (CPU threads) overlap the next frames' network. On a CPU it stays
        # inline: the two share the same cores (2 cores: 14.1-14.5 fps threaded, 15.5-16.5 inline)
        cfg = getattr(m, "stabiliser", None)
        threaded = cfg is not None and (torch.device(m.device).type == "cuda" or _STABILISER_THREAD)
        q_net, consumer = q_out, enc
        if threaded:
            q_net = queue.Queue(maxsize=2 * batch + 2)

            def stabilise():
                def outputs():
                    while True:
                        item = _get(q_net, stop)
                        if item is _DONE:
                            return
                        yield item
                for result in _stabilised(outputs(), cfg, bool(rain_path), torch.device(m.device), notes):
                    if not _put_checked(q_out, result, stop, enc):
                        return
                _put_checked(q_out, _DONE, stop, enc)

            consumer = _Worker(stabilise, "vderain-stabilise")
            threads.append(consumer)
            consumer.start()

        try:
            for result in derain_iter(frames_from_queue(), m, batch, tile, tile_overlap,
                                      rain=bool(rain_path), notes=notes, stabilise=not threaded):
                if not _put_checked(q_net, result, stop, consumer):
                    break
        except KeyboardInterrupt:
            if not info.is_stream:
                raise
            interrupted = True  # a live stream has no end: Ctrl-C means "stop and keep it"
            stop_read.set()
            dec.join(timeout=NETWORK_TIMEOUT_S + 5)  # a network read returns within its timeout
        _put_checked(q_net, _DONE, stop, consumer)  # waits while the stabiliser/encoder catch up
        if consumer is not enc:
            consumer.join()  # it passes the marker on, or has died with an error
            if consumer.error is not None:
                raise consumer.error  # (the encoder, never sent the marker, is stopped below)
        enc.join()  # it ends at the marker, or has already died with an error (raised below)
        for t in threads:
            if t.error is not None:
                raise t.error
        if writers[0].frames_written == 0:
            if _keep is not None:  # a part of the timeline with no frames (a VFR gap, the very end)
                for w in writers:
                    w.abort()
                return {"frames": 0, "first_pts": None, "notes": notes}
            if start:
                raise VderainError(f"nothing to process: --start {start:g}s is at or past the end of {input}")
            raise VderainError(f"no video frames could be decoded from {input}")
        for w in writers:
            w.close()
    except BaseException:
        stop.set()
        for t in threads:
            t.join(timeout=NETWORK_TIMEOUT_S + 5)
        for w in writers:
            w.abort()
        raise
    finally:
        if bar is not None and _bar is None:
            bar.close()
        if not any(t.is_alive() for t in threads[:1]):
            reader.close()  # never under a decoder thread still inside FFmpeg (stuck network read)

    seconds = time.perf_counter() - t0
    n = writers[0].frames_written
    for w in writers:
        notes.extend(x for x in w.notes if x not in notes)
    notes.extend(x for x in getattr(reader, "notes", ()) if x not in notes)
    return {
        "input": input, "output": writers[0].path, "rain_layer": writers[1].path if rain_path else None,
        "frames": n, "seconds": seconds, "fps": n / seconds if seconds > 0 else 0.0,
        "method": getattr(m, "name", type(m).__name__), "device": str(getattr(m, "device", "cpu")),
        "width": info.width, "height": info.height, "notes": notes,
        "decode_problems": reader.problems(), "interrupted": interrupted,
        "first_pts": writers[0].first_pts,
    }


def _derain_in_parts(input, output, m, info, t0, segment, shard, progress, opts, audio_from) -> dict:
    """--resume: derain the parts still missing (this shard's), then join them when all are done."""
    from vderain.io.segments import PartStore
    # what decides the pixels: the resolved method ("auto" is quality on a GPU, fast on a CPU)
    # and its weights' version, not what was typed
    meta = getattr(m, "meta", None) or {}
    settings = {"method": getattr(m, "name", type(m).__name__), "window": m.window, "target": m.target,
                **_stabiliser_setting(m),
                "weights": {k: meta[k] for k in ("name", "steps", "seconds") if k in meta} or None,
                **{k: opts[k] for k in ("tile", "tile_overlap", "side_by_side")}}
    duration = info.duration or (info.n_frames / info.fps if info.n_frames and info.fps else None)
    store = PartStore(output, input, duration, segment, os.path.splitext(output)[1], settings,
                      resolve_codec(opts["codec"], output), opts["crf"], opts["preset"])
    done = set(store.done())
    mine = [k for k in range(store.count) if shard is None or k % shard[1] == shard[0]]
    todo = [k for k in mine if k not in done]
    notes: list[str] = []
    if done and todo:
        notes.append(f"resuming: {len(done)} of {store.count} parts already done in {store.dir}")
    # past and future neighbours for the window at a part's edges (twice: VFR gaps, seek slack)
    context = 2 * (m.window + 1 + stabiliser_reach(m)) / max(info.fps, 1e-3)
    frames = 0
    todo_seconds = sum(min(store.span(k)[1], duration) - max(store.span(k)[0], 0.0) for k in todo)
    bar = _progress_bar(max(0, round(todo_seconds * info.fps)), progress)
    try:
        for k in todo:
            lo, hi = store.span(k)
            start = max(0.0, lo - context) if k > 0 else None
            length = None if hi == float("inf") else hi + context - (start or 0.0)
            s = derain_video(input, store.path(k), method=m, start=start, duration=length, audio=False,
                             progress=False, _keep=(lo, hi), _bar=bar, **opts)
            store.finish(k, s["frames"], s["first_pts"], info.time_base, s.get("decode_problems"))
            frames += s["frames"]
            notes.extend(x for x in s["notes"] if x not in notes)
    finally:
        bar.close()
    finished = len(store.done())
    problems = store.decode_problems()   # kept in the parts' records: a resumed run still reports them
    locked = finished == store.count and shard is not None and store.try_lock()
    joined = finished == store.count and (shard is None or locked)
    output_frames = None
    if joined:
        # every part's frames, this run's or an earlier run's or another shard's (read before the
        # join removes the folder): the summary says what the output holds, not only this run's work
        output_frames = sum((store.record(k) or {}).get("frames", 0) for k in range(store.count))
        store.join(audio_from, notes, locked=locked)
    seconds = time.perf_counter() - t0
    return {
        "input": input, "output": output if joined else None, "rain_layer": None, "frames": frames,
        "output_frames": output_frames,
        "seconds": seconds, "fps": frames / seconds if seconds > 0 else 0.0,
        "method": getattr(m, "name", type(m).__name__), "device": str(getattr(m, "device", "cpu")),
        "width": info.width * (2 if opts["side_by_side"] else 1), "height": info.height, "notes": notes,
        "decode_problems": "; ".join(problems) or None, "interrupted": False,
        "parts": {"done": finished, "total": store.count, "dir": store.dir, "joined": joined},
    }


def _check_resumable(input, output, codec, rain_path, start, duration, segment_seconds) -> None:
    if "://" in input or os.path.isdir(input):
        raise VderainError("--resume needs a video file input (not a stream or a frame folder)")
    if rain_path:
        raise VderainError("--resume cannot also write --rain-layer; run without one of them")
    if start is not None or duration is not None:
        raise VderainError("--resume works on whole files; it cannot be combined with --start/--duration")
    if not segment_seconds > 0:
        raise VderainError(f"--segment must be > 0 seconds (got {segment_seconds})")
    if resolve_codec(codec, output) == "png":  # folders (ending in '/', existing, no extension) too
        raise VderainError("--resume needs a video file output, not a folder of PNGs")


def _put_checked(q, item, stop, consumer) -> bool:
    """Put, waiting as long as `consumer` is alive: True once queued, False if `stop` is set.

    A slow consumer (4K, a slow preset, a busy CPU) can keep the queue full for longer than
    any one timeout, so this loops; the timeout only lets it notice a consumer that died
    (its error is re-raised) instead of blocking forever.
    """
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            if consumer.error is not None:
                raise consumer.error
            if not consumer.is_alive():
                raise RuntimeError("encoder thread stopped unexpectedly")
    return False


def _progress_bar(total, enabled):
    from tqdm import tqdm
    return tqdm(total=total, unit="frame", disable=not enabled, dynamic_ncols=True, leave=False,
                smoothing=0.1)


def summary_line(s: dict) -> str:
    """The one line the CLI prints at the end."""
    extra = f" + rain layer {s['rain_layer']}" if s.get("rain_layer") else ""
    held = s.get("output_frames")
    extra += f" ({held} frames in all, joined from its parts)" if held is not None and held != s["frames"] else ""
    return (f"{s['frames']} frames {s['width']}x{s['height']} in {s['seconds']:.1f} s "
            f"({s['fps']:.1f} fps) with {s['method']} on {s['device']} -> {s['output']}{extra}")
