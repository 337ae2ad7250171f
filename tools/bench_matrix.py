"""One metric of a `vderain bench` run as a case x method table (markdown), with the means the
README quotes: the rainy cases' mean and each rain-free case (output vs input).

    python tools/bench_matrix.py out/bench/results.json [--metric psnr_y] [--diff BASE]

--diff BASE adds each method's difference to method BASE per case (e.g. quality vs quality+align).
"""
from __future__ import annotations

import argparse
import json
import math


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="results.json written by vderain bench --out DIR")
    ap.add_argument("--metric", default="psnr_y", help="a key of the per-sequence means (psnr_y, ssim_y, ewarp, tof, ...)")
    ap.add_argument("--diff", metavar="BASE", help="also show each method minus this one")
    args = ap.parse_args()
    with open(args.results) as f:
        res = json.load(f)
    methods = list(res["sequences"][0]["results"])
    if args.diff and args.diff not in methods:
        raise SystemExit(f"bench_matrix: error: --diff {args.diff}: not a method of this run ({', '.join(methods)})")
    scale = 1e3 if args.metric == "ewarp" else 1.0

    def value(seq, m):
        r = seq["results"].get(m, {})
        v = (r.get("mean") or {}).get(args.metric)
        return None if v is None else v * scale

    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"
    cols = methods + ([f"{m} - {args.diff}" for m in methods if m != args.diff] if args.diff else [])
    print(f"| case ({args.metric}{' x1e3' if scale != 1 else ''}) | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    rainy = {m: [] for m in methods}
    for seq in res["sequences"]:
        vals = {m: value(seq, m) for m in methods}
        if not seq.get("rain_free"):
            for m in methods:
                if vals[m] is not None:
                    rainy[m].append(vals[m])
        row = [fmt(vals[m]) for m in methods]
        if args.diff:
            row += [fmt(None if vals[m] is None or vals[args.diff] is None else vals[m] - vals[args.diff])
                    for m in methods if m != args.diff]
        name = seq["name"] + (" (rain-free)" if seq.get("rain_free") else "")
        print(f"| {name} | " + " | ".join(row) + " |")
    means = {m: (sum(v) / len(v) if v else None) for m, v in rainy.items()}
    row = [fmt(means[m]) for m in methods]
    if args.diff:
        row += [fmt(None if means[m] is None or means[args.diff] is None else means[m] - means[args.diff])
                for m in methods if m != args.diff]
    print("| **mean of rainy cases** | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
