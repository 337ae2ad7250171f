"""The training loop: synthetic pairs on the fly, resumable, single- or multi-process (DDP).

One step: sample clean clips of T+1 frames -> add rain (on the training device) -> run the
network on the two overlapping T-frame windows -> losses on both restored frames plus the
temporal term between them -> AdamW step.
"""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from vderain import VderainError, stop_signals_as_interrupt
from vderain.models.strnet import STRNet, retarget_fuse
from vderain.train import losses as L
from vderain.train.checkpoint import atomic_save, export_weights, read_weights, safe_load
from vderain.train.config import TrainConfig
from vderain.train.data import data_for, edge_order, make_source

LOG_FIELDS = ["step", "seconds", "lr", "loss", "charbonnier", "ssim", "layer_lowpass", "temporal", "temporal_warp", "tv", "norain", "untouched", "psnr",
              "val_psnr_in", "val_psnr_out", "val_norain_psnr"]


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def _upgrade_log(path: Path, step: int | None = None, fields: list[str] = LOG_FIELDS) -> None:
    """Rewrite a log from an older version with today's columns, so resumed rows line up, and
    without the rows after the checkpoint's `step` (a run killed outright logged steps its
    checkpoint does not have: the resumed run logs them again)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)

    def after(r):
        try:
            return step is not None and int(r["step"]) > step
        except (KeyError, TypeError, ValueError):
            return False
    kept = [r for r in rows if not after(r)]
    if header == fields and len(kept) == len(rows):
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(kept)
    os.replace(tmp, path)


# what a resumed run may change: how long it runs, what it logs, and where the clips are mounted
RESUMABLE_CHANGES = ("optim.time_limit_s", "optim.max_steps", "log.", "data.clean")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _check_resumable(ck: dict, cfg: TrainConfig, path) -> None:
    """A run resumed with other settings would export weights whose provenance is false (the
    checkpoint's steps under the new config's name), or fail inside load_state_dict."""
    from vderain.train.config import config_from_dict
    if "config" not in ck:
        return
    try:
        old = _flat(config_from_dict(ck["config"]).to_dict())   # older files: today's defaults filled in
    except VderainError:
        raise VderainError(f"{path} was written by another version of vderain: use another --out "
                           f"or --no-resume") from None
    new = _flat(cfg.to_dict())
    # both sides' keys: a preset mix ({light: .5, norain: .5}) flattens to one key per preset, and
    # one the new mix dropped is a key only the old config has
    keys = list(new) + [k for k in old if k not in new]
    diff = [k for k in keys if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_CHANGES)]
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:4]) + (" ..." if len(diff) > 4 else "")
        raise VderainError(f"{path} was trained with other settings ({shown}); resume with the same "
                           f"config (only time_limit_s, max_steps, log.* and data.clean may change), "
                           f"or use another --out or --no-resume")


@torch.no_grad()
def _ema_update(ema: STRNet, model: STRNet, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model (the decay ramps up over the first steps)."""
    e, m = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(e, m, 1.0 - decay)
    for eb, mb in zip(ema.buffers(), model.buffers()):
        eb.copy_(mb)


def _lr_factor(step: int, progress: float, warmup: int) -> float:
    warm = min(1.0, (step + 1) / max(1, warmup))
    return warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def scheduled_lr(optim, step: int, elapsed: float) -> float | None:
    """The learning rate for this step (warm-up, cosine over steps or wall-clock, whichever is
    further along), or None when the run is over (max_steps or time_limit_s reached)."""
    if step >= optim.max_steps or (optim.time_limit_s > 0 and elapsed >= optim.time_limit_s):
        return None
    prog = step / optim.max_steps
    if optim.time_limit_s > 0:
        prog = max(prog, elapsed / optim.time_limit_s)
    return optim.lr * _lr_factor(step, prog, optim.warmup_steps)


def validate(model: STRNet, cases: list[str], frames: int, device: torch.device) -> dict:
    """PSNR (RGB) on the held-out suite: rainy input, our output, and output-vs-input on rain-free cases.

    A failure here is reported and skipped: it must never cost the training run it watches.
    """
    try:
        return _validate(model, cases, frames, device)
    except Exception as e:  # noqa: BLE001 - deliberately broad, see docstring
        import sys
        print(f"validation skipped: {type(e).__name__}: {e}", file=sys.stderr)
        model.train()
        return {}


def _validate(model: STRNet, cases: list[str], frames: int, device: torch.device) -> dict:
    from vderain.methods.network import NetworkMethod
    from vderain.metrics.image import psnr_frames
    from vderain.pipeline import derain_frames
    from vderain.synth.suite import render_case
    method = NetworkMethod(model, device, name="validation", half=False)  # sets eval()
    rain_in, rain_out, norain = [], [], []
    for name in cases:
        case = render_case(name, frames=frames)
        out = derain_frames(case["rainy"], method=method)
        if case["meta"].get("rain_free", False):
            norain.append(psnr_frames(out, case["rainy"]).mean())
        else:
            rain_in.append(psnr_frames(case["rainy"], case["clean"]).mean())
            rain_out.append(psnr_frames(out, case["clean"]).mean())
    model.train()
    mean = lambda v: float(np.mean(v)) if v else float("nan")
    return {"val_psnr_in": mean(rain_in), "val_psnr_out": mean(rain_out), "val_norain_psnr": mean(norain)}


def _warm_start(model: STRNet, cfg: TrainConfig, load: bool) -> dict:
    """Load `cfg.init` (exported weights or a checkpoint) into `model`; return its provenance.

    On resume (`load` False) only the provenance is read: last.pt already holds newer weights.
    """
    path = Path(cfg.init)
    if not path.is_file():
        raise VderainError(f"init: weights file not found: {path}")
    net_cfg, state, meta = read_weights(path)
    # `align` changes what the network is shown, not its weights: a warm start may switch it;
    # `veil` adds a head (zero at init) that a warm start from weights without it leaves new;
    # `guard` bounds the output and has no weights; `dehaze` adds a head like `veil`, and a
    # config without it drops the init file's (the streak network works alone: fast_causal);
    # `target` moves the patch conv's frame slices with their offsets (strnet.retarget_fuse):
    # a causal twin starts from its centred network
    free = {k: getattr(cfg.model, k)
            for k in ("align", "veil", "guard", "dehaze", "dehaze_gate", "dehaze_window", "target")}
    if net_cfg.dehaze > 0 and cfg.model.dehaze not in (0, net_cfg.dehaze):
        raise VderainError(f"init: {path} holds a haze estimator trained for dehaze {net_cfg.dehaze}, "
                           f"the config says {cfg.model.dehaze}")
    if {**net_cfg.to_dict(), **free} != cfg.model.to_dict():
        raise VderainError(f"init: {path} holds a different network ({net_cfg}) than the config's model")
    if cfg.model.dehaze == 0:
        state = {k: v for k, v in state.items() if not k.startswith("haze.")}
    retarget = net_cfg.target != cfg.model.target
    if retarget:
        state = {**state, "fuse.weight": retarget_fuse(state["fuse.weight"], net_cfg.frames,
                                                       net_cfg.target, cfg.model.target)}
    if load:
        missing, unexpected = model.load_state_dict(state, strict=False)
        # only a head the init file's network did not have may be missing (it starts fresh)
        new_heads = tuple(p for p, size in (("veil_head.", net_cfg.veil), ("haze.", net_cfg.dehaze))
                          if size == 0)
        if unexpected or any(not k.startswith(new_heads) for k in missing):
            raise VderainError(f"init: {path} does not fit the config's model")
    keep = {k: meta[k] for k in ("name", "steps", "seconds", "device", "init") if k in meta}
    prov = {"path": str(path), **keep}
    if retarget:
        prov["retargeted"] = {"from": net_cfg.target, "to": cfg.model.target}
    if net_cfg.dehaze > 0 and cfg.model.dehaze == 0:
        prov["dropped"] = "haze"
    if cfg.init_haze:
        prov["haze"] = _attach_haze(model, cfg, load)
    return prov


def _attach_haze(model: STRNet, cfg: TrainConfig, load: bool) -> dict:
    """Load a separately trained haze estimator into model.haze; return its provenance."""
    from vderain.train.haze import load_haze
    if cfg.model.dehaze <= 0:
        raise VderainError("init_haze needs model.dehaze > 0 (the largest optical depth to undo)")
    state, prov = load_haze(cfg.init_haze, cfg.model.dehaze)
    if load:
        try:
            model.haze.load_state_dict(state)
        except RuntimeError:
            raise VderainError(f"init_haze: {cfg.init_haze} does not fit the model's haze estimator") from None
    return prov


def train_device(device) -> torch.device:
    """--device as a torch device: one line, not a traceback, for a name torch does not know
    or a GPU this machine does not have."""
    from vderain.methods import resolve_device
    device = resolve_device(device)
    if device.type not in ("cpu", "cuda"):
        raise VderainError(f"vderain train runs on cpu or cuda (got --device {device})")
    return device


def resume_from(ckpt_path, task: str, cfg: TrainConfig, model, opt) -> dict:
    """An interrupted run's checkpoint, loaded into `model` and `opt`; refused in one line when it
    is another task's, was made with other settings (_check_resumable) or does not fit."""
    ck = safe_load(ckpt_path)
    if ck.get("task", "derain") != task:
        raise VderainError(f"{ckpt_path} is a '{ck.get('task', 'derain')}' run, not a '{task}' one: use "
                           f"another --out or --no-resume")
    if "model" not in ck or "optim" not in ck:
        raise VderainError(f"{ckpt_path} is not a training checkpoint: use another --out or --no-resume")
    _check_resumable(ck, cfg, ckpt_path)
    try:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise VderainError(f"{ckpt_path} does not fit this run ({str(e).splitlines()[0]}): use another "
                           f"--out or --no-resume") from None
    return ck


def train(cfg: TrainConfig, out_dir: str | Path, device: str = "auto", resume: bool = True,
          progress: bool = True) -> dict:
    """Train per `cfg`, writing `last.pt` (resumable), `log.csv` and `<name>.pt` (weights) to out_dir.

    Returns a summary: steps, seconds, final validation numbers, and the trained `model`.
    Under torchrun (WORLD_SIZE > 1) it runs DistributedDataParallel (NCCL on GPU, gloo on CPU);
    every rank draws different synthetic data, rank 0 logs and writes files.
    """
    if cfg.task == "haze":
        from vderain.train.haze import train_haze
        return train_haze(cfg, out_dir, device=device, resume=resume, progress=progress)
    if cfg.task != "derain":
        raise VderainError(f"config: unknown task '{cfg.task}' (derain or haze)")
    if cfg.data.veil_free_prob:
        raise VderainError("data.veil_free_prob is for task haze (the haze estimator's training)")
    rank, local_rank, world = _dist_info()
    device = train_device(device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main_proc = rank == 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = STRNet(cfg.model).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    trainable = [p for n, p in model.named_parameters()
                 if not cfg.optim.train_only or n.startswith(tuple(cfg.optim.train_only))]
    if not trainable:
        raise VderainError(f"optim.train_only {cfg.optim.train_only} names no parameter of the model")
    if cfg.optim.train_only:
        # a frozen body builds no autograd graph: a new head trains at the cost of its own size
        model.requires_grad_(False)
        for p in trainable:
            p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank)
    step, elapsed = 0, 0.0
    ckpt_path = out_dir / "last.pt"
    ck = {}
    if resume and ckpt_path.is_file():
        ck = resume_from(ckpt_path, "derain", cfg, model, opt)
        step, elapsed = int(ck["step"]), float(ck["seconds"])
        if world == 1 and device.type == "cpu" and ck.get("generator", torch.empty(0)).numel() > 0:
            gen.set_state(ck["generator"])
        else:  # a fresh, step-dependent stream rather than replaying the start
            gen.manual_seed(cfg.seed * 1000 + rank + 7919 * step)
    init_meta = {}
    if step > 0 and "init_meta" in ck:
        # the provenance the run started from: a resume needs no init file (it may be gone)
        init_meta = ck["init_meta"]
    elif cfg.init:
        init_meta = _warm_start(model, cfg, load=step == 0)
    elif cfg.init_haze:
        init_meta = {"haze": _attach_haze(model, cfg, load=step == 0)}
    ema = None
    if cfg.optim.ema > 0:
        import copy
        ema = copy.deepcopy(model).requires_grad_(False)
        if step > 0 and "ema" in ck:
            ema.load_state_dict(ck["ema"])
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    T, tgt = cfg.model.frames, cfg.model.target
    source = make_source(data_for(cfg), T + 1, device, cfg.seed + rank)
    from vderain.synth import RainSynth
    synth = RainSynth(preset=cfg.data.preset, device=device, codec_prob=cfg.data.codec_prob,
                      faint_prob=cfg.data.faint_prob, faint_scale=tuple(cfg.data.faint_scale),
                      faint_veil=cfg.data.faint_veil)
    # the frame order of a video's first two windows, for the share of samples given them
    edge_idx = torch.tensor(edge_order(T + 1, tgt), device=device) if cfg.data.edge_prob > 0 else None
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.optim.amp) if device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)

    log_path = out_dir / "log.csv"
    log_file = None
    if main_proc:
        new = not log_path.is_file() or step == 0
        if not new:
            _upgrade_log(log_path, step)
        log_file = open(log_path, "w" if new else "a", newline="")
        writer = csv.DictWriter(log_file, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
    bar = None
    if progress and main_proc:
        from tqdm import tqdm
        bar = tqdm(total=cfg.optim.max_steps, initial=step, desc=cfg.name, unit="step", dynamic_ncols=True)

    w = cfg.loss
    dis = None
    if w.temporal_warp:
        from vderain.metrics.flow import DISFlow
        dis = DISFlow("ultrafast")
    running: dict[str, torch.Tensor] = {}
    last_ckpt = time.perf_counter()
    t_start = time.perf_counter() - elapsed
    val = {}

    logged, in_step, gen_at_step = 0, False, None

    def run_time() -> float:
        """Seconds trained; under DDP rank 0's, so every rank stops at the same step (each rank's
        own clock would let one rank start a step the others never join: a hang)."""
        elapsed = time.perf_counter() - t_start
        if world > 1:
            t = torch.tensor([elapsed], dtype=torch.float64, device=device)
            dist.broadcast(t, 0)
            elapsed = float(t)
        return elapsed

    def save():
        if main_proc:
            generator = (gen_at_step if in_step else gen.get_state()) if device.type == "cpu" else torch.empty(0)
            atomic_save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
                         **({"ema": ema.state_dict()} if ema is not None else {}),
                         "seconds": time.perf_counter() - t_start, "config": cfg.to_dict(),
                         "generator": generator, "init_meta": init_meta}, ckpt_path)

    model.train()
    stop_signals_as_interrupt()  # cluster schedulers stop jobs with SIGTERM: checkpoint like Ctrl-C
    try:
        while (lr := scheduled_lr(cfg.optim, step, run_time())) is not None:
            for g in opt.param_groups:
                g["lr"] = lr
            # an interrupt inside the step saves the generator as the step found it, so the
            # resumed run draws this step's data again (exact resume)
            gen_at_step = gen.get_state() if device.type == "cpu" else None
            in_step = True

            with torch.no_grad():
                clean = source.sample(cfg.data.batch, gen)                 # (B,T+1,3,S,S)
                # strided clips (a speed change) are lower-fps footage: rain must fall further per frame
                fps = getattr(source, "last_fps", None)
                sample = synth(clean, generator=gen, fps=cfg.data.fps if fps is None else fps)
                rainy, clean, layer, streak = sample["rainy"], sample["clean"], sample["layer"], sample["streak_mask"]
                rain_free = sample["params"]["rain_free"].to(rainy.device, torch.float32)  # (B,)
                if edge_idx is not None:
                    e = torch.rand(rainy.shape[0], generator=gen, device=gen.device) < cfg.data.edge_prob
                    if bool(e.any()):
                        rainy[e], clean[e], layer[e], streak[e] = (t[e][:, edge_idx] for t in (rainy, clean, layer, streak))
            b = rainy.shape[0]
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                # both windows in one batch: (2B,T,3,S,S) -> R (2B,3,S,S) for frames tgt and tgt+1
                r_both = net(torch.cat([rainy[:, :T], rainy[:, 1:]]))[1]
            r_both = r_both.float()
            x_both = torch.cat([rainy[:, tgt], rainy[:, tgt + 1]])
            c_both = torch.cat([clean[:, tgt], clean[:, tgt + 1]])
            l_both = torch.cat([layer[:, tgt], layer[:, tgt + 1]])
            o_both = x_both - r_both  # unclamped: the clamp would hide errors from the gradient

            parts = {"charbonnier": L.charbonnier(o_both, c_both) if w.charbonnier else None,
                     "ssim": L.ssim_loss(o_both.clamp(0, 1), c_both) if w.ssim else None,
                     "layer_lowpass": L.lowpass_l1(r_both, l_both) if w.layer_lowpass else None,
                     "temporal": L.temporal_difference(o_both[:b], o_both[b:], c_both[:b], c_both[b:]) if w.temporal else None,
                     "temporal_warp": L.warped_temporal(o_both[:b], o_both[b:], c_both[:b], c_both[b:],
                                                        L.clean_flow(c_both[b:], c_both[:b], dis))
                     if w.temporal_warp else None,
                     "tv": L.total_variation(o_both) if w.tv else None,
                     "norain": L.masked_l1(r_both, rain_free.repeat(2)) if w.norain else None,
                     "untouched": L.untouched_l1(o_both, c_both, torch.cat([streak[:, tgt], streak[:, tgt + 1]]),
                                                 rain_free.repeat(2)) if w.untouched else None,
                     "psnr": L.log_mse(o_both, c_both, rain_free.repeat(2)) if w.psnr else None}
            loss = sum(getattr(w, k) * v for k, v in parts.items() if v is not None)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(trainable, cfg.optim.grad_clip)
            scaler.step(opt)
            scaler.update()
            step += 1
            if ema is not None:
                _ema_update(ema, model, min(cfg.optim.ema, (1 + step) / (10 + step)))
            in_step = False
            logged += 1

            for k, v in [("loss", loss)] + [(k, v) for k, v in parts.items() if v is not None]:
                running[k] = running.get(k, 0.0) + v.detach()  # stays on device: no per-step sync
            if bar is not None:
                bar.update(1)
            # no cases, no validation: it logged "nan" for numbers never measured, on rows of their own
            do_val = main_proc and cfg.log.val_every > 0 and bool(cfg.log.val_cases) and step % cfg.log.val_every == 0
            if do_val:
                val = validate(ema or model, cfg.log.val_cases, cfg.log.val_frames, device)
            if main_proc and (step % cfg.log.every == 0 or do_val):
                n = max(1, logged)   # the steps summed since the last row (fewer after a resume)
                row = {"step": step, "seconds": round(time.perf_counter() - t_start, 1), "lr": f"{lr:.3g}"}
                row.update({k: f"{float(v) / n:.5f}" for k, v in running.items()})
                row.update({k: f"{v:.2f}" for k, v in val.items()})
                writer.writerow(row)
                log_file.flush()
                if bar is not None:
                    bar.set_postfix(loss=row.get("loss"), **({"val": f"{val['val_psnr_out']:.2f}"} if val else {}))
                running.clear()
                logged = 0
                val = {}
            if time.perf_counter() - last_ckpt > cfg.log.ckpt_every_s:
                save()
                last_ckpt = time.perf_counter()
    except KeyboardInterrupt:
        save()  # Ctrl-C keeps the progress: the next run resumes from here
        if bar is not None:
            bar.close()
        raise

    seconds = time.perf_counter() - t_start
    save()
    summary = {"steps": step, "seconds": round(seconds, 1), "main_process": main_proc}
    if main_proc:
        meta = {"name": cfg.name, "steps": step, "seconds": round(seconds, 1),
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "world_size": world, "train_config": cfg.to_dict(),
                **({"init": init_meta} if init_meta else {})}
        final = ema or model
        export_weights(final, out_dir / f"{cfg.name}.pt", meta=meta)  # before validation: nothing can lose it
        final_val = validate(final, cfg.log.val_cases, cfg.log.val_frames, device) if cfg.log.val_cases else {}
        summary.update(final_val)
        export_weights(final, out_dir / f"{cfg.name}.pt",
                       meta={**meta, **{k: round(v, 3) for k, v in final_val.items()}})
        if bar is not None:
            bar.close()
        log_file.close()
    if world > 1:
        dist.barrier()
    summary["model"] = ema or model  # what was exported
    return summary
