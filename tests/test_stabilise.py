"""The temporal stabiliser: a motion-compensated median of the outputs, only where rain was removed."""
import cv2
import numpy as np
import pytest

from videogen import make_video, read_all
from vderain.methods import Method, get_method
from vderain.methods.stabilise import StabiliserConfig, TemporalStabiliser, _median, stabilise_frames
from vderain.metrics.image import psnr
from vderain.pipeline import derain_frames, derain_video


def _scene(n=12, h=72, w=112, dx=0, seed=0):
    """A smooth textured background (n, h, w, 3) uint8, moving dx px/frame to the right."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.random((h, w + n * abs(dx) + 8, 3)).astype(np.float32), (0, 0), 2.0)
    base = (base - base.min()) / (base.max() - base.min()) * 180 + 40
    return np.stack([base[:, 4 + i * dx if dx >= 0 else 4 + (n - i) * -dx:][:, :w] for i in range(n)]).astype(np.uint8)


def _streaks(n, h, w, seed=1, count=25):
    """Per-frame random thin vertical streaks (n, h, w) float in [0, 1]: a new pattern every frame."""
    rng = np.random.default_rng(seed)
    s = np.zeros((n, h, w), np.float32)
    for t in range(n):
        for _ in range(count):
            x, y = rng.integers(0, w), rng.integers(0, h - 12)
            s[t, y:y + 12, x] = 1.0
    return s


def _add(frames, layer, amp):
    return np.clip(frames.astype(np.float32) + amp * layer[..., None], 0, 255).astype(np.uint8)


@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_median_networks_match_numpy(n):
    rng = np.random.default_rng(n)
    v = [rng.random((9, 11, 3)).astype(np.float32) for _ in range(n)]
    assert np.array_equal(_median(v), np.median(np.stack(v), axis=0).astype(np.float32))


@pytest.mark.parametrize("dx", [0, 2])
def test_flickering_residue_is_removed_and_the_rest_untouched(dx):
    clean = _scene(dx=dx)
    s = _streaks(*clean.shape[:3])
    rainy = _add(clean, s, 120.0)           # rain
    residue = _add(clean, s, 40.0)          # what a network that removed two thirds of it left
    out = stabilise_frames(rainy, residue)
    before, after = psnr(residue, clean), psnr(out, clean)
    assert after > before + 6, (before, after)
    # away from the frame's removed streaks (the mask's 15-px high-pass reaches 8 px) nothing moves, to the bit
    for t in range(len(out)):
        far = cv2.dilate((s[t] > 0).astype(np.uint8), np.ones((19, 19), np.uint8)) == 0
        assert far.mean() > 0.1
        assert np.array_equal(out[t][far], residue[t][far])


def test_nothing_removed_means_bit_identical_output():
    clean = _scene(dx=2)
    assert np.array_equal(stabilise_frames(clean, clean), clean)


def test_neighbours_that_disagree_are_not_voted_in():
    """Neighbours whose content differs around the rain (cuts, flashes, occlusions, a flow gone
    wrong) must not replace the frame's pixels, even when they are the majority: here every frame
    is another scene, and a perfect network's output has to come back unchanged."""
    clean = np.concatenate([_scene(n=1, seed=10 + t) for t in range(8)])
    rainy = _add(clean, _streaks(*clean.shape[:3]), 120.0)
    assert psnr(stabilise_frames(rainy, clean), clean) > 42
    trusting = StabiliserConfig(tol_clean=1e9, tol_any=1e9, tol_exposure=1e9, tol_align=1e9)   # the same median without the checks
    assert psnr(stabilise_frames(rainy, clean, trusting), clean) < 35


def test_a_lightning_flash_keeps_its_light():
    """One frame much brighter than its neighbours (lightning): all four neighbours disagree, and
    the frame must not be darkened back towards them where rain was removed."""
    clean = _scene(dx=1)
    clean[6] = np.clip(clean[6].astype(np.int16) + 60, 0, 255).astype(np.uint8)
    s = _streaks(*clean.shape[:3], count=60)
    rainy = _add(clean, s, 120.0)
    out = stabilise_frames(rainy, clean)
    assert psnr(out[6], clean[6]) > 45


@pytest.mark.parametrize("passes", [1, 2])
def test_streaming_output_depends_only_on_each_frames_neighbours(passes):
    """Frame k, streamed through a long sequence, equals frame k of the short sequence holding only
    the frames it can reach (K per pass): the buffers keep, drop and reorder nothing, the passes
    share the right flows, and outputs leave K x passes frames late."""
    clean = _scene(n=11, dx=1)
    s = _streaks(*clean.shape[:3])
    rainy, residue = _add(clean, s, 120.0), _add(clean, s, 40.0)
    K = 2
    cfg = StabiliserConfig(radius=K, passes=passes)
    D = K * passes
    st = TemporalStabiliser(cfg)
    assert st.delay == D
    got = {}
    for i in range(len(clean)):
        for k, rgb in st.push(i, rainy[i], residue[i]):
            assert k not in got
            got[k] = rgb
        assert sorted(got) == list(range(max(0, i + 1 - D)))
    got.update(st.flush())
    assert sorted(got) == list(range(len(clean)))
    assert not st._flows and not st._keys       # nothing held after a flush
    for k in range(len(clean)):
        lo = max(0, k - D)
        alone = stabilise_frames(rainy[lo:k + D + 1], residue[lo:k + D + 1], cfg)
        assert np.array_equal(got[k], alone[k - lo]), k
        assert not np.array_equal(got[k], residue[k])


def test_a_second_pass_takes_more_residue():
    """The median over the first pass's results: less residue left than after one pass."""
    clean = _scene(dx=1)
    s = _streaks(*clean.shape[:3], count=60)
    rainy, residue = _add(clean, s, 120.0), _add(clean, s, 40.0)
    one = psnr(stabilise_frames(rainy, residue, StabiliserConfig(passes=1)), clean)
    two = psnr(stabilise_frames(rainy, residue, StabiliserConfig(passes=2)), clean)
    assert two > one + 0.5, (one, two)


def test_short_tiny_and_resized_streams():
    clean = _scene(n=3, dx=1)
    s = _streaks(*clean.shape[:3])
    rainy, residue = _add(clean, s, 120.0), _add(clean, s, 40.0)
    for n in (1, 2):       # no majority to take: unchanged
        assert np.array_equal(stabilise_frames(rainy[:n], residue[:n]), residue[:n])
    assert not np.array_equal(stabilise_frames(rainy, residue), residue)
    tiny = residue[:, :10, :10]
    assert np.array_equal(stabilise_frames(rainy[:, :10, :10], tiny), tiny)
    # a stream that changes resolution: the old size is finished first, nothing is mixed or lost
    big = _scene(n=4, h=80, w=120, dx=1)
    st, got = TemporalStabiliser(), []
    for i in range(3):
        got += st.push(i, rainy[i], residue[i])
    for i in range(4):
        got += st.push(3 + i, _add(big, _streaks(4, 80, 120), 120.0)[i], big[i])
    got += st.flush()
    assert [k for k, _ in got] == list(range(7))
    assert [rgb.shape for _, rgb in got] == [residue.shape[1:]] * 3 + [big.shape[1:]] * 4


def test_after_a_size_change_a_scene_comes_out_as_from_a_fresh_stabiliser():
    """The flow object keeps state from its last image size: a stream that changes size must not
    carry it into the new scene (a resumed part starts fresh and must match)."""
    def seq(n, h, w, seed):
        clean = _scene(n=n, h=h, w=w, dx=1, seed=seed)
        s = _streaks(n, h, w, seed=seed + 1)
        return _add(clean, s, 120.0), _add(clean, s, 40.0)
    r1, d1 = seq(7, 64, 96, 3)
    r2, d2 = seq(5, 72, 72, 5)
    alone = stabilise_frames(r1, d1)
    st, got = TemporalStabiliser(), []
    for k, (a, b) in enumerate(list(zip(r1, d1)) + list(zip(r2, d2)) + list(zip(r1, d1))):
        got += st.push(k, a, b)
    got += st.flush()
    assert [k for k, _ in got] == list(range(19))
    for i in range(7):
        assert np.array_equal(got[12 + i][1], alone[i]), i


def test_pipeline_runs_it_after_the_method():
    clean = _scene(dx=2)
    rainy = _add(clean, _streaks(*clean.shape[:3]), 120.0)
    plain = derain_frames(rainy, method="median", device="cpu")
    stab = derain_frames(rainy, method="median", device="cpu", stabilise=True)
    assert np.array_equal(stab, stabilise_frames(rainy, plain, StabiliserConfig()))
    assert not np.array_equal(stab, plain)
    # the rain layer written beside the output is what was removed in the end
    from vderain.io import Frame
    from vderain.pipeline import derain_iter, resolve_method
    m = get_method("median", device="cpu", stabilise=True)
    frames = (Frame(rgb=a, index=i, pts=None, time=i / 25) for i, a in enumerate(rainy))
    for frame, rgb, rain in derain_iter(frames, m, rain=True):
        assert np.array_equal(rgb, stab[frame.index])
        assert np.array_equal(rain, np.clip(rainy[frame.index].astype(int) - rgb, 0, 255).astype(np.uint8))
    # asking for it on a method instance leaves the caller's object as it was
    plain_m = get_method("median", device="cpu")
    assert resolve_method(plain_m, stabilise=True).stabiliser is not None and plain_m.stabiliser is None
    assert resolve_method(m, stabilise=False).stabiliser is None and m.stabiliser is not None


def test_default_is_on_for_centred_networks_only():
    assert get_method("median", device="cpu").stabiliser is None
    assert get_method("median", device="cpu", stabilise=True).stabiliser is not None
    fast, quality = get_method("fast", device="cpu"), get_method("quality", device="cpu")
    assert fast.stabiliser.radius == quality.stabiliser.radius == 2
    assert get_method("quality", device="cpu", stabilise=False).stabiliser is None
    assert get_method("fast", device="cpu", causal=True).stabiliser is None        # live: no waiting
    assert get_method("quality", device="cpu", framewise=True).stabiliser is None  # the one-frame twin


class _Dimmer(Method):
    """Removes a fixed fraction of what sticks out above a 5-frame mean: a crude, deterministic derainer."""
    name, window, target = "dimmer", 5, 2

    def __call__(self, clips):
        t = clips[:, self.target]
        return t - 0.5 * (t - clips.mean(1)).clamp(min=0)


def test_resumed_parts_match_one_run(tmp_path):
    src = make_video(tmp_path / "in.mkv", n=30)
    one, parts = tmp_path / "one.mkv", tmp_path / "parts.mkv"
    m = _Dimmer()
    m.stabiliser = StabiliserConfig(radius=2)
    derain_video(src, one, method=m, codec="ffv1", progress=False)
    derain_video(src, parts, method=m, codec="ffv1", progress=False, resume=True, segment_seconds=0.25)
    a, b = read_all(one)[0], read_all(parts)[0]
    plain = tmp_path / "plain.mkv"
    derain_video(src, plain, method=_Dimmer(), codec="ffv1", progress=False)
    assert not np.array_equal(a, read_all(plain)[0])   # the stabiliser did something ...
    assert a.shape == b.shape and np.array_equal(a, b)  # ... and each part had its context


def test_cli_switch(tmp_path, capsys):
    from vderain.cli import main
    src = make_video(tmp_path / "in.mkv", n=8)
    runs = {}
    for flag in ("--stabilise", "--no-stabilise"):
        out = tmp_path / f"{flag}.mkv"
        assert main(["run", src, "-o", str(out), "--method", "median", flag, "--codec", "ffv1", "-q"]) == 0
        runs[flag] = read_all(out)[0]
    assert "8 frames" in capsys.readouterr().out
    assert runs["--stabilise"].shape == runs["--no-stabilise"].shape
    assert not np.array_equal(runs["--stabilise"], runs["--no-stabilise"])


def _torch_path(cfg=None):
    """The GPU path's code (torch per-pixel work, threaded flows), run on the CPU."""
    from vderain.methods._stabilise_torch import DevicePath
    st = TemporalStabiliser(cfg)
    st._torch = DevicePath(st.cfg, "cpu")
    return st


def _run(rainy, out, path, cfg=None):
    """The stabilised frames by the OpenCV path, or by the torch path (path="torch") on the CPU."""
    if path != "torch":
        return stabilise_frames(rainy, out, cfg)
    st, got = _torch_path(cfg), {}
    for i in range(len(out)):
        got.update(st.push(i, rainy[i], out[i]))
    got.update(st.flush())
    st.close()
    return np.stack([got[k] for k in range(len(out))])


def test_gpu_path_agrees_with_the_cpu_path():
    clean = _scene(dx=2)
    s = _streaks(*clean.shape[:3])
    rainy, residue = _add(clean, s, 120.0), _add(clean, s, 40.0)
    cpu = stabilise_frames(rainy, residue)
    dev = _run(rainy, residue, "torch")
    assert psnr(dev, cpu) > 40                                   # bilinear sampling and borders differ a little
    assert psnr(dev, clean) > psnr(residue, clean) + 6           # and it works as well
    st, same = _torch_path(), {}
    for i in range(len(clean)):
        same.update(st.push(i, clean[i], clean[i]))
    same.update(st.flush())
    st.close()
    assert len(same) == len(clean) and all(np.array_equal(rgb, clean[k]) for k, rgb in same.items())


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_path_agrees_with_the_cpu_path():
    clean = _scene(dx=2)
    s = _streaks(*clean.shape[:3])
    rainy, residue = _add(clean, s, 120.0), _add(clean, s, 40.0)
    cpu = stabilise_frames(rainy, residue)
    gpu = stabilise_frames(rainy, residue, device="cuda")
    assert psnr(gpu, cpu) > 40
    assert np.array_equal(stabilise_frames(clean, clean, device="cuda"), clean)


@pytest.mark.parametrize("threaded", [False, True])
def test_video_gets_the_same_frames_inline_or_in_its_own_thread(tmp_path, monkeypatch, threaded):
    from vderain import pipeline
    monkeypatch.setattr(pipeline, "_STABILISER_THREAD", threaded)   # a GPU run uses a thread
    src = make_video(tmp_path / "in.mkv", n=12)
    out, rain = tmp_path / "out.mkv", tmp_path / "rain.mkv"
    derain_video(src, out, method="median", stabilise=True, codec="ffv1", progress=False, rain_layer=rain)
    frames = read_all(src)[0]
    expected = derain_frames(frames, method="median", device="cpu", stabilise=True)
    got = read_all(out)[0]
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, derain_frames(frames, method="median", device="cpu"))
    assert np.array_equal(read_all(rain)[0], np.clip(frames.astype(int) - got, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("where", ["push", "flush"])
def test_a_failing_stabiliser_thread_stops_the_run_and_leaves_no_output(tmp_path, monkeypatch, where):
    """In the middle (the method's queue fills up) or at the very end (after the last frame was
    handed over: the encoder still waits for its end marker) the error comes out, no hang."""
    import threading
    from vderain import pipeline
    from vderain.methods import stabilise
    monkeypatch.setattr(pipeline, "_STABILISER_THREAD", True)
    src = make_video(tmp_path / "in.mkv", n=40)
    calls = []

    def broken_push(self, key, rgb_in, rgb_out):
        calls.append(key)
        if len(calls) > 5:
            raise RuntimeError("stabiliser broke")
        return []

    def broken_flush(self):
        raise RuntimeError("stabiliser broke")

    if where == "push":
        monkeypatch.setattr(stabilise.TemporalStabiliser, "push", broken_push)
    else:
        monkeypatch.setattr(stabilise.TemporalStabiliser, "flush", broken_flush)
    out = tmp_path / "out.mkv"
    errors = []

    def run():
        try:
            derain_video(src, out, method="median", stabilise=True, codec="ffv1", progress=False)
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the run hung after the stabiliser thread died"
    assert errors and "stabiliser broke" in str(errors[0])
    assert not out.exists()


@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_camera_noise_around_a_removed_streak_is_left_as_it_was(path):
    """The median of moved neighbours would also average the camera's noise around each removed
    streak (a change the rain did not make); changes under the deadband are not made, while a
    residue above it still goes."""
    clean = _scene(dx=0)
    rng = np.random.default_rng(5)
    noisy = np.clip(clean + rng.normal(0, 1.2, clean.shape), 0, 255).astype(np.uint8)   # per frame
    s = _streaks(*clean.shape[:3])
    rainy, residue = _add(noisy, s, 120.0), _add(noisy, s, 40.0)
    out, no_band = (_run(rainy, residue, path, cfg) for cfg in (StabiliserConfig(), StabiliserConfig(deadband=0.0)))
    streak = np.broadcast_to((s > 0)[..., None], out.shape)
    near = np.broadcast_to((cv2.dilate(s.max(0), np.ones((9, 9))) > 0)[None, ..., None], out.shape) & ~streak
    changed = lambda x: np.abs(x.astype(int) - noisy)[near].mean()
    assert changed(no_band) > 0.3 and changed(out) < 0.5 * changed(no_band), (changed(out), changed(no_band))
    assert psnr(out, noisy) > psnr(residue, noisy) + 6          # the residue still goes


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU"))])
def test_the_torch_paths_neighbour_statistics_give_numpys_medians_and_weights(device):
    """The torch path takes the exposure and alignment checks' medians on the device, for all the
    neighbours at once (NumPy's medians on the CPU, with a transfer and a synchronisation per
    neighbour, were most of its time at 1080p): the same numbers to the bit, so the same weights.
    Ties (whole numbers), odd and even counts, nothing inside, too few textured samples."""
    import torch
    from vderain.methods._stabilise_torch import neighbour_stats
    from vderain.methods.stabilise import TEXTURE_MIN, neighbour_gain, neighbour_weight, texture_samples
    rng = np.random.default_rng(0)
    for h, w in ((37, 53), (40, 56), (29, 64)):
        grey = rng.integers(0, 256, (h, w)).astype(np.uint8)
        tex = texture_samples(grey, 4)
        assert np.array_equal(texture_samples(torch.from_numpy(grey).to(device).float(), 4).cpu().numpy(), tex)
        textured = tex >= TEXTURE_MIN
        hs, ws = -(-h // 4), -(-w // 4)
        off = np.stack([rng.integers(-6, 7, (hs, ws)).astype(np.float32), rng.normal(0, 3, (hs, ws)).astype(np.float32),
                        rng.normal(5, 2, (hs, ws)).astype(np.float32) / 3, np.full((hs, ws), 2.5, np.float32)] * 2)
        inside = rng.random(off.shape) < np.array([1.0, 0.5, 0.9, 0.7, 0.0, 0.02, 0.3, 0.999])[:, None, None]
        stats = neighbour_stats(*(torch.from_numpy(x).to(device) for x in (off, inside, tex, textured))).tolist()
        for cfg in (StabiliserConfig(), StabiliserConfig(tol_exposure=0.7, tol_align=0.4)):
            for k, st in enumerate(stats):
                assert neighbour_gain(*st, cfg) == neighbour_weight(off[k], inside[k], tex, textured, cfg), (h, w, k)
        for k, (n_in, med, _, _) in enumerate(stats):
            assert n_in == inside[k].sum() and (n_in == 0 or med == np.median(off[k][inside[k]]))
