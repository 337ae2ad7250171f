"""`vderain synth INPUT -o OUTPUT --preset heavy`: add synthetic rain to a clip.

Streams the input in chunks of frames, so clips of any length fit in memory. Rain
parameters, drops, lamps and haze are fixed for the whole clip (one seed); drops keep
falling across chunk borders. Writes the rainy clip, and on request the clean reference
(`--save-clean`: the target a model should produce, which differs from the input for
`--preset night`, whose darkening and lamps belong to the scene) and the signed rain
layer (`--save-layer`, stored as 0.5 + layer / 2, so mid-grey means "no rain").
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time

from vderain import VderainError, is_out_of_memory
from vderain.synth.presets import PRESET_NAMES  # no torch: the parser is built at start-up

SEED_LIMIT = 10 ** 12   # |seed| * 1_000_003 + frame index must fit torch's 64-bit seeds
EXIT_DAMAGED_INPUT = 3  # as `vderain run`: frames were skipped, the outputs hold the rest
# containers that hold a lossless codec (ffv1 or libx264rgb): ground-truth files default to it
_LOSSLESS_EXT = {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".nut"}


def add_arguments(p) -> None:
    from vderain.io.writer import CODEC_CHOICES
    p.add_argument("input", help="video file or folder of numbered frames")
    p.add_argument("-o", "--output", required=True, help="rainy output video (or a folder ending in '/')")
    p.add_argument("--preset", default="light", choices=PRESET_NAMES,
                   help="kind of rain (default light); see docs/synth.md")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same rain (default 0)")
    p.add_argument("--save-clean", metavar="DIR",
                   help="also write the clean reference (a folder of PNGs, or a video file name)")
    p.add_argument("--save-layer", metavar="PATH", help="also write the rain layer (0.5 + (rainy - clean) / 2)")
    p.add_argument("--camera", action="store_true",
                   help="also add the preset's sensor noise and slight defocus (to the clean reference too)")
    p.add_argument("--fps", type=float, help="frame rate of a frame-folder input (default 25)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--chunk", type=int, default=8,
                   help="frames synthesised at once (default 8); part of the recipe: splashes and "
                        "noise are drawn per chunk, so reproduce a clip with the same --chunk")
    p.add_argument("--codec", default=None,
                   help=f"{' | '.join(CODEC_CHOICES)} (default h264 for the rainy video; lossless for "
                        f"--save-clean/--save-layer video files, so the ground truth is exact; png for folders)")
    p.add_argument("--crf", type=int, help="quality of the written videos: lower is better (default 18 for h264)")
    p.add_argument("--encoder-preset", default="medium", help="encoder speed (x264 names, default medium)")
    p.add_argument("--no-audio", action="store_true", help="do not copy audio from the input")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    import numpy as np
    import torch

    from vderain.io import VideoWriter, is_folder_target, open_video
    from vderain.io.types import quarter_turns, turn
    from vderain.methods import resolve_device
    from vderain.synth.rain import RainSynth

    if args.chunk < 1:
        raise VderainError(f"--chunk must be >= 1 (got {args.chunk})")
    if abs(args.seed) >= SEED_LIMIT:
        raise VderainError(f"--seed must be between -{SEED_LIMIT - 1} and {SEED_LIMIT - 1} (got {args.seed})")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise VderainError(f"--fps must be a number > 0 (got {args.fps})")
    device = resolve_device(args.device)
    _check_distinct([o for o in (args.output, args.save_clean, args.save_layer) if o])

    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(open_video(args.input, fps=args.fps))
        info = reader.info
        audio = None if args.no_audio or not info.has_audio else args.input

        def writer(path, with_audio, truth=False):
            codec = None if is_folder_target(path) else args.codec          # --codec is for video files
            if truth and codec is None and not is_folder_target(path) \
                    and os.path.splitext(path)[1].lower() in _LOSSLESS_EXT:
                codec = "lossless"      # ground truth: a 4:2:0 h264 layer was off by up to ~70 levels
            return stack.enter_context(VideoWriter(path, info, codec=codec, crf=args.crf,
                                                   preset=args.encoder_preset, inputs=(args.input,),
                                                   audio_from=audio if with_audio else None))
        w_rain = writer(args.output, True)
        w_clean = writer(args.save_clean, True, truth=True) if args.save_clean else None
        w_layer = writer(args.save_layer, False, truth=True) if args.save_layer else None
        writers = [w for w in (w_rain, w_clean, w_layer) if w]
        # rain falls down the picture as it is shown: a phone clip is coded sideways with a
        # display rotation, so frames are turned upright for the synthesiser and back for the
        # writers (which keep the rotation tag, or turn PNG frames upright themselves)
        turns = quarter_turns(info.rotation)

        scale = max(0.25, min(info.width, info.height) / 360)
        synth = RainSynth(args.preset, device=device, camera=args.camera, px_scale=scale)
        fps = float(info.fps or 25.0)
        bar = None
        if not args.quiet:
            from tqdm import tqdm
            bar = tqdm(total=info.n_frames, unit="frame", desc=f"synth {args.preset}", dynamic_ncols=True,
                       file=sys.stderr)
        done = 0
        chunk: list = []

        scene_mean = None

        def flush():
            nonlocal done, scene_mean
            x = np.stack([f.rgb for f in chunk])
            x = turn(x, turns, axes=(1, 2))
            x = torch.from_numpy(x).to(device)
            x = x.permute(0, 3, 1, 2).float().div_(255)[None]                   # (1,T,3,H,W)
            g = torch.Generator(device=device).manual_seed(args.seed)          # per clip: identical each chunk
            gf = torch.Generator(device=device).manual_seed(args.seed * 1_000_003 + done + 1)   # per frame
            try:
                out = synth(x, g, fps=fps, t0=done, frame_generator=gf, scene_mean=scene_mean)
            except (RuntimeError, MemoryError) as e:   # CUDA's OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(e):
                    raise
                where = "GPU " if device.type == "cuda" else ""
                h, w = x.shape[-2:]   # as turned upright
                hint = (f"try a smaller --chunk (e.g. {max(1, len(chunk) // 4)})" if len(chunk) > 1
                        else "try --device cpu" if device.type == "cuda"
                        else "frames this large need more memory than this machine has")
                raise VderainError(f"out of {where}memory adding rain to {len(chunk)} frame"
                                   f"{'s' if len(chunk) > 1 else ''} of {w}x{h} at once; {hint}") from None
            if scene_mean is None:
                scene_mean = out["params"]["scene_mean"]   # the haze colour of the first chunk, kept for the rest
            def to_u8(v):
                a = (v[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                return turn(a, -turns, axes=(1, 2))
            rainy = to_u8(out["rainy"])
            clean = to_u8(out["clean"]) if w_clean else None
            layer = to_u8(out["layer"] * 0.5 + 0.5) if w_layer else None
            for i, f in enumerate(chunk):
                w_rain.write(rainy[i], f.pts)
                if w_clean:
                    w_clean.write(clean[i], f.pts)
                if w_layer:
                    w_layer.write(layer[i], f.pts)
            done += len(chunk)
            if bar:
                bar.update(len(chunk))
            chunk.clear()

        try:
            for frame in reader:
                chunk.append(frame)
                if len(chunk) == args.chunk:
                    flush()
            if chunk:
                flush()
        finally:
            if bar:
                bar.close()
        if done == 0:
            raise VderainError(f"no frames could be read from {args.input}")
    dt = time.perf_counter() - t_start
    notes: list[str] = []
    for n in list(getattr(reader, "notes", ())) + [n for w in writers for n in w.notes]:
        if n not in notes:
            notes.append(n)
    exact = ("png", "ffv1", "x264-lossless")
    for w, what in ((w_clean, "clean reference"), (w_layer, "rain layer")):
        if w and w.codec not in exact:
            notes.append(f"the {what} {w.path} is lossy {w.codec}: not exact ground truth "
                         f"(--codec lossless, .mkv/.mp4, or a folder, for exact frames)")
    if args.save_layer and w_rain.codec not in exact:
        notes.append(f"{args.output} is lossy {w_rain.codec}: rainy - clean matches the layer only up "
                     f"to its compression (--codec lossless, or a folder, for exact pairs)")
    if not args.save_clean and (args.preset == "night" or args.camera):
        why = "the night scene and its lamps" if args.preset == "night" else "the camera's noise and defocus"
        notes.append(f"the clean target is not your input ({why} belong to it): --save-clean writes it")
    for n in notes:
        print(f"vderain: note: {n}", file=sys.stderr)
    problems = reader.problems()
    if problems:
        print(f"vderain: warning: damaged input, outputs have only the frames that decoded (all "
              f"outputs alike): {problems}", file=sys.stderr)
    extra = "".join(f" + {k} {v}" for k, v in (("clean", args.save_clean), ("layer", args.save_layer)) if v)
    print(f"vderain: synth {args.preset} seed {args.seed}: {done} frames {info.width}x{info.height} "
          f"in {dt:.1f} s ({done / max(dt, 1e-9):.1f} fps) -> {args.output}{extra}")
    return EXIT_DAMAGED_INPUT if problems else 0


def _check_distinct(outputs: list[str]) -> None:
    """Every output its own path, also when spelled differently ('a.mp4', './a.mp4', 'd/' and 'd'),
    and none inside a folder output (that folder is renamed into place whole)."""
    real = [os.path.realpath(os.path.abspath(o.rstrip("/" + os.sep) or o)) for o in outputs]
    from vderain.io import is_folder_target
    for i, a in enumerate(real):
        for j, b in enumerate(real):
            if i < j and a == b:
                raise VderainError(f"--output, --save-clean and --save-layer must be different paths "
                                   f"({outputs[i]} and {outputs[j]} are the same)")
            if i != j and is_folder_target(outputs[i]) and os.path.commonpath([a, b]) == a:
                raise VderainError(f"{outputs[j]} is inside the folder output {outputs[i]}; "
                                   f"put it beside that folder")
