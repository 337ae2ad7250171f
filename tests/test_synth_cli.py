"""`vderain synth`: streaming rain onto a clip, clean reference, layer, errors."""
import os

import numpy as np
import pytest
import torch

from vderain import VderainError
from vderain.cli import main
from vderain.synth import RainSynth
from vderain.synth.scenes import procedural_clip


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    av = pytest.importorskip("av")
    path = tmp_path_factory.mktemp("synth") / "in.mp4"
    frames = (procedural_clip(10, 48, 64, seed=21, motion="pan") * 255).byte().permute(0, 2, 3, 1).numpy()
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for f in frames:
            for p in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return str(path)


def _frames(path):
    import av
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_synth_writes_rainy_clean_and_layer(clip_path, tmp_path):
    out, clean, layer = str(tmp_path / "rain.mp4"), str(tmp_path / "clean") + "/", str(tmp_path / "layer.mp4")
    rc = main(["synth", clip_path, "-o", out, "--preset", "heavy", "--seed", "5", "--save-clean", clean,
               "--save-layer", layer, "--chunk", "4", "-q", "--codec", "x264-lossless"])
    assert rc == 0
    rainy = _frames(out)
    assert rainy.shape == (10, 48, 64, 3)
    assert len(os.listdir(clean)) == 10
    assert _frames(layer).shape == (10, 48, 64, 3)
    import cv2
    c0 = cv2.cvtColor(cv2.imread(os.path.join(clean, "000000.png")), cv2.COLOR_BGR2RGB)
    assert np.abs(rainy[0].astype(int) - c0.astype(int)).mean() > 1.0      # rain was added
    # same seed, same rain
    out2 = str(tmp_path / "rain2.mp4")
    assert main(["synth", clip_path, "-o", out2, "--preset", "heavy", "--seed", "5", "--chunk", "4", "-q",
                 "--codec", "x264-lossless"]) == 0
    assert np.array_equal(_frames(out2), rainy)


def test_synth_bad_input(clip_path, tmp_path, capsys):
    assert main(["synth", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "x.mp4"), "-q"]) == 1
    assert main(["synth", clip_path, "-o", clip_path, "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("vderain: error:") == 2


def test_chunked_rain_continues_across_chunks():
    clean = procedural_clip(8, 40, 48, seed=2, motion="static")[None]
    synth = RainSynth("heavy", camera=False, overrides={"splash": 0})
    full = synth(clean, torch.Generator().manual_seed(3))["streak_mask"]
    parts = [synth(clean[:, i:i + 4], torch.Generator().manual_seed(3), t0=i,
                   frame_generator=torch.Generator().manual_seed(100 + i))["streak_mask"] for i in (0, 4)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_chunked_haze_keeps_the_first_chunks_colour():
    # the veil's airlight follows the clip's first frame; each chunk's own first frame made the
    # haze colour step at every chunk border of `vderain synth` (a clip that brightens)
    ramp = torch.linspace(0.4, 1.0, 8)[None, :, None, None, None]
    clean = procedural_clip(8, 40, 48, seed=2, motion="static")[None] * ramp
    synth = RainSynth("heavy", camera=False, dct_prob=0.0, overrides={"splash": 0, "opacity": 0.0, "veil": 0.8})
    full = synth(clean, torch.Generator().manual_seed(3))
    first = synth(clean[:, :4], torch.Generator().manual_seed(3), frame_generator=torch.Generator().manual_seed(1))
    kept = synth(clean[:, 4:], torch.Generator().manual_seed(3), t0=4, frame_generator=torch.Generator().manual_seed(2),
                 scene_mean=first["params"]["scene_mean"])
    stepped = synth(clean[:, 4:], torch.Generator().manual_seed(3), t0=4, frame_generator=torch.Generator().manual_seed(2))
    err = lambda part: (part["rainy"] - full["rainy"][:, 4:]).abs().max().item()  # noqa: E731
    assert err(kept) < 1e-4 < 2e-3 < err(stepped)
    with pytest.raises(VderainError, match="fps"):
        synth(clean, fps=0.0)


def _pngs(folder):
    import cv2
    names = sorted(os.listdir(folder))
    return np.stack([cv2.cvtColor(cv2.imread(os.path.join(folder, n)), cv2.COLOR_BGR2RGB) for n in names])


def test_synth_outputs_under_other_spellings_of_one_path_are_refused(clip_path, tmp_path, capsys):
    # the second writer to the same target used to delete the first one's temp file (same PID)
    # and the run failed after publishing the clean frames under the rainy output's name
    out = str(tmp_path / "a.mp4")
    assert main(["synth", clip_path, "-o", out, "--save-clean", str(tmp_path) + "/./a.mp4", "-q"]) == 1
    d = str(tmp_path / "d")
    assert main(["synth", clip_path, "-o", d + "/", "--save-clean", d, "-q"]) == 1
    # an output inside a folder output: that folder is renamed into place whole
    os.mkdir(d)
    assert main(["synth", clip_path, "-o", d + "/", "--save-layer", os.path.join(d, "layer.mp4"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("vderain: error:") == 3 and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["d"] and os.listdir(d) == []


@pytest.mark.parametrize("extra", [["--seed", str(10 ** 25)], ["--fps", "nan"], ["--fps", "inf"]])
def test_synth_bad_numbers_are_one_line_errors(tmp_path, capsys, extra):
    from videogen import make_frame_folder
    src = make_frame_folder(tmp_path / "in", n=2, width=16, height=12)
    assert main(["synth", src, "-o", str(tmp_path / "out.mp4"), "-q"] + extra) == 1
    err = capsys.readouterr().err
    assert err.count("vderain: error:") == 1 and extra[0] in err
    assert not os.path.exists(tmp_path / "out.mp4")


def test_synth_rain_falls_down_the_screen_of_a_rotated_phone_clip(tmp_path):
    # a phone clip is coded sideways with a display rotation; the rain must fall down the picture
    # as it is shown: the same rain as for the same clip stored upright (PNG outputs are upright)
    from videogen import make_video
    flat = np.full((4, 48, 64, 3), 90, np.uint8)                        # coded landscape
    phone = make_video(tmp_path / "phone.mp4", frames=flat, rotation=90)  # shown portrait 48x64
    upright = make_video(tmp_path / "upright.mp4", frames=flat.transpose(0, 2, 1, 3).copy())
    for src in (phone, upright):
        assert main(["synth", src, "-o", src[:-4] + "/", "--preset", "heavy", "-q", "--codec", "png"]) == 0
    a, b = _pngs(phone[:-4]), _pngs(upright[:-4])
    assert a.shape == b.shape == (4, 64, 48, 3)
    assert np.array_equal(a, b)
    layer = a.astype(float) - 90
    assert (np.diff(layer, axis=2) ** 2).mean() > 1.5 * (np.diff(layer, axis=1) ** 2).mean()   # vertical


def test_synth_warns_about_skipped_frames_and_writer_notes(tmp_path, capsys):
    import cv2
    from videogen import make_frame_folder
    src = make_frame_folder(tmp_path / "in", n=4, width=17, height=11)
    cv2.imwrite(str(tmp_path / "in" / "frame_3.png"), np.zeros((8, 8, 3), np.uint8))   # another size
    rc = main(["synth", src, "-o", str(tmp_path / "out.mp4"), "--save-clean", str(tmp_path / "clean") + "/",
               "-q"])
    out = capsys.readouterr()
    assert rc == 3                                                       # as `vderain run`: damaged input
    assert "warning" in out.err and "frame_3.png" in out.err
    assert "padded" in out.err                                           # odd size, h264 file
    assert len(os.listdir(tmp_path / "clean")) == 3 and "3 frames" in out.out


def test_synth_ground_truth_files_are_exact_by_default(clip_path, tmp_path):
    # rainy - clean = layer must hold in what is written; a 4:2:0 h264 layer was off by up to 73 levels
    rain = str(tmp_path / "rain") + "/"
    clean, layer = str(tmp_path / "clean.mp4"), str(tmp_path / "layer.mkv")
    assert main(["synth", clip_path, "-o", rain, "--save-clean", clean, "--save-layer", layer,
                 "--preset", "storm", "--camera", "-q"]) == 0
    r, c, lay = _pngs(rain).astype(int), _frames(clean).astype(int), _frames(layer).astype(int)
    assert r.shape == c.shape == lay.shape == (10, 48, 64, 3)
    assert np.abs((r - c) - (2 * lay - 255)).max() <= 1


def test_synth_says_the_clean_target_is_not_the_input(clip_path, tmp_path, capsys):
    assert main(["synth", clip_path, "-o", str(tmp_path / "n.mp4"), "--preset", "night", "--chunk", "10",
                 "-q"]) == 0
    assert "--save-clean" in capsys.readouterr().err
