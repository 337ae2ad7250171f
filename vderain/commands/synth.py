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
import sys
import time

from vderain import VderainError
from vderain.synth.presets import PRESET_NAMES  # no torch: the parser is built at start-up


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
    p.add_argument("--chunk", type=int, default=8, help="frames synthesised at once (default 8)")
    p.add_argument("--codec", default=None, help=f"{' | '.join(CODEC_CHOICES)} (default h264; png for folders)")
    p.add_argument("--crf", type=int, help="quality of the written videos: lower is better (default 18 for h264)")
    p.add_argument("--encoder-preset", default="medium", help="encoder speed (x264 names, default medium)")
    p.add_argument("--no-audio", action="store_true", help="do not copy audio from the input")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    import numpy as np
    import torch

    from vderain.io import VideoWriter, is_folder_target, open_video
    from vderain.methods import resolve_device
    from vderain.synth.rain import RainSynth

    if args.chunk < 1:
        raise VderainError(f"--chunk must be >= 1 (got {args.chunk})")
    device = resolve_device(args.device)
    outputs = [o for o in (args.output, args.save_clean, args.save_layer) if o]
    if len(set(outputs)) != len(outputs):
        raise VderainError("--output, --save-clean and --save-layer must be different paths")

    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(open_video(args.input, fps=args.fps))
        info = reader.info
        audio = None if args.no_audio or not info.has_audio else args.input

        def writer(path, with_audio):
            codec = None if is_folder_target(path) else args.codec          # --codec is for video files
            return stack.enter_context(VideoWriter(path, info, codec=codec, crf=args.crf,
                                                   preset=args.encoder_preset, inputs=(args.input,),
                                                   audio_from=audio if with_audio else None))
        w_rain = writer(args.output, True)
        w_clean = writer(args.save_clean, True) if args.save_clean else None
        w_layer = writer(args.save_layer, False) if args.save_layer else None

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

        def flush():
            nonlocal done
            x = torch.from_numpy(np.stack([f.rgb for f in chunk])).to(device)
            x = x.permute(0, 3, 1, 2).float().div_(255)[None]                   # (1,T,3,H,W)
            g = torch.Generator(device=device).manual_seed(args.seed)          # per clip: identical each chunk
            gf = torch.Generator(device=device).manual_seed(args.seed * 1_000_003 + done + 1)   # per frame
            out = synth(x, g, fps=fps, t0=done, frame_generator=gf)
            to_u8 = lambda v: (v[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
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
    extra = "".join(f" + {k} {v}" for k, v in (("clean", args.save_clean), ("layer", args.save_layer)) if v)
    print(f"vderain: synth {args.preset} seed {args.seed}: {done} frames {info.width}x{info.height} "
          f"in {dt:.1f} s ({done / max(dt, 1e-9):.1f} fps) -> {args.output}{extra}")
    return 0
