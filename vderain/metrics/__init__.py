"""Quality, temporal-consistency and speed metrics for deraining, on uint8 RGB sequences.

    from vderain.metrics import SequenceScorer
    scorer = SequenceScorer(rainy, clean, border=0, skip=2)   # (T,H,W,3) uint8 each
    scorer.score(output)  # {'per_frame': {...}, 'mean': {'psnr_y':..., 'ewarp':..., ...}}

Modules: `image` (PSNR/SSIM, RGB and MATLAB Y), `temporal` (warping error, tOF,
flicker), `flow` (DIS/Farneback helpers, occlusion masks), `perf` (fps, peak memory),
`sequence` (all of it for one sequence). Protocols: docs/metrics.md.
"""
from vderain.metrics.image import psnr, psnr_frames, rgb_to_y, ssim, ssim_frames
from vderain.metrics.perf import ResourceMeter
from vderain.metrics.sequence import METRICS, SequenceScorer
from vderain.metrics.temporal import FlowReference, flicker, tof, warping_error

__all__ = ["psnr", "psnr_frames", "rgb_to_y", "ssim", "ssim_frames", "ResourceMeter", "METRICS",
           "SequenceScorer", "FlowReference", "flicker", "tof", "warping_error"]
