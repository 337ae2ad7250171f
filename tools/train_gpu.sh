#!/usr/bin/env bash
# Train shipped networks on one GPU, one after another (default) or side by side.
#
#   tools/train_gpu.sh OUT_DIR [CLEAN_DIR=data/clean] [SECONDS=450] [MODELS="quality ..."] [-- vderain train args]
#
# Each model trains for SECONDS of wall-clock (the LR anneals to the deadline) from
# configs/<model>.yaml on clean clips CLEAN_DIR/*.mp4, writing OUT_DIR/<model>/{<model>.pt,last.pt,log.csv}
# and OUT_DIR/<model>.log. MODELS are config names under configs/ (e.g. ablations/quality_t3).
# Anything after `--` goes to every `vderain train` (e.g. --set optim.lr=0.001 --set init=...;
# the word MODEL in it becomes each model's name, for --set init=vderain/weights/MODEL.pt).
# PARALLEL=1 runs the models side by side: measured on an H200, seven small networks side by
# side ran ~4 steps/s each against ~19 steps/s for one alone, so one after another is the default.
set -u
out=${1:?usage: tools/train_gpu.sh OUT_DIR [CLEAN_DIR] [SECONDS] [MODELS] [-- train args]}
clean=${2:-data/clean}
seconds=${3:-450}
models=${4:-quality quality_framewise quality_causal fast fast_causal}
shift $(( $# < 4 ? $# : 4 ))
[ "${1:-}" = "--" ] && shift
mkdir -p "$out"
py=${PYTHON:-python3}
parallel=${PARALLEL:-0}
if [ "$parallel" = 1 ]; then
  n=$(echo $models | wc -w)
  threads=$(( $(nproc) / n )); [ "$threads" -lt 1 ] && threads=1
else
  threads=$(nproc)
fi
one() {  # one model: config name, extra args with MODEL replaced
  local m=$1 name; name=$(basename "$m"); shift  # "ablations/quality_t3" -> OUT_DIR/quality_t3
  local args=() a
  for a in "$@"; do args+=("${a//MODEL/$name}"); done
  OMP_NUM_THREADS=$threads PYTHONUNBUFFERED=1 $py -m vderain train --config "configs/$m.yaml" --out "$out/$name" \
    --no-progress --set "data.clean=[\"$clean/*.mp4\"]" --set "optim.time_limit_s=$seconds" "${args[@]}" \
    > "$out/$name.log" 2>&1
}
status=0
if [ "$parallel" = 1 ]; then
  pids=()
  for m in $models; do one "$m" "$@" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
else
  for m in $models; do one "$m" "$@" || status=1; done
fi
for m in $models; do echo "== $m"; tail -n 2 "$out/$(basename "$m").log"; done
exit $status
