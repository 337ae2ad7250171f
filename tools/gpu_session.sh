#!/usr/bin/env bash
# One prepared call on the device machine (one H100/H200), ~9 minutes with the defaults:
#   1. align's GPU cost: the model alone at 1080p bf16 batch 8, static and on a 3 px/frame pan;
#   2. warm-started training of MODELS with align and guard on (TRAIN_S seconds each, one after
#      another), then the same for each config in ABLATIONS from quality.pt (default none), then
#      the haze estimator alone (configs/haze.yaml, HAZE_S seconds, from vderain/weights/haze.pt);
#      (1 also times the temporal stabiliser's GPU path at SIZE)
#   3. the GPU pipeline at 1080p with the shipped quality weights and NVENC, against libx264,
#      and with the stabiliser on (as `vderain run` does by default).
# Prepare here: tools/fetch_gpu_wheels.sh and `mkdir -p data/clean && cp ../shared/data/clean/*.mp4 data/clean/`;
# then run it with carry [".whl", "data/clean"] and command `tools/gpu_session.sh`, timeout_s 600.
# What comes back under $OUT (8 files at most): speed.txt, pipeline.txt, session.log and per model
# MODEL.pt + MODEL_log.csv (the ablations' too), haze.pt + haze_log.csv. Bench them here:
# vderain bench --suite synthetic --methods ...,$OUT/quality.pt (attach a new haze.pt first:
# vderain train --config configs/quality.yaml --set init=$OUT/quality.pt --set init_haze=$OUT/haze.pt --set optim.max_steps=0 ...)
# Dry run here on the CPU (plumbing only): DEVICE=cpu SIZE=160x96 TRAIN_S=10 HAZE_S=10 OUT=runs/gs_dry tools/gpu_session.sh
set -u
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-1920x1080}
TRAIN_S=${TRAIN_S:-200}
MODELS=${MODELS:-quality}
ABLATIONS=${ABLATIONS-}
HAZE_S=${HAZE_S:-90}   # 120 before the stabiliser steps were added: the call must stay under 600 s
out=${OUT:-runs/gpu_session}
mkdir -p "$out"
t0=$(date +%s)
if [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
PY_VDERAIN="python3 -m vderain"
exec > >(tee "$out/session.log") 2>&1
[ "$DEVICE" = cuda ] && nvidia-smi -L
step() { echo "== [$(( $(date +%s) - t0 )) s] $*"; }
step "1. model alone, $SIZE batch 8 (align cost)"
{ python3 benchmarks/bench_model.py --device "$DEVICE" --size "$SIZE" --batch 8 --models quality,fast --seconds 4
  python3 benchmarks/bench_model.py --device "$DEVICE" --size "$SIZE" --batch 8 --models quality --seconds 4 --pan 3
  python3 benchmarks/bench_stabiliser.py --device "$DEVICE" --size "$SIZE" --threads 8 --frames 40
  python3 -m pytest -q -p no:warnings tests/test_stabilise.py -k "cuda or gpu"
} 2>&1 | tee "$out/speed.txt"
step "2. training $MODELS (+ ablations: $ABLATIONS), $TRAIN_S s each, warm start, align on"
common=(--set optim.ema=0.999 --set optim.lr=0.0005 --set loss.norain=2.0 --set model.align=true
        --set optim.warmup_steps=100)
PYTHON=python3 tools/train_gpu.sh runs/gpu_train data/clean "$TRAIN_S" "$MODELS" -- \
  --set init=vderain/weights/MODEL.pt "${common[@]}"
names=$MODELS
for a in $ABLATIONS; do   # same start, same recipe, plus the ablation's change (configs/ablations)
  PYTHON=python3 tools/train_gpu.sh runs/gpu_train data/clean "$TRAIN_S" "$a" -- \
    --set init=vderain/weights/quality.pt "${common[@]}"
  names="$names $(basename "$a")"
done
step "2b. haze estimator alone, $HAZE_S s, warm start"
$PY_VDERAIN train --config configs/haze.yaml --out runs/gpu_train/haze --device "$DEVICE" --no-progress \
  --set init_haze=vderain/weights/haze.pt --set optim.lr=0.001 --set "optim.time_limit_s=$HAZE_S"
names="$names haze"
for m in $names; do
  cp "runs/gpu_train/$m/$m.pt" "$out/$m.pt" 2>/dev/null || cp "runs/gpu_train/$m/last.pt" "$out/$m.pt"
  cp "runs/gpu_train/$m/log.csv" "$out/${m}_log.csv"
done
[ "$DEVICE" = cuda ] || { step "3. skipped (GPU only)"; exit 0; }
step "3. pipeline 1080p, shipped quality weights, h264-nvenc vs libx264"
{ python3 benchmarks/bench_pipeline.py --device cuda --weights vderain/weights/quality.pt --width 1920 --height 1080 \
    --frames 240 --repeat 1 --preset veryfast --codec h264-nvenc
  python3 benchmarks/bench_pipeline.py --device cuda --weights vderain/weights/quality.pt --width 1920 --height 1080 \
    --frames 240 --repeat 1 --preset veryfast
  python3 benchmarks/bench_pipeline.py --device cuda --weights vderain/weights/quality.pt --width 1920 --height 1080 \
    --frames 240 --repeat 1 --preset veryfast --codec h264-nvenc --stabilise
} 2>&1 | tee "$out/pipeline.txt"
step "done"
