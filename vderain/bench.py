"""`vderain bench` as a library: load paired sequences, run methods, score them alike.

    seqs = suite_sequences("synthetic")            # or pair_sequences(discover_pairs(DIR))
    methods = parse_methods("identity,median", externals=["other=/path/to/outputs"])
    result = run_bench(seqs, methods, device="cpu")
    write_report(result, "runs/bench")            # vderain.metrics.report

Sequences are loaded one at a time (lazily) and every method's output is scored by the
same `SequenceScorer`, built once per sequence. Only what the report needs is kept per
method (per-frame metrics, one pixel row per frame for the temporal profile).
"""
from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
import torch

from vderain import VderainError, __version__
from vderain.io.reader import IMAGE_EXTS, _natural_key
from vderain.metrics.perf import ResourceMeter
from vderain.metrics.plot import temporal_profile
from vderain.metrics.sequence import SequenceScorer
from vderain.methods import VARIANTS

VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts", ".mpg", ".mpeg", ".y4m")
RAIN_WORDS = ("rain", "rainy", "rainstreak", "input", "inputs", "in", "lq", "degraded")
GT_WORDS = ("gt", "clean", "norain", "groundtruth", "ground_truth", "target", "targets", "label", "hq", "gts")
BUILTIN = {  # bench label -> (get_method name, kwargs)
    "identity": ("identity", {}),
    "median": ("median", {}),
    "fast": ("fast", {}),
    "quality": ("quality", {}),
    **VARIANTS,                                         # the causal and frame-wise twins
    # the networks alone, without the pipeline's temporal stabiliser (vderain/methods/stabilise.py)
    "fast-nostab": ("fast", {"stabilise": False}),
    "quality-nostab": ("quality", {"stabilise": False}),
}


# ------------------------------------------------------------------ sequences

@dataclass
class Sequence:
    name: str
    rainy: np.ndarray                 # (T,H,W,3) uint8
    clean: np.ndarray | None          # (T,H,W,3) uint8, None for real footage
    fps: float = 25.0
    source: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class PairSpec:
    """Where one sequence's frames live (a frame folder or a video each); loaded on demand."""
    name: str
    rain: str
    gt: str | None


def _is_video(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(VIDEO_EXTS)


def _has_images(folder: str) -> bool:
    return os.path.isdir(folder) and any(n.lower().endswith(IMAGE_EXTS) for n in os.listdir(folder))


def _is_sequence(path: str) -> bool:
    return _is_video(path) or _has_images(path)


def _stem(path: str) -> str:
    base = os.path.basename(path.rstrip("/"))
    return os.path.splitext(base)[0] if os.path.isfile(path) else base


def read_frames(path: str, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """A video file or a folder of numbered images -> ((T,H,W,3) uint8 RGB, fps).

    Every frame or none: a frame the reader skips (an unreadable image, one of another size, a
    packet that fails to decode) would pair every later frame with the wrong one of the other
    side, so it is an error here. A video's display rotation is applied (a phone clip is scored,
    and a method sees it, upright, as `vderain run` and FFmpeg's frame extraction show it: rain
    falling sideways is not the rain a method was made for); images are read as stored (EXIF
    orientation not applied, as other tools decode them)."""
    from vderain.io import open_video
    from vderain.io.reader import FrameFolderReader
    from vderain.io.types import quarter_turns, turn
    frames = []
    with (FrameFolderReader(path, orientation=False) if os.path.isdir(path) else open_video(path)) as reader:
        fps = float(reader.info.fps or 25.0)
        k = 0 if os.path.isdir(path) else quarter_turns(reader.info.rotation)
        for f in reader:
            frames.append(turn(f.rgb, k))
            if max_frames and len(frames) >= max_frames:
                break
        if reader.errors:
            raise VderainError(f"{path}: {reader.errors[0]}" + (f" (and {len(reader.errors) - 1} more)"
                               if len(reader.errors) > 1 else "") + ": a skipped frame would pair every "
                               "later one with the wrong frame; repair or remove it")
    if not frames:
        raise VderainError(f"no frames could be read from {path}")
    return np.stack(frames), fps


def _entries(folder: str) -> dict[str, str]:
    """Sequence-like children of a folder (frame folders and videos) by name. Two of one name
    (a1/ and a1.mp4) are an error: one silently hid the other."""
    out = {}
    for n in sorted(os.listdir(folder), key=_natural_key):
        p = os.path.join(folder, n)
        if _is_sequence(p):
            name = _stem(p)
            if name in out:
                raise VderainError(f"{out[name]} and {p} are both sequence '{name}': keep one of them "
                                   f"in {folder}")
            out[name] = p
    return out


def _word_dirs(root: str, words: Iterable[str]) -> list[str]:
    words = set(words)
    return [os.path.join(root, n) for n in sorted(os.listdir(root))
            if os.path.isdir(os.path.join(root, n)) and n.lower() in words]


def _pair_up(order: list[str], rain: dict[str, str], gt: dict[str, str],
             unpaired: list[str] | None) -> list[PairSpec]:
    """Sequences found on both sides, in `order`; if any, those found on one side only go to
    `unpaired` (a layout that matched nothing says nothing)."""
    specs = [PairSpec(name, rain[name], gt[name]) for name in order if name in gt]
    if specs and unpaired is not None:
        unpaired.extend([rain[n] for n in rain if n not in gt] + [gt[n] for n in gt if n not in rain])
    return specs


def _layout_split_trees(root: str, unpaired: list[str] | None = None) -> list[PairSpec]:
    """root/rain/<seq>{/|.mp4} + root/gt/<seq>{/|.mp4}, or root/rain/*.png + root/gt/*.png.
    unpaired: gets the paths of sequences found on one side only."""
    rains, gts = _word_dirs(root, RAIN_WORDS), _word_dirs(root, GT_WORDS)
    if not rains or not gts:
        return []
    rain, gt = rains[0], gts[0]
    if _has_images(rain) and _has_images(gt):
        return [PairSpec(os.path.basename(os.path.abspath(root)), rain, gt)]
    r, g = _entries(rain), _entries(gt)
    return _pair_up(list(r), r, g, unpaired)


# a known word after the last separator that leaves one (the name may hold separators and
# words of its own: street_night_Rain is 'street_night' + 'Rain')
_SUFFIX = re.compile(r"^(?P<name>.+)[_\-. ](?P<word>" + "|".join(
    sorted(map(re.escape, RAIN_WORDS + GT_WORDS), key=len, reverse=True)) + r")$", re.IGNORECASE)


def _layout_suffixed(root: str, unpaired: list[str] | None = None) -> list[PairSpec]:
    """root/<name>_Rain{/|.mp4} beside root/<name>_GT{/|.mp4} (any case, _ or - separator)."""
    rain, gt = {}, {}
    for stem, path in _entries(root).items():
        m = _SUFFIX.match(stem)
        if not m:
            continue
        word = m.group("word").lower()
        if word in RAIN_WORDS:
            rain[m.group("name")] = path
        elif word in GT_WORDS:
            gt[m.group("name")] = path
    return _pair_up(sorted(rain, key=_natural_key), rain, gt, unpaired)


def _layout_per_sequence(root: str, unpaired: list[str] | None = None) -> list[PairSpec]:
    """root/<seq>/rain{/|.mp4} + root/<seq>/gt{/|.mp4} (one folder per sequence)."""
    specs, lone = [], []
    for n in sorted(os.listdir(root), key=_natural_key):
        d = os.path.join(root, n)
        if not os.path.isdir(d) or _has_images(d):
            continue
        inner = _layout_split_trees(d, lone) or _layout_suffixed(d, lone)
        if not inner and (_word_dirs(d, RAIN_WORDS) or _word_dirs(d, GT_WORDS)):
            lone.append(d)   # a sequence folder with one side only
        if len(inner) == 1:
            specs.append(PairSpec(n, inner[0].rain, inner[0].gt))
        else:
            specs.extend(PairSpec(f"{n}/{s.name}", s.rain, s.gt) for s in inner)
    if specs and unpaired is not None:
        unpaired.extend(lone)
    return specs


LAYOUTS: list[tuple[str, Callable[[str], list[PairSpec]]]] = [
    ("rain/ + gt/ trees", _layout_split_trees),
    ("<name>_Rain beside <name>_GT", _layout_suffixed),
    ("<seq>/rain + <seq>/gt", _layout_per_sequence),
]


def discover_pairs(root: str, unpaired: list[str] | None = None) -> list[PairSpec]:
    """Find rainy/clean pairs under `root` in any of the supported layouts; `unpaired` gets the
    sequences of that layout found on one side only (they cannot be scored: say so)."""
    if not os.path.isdir(root):
        raise VderainError(f"--pairs expects a folder, got {root}")
    for _, layout in LAYOUTS:
        specs = layout(root, unpaired)
        if specs:
            return specs
    raise VderainError(f"no rainy/clean pairs found in {root}: expected one of "
                       + "; ".join(name for name, _ in LAYOUTS)
                       + f" (rain names: {', '.join(RAIN_WORDS[:4])}...; clean names: {', '.join(GT_WORDS[:4])}...)")


def discover_real(path: str) -> list[PairSpec]:
    """Rainy footage without ground truth: one video/frame folder, or a folder of them."""
    if not os.path.exists(path):
        raise VderainError(f"input not found: {path}")
    if _is_sequence(path):
        return [PairSpec(_stem(path), path, None)]
    if not os.path.isdir(path):
        raise VderainError(f"--real expects a video, a frame folder or a folder of them, got {path}")
    specs = [PairSpec(n, p, None) for n, p in _entries(path).items()]
    if not specs:
        raise VderainError(f"no videos or frame folders in {path}")
    return specs


def load_pair(spec: PairSpec, max_frames: int | None = None) -> Sequence:
    rainy, fps = read_frames(spec.rain, max_frames)
    clean, meta = None, {"max_frames": max_frames}
    if spec.gt is not None:
        clean, _ = read_frames(spec.gt, max_frames)
        meta["rainy_frames"] = len(rainy)   # before the cut: an external output may have them all
        if abs(len(rainy) - len(clean)) > 1:
            raise VderainError(f"the rainy side has {len(rainy)} frames, the clean side {len(clean)}: "
                               f"which frames pair up is unknown (one extra frame at the end is "
                               f"tolerated; --max-frames N scores the first N of each)")
        if len(rainy) != len(clean):
            # datasets sometimes ship one extra frame at the end of one side; score the common part
            n = min(len(rainy), len(clean))
            meta["note"] = (f"rainy side {len(rainy)} frames, clean side {len(clean)}: "
                            f"scored on the first {n}")
            rainy, clean = rainy[:n], clean[:n]
        if rainy.shape != clean.shape:
            raise VderainError(f"rainy frames are {rainy.shape[2]}x{rainy.shape[1]}, "
                               f"clean ones {clean.shape[2]}x{clean.shape[1]}")
    src = spec.rain if spec.gt is None else f"{spec.rain} | {spec.gt}"
    return Sequence(spec.name, rainy, clean, fps, src, meta)


def pair_sequences(specs: list[PairSpec], max_frames: int | None = None,
                   unscored: list[dict] | None = None, log: Callable[[str], None] | None = None) -> Iterator[Sequence]:
    """Load each sequence as it is scored. One that cannot be (a damaged frame, sides that do not
    pair up, sizes that differ) is reported through `log`, added to `unscored` and passed over."""
    for spec in specs:
        try:
            seq = load_pair(spec, max_frames)
        except VderainError as e:
            if unscored is None:
                raise
            unscored.append({"name": spec.name, "error": str(e)})
            if log:
                log(f"vderain: warning: sequence '{spec.name}' not scored: {e}")
            continue
        if log and seq.meta.get("note"):
            log(f"vderain: note: {spec.name}: {seq.meta['note']}")
        yield seq


SUITES = ("synthetic", "particles", "toy")


def suite_names(suite: str) -> list[str]:
    if suite == "synthetic":
        from vderain.synth.suite import SUITE_CASES
        return list(SUITE_CASES)
    if suite == "particles":
        from vderain.synth.particles import PARTICLE_CASES
        return list(PARTICLE_CASES)
    if suite == "toy":
        return ["toy-still", "toy-pan"]
    raise VderainError(f"unknown suite '{suite}' (choose from {', '.join(SUITES)})")


def suite_sequences(suite: str = "synthetic", cases: list[str] | None = None, frames: int | None = None,
                    height: int | None = None, width: int | None = None) -> Iterator[Sequence]:
    """Render the named suite's cases one at a time (all of them unless `cases` picks some)."""
    names = suite_names(suite)
    for name in cases or names:
        if name not in names:
            raise VderainError(f"unknown case '{name}' in suite '{suite}' (cases: {', '.join(names)})")
        if suite == "toy":
            from vderain.metrics.toy import toy_pair
            speed = (0.0, 0.0) if name == "toy-still" else (1.3, 0.6)
            case = toy_pair(frames or 12, height or 72, width or 96, seed=len(name), speed=speed)
        elif suite == "particles":
            from vderain.synth.particles import render_particle_case
            case = render_particle_case(name, frames=frames, height=height, width=width)
        else:
            from vderain.synth.suite import render_case
            case = render_case(name, frames=frames, height=height, width=width)
        yield Sequence(name, case["rainy"], case["clean"], float(case.get("fps", 25.0)),
                       f"suite:{suite}/{name}", dict(case.get("meta", {})))


# ------------------------------------------------------------------ methods

@dataclass
class MethodSpec:
    label: str
    kind: str                 # "builtin" or "external"
    name: str = ""            # get_method name for builtins
    kwargs: dict = field(default_factory=dict)
    path: str = ""            # outputs folder for externals
    explicit: bool = True     # asked for by the user (a failure is shown loudly)


def build_methods(labels: str, device="cpu") -> dict:
    """'quality,fast-nostab,runs/x.pt' -> {label: method}: bench labels or weights files, built
    at once (the tools that score methods outside `run_bench` use this)."""
    from vderain.methods import get_method
    names = [m.strip() for m in labels.split(",") if m.strip()]
    return {k: get_method(BUILTIN[k][0], device=device, **BUILTIN[k][1]) if k in BUILTIN
            else get_method(k, device=device) for k in names}


def parse_methods(methods: str | None, externals: list[str] | None = None,
                  default: str = "identity,median,fast,quality") -> list[MethodSpec]:
    specs = []
    explicit = methods is not None
    for label in (methods if explicit else default).split(","):
        label = label.strip()
        if not label:
            continue
        if label in BUILTIN:
            name, kw = BUILTIN[label]
            specs.append(MethodSpec(label, "builtin", name, dict(kw), explicit=explicit))
        elif label.endswith(".pt"):
            specs.append(MethodSpec(os.path.basename(label)[:-3], "builtin", label, explicit=explicit))
        else:
            raise VderainError(f"unknown method '{label}' (choose from {', '.join(BUILTIN)}, a .pt "
                               f"checkpoint, or score other outputs with --external NAME=DIR)")
    for item in externals or []:
        if "=" not in item:
            raise VderainError(f"--external expects NAME=DIR, got '{item}'")
        label, path = item.split("=", 1)
        label, path = label.strip(), path.strip()
        if not label or not os.path.isdir(path) and not _is_video(path):
            raise VderainError(f"--external {item}: '{path}' is not a folder or video")
        if label in (".", "..") or "/" in label or os.sep in label:
            # it names the folder --save-outputs writes under OUT/outputs/
            raise VderainError(f"--external {item}: the name '{label}' must not be a path")
        specs.append(MethodSpec(label, "external", path=path))
    labels = [s.label for s in specs]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise VderainError(f"method names must be unique, repeated: {', '.join(sorted(dup))}")
    if not specs:
        raise VderainError("no methods to score")
    return specs


def find_external(root: str, seq_name: str, single: bool) -> str | None:
    """The output of sequence `seq_name` inside an external method's folder.

    Looks for <root>/<seq>/ (frames), <root>/<seq>.<video>, the same with the dataset's
    rain suffixes (<seq>_Rain...), and, when only one sequence is scored, root itself.
    """
    if _is_video(root):
        return root if single else None
    flat = seq_name.replace("/", "_")
    candidates = [seq_name, flat] + [f"{flat}_{w}" for w in ("Rain", "rain", "rainy", "out", "derain", "output")]
    entries = _entries(root)
    for c in candidates:
        if c in entries:
            return entries[c]
    if single and _has_images(root):
        return root
    return None


def _is_grey(frames: np.ndarray) -> bool:
    return bool(np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 1], frames[..., 2]))


def derain_frames(frames: np.ndarray, method, device) -> np.ndarray:
    """Run a Method over a whole sequence, (N,H,W,3) uint8 -> same: the code path of `vderain run`."""
    from vderain.pipeline import derain_frames as pipeline_derain
    return np.asarray(pipeline_derain(frames, method=method, device=device))


def _dtype_label(method) -> str:
    from vderain.methods.median import TemporalMedian
    if isinstance(method, TemporalMedian):
        return "uint8 (OpenCV)"
    return str(getattr(method, "dtype", torch.float32)).replace("torch.", "")


# ------------------------------------------------------------------ the run

@dataclass
class BenchOptions:
    device: str = "auto"
    border: int = 0
    skip: int = 0
    flow_preset: str = "medium"
    save_outputs: str | None = None     # folder to write every output as PNG frames
    profile_row: float = 0.5            # temporal profile row, as a fraction of the height
    progress: bool = True


def run_bench(sequences: Iterable[Sequence], methods: list[MethodSpec], options: BenchOptions | None = None,
              log: Callable[[str], None] = print, total: int | None = None,
              unscored: list[dict] | None = None) -> dict:
    """Score every method on every sequence; returns the report dict (see docs/bench.md).

    `sequences` may be a lazy iterator (one sequence in memory at a time); `total` is its
    length when known (a single sequence lets an external folder hold its frames directly).
    unscored: the sequences found but not scored ({name, error}; pair_sequences fills it as it
    goes, and so does a sequence the metrics cannot score: too short for `skip`, too small for
    SSIM or the reference flow), kept in the report as `unscored`; without it such a sequence
    raises VderainError.
    """
    from tqdm import tqdm

    from vderain.methods import get_method, resolve_device
    opt = options or BenchOptions()
    device = resolve_device(opt.device)
    loaded: dict[str, object] = {}
    status: dict[str, str] = {}
    for spec in methods:
        if spec.kind != "builtin":
            status[spec.label] = "ok"
            continue
        try:
            loaded[spec.label] = get_method(spec.name, device=device, **spec.kwargs)
            status[spec.label] = "ok"
        except VderainError as e:
            status[spec.label] = f"skipped: {e}"
            log(f"vderain: {'warning: ' if spec.explicit else ''}method '{spec.label}' skipped: {e}")

    result = dict(
        vderain_version=__version__,
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
        host=dict(platform=platform.platform(), python=platform.python_version(), torch=torch.__version__,
                  opencv=cv2.__version__, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                  opencv_threads=cv2.getNumThreads(), device=str(device),
                  gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None),
        options=dict(border=opt.border, skip=opt.skip, flow_preset=opt.flow_preset),
        methods=[dict(label=s.label, kind=s.kind, name=s.name or None, path=s.path or None,
                      kwargs=s.kwargs, explicit=s.explicit, status=status[s.label],
                      dtype=_dtype_label(loaded[s.label]) if s.label in loaded else None,
                      device=str(loaded[s.label].device) if s.label in loaded else None)
                 for s in methods],
        sequences=[],
    )
    runnable = [s for s in methods if status[s.label] == "ok"]
    warmed: set[str] = set()
    if total is None and isinstance(sequences, (list, tuple)):
        total = len(sequences)
    for seq in sequences:
        t0 = time.perf_counter()
        try:
            scorer = SequenceScorer(seq.rainy, seq.clean, border=opt.border, skip=opt.skip,
                                    flow_preset=opt.flow_preset)
        except VderainError as e:   # too short for --skip, too small for the metrics: this one only
            if unscored is None:
                raise
            unscored.append({"name": seq.name, "error": str(e)})
            log(f"vderain: warning: sequence '{seq.name}' not scored: {e}")
            continue
        t, h, w = seq.rainy.shape[:3]
        row = min(h - 1, int(opt.profile_row * h))
        entry = dict(name=seq.name, source=seq.source, frames=t, height=h, width=w, fps=seq.fps,
                     meta=seq.meta, paired=seq.clean is not None, rain_free=bool(seq.meta.get("rain_free", False)), protocol=scorer.protocol,
                     reference=scorer.reference_values(), profile_row=row,
                     profiles={"input": temporal_profile(seq.rainy, row)}, results={})
        if seq.clean is not None:
            entry["profiles"]["ground truth"] = temporal_profile(seq.clean, row)
        single = total == 1
        bar = tqdm(runnable, desc=f"{seq.name} {w}x{h}x{t}", unit="method", leave=False,
                   disable=not opt.progress)
        for spec in bar:
            bar.set_postfix_str(spec.label)
            entry["results"][spec.label] = _run_one(spec, loaded.get(spec.label), seq, scorer, device, single,
                                                    row, opt, entry["profiles"], log, warmed)
        entry["seconds"] = time.perf_counter() - t0
        result["sequences"].append(entry)
        key, unit, scale = ("psnr_y", "PSNR-Y dB", 1) if seq.clean is not None else ("ewarp", "Ewarp x1e3", 1e3)
        done = ", ".join(f"{k} {v['mean'].get(key, float('nan')) * scale:.2f}" if v["status"] == "ok"
                         else f"{k} {v['status'].split(':')[0]}" for k, v in entry["results"].items())
        log(f"{seq.name}: {done} ({unit}; {entry['seconds']:.1f} s)")
    # Rain-free cases (the suite's negatives) only show damage: the ideal output is the
    # input, identity scores the 100 dB cap there, and averaging them with rainy cases
    # would drown the deraining numbers. So they get their own table.
    result["unscored"] = list(unscored or [])
    rainy = [s for s in result["sequences"] if not s["rain_free"]]
    free = [s for s in result["sequences"] if s["rain_free"]]
    result["summary"] = summarize(result, rainy or free)
    result["scopes"] = {"summary": [s["name"] for s in rainy or free]}
    result["summary_scope"] = "rainy sequences" if rainy else "rain-free sequences"
    if rainy and free:
        result["summary_rain_free"] = summarize(result, free)
        result["scopes"]["summary_rain_free"] = [s["name"] for s in free]
    for key in [k for k in ("summary", "summary_rain_free") if k in result]:
        _add_common_summary(result, key)
    return result


def _add_common_summary(result: dict, key: str) -> None:
    """When a method was scored on only some sequences its mean covers other sequences than
    the rest's, so the means do not compare. Then `<key>_common` holds every method's mean
    over the sequences all of them scored (when there are any)."""
    if not any(r["status"].startswith("partial") for r in result[key].values()):
        return
    scored = [m["label"] for m in result["methods"] if result[key][m["label"]]["sequences"] > 0]
    names = set(result["scopes"][key])
    common = [s for s in result["sequences"] if s["name"] in names
              and all(s["results"].get(label, {}).get("status") == "ok" for label in scored)]
    if common and len(scored) > 1:
        result[key + "_common"] = summarize(result, common)
        result["scopes"][key + "_common"] = [s["name"] for s in common]


def _align_external(out: np.ndarray, seq: Sequence, skip: int, path: str, note: Callable[[str], None]) -> np.ndarray:
    """An external output, frame for frame against the rainy input.

    One output per rainy frame read (the pair may have been cut by a frame to its clean side);
    or, as many sliding-window methods write, all but k frames at each end (k <= skip): taken
    as frames k .. T-k-1, the missing ends filled with the input's, which `skip` drops unscored."""
    t = len(seq.rainy)
    if len(out) in (t, seq.meta.get("rainy_frames", t)):
        return out[:t]
    k, odd = divmod(t - len(out), 2)
    ends_missing = len(out) > 0 and k > 0 and not odd
    if ends_missing and k <= skip:
        note(f"{path} has {len(out)} frames of {t}: taken as frames {k}..{t - k - 1} (a centred "
             f"window's output without its ends), which --skip {skip} scores")
        return np.concatenate([seq.rainy[:k], out, seq.rainy[t - k:]])
    hint = f" (an output without its first and last {k} frames is scored with --skip {k} or more)" if ends_missing else ""
    raise VderainError(f"{path} has {len(out)} frames, the sequence has {t}{hint}")


def _run_one(spec: MethodSpec, method, seq: Sequence, scorer: SequenceScorer, device, single: bool,
             row: int, opt: BenchOptions, profiles: dict, log, warmed: set) -> dict:
    perf = None
    try:
        if spec.kind == "external":
            path = find_external(spec.path, seq.name, single)
            if path is None:
                log(f"vderain: warning: {spec.label}: no output for '{seq.name}' in {spec.path}")
                return dict(status=f"missing: no output for '{seq.name}' in {spec.path}")
            out, _ = read_frames(path, seq.meta.get("max_frames"))
            out = _align_external(out, seq, opt.skip, path, lambda m: log(f"vderain: note: {spec.label} on {seq.name}: {m}"))
            if _is_grey(out) and not _is_grey(seq.rainy):
                log(f"vderain: note: {spec.label} on {seq.name}: the output is greyscale, the input is "
                    f"in colour: its RGB scores count the lost colour, its Y scores do not")
            if out.shape[1:3] != seq.rainy.shape[1:3]:
                raise VderainError(f"{path} frames are {out.shape[2]}x{out.shape[1]}, "
                                   f"the sequence's are {seq.rainy.shape[2]}x{seq.rainy.shape[1]}")
        else:
            if spec.label not in warmed:
                # Untimed warm-up (lazy imports, allocator, cuDNN autotune) so the first
                # sequence's fps is not charged for one-off start-up costs.
                derain_frames(seq.rainy[:min(len(seq.rainy), method.window + 1)], method, device)
                warmed.add(spec.label)
            if hasattr(method, "_flows"):       # the median's flow cache: start each sequence cold
                method._flows.clear()
            with ResourceMeter(method.device) as meter:
                out = derain_frames(seq.rainy, method, device)
            perf = meter.result(len(out), _dtype_label(method))
        scores = scorer.score(out)
    except VderainError as e:
        log(f"vderain: warning: {spec.label} on {seq.name} failed: {e}")
        return dict(status=f"failed: {e}")
    except Exception as e:  # a crashing method must not take the whole bench down
        log(f"vderain: warning: {spec.label} on {seq.name} failed: {type(e).__name__}: {e}")
        return dict(status=f"failed: {type(e).__name__}: {e}")
    profiles[spec.label] = temporal_profile(out, row)
    if opt.save_outputs:
        _save_frames(out, os.path.join(opt.save_outputs, spec.label, seq.name.replace("/", "_")))
    return dict(status="ok", mean=scores["mean"], per_frame=scores["per_frame"], perf=perf)


def _save_frames(frames: np.ndarray, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


def summarize(result: dict, sequences: list[dict] | None = None) -> dict:
    """Per method, over `sequences` (default all): the mean of each per-sequence mean (every
    sequence weighs the same), total frames / total seconds, the largest peak memory."""
    out = {}
    sequences = result["sequences"] if sequences is None else sequences
    for m in result["methods"]:
        label = m["label"]
        runs = [s["results"].get(label) for s in sequences]
        ok = [r for r in runs if r and r["status"] == "ok"]
        problems = [r["status"] for r in runs if r and r["status"] != "ok"]
        if m["status"] != "ok":
            status = m["status"]
        elif not ok:
            status = problems[0] if problems else "no sequences"
        else:
            status = f"partial: {len(problems)} sequence(s) not scored, e.g. {problems[0]}" if problems else "ok"
        entry = dict(status=status, sequences=len(ok), problems=len(problems), mean={})
        keys = sorted({k for r in ok for k in r["mean"]})
        for k in keys:
            vals = [r["mean"][k] for r in ok if k in r["mean"] and np.isfinite(r["mean"][k])]
            entry["mean"][k] = float(np.mean(vals)) if vals else float("nan")
        perfs = [r["perf"] for r in ok if r.get("perf")]
        if perfs:
            frames = sum(p["frames"] for p in perfs)
            secs = sum(p["seconds"] for p in perfs)
            entry["perf"] = dict(frames=frames, seconds=secs, fps=frames / secs if secs else float("nan"),
                                 peak_rss_mb=max(p["peak_rss_mb"] for p in perfs),
                                 rss_increase_mb=max(p["rss_increase_mb"] for p in perfs),
                                 gpu_peak_mb=max((p["gpu_peak_mb"] or 0) for p in perfs) if perfs[0]["gpu_peak_mb"] is not None else None,
                                 device=perfs[0]["device"], threads=perfs[0]["threads"], dtype=perfs[0]["dtype"])
        out[label] = entry
    return out
