"""Score one method's output sequence against a paired (or unpaired) reference.

`SequenceScorer` does the per-sequence work once (reference flows, masks, the ground
truth's own warping error and tOF flows, the input's flicker), then `score(output)` is
cheap enough to run for every method on the same footing.
"""
from __future__ import annotations

import numpy as np

from vderain import VderainError
from vderain.metrics import image, temporal

# Metric keys, their direction (True = higher is better) and a short label for tables.
METRICS = {
    "psnr_y": (True, "PSNR-Y"),
    "ssim_y": (True, "SSIM-Y"),
    "psnr_rgb": (True, "PSNR-RGB"),
    "ssim_rgb": (True, "SSIM-RGB"),
    "ewarp": (False, "Ewarp"),
    "ewarp_gap": (False, "Ewarp-gap"),
    "tof": (False, "tOF"),
    "flicker": (False, "Flicker"),
    "flicker_ratio": (False, "Flicker/in"),
}


def _nanmean(x) -> float:
    x = np.asarray(x, np.float64)
    return float(np.nanmean(x)) if x.size and not np.isnan(x).all() else float("nan")


class SequenceScorer:
    """rainy, clean: (T,H,W,3) uint8 (clean may be None for real footage).

    border: pixels cropped off every side before any metric; skip: frames dropped at each
    end (methods reflect their windows there); flow_preset: DIS preset of the reference flows.
    """

    def __init__(self, rainy: np.ndarray, clean: np.ndarray | None = None, *, border: int = 0,
                 skip: int = 0, flow_preset: str = "medium", temporal_metrics: bool = True):
        if rainy.ndim != 4 or rainy.shape[-1] != 3 or rainy.dtype != np.uint8:
            raise VderainError(f"expected a (T,H,W,3) uint8 sequence, got {rainy.shape} {rainy.dtype}")
        if clean is not None and clean.shape != rainy.shape:
            raise VderainError(f"rainy {rainy.shape} and clean {clean.shape} sequences differ in shape")
        self.n_frames = len(rainy)
        if self.n_frames - 2 * skip < 1:
            raise VderainError(f"dropping {skip} frames at each end leaves nothing of {self.n_frames}")
        self.border, self.skip, self.flow_preset = border, skip, flow_preset
        self.temporal = temporal_metrics and self.n_frames - 2 * skip >= 2
        self.inp = self._prep(rainy)
        h, w = self.inp.shape[1:3]
        if clean is not None and min(h, w) < 11:
            raise VderainError(f"frames of {w}x{h} px (after the border crop) are too small for SSIM "
                               f"(at least 11x11)")
        if clean is None and not self.temporal:
            raise VderainError(f"nothing to score: without ground truth only the temporal metrics are "
                               f"defined, and they need at least 2 frames ({len(self.inp)} left to score)")
        self.gt = None if clean is None else self._prep(clean)
        self.gt_y = None if clean is None else image.rgb_to_y(self.gt)
        self.ref = self.inp_ref = None
        self.gt_ewarp = self.gt_farneback = self.gt_flicker = None
        if self.temporal:
            self.inp_ref = temporal.FlowReference(self.inp, flow_preset, rain_robust=True, source="input")
            if self.gt is not None:
                self.ref = temporal.FlowReference(self.gt, flow_preset, source="ground truth")
                self.gt_ewarp = temporal.warping_error(self.gt, self.ref)
                self.gt_farneback = temporal.farneback_flows(self.gt)
                self.gt_flicker = temporal.flicker(self.gt, self.inp_ref)
            else:
                self.ref = self.inp_ref
            self.inp_flicker = temporal.flicker(self.inp, self.inp_ref)
            self.static_fraction = temporal.static_fraction(self.inp_ref)

    def _prep(self, seq: np.ndarray) -> np.ndarray:
        if len(seq) != self.n_frames:
            raise VderainError(f"output has {len(seq)} frames, the reference has {self.n_frames}")
        seq = seq[self.skip:self.n_frames - self.skip]
        return np.ascontiguousarray(image.crop(seq, self.border))

    @property
    def protocol(self) -> dict:
        return dict(
            border=self.border, skip=self.skip,
            frames_scored=len(self.inp), frames_total=self.n_frames,
            warp_flow=self.ref.description if self.ref else None,
            flicker_flow=self.inp_ref.description if self.inp_ref else None,
            static_fraction=getattr(self, "static_fraction", None),
        )

    def reference_values(self) -> dict:
        """Means for the input itself and, when paired, the ground truth (the floor/targets)."""
        ref = dict(input_flicker=_nanmean(self.inp_flicker) if self.temporal else float("nan"))
        if self.gt is not None and self.temporal:
            ref.update(gt_ewarp=_nanmean(self.gt_ewarp), gt_flicker=_nanmean(self.gt_flicker))
        return ref

    def score(self, output: np.ndarray) -> dict:
        """(T,H,W,3) uint8 output -> {'per_frame': {key: list}, 'mean': {key: float}}.

        Per-frame lists of temporal metrics have one value per pair (t, t+1).
        """
        if output.ndim != 4 or output.shape[-1] != 3 or output.dtype != np.uint8:
            raise VderainError(f"output must be (T,H,W,3) uint8, got {output.shape} {output.dtype}")
        out = self._prep(output)
        if out.shape != self.inp.shape:
            raise VderainError(f"output frames are {output.shape[2]}x{output.shape[1]}, "
                               f"the reference's are {self.inp.shape[2] + 2 * self.border}x"
                               f"{self.inp.shape[1] + 2 * self.border}")
        per: dict[str, np.ndarray] = {}
        out_y = image.rgb_to_y(out)                                      # (T,H,W), shared below
        if self.gt is not None:
            gt_y = self.gt_y
            per["psnr_y"] = image.psnr_planes(out_y, gt_y)
            per["ssim_y"] = np.array([image.ssim_plane(a, b) for a, b in zip(out_y, gt_y)])
            per["psnr_rgb"] = image.psnr_planes(out, self.gt)
            per["ssim_rgb"] = image.ssim_frames(out, self.gt, "rgb")
        if self.temporal:
            per["ewarp"] = temporal.warping_error(out, self.ref)
            if self.gt is not None:
                per["ewarp_gap"] = per["ewarp"] - self.gt_ewarp
                per["tof"] = temporal.tof(out, self.gt_farneback)
            per["flicker"] = temporal.flicker(out, self.inp_ref, y=out_y)
        mean = {k: _nanmean(v) for k, v in per.items()}
        if self.temporal:
            fin = _nanmean(self.inp_flicker)
            mean["flicker_ratio"] = mean["flicker"] / fin if fin > 0 else float("nan")
        return dict(per_frame={k: [float(x) for x in v] for k, v in per.items()}, mean=mean)
