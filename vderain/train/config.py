"""Training configuration: small YAML files mapped onto dataclasses (unknown keys are errors)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vderain import VderainError
from vderain.models.strnet import STRNetConfig


@dataclass
class DataConfig:
    clean: list[str] = field(default_factory=list)  # video files / frame folders / globs; empty -> procedural scenes
    crop: int = 192
    batch: int = 16
    max_short_side: int = 360       # clean footage is decoded once, downscaled to this
    preset: str | dict = "train"    # RainSynth preset mix: a name, or {preset: weight, ...}
    codec_prob: float = 0.0         # share of samples round-tripped through a real encoder (CPU only)
    fps: float = 30.0
    procedural: float = 0.0         # share of each batch from procedural scenes beside the clean footage
    faint_prob: float = 0.0         # share of rain clips with all their rain scaled by k ~ U(faint_scale)
    faint_scale: list[float] = field(default_factory=lambda: [0.1, 0.6])  # (real rain is often 3-10 grey levels)
    faint_veil: bool = True         # False: faint clips get streaks only, no veil (see RainSynth)
    edge_prob: float = 0.0          # share of samples given a video's first windows (mirrored at the edge)
    veil_free_prob: float = 0.0     # task haze: share of the streaked clips drawn without their veil (rain with
                                    # no haze: near rain, short scene depth), where the estimator must find none


@dataclass
class LossConfig:
    charbonnier: float = 1.0        # on the derained frame vs clean
    ssim: float = 0.1               # (1 - SSIM) / 2 (kornia's ssim_loss), on the derained frame
    layer_lowpass: float = 1.0      # L1 of the 8x8-average of (R_pred - R_true): guards against global tone shifts
    temporal: float = 0.5           # |(o_t - o_{t-1}) - (c_t - c_{t-1})|: no flicker added, none left
    temporal_warp: float = 0.0      # Lai et al.: |o_t - W(o_{t-1})|, DIS flow on the clean frames, occlusion-masked
    tv: float = 0.0                 # total variation of the output (smoothness prior)
    norain: float = 0.0             # extra L1 on R for rain-free clips: there the output must equal the input
    untouched: float = 0.0          # extra L1 on the output where no streak touches (rainy clips): leave the rain's surroundings alone
    psnr: float = 0.0               # 10 log10(MSE) per rainy clip (minus its PSNR): drizzle weighs as much as a storm


@dataclass
class OptimConfig:
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_steps: int = 20000
    time_limit_s: float = 0.0       # > 0: stop (and anneal the LR) by wall-clock instead of steps
    warmup_steps: int = 200
    grad_clip: float = 1.0
    amp: str = "bf16"               # bf16 | fp16 | none (CUDA only; CPU always runs fp32)
    ema: float = 0.0                # > 0: keep an exponential moving average of the weights with this
                                    # decay; it is what gets validated and exported (small batches are noisy)
    train_only: list[str] = field(default_factory=list)  # parameter-name prefixes to train (e.g. [haze.]);
                                    # empty: all. The rest is frozen (a new head on a trained body)


@dataclass
class LogConfig:
    every: int = 50
    val_every: int = 1000
    ckpt_every_s: float = 180.0
    val_cases: list[str] = field(default_factory=lambda: ["light_pan", "heavy_static", "norain_stripes"])
    val_frames: int = 12


@dataclass
class TrainConfig:
    name: str = "model"
    seed: int = 0
    task: str = "derain"            # derain: the network; haze: its haze estimator alone (train/haze.py)
    init: str = ""                  # warm start from a weights file (same model config); ignored on resume
    init_haze: str = ""             # a trained haze estimator (task haze's <name>.pt) for model.dehaze
    model: STRNetConfig = field(default_factory=STRNetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise VderainError(f"config: '{where}' must be a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise VderainError(f"config: unknown key(s) in '{where}': {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in values.items():
        sub = known[name].default_factory if known[name].default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            kwargs[name] = _build(sub, value, f"{where}.{name}" if where else name)
        else:
            default = sub() if sub is not None else known[name].default
            kwargs[name] = _coerce(value, default, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _coerce(value, default, where: str):
    """Numbers and flags take the type of their default: YAML reads `1e-4` (no dot) as a string."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise VderainError(f"config: '{where}' must be true or false (got {value!r})")
    if isinstance(default, list) and default and all(isinstance(v, (int, float)) for v in default):
        if not isinstance(value, list) or len(value) != len(default):
            raise VderainError(f"config: '{where}' must be a list of {len(default)} numbers (got {value!r})")
        return [_coerce(v, float(d), where) for v, d in zip(value, default)]
    if isinstance(default, list):
        if isinstance(value, str):
            return [value]                 # one item given without brackets
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise VderainError(f"config: '{where}' must be a list of strings (got {value!r})")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool):   # YAML's true/yes/on: float(True) would make it a silent 1
            raise VderainError(f"config: '{where}' must be a number (got {value!r})")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise VderainError(f"config: '{where}' must be a number (got {value!r})") from None
        if isinstance(default, int):
            if not number.is_integer():
                raise VderainError(f"config: '{where}' must be a whole number (got {value!r})")
            return int(number)
        return number
    if where == "data.preset" and isinstance(value, dict):
        return _preset_weights(value, where)
    if isinstance(default, str):
        if value is None:
            return ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)   # a number-like name
        if not isinstance(value, str):
            raise VderainError(f"config: '{where}' must be a string (got {value!r})")
    return value


def _preset_weights(value: dict, where: str) -> dict:
    """A preset mix given as weights ({light: 0.2, norain: 0.3, ...}): known names, numbers >= 0, sum > 0."""
    from vderain.synth.presets import PRESETS
    unknown = [k for k in value if k not in PRESETS]
    if unknown:
        raise VderainError(f"config: '{where}': unknown preset(s) {', '.join(map(str, unknown))} "
                           f"(choose from {', '.join(PRESETS)})")
    weights = {k: _coerce(v, 0.0, f"{where}.{k}") for k, v in value.items()}
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise VderainError(f"config: '{where}' weights must be >= 0 and sum to more than 0 (got {value!r})")
    return weights


def config_from_dict(values: dict) -> TrainConfig:
    return _build(TrainConfig, values or {}, "")


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config; `overrides` are 'a.b=value' strings (YAML-parsed values)."""
    path = Path(path)
    if not path.is_file():
        raise VderainError(f"config not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise VderainError(f"config {path} is not valid YAML: {str(e).splitlines()[0]}")
    except UnicodeDecodeError:
        raise VderainError(f"config {path} is not a text (UTF-8) file") from None
    if not isinstance(values, dict):
        raise VderainError(f"config {path} must be a mapping of sections (model:, data:, ...)")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise VderainError(f"override '{item}' is not key=value")
        node = values
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise VderainError(f"override '{item}': '{p}' is a value, not a section")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise VderainError(f"override '{item}': not a valid YAML value ({str(e).splitlines()[0]}); "
                               f"quote it, e.g. {key}='\"{raw}\"'") from None
    return validate(config_from_dict(values))


def validate(cfg: "TrainConfig") -> "TrainConfig":
    """Ranges the types alone do not catch: each would fail only later, with a traceback."""
    import math
    checks = [("data.batch", cfg.data.batch >= 1), ("data.crop", cfg.data.crop >= 8),
              ("model.frames", cfg.model.frames >= 1), ("model.channels", cfg.model.channels >= 1),
              ("model.scale", cfg.model.scale >= 1), ("data.fps", cfg.data.fps > 0),
              ("optim.lr", math.isfinite(cfg.optim.lr) and cfg.optim.lr > 0),
              ("log.every", cfg.log.every >= 1), ("seed", cfg.seed >= 0)]
    bad = [k for k, ok in checks if not ok]
    if bad:
        raise VderainError(f"config: out of range: {', '.join(bad)} (batch, frames, channels, scale, log.every >= 1; "
                           f"crop >= 8; fps, lr > 0; seed >= 0)")
    # each of these ran on without a word, as another setting (a share of 3 as 1, an EMA decay of
    # 1.5 as none at all) or ended in a traceback (a target outside the window)
    shares = [("data.codec_prob", cfg.data.codec_prob), ("data.edge_prob", cfg.data.edge_prob),
              ("data.faint_prob", cfg.data.faint_prob), ("data.procedural", cfg.data.procedural),
              ("data.veil_free_prob", cfg.data.veil_free_prob), ("optim.ema", cfg.optim.ema)]
    bad = [k for k, v in shares if not (0.0 <= v <= 1.0 and (k != "optim.ema" or v < 1.0))]
    if bad:
        raise VderainError(f"config: out of range: {', '.join(bad)} (shares in [0, 1]; optim.ema in [0, 1))")
    if not 0 <= cfg.model.target < cfg.model.frames:
        raise VderainError(f"config: model.target {cfg.model.target} is outside the window of "
                           f"{cfg.model.frames} frames (0 .. {cfg.model.frames - 1})")
    if cfg.optim.max_steps < 0:
        raise VderainError(f"config: optim.max_steps must be >= 0 (got {cfg.optim.max_steps})")
    from vderain.synth.suite import SUITE_CASES
    unknown = [c for c in cfg.log.val_cases if c not in SUITE_CASES]
    if unknown:   # validate() would skip, with a warning, at every validation of a long run
        raise VderainError(f"config: log.val_cases: unknown suite case(s) {', '.join(unknown)} "
                           f"(choose from {', '.join(SUITE_CASES)})")
    if cfg.log.val_cases and cfg.log.val_frames < 1:
        raise VderainError(f"config: log.val_frames must be >= 1 (got {cfg.log.val_frames})")
    if not cfg.name or "/" in cfg.name or "\\" in cfg.name or cfg.name.startswith("."):
        raise VderainError(f"config: name '{cfg.name}' must be a plain file name (it names <name>.pt)")
    if cfg.optim.amp not in ("bf16", "fp16", "none"):
        raise VderainError(f"config: optim.amp must be bf16, fp16 or none (got {cfg.optim.amp!r})")
    return cfg
