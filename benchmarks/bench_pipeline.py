"""Pipeline overhead: `vderain run --method identity` versus a bare PyAV transcode.

Both sides decode the same generated 720p clip, convert every frame to RGB and back,
and encode with the same libx264 settings; the pipeline adds its threads, windows,
float conversion, method call and stream copying. Target: pipeline / raw <= 1.15.

    python benchmarks/bench_pipeline.py                   # 300 frames 1280x720, crf 18, medium
    python benchmarks/bench_pipeline.py --preset veryfast --frames 150 --repeat 3
    python benchmarks/bench_pipeline.py --device cuda --model quality --width 1920 --height 1080

With --device cuda the method is the project's network (random weights: speed only) and
the script also times the method alone on clips already on the GPU, so the pipeline's
fps can be compared with min(method alone, raw transcode): equal means decoding, compute
and encoding overlap and nothing waits on anything but the slowest stage.

Runs alternate (raw, pipeline, raw, ...) so that load from other processes on a shared
machine hits both alike; the medians are compared.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction

import av
import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_clip(path: str, frames: int, width: int = 1280, height: int = 720, fps: int = 30,
              audio: bool = True, seed: int = 0) -> str:
    """A camera panning over a textured scene with a moving object and sensor noise.

    Texture and noise give the encoder realistic work (a flat synthetic clip would make
    encoding, and so the overhead ratio, look unrealistically cheap).
    """
    rng = np.random.default_rng(seed)
    ch, cw = height * 2, width * 2
    base = rng.integers(0, 256, (ch // 16, cw // 16, 3), np.uint8)
    canvas = cv2.resize(base, (cw, ch), interpolation=cv2.INTER_CUBIC)
    detail = rng.integers(0, 256, (ch // 2, cw // 2, 3), np.uint8)
    canvas = cv2.addWeighted(canvas, 0.8, cv2.resize(detail, (cw, ch)), 0.2, 0)
    out = av.open(path, "w")
    v = out.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = width, height, "yuv420p"
    v.options = {"crf": "20", "preset": "ultrafast"}
    a = None
    if audio:
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
    for i in range(frames):
        x0 = int((width * 0.8) * (0.5 + 0.5 * np.sin(i / 90)))
        y0 = int((height * 0.8) * (0.5 + 0.5 * np.cos(i / 130)))
        img = np.ascontiguousarray(canvas[y0:y0 + height, x0:x0 + width])
        cv2.circle(img, (int(width * (i % 120) / 120), height // 2), height // 8, (200, 60, 40), -1)
        noise = rng.integers(-6, 7, (height // 2, width // 2, 1), np.int16)
        img = np.clip(img.astype(np.int16) + cv2.resize(noise, (width, height))[..., None], 0, 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        for p in v.encode(frame):
            out.mux(p)
    for p in v.encode(None):
        out.mux(p)
    if a is not None:
        t = np.arange(int(48000 * frames / fps)) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        stereo = np.stack([tone, tone])
        for k in range(0, stereo.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, k:k + 1024]), format="fltp",
                                            layout="stereo")
            af.sample_rate = 48000
            af.pts = k
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    out.close()
    return path


def raw_transcode(src: str, dst: str, crf: int, preset: str) -> int:
    """Decode -> RGB -> encode with plain PyAV, one loop, same conversions as vderain.io."""
    from vderain.io.color import rgb_to_yuv420
    from vderain.io.reader import frame_to_rgb
    with av.open(src) as inp, av.open(dst, "w") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        vout.codec_context.time_base = vin.time_base
        vout.time_base = vin.time_base
        vout.options = {"crf": str(crf), "preset": preset}
        aout = None
        if inp.streams.audio:
            aout = out.add_stream_from_template(inp.streams.audio[0])
        n = 0
        for packet in inp.demux():
            if packet.stream.type == "audio" and aout is not None:
                if packet.dts is not None:
                    packet.stream = aout
                    out.mux(packet)
                continue
            if packet.stream.type != "video":
                continue
            for f in packet.decode():
                rgb = frame_to_rgb(f)
                nf = rgb_to_yuv420(rgb, f.colorspace, f.color_range)
                nf.pts, nf.time_base = f.pts, f.time_base
                for p in vout.encode(nf):
                    out.mux(p)
                n += 1
        for p in vout.encode(None):
            out.mux(p)
    return n


def pipeline_transcode(src: str, dst: str, crf: int, preset: str, method="identity", batch=None) -> int:
    from vderain.pipeline import derain_video
    return derain_video(src, dst, method=method, device="cpu", crf=crf, preset=preset, batch=batch,
                        progress=False)["frames"]


def network_method(model: str, device: str):
    """The project's STRNet with random weights (speed only), as the pipeline would run it."""
    import torch
    import yaml
    from vderain.methods.network import NetworkMethod
    from vderain.models.strnet import STRNet
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                           f"{model}.yaml")) as f:
        cfg = yaml.safe_load(f)["model"]
    torch.manual_seed(0)
    return NetworkMethod(STRNet(**cfg), torch.device(device), name=f"{model} (random weights)")


def method_alone_fps(method, width: int, height: int, batch: int, iters: int = 20) -> float:
    import torch
    clips = torch.rand(batch, method.window, 3, height, width, device=method.device)
    for _ in range(3):
        method(clips)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        method(clips)
    torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t0)


def gpu_main(args, src, n_src, tmp) -> int:
    import torch
    if args.weights:
        from vderain.methods.network import NetworkMethod
        m = NetworkMethod.from_name(args.weights, device="cuda")
    else:
        m = network_method(args.model, "cuda")
    batch = args.batch or 4
    if args.stabilise:
        from vderain.methods.stabilise import StabiliserConfig
        m.stabiliser = StabiliserConfig()
    print(f"gpu: {torch.cuda.get_device_name()}, method {m.name}, window {m.window}, batch {batch}, "
          f"stabiliser {'on (radius %d, %d passes)' % (m.stabiliser.radius, m.stabiliser.passes) if m.stabiliser else 'off'}, "
          f"dtype {m.dtype}, align {getattr(m, 'aligns', False)}, pipeline encoder {args.codec or 'libx264'} "
          f"(raw side: libx264 {args.preset})")
    alone = method_alone_fps(m, args.width, args.height, batch)
    print(f"method alone (clips already on the GPU): {alone:.1f} fps")
    res = {"raw": [], "pipeline": []}
    for r in range(args.repeat):
        for name in ("raw", "pipeline"):
            dst = os.path.join(tmp, f"{name}.mp4")
            t0 = time.perf_counter()
            if name == "raw":
                n = raw_transcode(src, dst, args.crf, args.preset)
            else:
                from vderain import VderainError
                from vderain.pipeline import derain_video
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()   # the pipeline's own peak, not the method-alone timing's
                try:
                    n = derain_video(src, dst, method=m, crf=args.crf, preset=args.preset, batch=batch,
                                     codec=args.codec, progress=False)["frames"]
                except VderainError as e:   # e.g. NVENC absent: a GPU container without video capability
                    print(f"pipeline: {e}", flush=True)
                    return 1
            dt = time.perf_counter() - t0
            res[name].append(n / dt)
            mem = (f", GPU peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB, reserved "
                   f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB" if name == "pipeline" else "")
            print(f"  run {r + 1} {name:8s} {n} frames in {dt:6.2f} s = {n / dt:6.1f} fps{mem}", flush=True)
    raw, pipe = statistics.median(res["raw"]), statistics.median(res["pipeline"])
    bound = min(alone, raw)
    print(f"median: raw transcode {raw:.1f} fps, pipeline with the network {pipe:.1f} fps; "
          f"slowest stage alone {bound:.1f} fps -> pipeline reaches {pipe / bound:.0%} of it")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--crf", type=int, default=18)
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--clip", help="use this clip instead of generating one")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--model", default="quality", help="network config for --device cuda (configs/NAME.yaml)")
    ap.add_argument("--batch", type=int, help="windows per method call on the GPU (default 4)")
    ap.add_argument("--codec", default=None,
                    help="--device cuda: the pipeline's encoder (e.g. h264-nvenc; default libx264 as the raw side)")
    ap.add_argument("--weights", default=None,
                    help="--device cuda: a weights file instead of random weights (align follows its config)")
    ap.add_argument("--stabilise", action="store_true",
                    help="--device cuda: the temporal stabiliser after the network (as vderain run does by default)")
    args = ap.parse_args(argv)

    import torch
    tmp = tempfile.mkdtemp(prefix="vderain-bench-")
    src = args.clip or make_clip(os.path.join(tmp, "src.mp4"), args.frames, args.width, args.height)
    with av.open(src) as c:
        v = c.streams.video[0]
        w, h, n_src = v.width, v.height, v.frames
    print(f"clip: {w}x{h}, {n_src} frames, H.264 yuv420p, AAC stereo  ({src})")
    what = "float32 identity on cpu" if args.device == "cpu" else f"network on {args.device}"
    print(f"encoder: libx264 crf {args.crf} preset {args.preset}; cpus {os.cpu_count()}, "
          f"torch threads {torch.get_num_threads()}, {what}; av {av.__version__}, "
          f"torch {torch.__version__}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    if args.device == "cuda":
        return gpu_main(args, src, n_src, tmp)
    times = {"raw": [], "pipeline": []}
    for r in range(args.repeat):
        for name, fn in (("raw", raw_transcode), ("pipeline", pipeline_transcode)):
            dst = os.path.join(tmp, f"{name}.mp4")
            t0 = time.perf_counter()
            n = fn(src, dst, args.crf, args.preset)
            dt = time.perf_counter() - t0
            times[name].append(dt)
            print(f"  run {r + 1} {name:8s} {n} frames in {dt:6.2f} s = {n / dt:6.1f} fps", flush=True)
    raw, pipe = statistics.median(times["raw"]), statistics.median(times["pipeline"])
    print(f"median: raw {n_src / raw:.1f} fps, pipeline {n_src / pipe:.1f} fps, "
          f"ratio pipeline/raw = {pipe / raw:.3f} (target <= 1.15)")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
