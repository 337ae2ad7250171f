"""Plain data types shared by readers, writers and the pipeline."""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np


def quarter_turns(rotation) -> int:
    """np.rot90's k (counter-clockwise quarter turns) that shows a frame upright, from a display
    rotation in degrees as FFmpeg gives it (counter-clockwise too); 0 for none or an odd angle."""
    rotation = int(rotation or 0)
    return (rotation // 90) % 4 if rotation % 90 == 0 else 0


def turn(rgb: np.ndarray, k: int, axes=(0, 1)) -> np.ndarray:
    """`rgb` turned k counter-clockwise quarter turns (contiguous); itself when k is 0."""
    return np.ascontiguousarray(np.rot90(rgb, k, axes=axes)) if k % 4 else rgb


@dataclass
class VideoInfo:
    """What a writer needs to reproduce the input's geometry and timing."""
    width: int                      # decoded (coded) width, before rotation is applied
    height: int
    fps: float                      # average frame rate (guessed for VFR/streams)
    time_base: Fraction             # unit of Frame.pts
    n_frames: int | None = None     # None when unknown (streams, some containers)
    duration: float | None = None   # seconds, None when unknown
    rotation: int = 0               # display rotation in degrees (phone video), kept as metadata
    codec: str = ""
    pix_fmt: str = ""
    color_range: int | None = None  # FFmpeg enum values, copied to the output where present
    color_space: int | None = None
    color_primaries: int | None = None
    color_trc: int | None = None
    source: str = ""                # path/URL the reader opened
    has_audio: bool = False
    is_stream: bool = False         # network/live source: unbounded, not seekable
    bit_depth: int = 8              # of the decoded pixel format (frames are always 8-bit RGB)
    extra: dict = field(default_factory=dict)


@dataclass
class Frame:
    """One decoded frame: RGB uint8 pixels plus where it sits in time."""
    rgb: np.ndarray                 # (H, W, 3) uint8, RGB, as coded (rotation NOT applied)
    index: int                      # 0-based position in decode order of the output
    pts: int | None                 # presentation timestamp in VideoInfo.time_base units
    time: float                     # seconds from the start of the stream
