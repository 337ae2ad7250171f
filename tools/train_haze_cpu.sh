#!/usr/bin/env bash
# Train the haze estimator (vderain/models/haze.py) of a shipped model on the CPU, its streak
# network frozen: warm start from the weights file with `model.dehaze` switched on, only the
# `haze.` parameters train (the body builds no autograd graph), one thread. Crops are 256 px,
# not the 128 of tools/finetune_cpu.sh: haze is judged over wide areas (a 128-px crop is 16
# cells of the estimator) and the frozen body costs only its forward pass.
#   tools/train_haze_cpu.sh CONFIG_NAME INIT_WEIGHTS OUT_DIR SECONDS [more vderain train args]
# e.g. tools/train_haze_cpu.sh quality vderain/weights/quality.pt runs/quality_haze 3600
# Resumable: run the same command again after a stop (SIGTERM / Ctrl-C checkpoint).
set -euo pipefail
name=$1 init=$2 out=$3 seconds=$4
shift 4
MIX=${MIX:-'data.preset={light: 0.25, heavy: 0.15, night: 0.12, dashcam: 0.12, storm: 0.08, norain: 0.28}'}
DEHAZE=${DEHAZE:-1.5}   # the largest optical depth it may undo (the storm preset reaches 1.4)
mkdir -p "$out"
[ -f "$out/init.pt" ] || cp "$init" "$out/init.pt"   # the weights it started from, kept beside the run
OMP_NUM_THREADS=1 exec ${VDERAIN:-vderain} train --config "configs/$name.yaml" --out "$out" --no-progress \
  --set "init=$out/init.pt" --set "model.dehaze=$DEHAZE" --set optim.train_only=haze. \
  --set 'data.clean=["data/clean/*.mp4"]' \
  --set optim.lr=0.001 --set optim.warmup_steps=100 --set optim.ema=0.999 --set "optim.time_limit_s=$seconds" \
  --set loss.norain=2.0 --set data.batch=8 --set data.crop=256 --set "$MIX" \
  --set log.every=50 --set log.val_every=500 --set log.ckpt_every_s=300 "$@"
