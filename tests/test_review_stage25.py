"""Review of stage 25 (6105e27): the GPU path's window in bf16 and the StreamAligner's estimate."""
import torch
import torch.nn.functional as F

from test_align import _device_path
from vderain.models import STRNet, STRNetConfig
from vderain.models.align import shift_frames


def _pan_1080p(n=5, v=(7.0, -3.0), seed=0):
    """n uint8 1080p frames of a textured scene panning v px per frame (the target frame 2 still)."""
    h, w = 1080, 1920
    g = torch.Generator().manual_seed(seed)
    img = F.interpolate(torch.rand(1, 3, h // 24, w // 24, generator=g), size=(h, w), mode="bicubic",
                        align_corners=False).clamp(0, 1)
    d = torch.arange(-2, n - 2).float()[:, None] * torch.tensor(v)
    clip = shift_frames(img[:, None].expand(1, n, 3, h, w).contiguous(), -d[None])[0]
    return (clip.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def _shifts_seen(monkeypatch, frames, method, device_path: bool):
    """The shifts the pipeline's StreamAligner applies to each batch (the network stubbed out)."""
    from vderain import pipeline
    from vderain.methods.network import NetworkMethod
    from vderain.models import align
    seen = []
    orig = align.shift_frames

    def record(clip, d, *a, **k):
        seen.append(d.clone())
        return orig(clip, d, *a, **k)
    with monkeypatch.context() as mp:
        mp.setattr(align, "shift_frames", record)
        mp.setattr(NetworkMethod, "__call__", lambda self, clips, **k: clips[:, self.target].float())
        if device_path:   # the GPU path on the CPU
            _device_path(mp)
        pipeline.derain_frames(frames, method=method, batch=len(frames))
    return torch.cat(seen)


def test_the_gpu_paths_bf16_window_is_aligned_as_the_fp32_one(monkeypatch):
    # 6105e27 hands the StreamAligner the bf16 window: its grey copy (_grey_small) then sums 3
    # channels and f*f = 64 pixels (1080p) in bf16, ~10-15 grey levels off, and a steady 7 px/frame
    # pan that the CPU path (and the GPU path before, in fp32) aligns is no longer found
    from vderain.methods.network import NetworkMethod
    cfg = STRNetConfig(frames=5, target=2, scale=2, channels=8, enc_blocks=1, body_blocks=1, dec_blocks=1,
                       align=True, dehaze=0.0)
    method = NetworkMethod(STRNet(cfg), "cpu", half=True)      # bf16, as on a GPU by default
    frames = _pan_1080p()
    cpu = _shifts_seen(monkeypatch, frames, method, device_path=False)
    gpu = _shifts_seen(monkeypatch, frames, method, device_path=True)
    assert cpu.abs().max() > 10                                  # the CPU path finds the pan
    moved = lambda d: (d.abs().amax((1, 2)) > 0).tolist()       # which windows get aligned
    assert moved(gpu) == moved(cpu), (moved(cpu), moved(gpu))
    assert (cpu - gpu).abs().max() < 0.5, (cpu - gpu).abs().max()
