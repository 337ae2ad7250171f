"""Make samples/rainy_street.mp4: a few seconds of synthetic rain over a procedural street-like
scene, with an AAC audio track (rain hiss and a soft tone), small enough to commit.

    python tools/make_sample.py                  # writes samples/rainy_street.mp4
    python tools/make_sample.py --clean          # also samples/rainy_street_clean.mp4 (reference)

Scene, rain and audio are seeded, so every run gives the same clip (the bytes can still differ a
little: threaded encoding and float reductions are not bit-reproducible).
"""
from __future__ import annotations

import argparse
import os
import sys
from fractions import Fraction

import av
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def scene(frames: int, height: int, width: int, seed: int) -> torch.Tensor:
    """(T, 3, H, W) float in [0, 1]: the synthesiser's procedural scene, camera panning."""
    from vderain.synth.scenes import procedural_clip
    return procedural_clip(frames, height, width, seed=seed, motion="pan")


def add_rain(clean: torch.Tensor, preset: str, seed: int) -> torch.Tensor:
    from vderain.synth import RainSynth
    h, w = clean.shape[-2:]
    synth = RainSynth(preset, device="cpu", px_scale=min(h, w) / 360)
    out = synth(clean[None], generator=torch.Generator().manual_seed(seed), fps=25.0)
    return out["rainy"][0]


def rain_audio(seconds: float, rate: int, seed: int) -> np.ndarray:
    """(2, N) float32: rain-like hiss (smoothed noise with random drop clicks) and a soft hum."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    noise = rng.standard_normal((2, n)).astype(np.float32)
    kernel = np.ones(8, np.float32) / 8  # take the harsh top off the hiss
    hiss = np.stack([np.convolve(c, kernel, mode="same") for c in noise]) * 0.08
    clicks = np.zeros((2, n), np.float32)
    idx = rng.integers(0, n, 400)
    clicks[rng.integers(0, 2, 400), idx] = rng.uniform(0.1, 0.3, 400)
    t = np.arange(n) / rate
    hum = 0.05 * np.sin(2 * np.pi * 110 * t).astype(np.float32)
    fade = np.minimum(1, np.minimum(t, t[::-1]) / 0.3).astype(np.float32)
    return np.clip((hiss + clicks + hum) * fade, -1, 1).astype(np.float32)


def write(path: str, clip: torch.Tensor, fps: int, crf: int, audio: np.ndarray | None, rate: int) -> None:
    frames = (clip.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (T,H,W,3)
    T, H, W, _ = frames.shape
    tmp = path + ".tmp.mp4"
    with av.open(tmp, "w", options={"movflags": "+faststart"}) as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.options = {"crf": str(crf), "preset": "veryslow"}
        for attr in ("color_primaries", "color_trc", "colorspace"):
            setattr(v.codec_context, attr, 1)  # BT.709, tagged so players agree on colours
        v.codec_context.color_range = 1
        a = None
        if audio is not None:
            a = out.add_stream("aac", rate=rate)
            a.layout = "stereo"
            a.bit_rate = 64000
        for img in frames:
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f = f.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
        if a is not None:
            for k in range(0, audio.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, k:k + 1024]), format="fltp",
                                                layout="stereo")
                af.sample_rate = rate
                af.pts = k
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode(None):
                out.mux(p)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "samples", "rainy_street.mp4"))
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--height", type=int, default=270)
    ap.add_argument("--preset", default="heavy", help="rain preset of vderain.synth")
    ap.add_argument("--crf", type=int, default=26)  # < 1 MB: heavy rain and sensor noise cost bits
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--clean", action="store_true", help="also write the clean reference beside it")
    args = ap.parse_args(argv)

    torch.set_num_threads(min(2, torch.get_num_threads()))
    n = int(round(args.seconds * args.fps))
    clean = scene(n, args.height, args.width, args.seed)                  # (T,3,H,W)
    rainy = add_rain(clean, args.preset, args.seed)
    rate = 44100
    write(args.out, rainy, args.fps, args.crf, rain_audio(n / args.fps, rate, args.seed), rate)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {args.width}x{args.height}, {n} frames at {args.fps} fps, "
          f"'{args.preset}' rain, AAC stereo, {size / 1024:.0f} KiB")
    if args.clean:
        ref = os.path.splitext(args.out)[0] + "_clean.mp4"
        write(ref, clean, args.fps, args.crf, None, rate)
        print(f"wrote {ref}: the clean reference ({os.path.getsize(ref) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
