"""`vderain synth`: streaming rain onto a clip, clean reference, layer, errors."""
import os

import numpy as np
import pytest
import torch

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
