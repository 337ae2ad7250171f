"""Temporal stabiliser: a motion-compensated median of the network's outputs, where rain was.

Why: what a network misses in heavy rain (a streak's faint residue, a guessed patch of
background behind a near drop) differs from frame to frame, so it shows as flicker (the suite's
warping error was 3x the clean video's, all of it in heavy rain). A neighbouring output, moved
onto the frame by optical flow, has the same background and a different residue: the
per-pixel median of the frame and its 2K moved neighbours keeps the first and drops the second.

Only where it is safe:
- only where the network removed rain: the local (high-pass) part of rain layer R = input -
  output, dilated a little. A frame where nothing was removed (rain-free, or rain-free areas of
  a rainy frame) comes out bit-identical;
- only from neighbours whose motion is right: each moved neighbour is compared with the frame
  over the surrounding *rain-free* pixels (where both should agree exactly: stripes moved by a
  wrong flow, a wire the flow could not follow, an occlusion, all disagree there); where a
  neighbourhood has too few rain-free pixels, over all of them with a looser tolerance;
  a neighbour that disagrees votes for the frame's own value;
- not from a neighbour at another exposure (a flash, a fade, a tunnel: the median of its
  brightness offsets past `tol_exposure`), nor where a neighbour does not show the pixel (moved
  from past its edge: a pan's entering strip), where the median is taken without its vote;
- not from a neighbour whose flow failed (a sudden jump: a dashcam's pothole jolt): misaligned
  everywhere, its offsets to the frame are as large as the frame's own texture (`tol_align`);
- and not by less than `deadband` levels: a median of moved neighbours also averages the camera's
  noise around a removed streak, a change the rain did not make.

Flow: OpenCV DIS (preset FAST) on the grey outputs (derained, so rain does not steer it),
computed on a copy at most `flow_side` pixels wide and scaled up.

Two passes: the median again over the first pass's results, with the same flows. Non-causal:
output t waits for frame t + K x passes (the file pipeline; live video does not use it).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from vderain.metrics.flow import dis_calc


@dataclass
class StabiliserConfig:
    radius: int = 2            # K: neighbours on each side (2K + 1 frames in the median)
    rain_low: float = 2.0      # local |R| (0..255 levels) below which a pixel is left alone ...
    rain_high: float = 6.0     # ... and above which it is fully stabilised (smoothstep between)
    tol_clean: float = 6.0     # a moved neighbour's mean |difference| on rain-free pixels (levels)
    tol_any: float = 20.0      # the same over all pixels, where too few are rain-free (30 took 17 % of an
                               # unrelated neighbour; 20 costs the suite's heavy rain 0.3 dB of 1.5 gained)
    min_clean: float = 0.05    # the fraction of rain-free pixels that makes the first test usable
    tol_exposure: float = 4.0  # a moved neighbour's median brightness offset from the frame (levels): past
                               # it another exposure (a flash, a fade, a tunnel), which the median would vote in
    tol_align: float = 0.8     # a moved neighbour's median |offset| / 1-px texture over the frame: its vote fades
                               # out between this and 1.3x. A failed flow (a sudden jump) scores 1.1-1.6, the
                               # suite's neighbours at most 0.85 (compressed heavy rain), aligned noise ~0.5
    check_radius: int = 7      # the comparison window is (2r+1)^2
    flow_side: int = 960       # flow on a copy at most this wide (DIS cost grows with pixels)
    deadband: float = 2.0      # a change under this many levels (the most of its channels) is not made, one
                               # under twice it only in part: a median of moved neighbours also "denoises" the
                               # camera noise around a streak, which counted as error at faint rain (stage 23:
                               # 4.2 / 7.6-level streaks, net removed 1.0 / 10.1 % -> 1.7 / 12.9 %; 3 levels:
                               # 2.2 / 15.0 % but the suite's Ewarp +5 %, SSIM -0.003)
    passes: int = 2            # the median again over the results (same flows); each adds K frames of delay

    @property
    def reach(self) -> int:
        """Frames each output depends on, ahead and behind (and waits for): K per pass."""
        return self.radius * self.passes


# the rain mask's high-pass: |R - its 15x15 local mean| keeps streaks and drops a smooth veil
HIGHPASS_RADIUS = 7
# the exposure and alignment checks look at every EXPOSURE_STRIDE-th pixel of each row and column
EXPOSURE_STRIDE = 4
# the alignment check's textured samples: |1-px step right| + |1-px step down| at least this (levels)
TEXTURE_MIN = 4
# ... and it needs at least this many of them (else the neighbour keeps its vote)
TEXTURE_COUNT = 64


def exposure_weight(offsets: np.ndarray, tol: float) -> float:
    """A moved neighbour's weight from its luma offsets to the frame (sampled over the whole frame,
    where it shows the frame): near 1 at the same exposure, near 0 past `tol` levels. The median of
    the offsets: rain residue falls on both frames alike, a moving object covers a minority."""
    if offsets.size == 0:
        return 1.0
    return exposure_gain(float(np.median(offsets)), tol)


def exposure_gain(median: float, tol: float) -> float:
    """exposure_weight from the median offset (the torch path takes the median on the device)."""
    z = median / tol
    z *= z
    return float(np.exp(-z * z * z))


def texture_samples(grey, stride: int = EXPOSURE_STRIDE):
    """|1-px step right| + |1-px step down| of a grey frame at every stride-th pixel (float32,
    ceil((h-1)/stride) x ceil((w-1)/stride): the samples grey[::stride, ::stride] that have both).
    grey: a uint8 NumPy frame, or the torch path's float32 tensor of the same whole numbers (the
    same samples, on its device)."""
    h, w = grey.shape
    a = grey[:h - 1:stride, :w - 1:stride]
    if isinstance(grey, np.ndarray):
        a = a.astype(np.int16)
    t = abs(grey[:h - 1:stride, 1:w:stride] - a) + abs(grey[1:h:stride, :w - 1:stride] - a)
    return t.astype(np.float32) if isinstance(t, np.ndarray) else t


def alignment_weight(offsets: np.ndarray, texture: np.ndarray, tol: float) -> float:
    """A moved neighbour's weight from how well it lines up with the frame: its luma offsets to the
    frame (less their median: the exposure check's business) against the frame's 1-px texture, on
    the textured samples where it shows the frame (1-D arrays). A flow that failed (a sudden jump:
    a dashcam's pothole jolt, 12 % of the width in one frame) leaves the neighbour misaligned
    everywhere, and the local checks, which allow 20 levels where rain covers nearly everything,
    let a smooth scene's misaligned copy vote: the median of |offset| / texture is then 1.1-1.6
    (uncorrelated texture), against at most 0.85 for the suite's neighbours and ~0.5 for aligned
    frames of pure noise (sub-pixel flow errors and rain residue give less). A moving object or
    residue covers a minority. 1 below tol, 0 past 1.3 x tol."""
    if offsets.size < TEXTURE_COUNT:
        return 1.0
    return alignment_gain(float(np.median(np.abs(offsets - np.median(offsets)) / texture)), tol)


def alignment_gain(a: float, tol: float) -> float:
    """alignment_weight from the median of |offset - median| / texture (`a`)."""
    return 1.0 - float(_smoothstep(np.float64(a), tol, 1.3 * tol))


def neighbour_weight(off: np.ndarray, inside, tex: np.ndarray, textured: np.ndarray, cfg) -> float:
    """A moved neighbour's weight over the whole frame: exposure_weight x alignment_weight, from
    its luma offsets to the frame at every EXPOSURE_STRIDE-th pixel (`off`), where it shows them
    (`inside`, bool like `off`; None: everywhere), and the frame's texture_samples (`tex`) and
    which of them are textured. The same for the OpenCV and the torch paths."""
    hg, wg = tex.shape
    use = textured if inside is None else textured & inside[:hg, :wg]
    gain = exposure_weight(off if inside is None else off[inside], cfg.tol_exposure)
    return gain * alignment_weight(off[:hg, :wg][use], tex[use], cfg.tol_align)


def neighbour_gain(n_inside: float, median: float, n_textured: float, a: float, cfg) -> float:
    """neighbour_weight from its statistics, which the torch path computes on the device
    (_stabilise_torch.neighbour_stats): how many offsets are inside and their median, how many of
    them are textured and the median of |offset - their median| / texture over those. The same
    float operations as neighbour_weight."""
    gain = 1.0 if n_inside == 0 else exposure_gain(median, cfg.tol_exposure)
    return gain * (1.0 if n_textured < TEXTURE_COUNT else alignment_gain(a, cfg.tol_align))


def _smoothstep(x, lo: float, hi: float):
    """0 below lo, 1 above hi, smooth between: NumPy arrays or torch tensors alike."""
    z = ((x - lo) * (1.0 / (hi - lo))).clip(0, 1)
    return z * z * (3 - 2 * z)


def flow_between(dis, a: np.ndarray, b: np.ndarray, flow_side: int, full_size: bool = True) -> np.ndarray:
    """DIS flow from grey a to grey b (a(x) ~ b(x + f(x))), computed at most flow_side wide;
    full_size: scaled back up to a's size (else left small, in full-size pixels)."""
    h, w = a.shape
    s = min(1.0, flow_side / max(h, w))
    if s >= 1.0:
        return dis_calc(dis, a, b)
    size = (max(16, round(w * s)), max(16, round(h * s)))
    f = dis_calc(dis, cv2.resize(a, size, interpolation=cv2.INTER_AREA),
                 cv2.resize(b, size, interpolation=cv2.INTER_AREA))
    f[..., 0] *= w / size[0]
    f[..., 1] *= h / size[1]
    return cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) if full_size else f


class _Item:
    __slots__ = ("seq", "out", "grey", "mask", "dev")

    def __init__(self, seq, out, grey, mask, dev=None):
        self.seq, self.out, self.grey, self.mask = seq, out, grey, mask
        self.dev = dev      # GPU path: (output (3,H,W) float 0..255, mask (H,W)) on the device


class TemporalStabiliser:
    """Streaming: push (key, input rgb, output rgb) in order; get (key, stabilised rgb) back,
    K x passes frames later; `flush()` returns the rest at the end. uint8 (H, W, 3) in and out.

    Passes: the median runs again over the first pass's results (the same flows, so a second
    pass costs the warps and checks, not the flows). Its neighbours are medians already, so a
    residue that survived in one window rarely survives the next: on the suite a second pass
    took warping error 2.07 -> 1.61 and added 0.2 dB (a third: 1.48, +0.05 dB)."""

    def __init__(self, cfg: StabiliserConfig | None = None, device=None):
        """device: where the method runs. A CUDA device gets the per-pixel work in torch there
        (flows stay on the CPU, one thread per neighbour: at 1080p the OpenCV path managed 2-3 fps
        on 2 threads, far below the GPU network); anything else (None, CPU) runs in OpenCV/NumPy."""
        self.cfg = cfg or StabiliserConfig()
        if self.cfg.radius < 1:
            raise ValueError("stabiliser radius must be >= 1")
        if self.cfg.passes < 1:
            raise ValueError("stabiliser passes must be >= 1")
        self._torch = None
        if device is not None and torch.device(device).type == "cuda":
            from vderain.methods import _stabilise_torch
            self._torch = _stabilise_torch.DevicePath(self.cfg, device)   # with its own flow objects
        else:
            self._new_flow_objects()
        self._passes = [_Pass() for _ in range(self.cfg.passes)]
        self._seq = 0               # frames pushed since the last flush: their ids in this stream
        self._keys: dict = {}       # id -> (caller's key, the input's grey) until the frame leaves
        self._flows: dict = {}      # (id, neighbour id) -> flow, shared by the passes
        self._shape = None
        self._grids: dict = {}      # (h, w, stride) -> the whole frame's sampling grid of _warp

    @property
    def delay(self) -> int:
        return self.cfg.reach

    @property
    def notes(self) -> list[str]:
        if self._torch is not None and self._torch.out_of_memory:
            return ["out of GPU memory for the stabiliser: some frames were left as the network made them"]
        return []

    def close(self) -> None:
        """Let go of the flow threads and device memory (the object is done after this)."""
        for p in self._passes:
            p.buf.clear()
        self._flows.clear()
        self._keys.clear()
        if self._torch is not None:
            self._torch.close()

    # DIS needs frames of at least 12 px (its smallest pyramid level); smaller ones pass unchanged
    MIN_SIDE = 16

    def push(self, key, rgb_in: np.ndarray, rgb_out: np.ndarray) -> list:
        done = []
        if self._shape is not None and self._shape != rgb_out.shape:
            done = self.flush()         # a new size (a stream that changed resolution): a new scene
        self._shape = rgb_out.shape
        seq, self._seq = self._seq, self._seq + 1
        grey_in = cv2.cvtColor(np.ascontiguousarray(rgb_in), cv2.COLOR_RGB2GRAY)
        self._keys[seq] = (key, grey_in)
        return done + self._run(0, [(seq, rgb_out, None)], flush=False)

    def flush(self) -> list:
        """The rest of the stream; what is pushed next starts a new one, as a fresh stabiliser would."""
        done = self._run(0, [], flush=True)
        self._seq, self._shape = 0, None
        self._keys.clear()
        self._flows.clear()
        self._new_flow_objects()
        return done

    def _new_flow_objects(self) -> None:
        # DIS keeps state from its last images (their size, at least): a new stream gets new ones,
        # or its output would differ from a fresh stabiliser's (a resumed part's, say)
        if self._torch is not None:
            self._torch.new_flows()
        else:
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    # ------------------------------------------------------------------

    def _run(self, p: int, frames: list, flush: bool) -> list:
        """Frames (id, rgb, its _Item when a pass left it unchanged, else None) into pass p; what
        comes out of the last pass, as (key, rgb)."""
        K = self.cfg.radius
        ps = self._passes[p]
        finished = []

        def finish():
            it = ps.buf[ps.next]
            rgb = self._finish(ps.buf, ps.next)
            # unchanged (nothing removed, no majority, GPU full): its grey and mask stand as they are
            finished.append((it.seq, rgb, it if rgb is it.out else None))
            ps.next += 1

        for seq, rgb, item in frames:
            ps.buf.append(item or self._item(seq, rgb))
            while ps.next < len(ps.buf) and len(ps.buf) - 1 - ps.next >= K:
                finish()
            while ps.next > K:          # keep K finished frames as past neighbours
                ps.buf.popleft()
                ps.next -= 1
        if flush:
            while ps.next < len(ps.buf):
                finish()
            ps.buf.clear()
            ps.next = 0
        if p + 1 < len(self._passes):
            return self._run(p + 1, finished, flush)
        done = []
        for seq, rgb, _ in finished:
            done.append((self._keys.pop(seq)[0], rgb))
            for j in range(seq - K, seq + K + 1):
                self._flows.pop((seq, j), None)
        return done

    def _item(self, seq, rgb_out) -> _Item:
        c = self.cfg
        out = np.ascontiguousarray(rgb_out)
        grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
        if min(out.shape[:2]) < self.MIN_SIDE:
            return _Item(seq, out, grey, None)
        grey_in = self._keys[seq][1]
        if self._torch is not None:
            dev = self._torch.prepare(out, grey, grey_in)
            return _Item(seq, out, grey, True if dev and dev[1] is not None else None, dev)
        r = grey_in.astype(np.float32) - grey                                           # R (luma)
        k = 2 * HIGHPASS_RADIUS + 1
        local = np.abs(r - cv2.blur(r, (k, k)))                                         # streaks, not haze
        mask = _smoothstep(cv2.dilate(local, np.ones((3, 3), np.uint8)), c.rain_low, c.rain_high)
        return _Item(seq, out, grey, mask if mask.max() > 0 else None)

    def _flows_for(self, it: _Item, nbs: list) -> list:
        """Flows from `it` to each neighbour, at most flow_side wide (full-size pixel units): the
        first pass computes them, later passes reuse them (the outputs moved alike)."""
        todo = [nb for nb in nbs if (it.seq, nb.seq) not in self._flows]
        if self._torch is not None:
            new = self._torch.flows(it.grey, [nb.grey for nb in todo])
        else:
            new = [flow_between(self._dis, it.grey, nb.grey, self.cfg.flow_side, full_size=False) for nb in todo]
        for nb, f in zip(todo, new):
            self._flows[(it.seq, nb.seq)] = f
        return [self._flows[(it.seq, nb.seq)] for nb in nbs]

    def _warp(self, img: np.ndarray, flow: np.ndarray, origin=(0, 0), stride: int = 1):
        """img sampled at x + flow(x) for the pixels x of a box at `origin` (flow: the box's; with a
        stride, at every stride-th pixel of the frame: origin a multiple of it), and where that
        lands inside img (bool; None when everywhere): outside, the border-replicated sample is no
        match."""
        h, w = flow.shape[:2]
        ih, iw = img.shape[:2]
        key = (ih, iw, stride)
        if key not in self._grids:
            if len(self._grids) >= 4:       # the frame's grid and the sampled frame's: a new size
                self._grids.clear()
            # (x, y) of every stride-th pixel of the whole frame: a box's grid is a slice of it, so a
            # box that moves from frame to frame needs no new one (whole numbers: the same floats)
            gx, gy = np.meshgrid(np.arange(0, -(-iw // stride) * stride, stride, dtype=np.float32),
                                 np.arange(0, -(-ih // stride) * stride, stride, dtype=np.float32))
            self._grids[key] = np.dstack([gx, gy])
        oy, ox = origin[1] // stride, origin[0] // stride
        # one two-channel map (x, y interleaved, as remap takes it): one add instead of two strided
        # ones and a merge for inRange; remap gives the same pixels as from two planar maps
        xy = self._grids[key][oy:oy + h, ox:ox + w] + flow
        within = cv2.inRange(xy, (-0.5, -0.5), (iw - 0.5, ih - 0.5))
        inside = None if cv2.countNonZero(within) == h * w else within > 0   # None: the common case
        return cv2.remap(img, xy, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), inside

    def _finish(self, buf, i: int):
        """Frame i of a pass's buffer, stabilised (rgb; its own `out` when left unchanged)."""
        c = self.cfg
        it = buf[i]
        if it.mask is None:                      # nothing removed here: nothing to stabilise
            return it.out
        window = range(max(0, i - c.radius), min(len(buf), i + c.radius + 1))
        if self._torch is not None:
            nbs = [buf[j] for j in window if j != i and buf[j].dev is not None]
            if len(nbs) < 2:
                return it.out
            return self._torch.finish(it, nbs, self._flows_for(it, nbs))  # the network's output if the GPU is full
        nbs = [buf[j] for j in window if j != i]
        if len(nbs) < 2:
            return it.out                # a lone frame (or pair): no majority to take
        # everything below is per pixel and zero where the mask is: work on the mask's bounding
        # box (plus the check window, so the box filters see what they would on the whole frame)
        rows, cols = np.flatnonzero(it.mask.any(1)), np.flatnonzero(it.mask.any(0))
        pad = c.check_radius + 1
        y0, y1 = max(0, rows[0] - pad), min(it.mask.shape[0], rows[-1] + pad + 1)
        x0, x1 = max(0, cols[0] - pad), min(it.mask.shape[1], cols[-1] + pad + 1)
        box = (slice(y0, y1), slice(x0, x1))
        out = it.out[box]
        o = out.astype(np.float32)
        m = it.mask[box]
        clean_w = 1.0 - m
        k = (2 * c.check_radius + 1,) * 2
        den = cv2.blur(clean_w, k)
        enough = den > c.min_clean
        # which of the two tolerances applies is the same for every neighbour: where one of them
        # applies everywhere (the common case) the other's blur is not made
        tests = "clean" if enough.all() else "any" if not enough.any() else "both"
        loose = ~enough
        den = np.maximum(den, 1e-6)
        votes, absent = [o], []
        h, w = it.grey.shape
        S = EXPOSURE_STRIDE
        grey_s = it.grey[::S, ::S].astype(np.float32)
        tex = texture_samples(it.grey, S)
        textured = tex >= TEXTURE_MIN
        for nb, flow in zip(nbs, self._flows_for(it, nbs)):
            if flow.shape[:2] != (h, w):
                flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
            # another exposure (a flash, a fade, a step): within the all-pixel tolerance, and the
            # median would vote it in wherever the neighbours at it are the majority; and a failed
            # flow (a sudden jump): misaligned everywhere
            moved_s, inside_s = self._warp(nb.grey, flow[::S, ::S], (0, 0), S)
            gain = neighbour_weight(moved_s - grey_s, inside_s, tex, textured, c)
            moved, inside = self._warp(nb.out, flow[box], (x0, y0))                          # uint8
            d = cv2.cvtColor(cv2.absdiff(moved, out), cv2.COLOR_RGB2GRAY).astype(np.float32)
            # how far the moved neighbour is from the frame, in tolerances: over the rain-free
            # pixels around, or over all of them where too few are rain-free (in place, the same
            # float32 operations in the same order as out of place: the same numbers)
            if tests != "any":
                far = cv2.blur(d * clean_w, k)
                far /= den
                far *= 1 / c.tol_clean
            if tests != "clean":
                far_any = cv2.blur(d, k)
                far_any *= 1 / c.tol_any
                if tests == "any":
                    far = far_any
                else:
                    np.copyto(far, far_any, where=loose)
            # near 1 inside the tolerance, near 0 past it: exp(-far^2) let a neighbour 1.5 tolerances
            # off in at a tenth of its difference, and a second pass doubled that leak
            far *= far
            ok = far * far
            ok *= far
            np.negative(ok, out=ok)
            np.exp(ok, out=ok)
            if gain < 1:
                ok *= np.float32(gain)
            # o + ok (moved - o), in place, with ok as three channels (a broadcast over the last
            # axis of 3 is several times slower)
            vote = moved.astype(np.float32)
            vote -= o
            vote *= cv2.merge([ok, ok, ok])
            vote += o
            votes.append(vote)
            absent.append(None if inside is None else ~inside)
        med = _median(votes)
        _abstain(med, votes, absent, o)
        res = it.out.copy()
        if c.deadband > 0:   # noise-sized changes are not made
            # the most of the channels: NumPy's max over a last axis of 3 was 15 % of the stabiliser
            change = cv2.absdiff(med, o)
            m = m * _smoothstep(np.maximum(np.maximum(change[..., 0], change[..., 1]), change[..., 2]),
                                c.deadband, 2 * c.deadband)
        # o + m (med - o) + 0.5, in place
        med -= o
        med *= cv2.merge([m, m, m])
        med += o
        med += 0.5
        res[box] = np.clip(med, 0, 255, out=med).astype(np.uint8)
        return res


class _Pass:
    """One pass's frames: K finished ones (past neighbours), then those waiting for K more."""
    __slots__ = ("buf", "next")

    def __init__(self):
        self.buf: deque[_Item] = deque()
        self.next = 0       # index in buf of the next frame to finish


def _abstain(med: np.ndarray, votes: list, absent: list, o: np.ndarray) -> None:
    """Where a neighbour does not show a pixel (moved from past its edge: a pan's entering strip),
    `med` becomes the median without its vote: the border-replicated samples of the neighbours on
    one side agree with each other, and at a stream's ends, where every neighbour lies on that side,
    they outvoted the frame. An even count left is made odd with the frame's own value.
    votes: o (H,W,3) then one per neighbour, absent: (H,W) bool per neighbour (None: nowhere);
    med changed in place."""
    some = [a for a in absent if a is not None]
    if not some:
        return
    gone = np.logical_or.reduce(some)
    if not gone.any():
        return
    ys, xs = np.nonzero(gone)
    ab = np.stack([np.zeros(len(ys), bool)] + [np.zeros(len(ys), bool) if a is None else a[ys, xs]
                                               for a in absent])                       # (V,P)
    v = np.stack([x[ys, xs] for x in votes])                                            # (V,P,3)
    v[ab] = np.nan
    count = (~ab).sum(0)
    even = count % 2 == 0
    extra = np.where(even[:, None], o[ys, xs], np.float32(np.nan))
    # an odd count of votes left: their median is the middle one, which a sort finds (NaN sorts
    # last); np.nanmedian, the same values, was 7 % of the stabiliser on a pan (masked arrays)
    v = np.sort(np.concatenate([v, extra[None]]), axis=0)
    med[ys, xs] = np.take_along_axis(v, ((count + even) // 2)[None, :, None], axis=0)[0]


def _median(v: list, maximum=np.maximum, minimum=np.minimum):
    """Per-element median of 3-5 arrays by min/max networks (np.partition was 36 % of the
    stabiliser at 640x360) into 2-3 new buffers (a new frame-sized array per operation was about
    a third of the median's time); v is left as it was. NumPy arrays, or torch tensors with
    torch.maximum/minimum (both take out=). More than 5 fall back to a sort."""
    if len(v) == 3:
        a, b, c = v
        lo, hi = minimum(a, b), maximum(a, b)
        minimum(hi, c, out=hi)
        return maximum(lo, hi, out=lo)
    if len(v) in (4, 5):
        a, b, c, d = v[:4]
        lo, t = minimum(a, b), minimum(c, d)
        maximum(lo, t, out=lo)           # the larger of the two pair minima
        hi = maximum(a, b)
        maximum(c, d, out=t)
        minimum(hi, t, out=hi)           # the smaller of the two pair maxima
        if len(v) == 4:
            lo += hi
            lo *= 0.5
            return lo
        minimum(lo, hi, out=t)           # med3(lo, hi, v[4])
        maximum(lo, hi, out=lo)
        minimum(lo, v[4], out=lo)
        return maximum(t, lo, out=t)
    if isinstance(v[0], np.ndarray):
        return np.median(np.stack(v), axis=0)
    import torch
    return torch.stack(v).quantile(0.5, dim=0)


def stabilise_frames(rainy: np.ndarray, derained: np.ndarray, cfg: StabiliserConfig | None = None,
                     device=None) -> np.ndarray:
    """Whole sequences in memory: (N, H, W, 3) uint8 input and network output -> stabilised output."""
    st = TemporalStabiliser(cfg, device)
    out = np.empty_like(derained)
    try:
        for i in range(len(derained)):
            for k, rgb in st.push(i, rainy[i], derained[i]):
                out[k] = rgb
        for k, rgb in st.flush():
            out[k] = rgb
    finally:
        st.close()
    return out
