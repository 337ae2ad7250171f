"""RainSynth: clean clips in, (rainy, clean, rain layer, masks, params) out. Pure torch, batched.

Order of operations for a batch (B, T, 3, H, W):
  1. scene (clean and rainy alike): tone/colour augmentation, day-to-night + lamps,
     hard negatives (thin line textures)                              -> clean target
  2. rain: veil (haze grows with a depth proxy, airlight relative to the scene so it can
     darken as well as brighten), then streak/splash opacity alpha and a streak colour
     from the scene (refraction of a wide view, glow near light sources), composited
     with alpha (occludes, not only adds); with faint_prob, a share of rain clips
     then has its whole rain change scaled by k (rain at a few grey levels)  -> rainy
  3. camera (both): slight defocus, sensor noise with the same noise field in both
  4. compression (rainy only, rain clips only): 8x8 block-DCT stand-in, or a real
     encoder round trip (codec_prob, CPU, needs PyAV)
Rain-free clips skip 2 and 4: their rainy clip *is* the clean clip (layer exactly 0).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vderain import VderainError
from vderain.synth import effects, negatives
from vderain.synth.presets import PARAM_NAMES, PRESET_NAMES, PRESETS, TRAIN_MIX, preset_table
from vderain.synth.streaks import render_rain


def _weights(preset) -> dict[str, float]:
    if isinstance(preset, dict):
        w = {k: float(v) for k, v in preset.items()}
    elif preset == "train":
        w = dict(TRAIN_MIX)
    elif preset in PRESETS:
        w = {preset: 1.0}
    else:
        raise VderainError(f"unknown rain preset '{preset}' (choose from train, {', '.join(PRESETS)})")
    bad = [k for k in w if k not in PRESETS]
    if bad:
        raise VderainError(f"unknown rain preset(s) {bad} (choose from {', '.join(PRESETS)})")
    if sum(w.values()) <= 0:
        raise VderainError("preset weights must sum to more than 0")
    return w


class RainSynth:
    """Synthetic rain for batches of clean clips.

    preset: "train" (mix of all presets + ~18% rain-free + hard negatives + tone aug),
            a preset name (light, heavy, night, dashcam, storm, norain) or a dict of weights.
    codec_prob: share of rain clips sent through a real encoder (libx264, random CRF 18..34).
    dct_prob: share of rain clips given the pure-torch block-DCT compression stand-in.
    negatives_prob: share of clips that get a hard negative drawn into the scene.
    tone_aug: shared exposure / tone curve / colour cast augmentation.
    camera: shared defocus and sensor noise.
    px_scale: frame short side / 360; scales streak lengths, widths and densities.
    overrides: {param: value} fixes a preset parameter for every clip (tests, suite).
    dct_quality: fixed JPEG-style quality for the block-DCT stand-in (default: random 25..90).
    Defaults of the last five depend on the preset: on for "train"/dicts, off (no aug,
    no negatives) for a single named preset, which is what `vderain synth` uses.
    faint_prob, faint_scale: share of rain clips whose rain (veil and streaks, before camera
    noise and compression) is scaled by k ~ U(faint_scale): rainy = clean + k (rainy - clean).
    Real phone and webcam rain is mostly 3-10 grey levels, fainter than most presets draw
    (tools/faint_rain_check.py measured the networks removing ~1-10 % of it). Off by default;
    it draws random numbers only when on, so every existing mix makes the same clips.
    faint_veil: False drops the veil from the faint clips (streaks only, scaled by k): with it,
    a faint clip teaches that faint streaks come with a faint brightening of the whole scene,
    and a network trained so subtracted a ~1-level layer from static scenes in faint rain.
    """

    def __init__(self, preset: str | dict[str, float] = "train", device="cpu", codec_prob: float = 0.0,
                 *, dct_prob: float | None = None, negatives_prob: float | None = None,
                 tone_aug: bool | None = None, camera: bool = True, px_scale: float = 1.0,
                 dct_quality: float | None = None,
                 faint_prob: float = 0.0, faint_scale: tuple[float, float] = (0.1, 0.6),
                 faint_veil: bool = True, overrides: dict[str, float] | None = None):
        self.device = torch.device(device)
        w = _weights(preset)
        training = preset == "train" or isinstance(preset, dict)
        self.preset = preset
        self.codec_prob = float(codec_prob)
        self.dct_prob = float(dct_prob if dct_prob is not None else (0.3 if training else 0.0))
        self.negatives_prob = float(negatives_prob if negatives_prob is not None else (0.3 if training else 0.0))
        self.tone_aug = bool(tone_aug if tone_aug is not None else training)
        self.camera = bool(camera)
        self.px_scale = float(px_scale)
        self.dct_quality = dct_quality
        self.faint_prob = float(faint_prob)
        self.faint_scale = (float(faint_scale[0]), float(faint_scale[1]))
        self.faint_veil = bool(faint_veil)
        if not (0.0 <= self.faint_prob <= 1.0 and 0.0 < self.faint_scale[0] <= self.faint_scale[1] <= 1.0):
            raise VderainError(f"faint_prob must be in [0, 1] and faint_scale 0 < low <= high <= 1, "
                               f"got {faint_prob} and {faint_scale}")
        self.overrides = dict(overrides or {})
        bad = [k for k in self.overrides if k not in PARAM_NAMES]
        if bad:
            raise VderainError(f"unknown rain parameter(s) {bad}")
        lo, hi = preset_table()
        self._lo = torch.tensor(lo, device=self.device)                        # (P, K)
        self._hi = torch.tensor(hi, device=self.device)
        mix = [w.get(n, 0.0) for n in PRESET_NAMES]
        # multinomial's draws depend on the vector's length: presets added after the first six
        # join it only when used, so every older mix (the benchmark suite) makes the same clips
        mix = mix[:max(6, max(i for i, v in enumerate(mix) if v > 0) + 1)]
        self._mix = torch.tensor(mix, device=self.device)
        self._noise_bank = None

    # ---- parameters ------------------------------------------------------------------
    def sample_params(self, B: int, g: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pid = torch.multinomial(self._mix, B, replacement=True, generator=g)     # (B,)
        u = torch.rand(B, len(PARAM_NAMES), generator=g, device=self.device)
        vals = self._lo[pid] + u * (self._hi[pid] - self._lo[pid])              # (B, K)
        p = {name: vals[:, i] for i, name in enumerate(PARAM_NAMES)}
        for k, v in self.overrides.items():
            p[k] = torch.full((B,), float(v), device=self.device)
        return pid, p

    def _noise(self, n: int, T: int, H: int, W: int, g: torch.Generator) -> torch.Tensor:
        """Gaussian noise (n, T, 3, H, W). Fresh randn is slow on CPU (~4 ns a number), so
        small frames take random windows of a fixed bank made once per synthesiser."""
        if H > 192 or W > 192:
            return torch.randn(n, T, 3, H, W, generator=g, device=self.device)
        if self._noise_bank is None:
            bg = torch.Generator(device=self.device).manual_seed(0x5EED)
            self._noise_bank = torch.randn(16, 3, 384, 384, generator=bg, device=self.device)
        pick = torch.randint(0, 16, (n, T), generator=g, device=self.device)
        off = torch.randint(0, 384 - 192, (n, 2), generator=g, device=self.device).tolist()
        return torch.stack([self._noise_bank[pick[i], :, o[0]:o[0] + H, o[1]:o[1] + W]
                            for i, o in enumerate(off)])

    # ---- main ------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, clean: torch.Tensor, generator: torch.Generator | None = None,
                 fps: float | torch.Tensor = 30.0, *, t0: int = 0,
                 frame_generator: torch.Generator | None = None,
                 scene_mean: torch.Tensor | None = None) -> dict:
        """Rain for a batch (B, T, 3, H, W) in [0, 1]; see the module docstring for the steps.

        fps: frame rate (float or (B,)): sets how far drops fall between frames.
        Streaming a long clip in chunks: pass a generator seeded identically for every
        chunk (it draws everything that is fixed per clip: parameters, drops, lamps, haze),
        t0 = index of the chunk's first frame (drops keep falling across chunks), and a
        different frame_generator per chunk (noise and splashes, which are new every frame),
        and the first chunk's ["params"]["scene_mean"] as scene_mean (B, 3): the haze colour follows
        the clip's first frame, and each chunk's own first frame made it step at chunk borders.
        """
        if clean.dim() != 5 or clean.shape[2] != 3:
            raise VderainError(f"RainSynth wants clips (B, T, 3, H, W), got {tuple(clean.shape)}")
        if clean.device.type != self.device.type:
            raise VderainError(f"clips are on {clean.device} but RainSynth was built for {self.device}")
        g = generator
        if g is None:
            g = torch.Generator(device=self.device)
            g.manual_seed(int(torch.randint(0, 2 ** 62, (1,))))
        B, T, _, H, W = clean.shape
        dev = self.device
        x = clean.float()
        fps_b = torch.as_tensor(fps, dtype=torch.float32, device=dev).expand(B).clone()
        if not bool(torch.isfinite(fps_b).all() and (fps_b > 0).all()):
            raise VderainError(f"RainSynth: fps must be finite and > 0 (got {fps})")

        pid, p = self.sample_params(B, g)
        extra = torch.rand(B, 40, generator=g, device=dev)                      # misc randoms
        rain = p["rain"] > 0.5
        bc = lambda v: v[:, None, None, None, None]                             # (B,) -> (B,1,1,1,1)
        rec = {"preset_id": pid, "rain_free": ~rain, "fps": fps_b}

        # 1. scene: identical in clean and rainy --------------------------------------
        if self.tone_aug:
            cast = 1 + (extra[:, 0:3] * 2 - 1) * p["cast"][:, None]
            x = effects.tone(x, p["gain"], p["curve"], cast)                    # a new tensor
        else:
            for k in ("gain", "curve", "cast"):
                p[k] = torch.zeros_like(p[k]) + (1.0 if k == "gain" else 0.0)
            if x.data_ptr() == clean.data_ptr():
                x = x.clone()                   # in-place steps below must not touch the input
        is_night = p["night"] > 0.5
        if bool(is_night.any()):
            idx = is_night.nonzero()[:, 0]
            xn = effects.night(x[idx], torch.ones(len(idx), device=dev), extra[idx, 3:6])
            u_l = torch.rand(len(idx), 4, 6, generator=g, device=dev)
            xn = (xn + effects.lamps(len(idx), T, H, W, torch.floor(p["lamps"][idx]), u_l,
                                     self.px_scale)).clamp(0, 1)
            x[idx] = xn
        neg_kind = torch.full((B,), -1, dtype=torch.long, device=dev)
        with_neg = extra[:, 6] < self.negatives_prob
        if bool(with_neg.any()):
            idx = with_neg.nonzero()[:, 0]
            kinds = (extra[idx, 7] * len(negatives.KINDS)).long().clamp(max=len(negatives.KINDS) - 1)
            u_n = torch.rand(len(idx), 20, generator=g, device=dev)
            x[idx] = negatives.composite(x[idx], kinds, u_n, self.px_scale)
            neg_kind[idx] = kinds
        clean_out = x

        # 2. rain ---------------------------------------------------------------------
        lr = effects.low_res(x, 8)                                              # (B,T,3,h,w)
        h8, w8 = lr.shape[-2:]
        env = lr.mean((-2, -1), keepdim=True)                                   # (B,T,3,1,1)
        lum_lr = lr.mean(2)                                                     # (B,T,h,w)
        # veil: transmission t = exp(-veil * depth), airlight tied to the scene's mean
        horizon = 0.25 + 0.35 * extra[:, 8]
        depth = effects.depth_proxy(h8, w8, horizon, torch.rand(B, 4, 4, generator=g, device=dev))
        veil = p["veil"] * rain
        trans_lr = torch.exp(-veil[:, None, None] * depth)                      # (B,h,w)
        first = env[:, :1] if scene_mean is None else scene_mean.to(dev, torch.float32).reshape(B, 1, 3, 1, 1)
        air = (first * p["veil_k"][:, None, None, None, None]).clamp(0, 1)      # (B,1,3,1,1)
        air = 0.5 * air + 0.5 * air.mean(2, keepdim=True)                       # haze is greyish
        trans = effects.upsample(trans_lr[:, None, None], H, W)                 # (B,1,1,H,W)
        y = torch.addcmul(air * (1 - trans), x, trans)                          # x t + A (1 - t)

        # streak colour: a drop refracts a wide view of the scene, so it shows roughly the
        # (local and global) scene colour, times env_k, plus specular white and glow near
        # lights; some clips get darker-than-scene streaks (rain seen against the sky)
        mix = extra[:, 9][:, None, None, None, None]
        base = mix * lr + (1 - mix) * env
        # the drop sees a ~165 degree view, usually including the sky: the scene's bright level
        k90 = max(1, int(0.9 * h8 * w8))
        bright = lr.flatten(-2).kthvalue(k90, dim=-1).values[..., None, None]     # (B,T,3,1,1)
        wb = (0.3 + 0.6 * extra[:, 15]) * torch.where(p["night"] > 0.5, 0.3, 1.0)
        base = bc(wb) * bright + (1 - bc(wb)) * base
        col_lr = bc(p["env_k"]) * base + bc(p["spec"])
        glowing = p["glow"] > 0
        if bool(glowing.any()):
            # light sources are small: find them with a max (not mean) pool, then spread the
            # glow over ~3 cells (a drop lit by a lamp shines within a wide radius)
            idx = glowing.nonzero()[:, 0]
            n = len(idx)
            peak = F.max_pool2d(x[idx].reshape(n * T, 3, H, W), 8, ceil_mode=True).amax(1, keepdim=True)
            lights = effects.blur_lr(((peak - 0.6) / 0.4).clamp(0, 1), 3).view(n, T, 1, h8, w8)
            col_lr[idx] += bc(p["glow"][idx]) * lights
        dark = extra[:, 10] < p["dark"]
        col_lr = torch.where(bc(dark), 0.65 * base, col_lr).clamp(0, 1)
        col = effects.upsample(col_lr, H, W)

        gf = frame_generator if frame_generator is not None else g
        opac, _ = render_rain(p, B, T, H, W, fps_b, g, self.px_scale, t0=t0, gf=gf)   # (B,T,1,H,W)
        # a single streak keeps its opacity; overlaps saturate smoothly towards 1
        alpha = torch.where(opac < 0.7, opac, 1 - 0.3 * torch.exp((0.7 - opac) / 0.3))
        y.add_(col.sub_(y).mul_(alpha))                                       # y + alpha (col - y)
        del col
        k_faint = torch.ones(B, device=dev)
        if self.faint_prob > 0:
            u_f = torch.rand(B, 2, generator=g, device=dev)
            lo, hi = self.faint_scale
            faint = rain & (u_f[:, 0] < self.faint_prob)
            k_faint = torch.where(faint, lo + (hi - lo) * u_f[:, 1], k_faint)
            if not self.faint_veil and bool(faint.any()):
                # y = v (1 - alpha) + col alpha over the veiled v = x + (1 - t)(A - x); the same
                # streaks over x itself: y - (1 - alpha)(1 - t)(A - x). Exact, and no new draws
                idx = faint.nonzero()[:, 0]
                y[idx] -= (1 - alpha[idx]) * (1 - trans[idx]) * (air[idx] - x[idx])
                trans = torch.where(bc(faint), torch.ones_like(trans), trans)
                p["veil"] = torch.where(faint, torch.zeros_like(p["veil"]), p["veil"])
            y = torch.lerp(x, y, bc(k_faint))                                   # x + k (y - x)
            alpha = alpha * bc(k_faint)
            trans = 1 - bc(k_faint) * (1 - trans)       # x + k (1 - t)(A - x): the veil scales alike

        # 3. camera: same for both ------------------------------------------------------
        if self.camera:
            blurred = p["defocus"] > 0.45
            for i in blurred.nonzero()[:, 0].tolist():
                sig = float(p["defocus"][i]) * self.px_scale
                clean_out[i] = effects.blur3(clean_out[i], sig)
                y[i] = effects.blur3(y[i], sig)
            p["defocus"] = torch.where(blurred, p["defocus"], torch.zeros_like(p["defocus"]))
            # Poisson-Gaussian noise with the level taken from the clean scene (at 1/8
            # resolution: cheap, and the level varies slowly) and the same noise field in
            # both clips, so the rain layer stays exactly the rain and the model learns to
            # keep a camera's noise rather than to smear it away. Well-exposed daylight
            # clips often show no visible noise: 40% get none.
            noisy = extra[:, 16] < 0.6
            p["noise_a"] = p["noise_a"] * noisy
            p["noise_b"] = p["noise_b"] * noisy
            idx = noisy.nonzero()[:, 0]
            if len(idx):
                sd = torch.sqrt(bc(p["noise_a"][idx]) * lum_lr[idx, :, None] + bc(p["noise_b"][idx]) ** 2)
                n = self._noise(len(idx), T, H, W, gf).mul_(effects.upsample(sd, H, W))
                for j, i in enumerate(idx.tolist()):                            # in place: no copies
                    clean_out[i].add_(n[j]).clamp_(0, 1)
                    y[i].add_(n[j])
                del n
        else:
            p["noise_a"] = torch.zeros_like(p["noise_a"])
            p["noise_b"] = torch.zeros_like(p["noise_b"])
            p["defocus"] = torch.zeros_like(p["defocus"])
        y = y.clamp_(0, 1)

        # 4. compression: rainy only, rain clips only -----------------------------------
        dct_q = torch.zeros(B, device=dev)
        crf = torch.zeros(B, device=dev)
        use_codec = rain & (extra[:, 11] < self.codec_prob)
        use_dct = rain & ~use_codec & (extra[:, 12] < self.dct_prob)
        if bool(use_dct.any()):
            idx = use_dct.nonzero()[:, 0]
            q = 25 + 65 * extra[idx, 13] if self.dct_quality is None else \
                torch.full((len(idx),), float(self.dct_quality), device=dev)
            yd = effects.block_dct_compress(y[idx].reshape(-1, 3, H, W), q.repeat_interleave(T))
            y[idx] = yd.view(len(idx), T, 3, H, W)
            dct_q[idx] = q
        if bool(use_codec.any()):
            idx = use_codec.nonzero()[:, 0]
            for i in idx.tolist():
                c = int(18 + 16 * float(extra[i, 14]))
                frames = (y[i].permute(0, 2, 3, 1) * 255 + 0.5).clamp(0, 255).byte().cpu().numpy()
                dec = effects.codec_roundtrip(frames, c, fps=max(1, int(round(float(fps_b[i])))))
                y[i] = torch.from_numpy(dec).to(dev).permute(0, 3, 1, 2).float() / 255
                crf[i] = c

        # rain-free: the input *is* the target
        for i in (~rain).nonzero()[:, 0].tolist():
            y[i] = clean_out[i]
        rainy = y
        alpha = alpha * bc(rain.float())
        trans = torch.where(bc(rain), trans, torch.ones_like(trans))

        rec.update({k: v for k, v in p.items()})
        rec.update({"negative_kind": neg_kind, "dark_streaks": dark & rain, "airlight": air[:, 0, :, 0, 0],
                    "scene_mean": first[:, 0, :, 0, 0],
                    "dct_quality": dct_q, "codec_crf": crf, "horizon": horizon, "faint_k": k_faint})
        return {
            "rainy": rainy,
            "clean": clean_out,
            "layer": rainy - clean_out,
            "streak_mask": alpha,
            # 0 where the background shows through (alpha <= 0.3), 1 where >= 70% is hidden
            "occlusion_mask": ((alpha - 0.3) / 0.4).clamp(0, 1),
            "transmission": trans,                                            # (B,1,1,H,W) veil
            "params": rec,
        }
