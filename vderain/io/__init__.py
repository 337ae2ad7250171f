"""Streaming video input/output: readers, writers, temporal windows and spatial tiles.

    from vderain.io import open_video, VideoWriter, iter_windows, tiled_apply

    with open_video("in.mp4") as reader, VideoWriter("out.mp4", reader.info, audio_from="in.mp4") as w:
        for frame in reader:
            w.write(frame.rgb, frame.pts)
"""
from vderain.io.clips import batched, iter_windows, reflect_index
from vderain.io.reader import (DecordReader, FrameFolderReader, PyAVReader, VideoReader, is_url,
                               open_video)
from vderain.io.tiling import tiled_apply
from vderain.io.types import Frame, VideoInfo
from vderain.io.writer import CODEC_CHOICES, VideoWriter, check_output, is_folder_target, resolve_codec

__all__ = [
    "open_video", "VideoReader", "PyAVReader", "FrameFolderReader", "DecordReader", "is_url",
    "VideoWriter", "check_output", "is_folder_target", "resolve_codec", "CODEC_CHOICES",
    "iter_windows", "reflect_index", "batched", "tiled_apply", "Frame", "VideoInfo",
]
