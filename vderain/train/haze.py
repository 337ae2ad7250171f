"""Training the haze estimator (vderain/models/haze.py) on its own: `vderain train` with `task: haze`.

The estimator reads one destreaked frame, so it needs no streak network to train: pairs are the
synthesiser's frames with and without its haze, every other random draw the same. Half of each
batch keeps the streaks on both sides (the streak network leaves some; the estimator must read
haze through them), half has none. Without the streak network's forward pass a CPU thread runs
~5x more steps than training the estimator inside STRNet with the body frozen, and one trained
estimator serves every shipped model: `init_haze=runs/haze/haze.pt` attaches it in a zero-step
export (loop.py).
"""
from __future__ import annotations

import copy
import csv
import os
import time
from pathlib import Path

import numpy as np
import torch

from vderain import VderainError, stop_signals_as_interrupt
from vderain.models.haze import HazeNet
from vderain.train import losses as L
from vderain.train.checkpoint import atomic_save, deployable_state, safe_load
from vderain.train.config import TrainConfig
from vderain.train.data import data_for, make_source

HAZE_FORMAT = "vderain.haze/1"
LOG_FIELDS = ["step", "seconds", "lr", "loss", "val_psnr_in", "val_psnr_out", "val_norain_psnr"]
# the suite's rainy cases rendered without drops: the estimator's own task, held out (procedural scenes)
VAL_STRIDE = 6


def export_haze(net: HazeNet, path: str | Path, tau_max: float, meta: dict) -> None:
    atomic_save({"format": HAZE_FORMAT, "tau_max": float(tau_max), "state_dict": deployable_state(net),
                 "meta": meta}, path)


def read_haze(path: str | Path) -> tuple[dict, float, dict]:
    """(fp32 state dict, tau_max, meta) of an exported estimator or a haze training checkpoint."""
    blob = safe_load(path)
    if blob.get("format") == HAZE_FORMAT:
        state = blob["state_dict"]
        tau_max, meta = float(blob["tau_max"]), blob.get("meta", {})
    elif blob.get("task") == "haze" and "model" in blob:
        state = blob.get("ema", blob["model"])
        tau_max, meta = float(blob["config"]["model"]["dehaze"]), {"checkpoint_step": blob.get("step")}
    else:
        raise VderainError(f"{path} is not a haze estimator (train one with `task: haze`)")
    return {k: v.float() for k, v in state.items()}, tau_max, meta


def load_haze(path: str | Path, tau_max: float) -> tuple[dict, dict]:
    """(fp32 state dict, provenance) of a trained estimator for a model undoing depths <= tau_max:
    an estimator trained for another depth reads its logits on another scale, so it is refused."""
    state, trained_for, meta = read_haze(path)
    if abs(trained_for - tau_max) > 1e-6:
        raise VderainError(f"init_haze: {path} was trained with dehaze {trained_for}, the config says {tau_max}")
    keep = ("name", "steps", "seconds", "device", "init", "val_psnr_in", "val_psnr_out", "val_norain_psnr")
    return state, {"path": str(path), **{k: meta[k] for k in keep if k in meta}}


def _pairs(synths, source, batch: int, gen: torch.Generator,
           veil_free_prob: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hazy, clear, haze_free): hazy and clear (B,3,S,S) differ only by the haze; haze_free (B,)
    marks the pairs with none (rain-free clips, and the streaked clips drawn without their veil)."""
    with_streaks, haze_of, no_streaks = synths
    clean = source.sample(batch, gen)                                   # (B,1,3,S,S)
    half = batch // 2
    state = gen.get_state()
    a = with_streaks(clean[:half], generator=gen)
    gen.set_state(state)
    b = haze_of(clean[:half], generator=gen)                            # same draws, no haze
    c = no_streaks(clean[half:], generator=gen)
    streaked, haze_free = a["rainy"], a["params"]["rain_free"].float()
    if veil_free_prob > 0:
        # the deployed estimator runs only where the streak network found rain (haze.rain_gate), and
        # the synthesiser's presets nearly always veil their rain: without these it learns "rain comes
        # with haze" and dehazes low-contrast rainy scenes that have none (particles p_bokeh_near)
        drop = torch.rand(half, generator=gen, device=gen.device) < veil_free_prob
        streaked = torch.where(drop.view(-1, 1, 1, 1, 1), b["rainy"], streaked)
        haze_free = torch.maximum(haze_free, drop.float())
    hazy = torch.cat([streaked, c["rainy"]])[:, 0]
    clear = torch.cat([b["rainy"], c["clean"]])[:, 0]
    haze_free = torch.cat([haze_free, c["params"]["rain_free"].float()])
    return hazy, clear, haze_free


def _val_set(frames: int) -> list[tuple[str, torch.Tensor, torch.Tensor, bool]]:
    from vderain.synth.suite import SUITE_CASES, render_case
    to_t = lambda a: torch.from_numpy(a[::VAL_STRIDE].copy()).permute(0, 3, 1, 2).float() / 255
    out = []
    for name in SUITE_CASES:
        case = render_case(name, frames=frames, rain_overrides={"opacity": 0.0})
        out.append((name, to_t(case["rainy"]), to_t(case["clean"]), bool(case["meta"]["rain_free"])))
    return out


@torch.no_grad()
def validate_haze(net: HazeNet, tau_max: float, cases, device) -> dict:
    """PSNR-Y on the suite's haze (drops off): hazy input and dehazed output vs clean; and output
    vs input on the rain-free cases (must stay ~unchanged)."""
    from vderain.metrics.image import psnr_frames
    from vderain.synth.scenes import to_uint8_frames
    net.eval()
    to_u8 = lambda t: to_uint8_frames(t.cpu())
    rin, rout, nor = [], [], []
    for _, hazy, clean, rain_free in cases:
        h = hazy.to(device)
        out = h - net(h, tau_max)
        if rain_free:
            nor.append(psnr_frames(to_u8(out), to_u8(h)).mean())
        else:
            rin.append(psnr_frames(to_u8(h), to_u8(clean)).mean())
            rout.append(psnr_frames(to_u8(out), to_u8(clean)).mean())
    net.train()
    return {"val_psnr_in": float(np.mean(rin)), "val_psnr_out": float(np.mean(rout)),
            "val_norain_psnr": float(np.mean(nor))}


def train_haze(cfg: TrainConfig, out_dir: str | Path, device: str = "auto", resume: bool = True,
               progress: bool = True) -> dict:
    """Train a HazeNet per `cfg` (data, optim, log, model.dehaze = its largest optical depth);
    writes last.pt (resumable), log.csv and <name>.pt (the estimator)."""
    from vderain.synth import RainSynth
    from vderain.train.loop import _ema_update, resume_from, _upgrade_log, scheduled_lr, train_device
    if cfg.model.dehaze <= 0:
        raise VderainError("task haze: model.dehaze (the largest optical depth to undo) must be > 0")
    if cfg.loss.untouched:
        raise VderainError("loss.untouched is for task derain (the streak network's training)")
    if not 0.0 <= cfg.data.veil_free_prob <= 1.0:
        raise VderainError(f"data.veil_free_prob must be in [0, 1], got {cfg.data.veil_free_prob}")
    if cfg.data.batch < 2:
        raise VderainError("task haze: data.batch must be >= 2 (half the batch keeps its streaks, half has none)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise VderainError("task haze trains in one process (it is small): run it without torchrun")
    device = train_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tau_max = cfg.model.dehaze
    torch.manual_seed(cfg.seed)
    net = HazeNet().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000)
    step, elapsed, ck = 0, 0.0, {}
    ckpt_path = out_dir / "last.pt"
    if resume and ckpt_path.is_file():
        # (with the settings checked: resumed with another dehaze or lr, the estimator would ship
        # under settings it was not trained with)
        ck = resume_from(ckpt_path, "haze", cfg, net, opt)
        step, elapsed = int(ck["step"]), float(ck["seconds"])
        gen.manual_seed(cfg.seed * 1000 + 7919 * step)
    init_meta = {}
    if step > 0 and "init_meta" in ck:
        init_meta = ck["init_meta"]   # as the derain loop: a resume needs no init file
    elif cfg.init_haze:
        state, init_meta = load_haze(cfg.init_haze, tau_max)
        if step == 0:
            net.load_state_dict(state)
    ema = copy.deepcopy(net).requires_grad_(False) if cfg.optim.ema > 0 else None
    if ema is not None and "ema" in ck:
        ema.load_state_dict(ck["ema"])

    source = make_source(data_for(cfg), 1, device, cfg.seed)
    preset = cfg.data.preset
    synths = (RainSynth(preset, device=device), RainSynth(preset, device=device, overrides={"veil": 0.0}),
              # no block-DCT here: it degrades the rainy side only, and c["clean"] is the target
              RainSynth(preset, device=device, dct_prob=0.0, overrides={"opacity": 0.0}))
    val_cases = _val_set(cfg.log.val_frames) if cfg.log.val_every > 0 else []
    new_log = step == 0 or not (out_dir / "log.csv").is_file()
    if not new_log:   # a run killed outright logged steps its checkpoint does not have
        _upgrade_log(out_dir / "log.csv", step, LOG_FIELDS)
    log_file = open(out_dir / "log.csv", "w" if new_log else "a", newline="")
    writer = csv.DictWriter(log_file, fieldnames=LOG_FIELDS)
    if new_log:
        writer.writeheader()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.optim.max_steps, initial=step, desc=cfg.name, unit="step", dynamic_ncols=True)

    def save():
        atomic_save({"task": "haze", "model": net.state_dict(), "optim": opt.state_dict(), "step": step,
                     **({"ema": ema.state_dict()} if ema is not None else {}),
                     "seconds": time.perf_counter() - t_start, "config": cfg.to_dict(),
                     "init_meta": init_meta}, ckpt_path)

    t_start = time.perf_counter() - elapsed
    last_ckpt, running, n = time.perf_counter(), 0.0, 0
    stop_signals_as_interrupt()
    net.train()
    try:
        while (lr := scheduled_lr(cfg.optim, step, time.perf_counter() - t_start)) is not None:
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.no_grad():
                hazy, clear, haze_free = _pairs(synths, source, cfg.data.batch, gen, cfg.data.veil_free_prob)
            r = net(hazy, tau_max)
            out = hazy - r
            loss = cfg.loss.charbonnier * L.charbonnier(out, clear)
            if cfg.loss.norain:
                loss = loss + cfg.loss.norain * L.masked_l1(r, haze_free)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
            opt.step()
            step += 1
            if ema is not None:
                _ema_update(ema, net, min(cfg.optim.ema, (1 + step) / (10 + step)))
            running, n = running + float(loss.detach()), n + 1
            if bar is not None:
                bar.update(1)
            val = {}
            if val_cases and step % cfg.log.val_every == 0:
                val = validate_haze(ema or net, tau_max, val_cases, device)
            if step % cfg.log.every == 0 or val:
                row = {"step": step, "seconds": round(time.perf_counter() - t_start, 1), "lr": f"{lr:.3g}",
                       "loss": f"{running / n:.5f}", **{k: f"{v:.2f}" for k, v in val.items()}}
                writer.writerow(row)
                log_file.flush()
                running, n = 0.0, 0
            if time.perf_counter() - last_ckpt > cfg.log.ckpt_every_s:
                save()
                last_ckpt = time.perf_counter()
    except KeyboardInterrupt:
        save()
        raise
    finally:
        if bar is not None:
            bar.close()
        log_file.close()
    seconds = time.perf_counter() - t_start
    save()
    final = ema or net
    meta = {"name": cfg.name, "steps": step, "seconds": round(seconds, 1),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "train_config": cfg.to_dict(), **({"init": init_meta} if init_meta else {})}
    summary = {"steps": step, "seconds": round(seconds, 1)}
    if val_cases:
        summary.update(validate_haze(final, tau_max, val_cases, device))
    export_haze(final, out_dir / f"{cfg.name}.pt", tau_max, {**meta, **{k: round(v, 3) for k, v in summary.items()
                                                                      if k.startswith("val_")}})
    return summary
