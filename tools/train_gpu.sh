#!/usr/bin/env bash
# Train the shipped networks concurrently on one GPU, then measure GPU throughput.
#
#   tools/train_gpu.sh OUT_DIR [CLEAN_DIR=data/clean] [SECONDS=450] [MODELS="quality quality_framewise ..."]
#
# Each model trains for SECONDS of wall-clock (the LR anneals to the deadline) from
# configs/<model>.yaml on clean clips CLEAN_DIR/*.mp4, writing OUT_DIR/<model>/{<model>.pt,last.pt,log.csv}
# and OUT_DIR/<model>.log. MODELS are config names under configs/ (e.g. ablations/quality_t3). Small networks leave a big GPU mostly idle, so running them side by
# side costs each one little.
set -u
out=${1:?usage: tools/train_gpu.sh OUT_DIR [CLEAN_DIR] [SECONDS] [MODELS]}
clean=${2:-data/clean}
seconds=${3:-450}
models=${4:-quality quality_framewise quality_causal fast fast_causal}
mkdir -p "$out"
py=${PYTHON:-python3}
n=$(echo $models | wc -w)
threads=$(( $(nproc) / n )); [ "$threads" -lt 1 ] && threads=1
pids=()
for m in $models; do
  name=$(basename "$m")  # "ablations/quality_t3" -> runs into OUT_DIR/quality_t3
  OMP_NUM_THREADS=$threads PYTHONUNBUFFERED=1 $py -m vderain train --config "configs/$m.yaml" --out "$out/$name" \
    --no-progress --set "data.clean=[\"$clean/*.mp4\"]" --set "optim.time_limit_s=$seconds" \
    > "$out/$name.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for m in $models; do echo "== $m"; tail -n 2 "$out/$(basename "$m").log"; done
exit $status
