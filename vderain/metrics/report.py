"""Bench report writers: terminal table, Markdown, CSV, JSON, PNG plots and one HTML file.

Input is the dict `vderain.bench.run_bench` returns. Every file is written to a temp
name beside its target and renamed when complete, so a crash never leaves half a report.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import re

import numpy as np

from vderain.metrics import plot

# (key, header, scale, decimals); keys under "perf" are looked up there.
COLUMNS = [
    ("psnr_y", "PSNR-Y dB", 1, 2),
    ("ssim_y", "SSIM-Y", 1, 4),
    ("psnr_rgb", "PSNR-RGB dB", 1, 2),
    ("ssim_rgb", "SSIM-RGB", 1, 4),
    ("ewarp", "Ewarp x1e3", 1e3, 3),
    ("ewarp_gap", "Ewarp-GT x1e3", 1e3, 3),
    ("tof", "tOF px", 1, 3),
    ("flicker", "Flicker Y", 1, 2),
    ("flicker_ratio", "Flicker/in", 1, 3),
    ("perf.fps", "fps", 1, 1),
    ("perf.peak_rss_mb", "peak RSS MB", 1, 0),
    ("perf.gpu_peak_mb", "GPU MB", 1, 0),
]
LEGEND = [
    "PSNR/SSIM: -Y = MATLAB BT.601 Y (16..235, rounded), -RGB = all three channels; peak 255; "
    "SSIM 11x11 Gaussian sigma 1.5, valid window; mean over frames, then over sequences.",
    "Ewarp: Lai et al. warping error, [0,1]-scaled squared error over non-occluded pixels, x1e3; "
    "Ewarp-GT: the same minus the ground truth's own (can go below 0 when output is over-smoothed).",
    "tOF: mean end-point distance (px) between Farneback flows of output and ground truth.",
    "Flicker Y: mean |Y(t+1) - Y(t)| over static non-occluded pixels of the input (no ground truth needed); "
    "Flicker/in: that over the input's own.",
    "fps / peak RSS: whole-sequence derain time and resident memory at the sequence's resolution "
    "(device, threads and dtype listed under Methods). Lower is better for Ewarp, tOF and flicker.",
]


def _get(row: dict, key: str):
    if key.startswith("perf."):
        perf = row.get("perf") or {}
        return perf.get(key[5:])
    return (row.get("mean") or {}).get(key)


def _fmt(v, scale=1, dec=2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v * scale:.{dec}f}"


def _used_columns(rows: list[dict]) -> list[tuple]:
    return [c for c in COLUMNS if any(_get(r, c[0]) is not None for r in rows)]


def summary_rows(result: dict, key: str = "summary") -> list[tuple[str, dict]]:
    """(label, row) per method plus a 'ground truth' reference row when sequences are paired.

    key: "summary" (rainy sequences, or all) or "summary_rain_free" (the suite's negatives).
    """
    rows = [(m["label"], result[key][m["label"]]) for m in result["methods"]]
    names = set(result.get("scopes", {}).get(key, [s["name"] for s in result["sequences"]]))
    in_scope = [s for s in result["sequences"] if s["name"] in names]
    refs = [s["reference"] for s in in_scope if s.get("paired")]
    if refs:
        def mean_of(k):
            v = [r[k] for r in refs if k in r and r[k] is not None and math.isfinite(r[k])]
            return float(np.mean(v)) if v else float("nan")
        ewarp = mean_of("gt_ewarp")     # NaN when no sequence had temporal metrics (one frame)
        rows.append(("(ground truth)", dict(status="reference", sequences=len(refs),
                                            mean=dict(ewarp=ewarp, ewarp_gap=0.0 if math.isfinite(ewarp) else ewarp,
                                                      flicker=mean_of("gt_flicker")))))
    return rows


def _table(rows: list[tuple[str, dict]], with_status=True, status_width=70) -> tuple[list[str], list[list[str]]]:
    cols = _used_columns([r for _, r in rows])
    header = ["method"] + [c[1] for c in cols] + (["seqs", "status"] if with_status else [])
    body = []
    for label, r in rows:
        line = [label] + [_fmt(_get(r, k), s, d) for k, _, s, d in cols]
        if with_status:
            line += [str(r.get("sequences", "")), _short(r.get("status", ""), status_width)]
        body.append(line)
    return header, body


def _short(status: str, n: int = 70) -> str:
    status = " ".join(str(status).split())
    return status if len(status) <= n else status[:n - 3] + "..."


def summary_tables(result: dict) -> list[tuple[str, str]]:
    """(title, summary key) of the mean tables this result has."""
    n = lambda pred: sum(1 for s in result["sequences"] if pred(s))  # noqa: E731
    if "summary_rain_free" in result:
        tables = [(f"Mean over {n(lambda s: not s.get('rain_free'))} rainy sequences", "summary"),
                  (f"Rain-free sequences ({n(lambda s: s.get('rain_free'))}): damage check, the ideal output is the "
                   "input (identity scores the 100 dB cap)", "summary_rain_free")]
    else:
        tables = [(f"Mean over {len(result['sequences'])} {result.get('summary_scope', 'sequences')}", "summary")]
    out = []
    for title, key in tables:
        out.append((title, key))
        if key + "_common" in result:   # some method was not scored everywhere: compare like for like too
            k = len(result["scopes"][key + "_common"])
            out.append((f"Like for like: mean over the {k} of those sequences every method scored",
                        key + "_common"))
    return out


def _text_table(header, body) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 or i == len(cells) - 1 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(b) for b in body])


def terminal_table(result: dict) -> str:
    parts = []
    for title, key in summary_tables(result):
        parts.append(f"{title}:\n" + _text_table(*_table(summary_rows(result, key), status_width=44)))
    return "\n\n".join(parts)


def _md_table(header, body) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i in (0, len(header) - 1) else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in b) + " |" for b in body]
    return "\n".join(lines)


def _protocol_lines(result: dict) -> list[str]:
    opt = result["options"]
    host = result["host"]
    seqs = result["sequences"]
    flows = sorted({s["protocol"]["warp_flow"] for s in seqs if s["protocol"].get("warp_flow")})
    fl = sorted({s["protocol"]["flicker_flow"] for s in seqs if s["protocol"].get("flicker_flow")})
    lines = [
        f"vderain {result['vderain_version']}, {result['created']}; device {host['device']}"
        + (f" ({host['gpu']})" if host.get("gpu") else "")
        + f", torch {host['torch']} with {host['torch_threads']} threads, OpenCV {host['opencv']} "
          f"with {host['opencv_threads']} threads, {host['cpu_count']} CPUs",
        f"border crop {opt['border']} px, {opt['skip']} frame(s) dropped at each end",
        "warping-error flow: " + ("; ".join(flows) or "n/a") + "; flicker flow: " + ("; ".join(fl) or "n/a"),
    ]
    return lines


def markdown(result: dict) -> str:
    out = ["# vderain bench", ""]
    out += [f"- {x}" for x in _protocol_lines(result)]
    for title, key in summary_tables(result):
        out += ["", f"## {title}", "", _md_table(*_table(summary_rows(result, key))), ""]
    out += [f"- {x}" for x in LEGEND]
    out += ["", "## Methods", ""]
    for m in result["methods"]:
        perf = result["summary"][m["label"]].get("perf") or {}
        what = m["path"] if m["kind"] == "external" else m["name"] + (f" {m['kwargs']}" if m["kwargs"] else "")
        extra = f"; device {perf.get('device')}, {perf.get('threads')} threads, dtype {perf.get('dtype')}" if perf else ""
        out.append(f"- **{m['label']}** ({m['kind']}: {what}){extra}: {m['status']}")
    out += ["", "## Per sequence", ""]
    for s in result["sequences"]:
        out += [f"### {s['name']}", "", f"{s['width']}x{s['height']}, {s['frames']} frames, "
                f"{'paired' if s['paired'] else 'no ground truth'}{', rain-free' if s.get('rain_free') else ''}; "
                f"source `{s['source']}`", ""]
        rows = [(k, v) for k, v in s["results"].items()]
        if rows:
            out += [_md_table(*_table([(k, dict(v, sequences=1)) for k, v in rows])), ""]
    return "\n".join(out) + "\n"


MEAN_ROW = {"summary": "MEAN", "summary_rain_free": "MEAN-rain-free",
            "summary_common": "MEAN-common", "summary_rain_free_common": "MEAN-rain-free-common"}


def csv_rows(result: dict) -> list[dict]:
    """One row per (sequence, method) plus one 'MEAN' row per method; raw (unscaled) values."""
    keys = [c[0] for c in COLUMNS]
    rows = []
    for s in result["sequences"]:
        for label, r in s["results"].items():
            row = dict(sequence=s["name"], method=label, status=r["status"], frames=s["frames"],
                       width=s["width"], height=s["height"])
            row.update({k: _get(r, k) for k in keys})
            rows.append(row)
    for _, key in summary_tables(result):
        for label, r in summary_rows(result, key):
            row = dict(sequence=MEAN_ROW[key], method=label,
                       status=r.get("status", ""), frames=None, width=None, height=None)
            row.update({k: _get(r, k) for k in keys})
            rows.append(row)
    return rows


def _clean_json(x):
    if isinstance(x, dict):
        return {str(k): _clean_json(v) for k, v in x.items() if k != "profiles"}
    if isinstance(x, (list, tuple)):
        return [_clean_json(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _clean_json(x.tolist())
    return x


def _atomic_write(path: str, data: bytes | str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb" if isinstance(data, bytes) else "w", newline="" if isinstance(data, str) else None) as f:
        f.write(data)
    os.replace(tmp, path)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "seq"


def figures(result: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per sequence: {'psnr': chart, 'profile': panels} as RGB arrays."""
    figs = {}
    for s in result["sequences"]:
        ok = {k: v for k, v in s["results"].items() if v["status"] == "ok"}
        f = {}
        key, label = ("psnr_y", "PSNR-Y (dB)") if s["paired"] else ("flicker", "flicker, Y levels")
        series = {k: v["per_frame"].get(key, []) for k, v in ok.items()}
        if any(len(v) for v in series.values()):
            what = "PSNR-Y per frame" if s["paired"] else "flicker per frame pair (no ground truth)"
            f["curve"] = plot.line_chart(series, title=f"{s['name']}: {what}", ylabel=label,
                                         x0=s["protocol"]["skip"])
        f["profile"] = plot.profile_panels(s.get("profiles", {}))
        figs[s["name"]] = f
    return figs


def html_report(result: dict, figs: dict) -> str:
    e = html.escape

    def table(header, body):
        th = "".join(f"<th>{e(h)}</th>" for h in header)
        trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in b) + "</tr>" for b in body)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

    def img(rgb, alt):
        b64 = base64.b64encode(plot.png_bytes(rgb)).decode()
        return f'<img alt="{e(alt)}" src="data:image/png;base64,{b64}">'

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>vderain bench</title><style>",
             "body{font-family:sans-serif;margin:24px;color:#222;max-width:1900px}",
             "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right;font-size:13px}td:first-child,th:first-child{text-align:left}",
             "td:last-child{text-align:left;max-width:420px}img{max-width:100%;image-rendering:pixelated}"
             "li{font-size:13px}</style></head><body>",
             "<h1>vderain bench</h1><ul>" + "".join(f"<li>{e(x)}</li>" for x in _protocol_lines(result)) + "</ul>",
             "".join(f"<h2>{e(title)}</h2>" + table(*_table(summary_rows(result, key)))
                     for title, key in summary_tables(result)),
             "<ul>" + "".join(f"<li>{e(x)}</li>" for x in LEGEND) + "</ul>"]
    for s in result["sequences"]:
        parts.append(f"<h2>{e(s['name'])}</h2><p>{s['width']}x{s['height']}, {s['frames']} frames, "
                     f"{'paired' if s['paired'] else 'no ground truth'}{', rain-free' if s.get('rain_free') else ''}; "
                     f"source <code>{e(s['source'])}</code></p>")
        parts.append(table(*_table([(k, dict(v, sequences=1)) for k, v in s["results"].items()])))
        f = figs.get(s["name"], {})
        if "curve" in f:
            parts.append(img(f["curve"], "per-frame curve"))
        if "profile" in f:
            parts.append(f"<p>Temporal profile: pixel row {s['profile_row']} of every frame, time running "
                         "down. Flicker and leftover rain show as horizontal noise, a stable result as "
                         "clean vertical streaks.</p>")
            parts.append(img(f["profile"], "temporal profiles"))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: dict, out_dir: str) -> dict[str, str]:
    """Write table.md, results.csv, results.json, PNG plots and report.html into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {}

    def put(name, data):
        p = os.path.join(out_dir, name)
        _atomic_write(p, data)
        paths[name] = p

    put("table.md", markdown(result))
    buf = io.StringIO()
    rows = csv_rows(result)
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["sequence", "method"])
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v) for k, v in r.items()})
    put("results.csv", buf.getvalue())
    put("results.json", json.dumps(_clean_json(result), indent=1, allow_nan=False))
    figs = figures(result)
    for name, f in figs.items():
        for kind, rgb in f.items():
            put(f"{kind}_{_slug(name)}.png", plot.png_bytes(rgb))
    put("report.html", html_report(result, figs))
    return paths
