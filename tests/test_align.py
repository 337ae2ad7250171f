"""Global motion compensation (vderain/models/align.py) and STRNet's `align` option."""
import torch
import torch.nn.functional as F

from vderain.models import STRNet, STRNetConfig
from vderain.models.align import global_shifts, shift_frames


def _texture(h=144, w=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w), mode="bicubic",
                         align_corners=False).clamp(0, 1)


def _panned(d_true, h=144, w=256, seed=0, rain=0.0):
    """A clip whose frame k is the target's texture moved by d_true[k] (+ random bright specks)."""
    img = _texture(h, w, seed)
    clip = img[:, None].expand(1, d_true.shape[0], 3, h, w).contiguous()
    clip = shift_frames(clip, -d_true[None])
    if rain:
        g = torch.Generator().manual_seed(seed + 1)
        clip = (clip + 0.4 * (torch.rand(clip.shape, generator=g) > 1 - rain)).clamp(0, 1)
    return clip


def test_a_steady_pan_is_measured_to_a_fraction_of_a_pixel_and_undone():
    v = torch.tensor([2.6, -1.4])                                   # px per frame
    d_true = torch.arange(-2, 3).float()[:, None] * v               # target = frame 2
    clip = _panned(d_true, rain=0.02)
    d = global_shifts(clip, target=2)[0]
    assert (d - d_true).abs().max() < 0.35, d
    aligned = shift_frames(_panned(d_true), d[None])
    inner = (slice(None), slice(None), slice(None), slice(12, -12), slice(12, -12))
    err_before = (_panned(d_true) - _panned(d_true)[:, 2:3])[inner].abs().mean()
    err_after = (aligned - aligned[:, 2:3])[inner].abs().mean()
    assert err_after < 0.2 * err_before


def test_static_camera_and_unsteady_shifts_are_left_alone_bit_exact():
    static = _panned(torch.zeros(5, 2), rain=0.03)
    assert torch.equal(global_shifts(static, 2), torch.zeros(1, 5, 2))
    assert shift_frames(static, torch.zeros(1, 5, 2)) is static
    # shake: no single velocity explains it -> the window is not aligned at all
    shake = torch.tensor([[6.0, 0.0], [-5.0, 3.0], [0.0, 0.0], [7.0, 2.0], [-4.0, -6.0]])
    assert torch.equal(global_shifts(_panned(shake), 2), torch.zeros(1, 5, 2))
    # unrelated frames (a cut): no steady peak either
    cut = torch.cat([_texture(seed=s)[:, None] for s in range(5)], 1)
    assert torch.equal(global_shifts(cut, 2), torch.zeros(1, 5, 2))


def test_align_changes_nothing_on_a_static_window_and_helps_the_stats_on_a_pan():
    cfg = dict(frames=5, target=2, scale=2, channels=8, enc_blocks=1, body_blocks=1, dec_blocks=1)
    plain, aligned = STRNet(STRNetConfig(**cfg)), STRNet(STRNetConfig(**cfg, align=True))
    g = torch.Generator().manual_seed(0)
    for p in plain.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.05
    aligned.load_state_dict(plain.state_dict())                     # same weights, align is not a weight
    static = _panned(torch.zeros(5, 2), rain=0.03)
    assert torch.equal(plain(static)[0], aligned(static)[0])
    pan = _panned(torch.arange(-2, 3).float()[:, None] * torch.tensor([3.0, 1.0]))
    assert not torch.allclose(plain(pan)[0], aligned(pan)[0])
    out, _ = aligned(pan)
    assert out.shape == (1, 3, 144, 256)


def test_align_is_saved_with_the_weights_and_old_files_load_without_it(tmp_path):
    from vderain.train.checkpoint import export_weights, load_weights
    cfg = dict(frames=3, target=1, scale=2, channels=8, enc_blocks=1, body_blocks=1, dec_blocks=1)
    export_weights(STRNet(STRNetConfig(**cfg, align=True)), tmp_path / "a.pt")
    assert load_weights(tmp_path / "a.pt")[0].cfg.align
    blob = torch.load(tmp_path / "a.pt", weights_only=True)
    del blob["config"]["align"]                                     # a file from before the option
    torch.save(blob, tmp_path / "old.pt")
    assert not load_weights(tmp_path / "old.pt")[0].cfg.align


def test_the_two_samplers_agree():
    clip = _panned(torch.zeros(5, 2), h=40, w=64)
    d = torch.tensor([[[1.3, -0.6], [0.0, 0.0], [0.0, 0.0], [-2.7, 4.2], [0.4, 0.0]]])
    lerp, grid = shift_frames(clip, d, sampler="lerp"), shift_frames(clip, d, sampler="grid")
    assert (lerp - grid).abs().max() < 1e-4
    assert torch.equal(lerp[:, 1:3], clip[:, 1:3]) and torch.equal(grid[:, 1:3], clip[:, 1:3])


def _aligning_method(frames=3, target=1):
    from vderain.methods.network import NetworkMethod
    cfg = dict(frames=frames, target=target, scale=2, channels=8, enc_blocks=1, body_blocks=1, dec_blocks=1,
               align=True)
    net = STRNet(STRNetConfig(**cfg))
    g = torch.Generator().manual_seed(0)
    for p in net.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.05
    return NetworkMethod(net, "cpu")


def _pan_frames(n=6, h=96, w=160, v=(3.0, 1.0)):
    clip = _panned(torch.arange(-2, n - 2).float()[:, None] * torch.tensor(v), h=h, w=w)[0]
    return (clip.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()   # (n,H,W,3)


def test_the_stream_aligner_gives_the_stateless_shifts_and_keeps_a_bounded_cache():
    from vderain.models.align import StreamAligner
    frames = torch.from_numpy(_pan_frames(n=24, v=(2.5, -1.0))).permute(0, 3, 1, 2).float() / 255
    aligner = StreamAligner(target=2, keep=4)
    for i in range(20):
        keys = [list(range(i, i + 5))]
        if i % 4 == 0:                                               # B=2, with a repeated frame
            keys.append([max(i - 1, 0)] + list(range(i, i + 4)))
        clip = torch.stack([torch.stack([frames[k] for k in row]) for row in keys])
        d = aligner.shifts(clip, keys)
        ref = global_shifts(clip, 2)
        assert (d - ref).abs().max() < 1e-3 and torch.equal(d == 0, ref == 0)
        assert d[0].abs().max() > 2                                  # the pan was found
        assert len(aligner._cache) <= 2 * len(keys) * 5              # max(keep, 2*B*T)
    assert min(aligner._cache) > 5                                   # early frames were dropped
    aligner.shifts(clip[..., :64, :64].contiguous(), keys)           # new geometry: old frames dropped
    assert len(aligner._cache) == len({k for row in keys for k in row})


def test_tiled_and_untiled_runs_estimate_on_whole_frames_and_transform_each_frame_once(monkeypatch):
    import vderain.models.align as align_mod
    from vderain.pipeline import derain_frames
    method = _aligning_method()
    frames = _pan_frames()
    sizes, transformed = [], []
    real_shifts, real_spectra = align_mod.StreamAligner.shifts, align_mod._phase_spectra
    monkeypatch.setattr(align_mod.StreamAligner, "shifts",
                        lambda self, c, keys: sizes.extend([tuple(c.shape[-2:])] * len(c)) or real_shifts(self, c, keys))
    monkeypatch.setattr(align_mod, "_phase_spectra", lambda g: transformed.append(g.shape[0]) or real_spectra(g))
    for tile in (64, None):
        sizes.clear(), transformed.clear()
        out = derain_frames(frames, method=method, tile=tile, tile_overlap=16)
        assert out.shape == frames.shape
        assert sizes == [(96, 160)] * len(frames)
        # each frame's spectrum once, plus once for its streak-free copy when a window moved
        # (the stateless path transforms window x frames = 3x as many)
        assert len(frames) <= sum(transformed) <= 2 * len(frames)


def test_one_method_serves_many_streams_without_mixing_their_frames():
    from vderain.pipeline import derain_frames
    a, b = _pan_frames(v=(3.0, 1.0)), _pan_frames(v=(-2.0, 2.0))[:, ::-1].copy()
    shared = _aligning_method()
    derain_frames(a, method=shared)                                  # frame indices 0..5 seen before
    assert (derain_frames(b, method=shared) == derain_frames(b, method=_aligning_method())).all()


def test_live_runner_aligns_as_the_stateless_model_does():
    from vderain.live import CausalRunner
    method = _aligning_method(frames=3, target=2)
    frames = _pan_frames(n=7, v=(2.0, 0.0))
    runner = CausalRunner(method)
    outs = [runner.push(f, float(i)) for i, f in enumerate(frames)]
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    for i in range(2, len(frames)):
        ref = method(x[i - 2:i + 1][None])[0]                        # the model aligns by itself
        got = torch.from_numpy(outs[i][0]).permute(2, 0, 1).float() / 255
        assert (got - ref).abs().max() <= 1.5 / 255


def test_shifting_in_place_writes_the_same_frames_into_the_callers_tensor():
    d = torch.tensor([[[2.6, -1.4], [0.0, 0.0], [-3.3, 0.7]], [[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]]])
    clip = torch.cat([_panned(torch.zeros(3, 2), seed=s) for s in (0, 1)])     # (2,3,3,H,W)
    for sampler in ("lerp", "grid"):
        ref = shift_frames(clip, d, sampler=sampler)
        own = clip.clone()
        out = shift_frames(own, d, sampler=sampler, inplace=True)
        assert out.data_ptr() == own.data_ptr() and torch.equal(out, ref), sampler
        assert torch.equal(own[0, 1], clip[0, 1])                   # a frame that did not move: untouched
    # a window given as lists of frames (the live runner's) is never written into
    frames = [list(clip[0].unbind(0))]
    before = [f.clone() for f in frames[0]]
    shift_frames(frames, d[:1], inplace=True)
    assert all(torch.equal(a, b) for a, b in zip(frames[0], before))


def _device_path(mp):
    """`vderain run`'s GPU path on the CPU: frames uploaded as uint8, each batch's windows
    assembled in the method's precision with fp32 targets, aligned in place."""
    import numpy as np
    from vderain import pipeline
    fake = type("FakeCuda", (), {"type": "cuda"})()
    init = pipeline._Runner.__init__

    def fake_init(self, *a, **k):
        init(self, *a, **k)
        self.device = fake
    mp.setattr(pipeline._Runner, "__init__", fake_init)
    mp.setattr(pipeline._Runner, "_upload", lambda self, new: torch.from_numpy(np.stack([f.rgb for f in new])).clone())


def test_the_gpu_path_gives_the_cpu_paths_frames(monkeypatch):
    # the GPU path holds one window per batch (bf16) where it held three (fp32, its aligned copy,
    # the cast): in fp32 it must give the CPU path's frames bit for bit, and in bf16 differ only
    # by rounding the window before its neighbours are shifted rather than after
    import numpy as np
    from vderain.methods.network import NetworkMethod
    from vderain.pipeline import derain_frames
    frames = _pan_frames(n=10, v=(2.5, 1.0))
    for half in (False, True):
        cpu = derain_frames(frames, method=NetworkMethod.from_name("quality", half=half), batch=2)
        with monkeypatch.context() as mp:
            _device_path(mp)
            gpu = derain_frames(frames, method=NetworkMethod.from_name("quality", half=half), batch=2)
        diff = np.abs(cpu.astype(int) - gpu.astype(int))
        if half:
            assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())
        else:
            assert diff.max() == 0


def test_the_gpu_path_holds_one_window_per_batch_in_the_networks_precision():
    # counted tensor by tensor (benchmarks/bench_live_tensors.py --pipeline): the path held the
    # window in fp32, its aligned fp32 copy and the network's bf16 cast at once (1080p, batch 4:
    # 2.10 GiB on an H200, counted 1.97; now counted ~0.7 at batch 1)
    import importlib.util
    import os
    from vderain.methods.network import NetworkMethod
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_live_tensors.py")
    spec = importlib.util.spec_from_file_location("bench_live_tensors", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    m = NetworkMethod.from_name("quality", half=True)
    h, w = 96, 160
    track = bench.pipeline_peak(m, 4, h, w, 10)
    first = m.target + 3                                  # the widened first batch (EdgeHold)
    frame = 3 * h * w
    window_bf16 = first * m.window * frame * 2
    import inspect
    from vderain.models import align
    lines, first_line = inspect.getsourcelines(align.shift_frames)
    shifting = range(first_line, first_line + len(lines))
    by_file: dict = {}   # bytes held at the peak by where they were made; the aligner's shifting apart
    for n, _, where in track.at_peak.values():
        name, line = where.split(":")
        name = "shift_frames" if name == "align.py" and int(line) in shifting else name
        by_file[name] = by_file.get(name, 0) + n
    # the pipeline's window in bf16, its fp32 targets and the uint8 uploads; nothing else
    assert by_file.get("pipeline.py", 0) <= window_bf16 + first * frame * 4 + (first + m.window) * frame, by_file
    assert by_file.get("shift_frames", 0) <= 2 * frame * 4, by_file  # aligned in place: one frame's temporaries
    assert max((n for n, _, where in track.at_peak.values() if where.startswith("network.py")), default=0) \
        < window_bf16 / 2, by_file                                   # no cast of the window
