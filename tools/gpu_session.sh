#!/usr/bin/env bash
# One prepared call on the device machine (one H100/H200), under 10 minutes with the defaults:
#   1. speed of what ships: the networks alone at SIZE in bf16 (batch 8, 4, 3, 2 and 1; batch 4 on a
#      3 px/frame pan, then profiled), the temporal stabiliser's GPU path, the GPU-only tests;
#      1b (COMPILE=1): `quality` under torch.compile with CUDA graphs at batch 4 and 2;
#   2. warm-started training, RUNS side by side on the one GPU (TRAIN_S seconds of wall-clock;
#      stage 10: three side by side ran ~6.4 steps/s each, two ~8);
#   3. the GPU pipeline at SIZE with the shipped quality weights (fps and its own GPU peak): libx264, libx264 + stabiliser,
#      NVENC (the stage-10 H200 container had no NVENC: it fails in one line).
# Every step has its own time limit, so a hang in one costs that step and not the call.
# Prepare here: tools/fetch_gpu_wheels.sh and `mkdir -p data/clean && cp ../shared/data/clean/*.mp4 data/clean/`;
# then run it with carry [".whl", "data/clean"] and command `tools/gpu_session.sh`, timeout_s 600.
# What comes back under $OUT (8 files at most): session.log, logs.tar.gz (each run's log.csv and
# stdout, speed.txt, pipeline.txt) and RUN.pt per training run (the EMA weights it exported).
# RUNS: one training run per line, "NAME CONFIG [vderain train args]" (no spaces inside an arg).
# Dry run here on the CPU (plumbing only):
#   DEVICE=cpu SIZE=160x96 TRAIN_S=10 FRAMES=12 OUT=runs/gs_dry tools/gpu_session.sh
# (tests/test_train.py runs it with SPEED=0 COMPILE=0 VAL=0 and CLEAN set to a clip it makes, so a
# command that no longer parses fails here and not on the GPU machine)
set -u
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-1920x1080}
TRAIN_S=${TRAIN_S:-240}
COMPILE=${COMPILE:-1}   # 1b: torch.compile (reduce-overhead: CUDA graphs) at batch 4 and 2
SPEED=${SPEED:-1}       # 1: the speed step
CLEAN=${CLEAN:-data/clean}   # the clean clips (*.mp4) training reads
VAL=${VAL:-1}           # 0: no validation pass (the dry run)
THREADS=${THREADS:-5}   # CPU threads per training run (three run side by side)
# quality_sv: stage 24's shipped recipe (faint clips as streaks only, the rain layer's low
# frequencies weighed twice); quality_svt: the same with the temporal loss weighed 2.5 (a CPU
# continuation of the recipe drifted to Ewarp 1.11 and real flicker 0.981); fast_fv: `fast`'s own
# faint recipe (half the rain clips faint, veil kept: the streaks-only recipe cost it the faintest
# level and the Ewarp bar), temporal 2.0
RUNS=${RUNS:-"quality_sv quality --set loss.temporal=1.5 --set loss.norain=1.0 --set loss.psnr=0.002 --set data.faint_prob=0.5 --set data.faint_veil=false --set loss.layer_lowpass=2.0
quality_svt quality --set loss.temporal=2.5 --set loss.norain=1.0 --set loss.psnr=0.002 --set data.faint_prob=0.5 --set data.faint_veil=false --set loss.layer_lowpass=2.0
fast_fv fast --set loss.temporal=2.0 --set loss.norain=3.0 --set data.faint_prob=0.5"}
FRAMES=${FRAMES:-240}
out=${OUT:-runs/gpu_session}
work=${WORK:-runs/gpu_train}
mkdir -p "$out" "$work"
t0=$(date +%s)
if [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
exec > >(tee "$out/session.log") 2>&1
[ "$DEVICE" = cuda ] && nvidia-smi -L
step() { echo "== [$(( $(date +%s) - t0 )) s] $*"; }
w=${SIZE%x*}; h=${SIZE#*x}

[ "$SPEED" = 1 ] && step "1. speed at $SIZE" && timeout 160 bash -c "
  python3 benchmarks/bench_model.py --device $DEVICE --size $SIZE --batch 8 --models quality,fast --seconds 3
  for b in 4 3 2 1; do python3 benchmarks/bench_model.py --device $DEVICE --size $SIZE --batch \$b --models quality --seconds 3; done
  python3 benchmarks/bench_model.py --device $DEVICE --size $SIZE --batch 4 --models quality --seconds 3 --pan 3 --profile 5
  python3 benchmarks/bench_stabiliser.py --device $DEVICE --size $SIZE --threads 8 --frames 40
  python3 -m pytest -q -p no:warnings -rs tests/test_stabilise.py tests/test_pipeline.py tests/test_io_writer.py -k 'cuda or nvenc'
" 2>&1 | tee "$work/speed.txt"

if [ "$COMPILE" = 1 ] && [ "$SPEED" = 1 ]; then
  step "1b. quality compiled (torch.compile, reduce-overhead), batch 4 and 2"
  timeout 150 bash -c "
    for b in 4 2; do python3 benchmarks/bench_model.py --device $DEVICE --size $SIZE --batch \$b --models quality --seconds 3 --compile; done
  " 2>&1 | tee "$work/compile.txt"
fi

step "2. training, $TRAIN_S s each, side by side"
# the fine-tune recipe: warm start, EMA, rain-free clips weighted, the haze estimator frozen
# (trained alone by configs/haze.yaml), and `faint` rain (thin translucent streaks, what the
# networks leave on the suite and on real footage) and `dots` (short exposures; stage 13) added
MIX='data.preset={light: 0.15, heavy: 0.12, night: 0.09, dashcam: 0.11, storm: 0.07, faint: 0.14, dots: 0.12, norain: 0.20}'
BODY='optim.train_only=[fuse., stem., enc., down., body., up., dec., tail.]'
common=(--set optim.ema=0.999 --set optim.lr=0.0003 --set optim.warmup_steps=100 --set loss.norain=2.0
        --set "$MIX" --set "$BODY" --set log.val_every=500 --set log.every=100
        --set "data.clean=[\"$CLEAN/*.mp4\"]" --set "optim.time_limit_s=$TRAIN_S")
[ "$VAL" = 1 ] || common+=(--set 'log.val_cases=[]')
train() {  # run name, config, extra args
  local name=$1 cfg=$2; shift 2
  # -k: a run that does not stop on SIGTERM (it finishes its step first) is killed 30 s later
  OMP_NUM_THREADS=$THREADS timeout -k 30 $(( TRAIN_S + 90 )) python3 -m vderain train --config "configs/$cfg.yaml" \
    --out "$work/$name" --device "$DEVICE" --no-progress --set "init=vderain/weights/$cfg.pt" \
    "${common[@]}" "$@" > "$work/$name.log" 2>&1
}
pids=() names=()
while read -r name cfg extra; do
  [ -n "$name" ] || continue
  train "$name" "$cfg" $extra & pids+=($!) names+=("$name:$cfg")
done <<< "$RUNS"
wait "${pids[@]}"   # not a bare `wait`: it would also wait for the tee behind exec
for nc in "${names[@]}"; do
  r=${nc%%:*} cfg=${nc#*:}
  echo "-- $r"; tail -n 3 "$work/$r.log"
  cp "$work/$r/$(basename "$cfg").pt" "$out/$r.pt" 2>/dev/null || ls "$work/$r"
done

if [ "$DEVICE" = cuda ]; then
  step "3. pipeline $SIZE, shipped quality weights"
  timeout 120 bash -c "
    for extra in '' '--stabilise' '--codec h264-nvenc'; do
      python3 benchmarks/bench_pipeline.py --device cuda --weights vderain/weights/quality.pt --width $w --height $h \
        --frames $FRAMES --repeat 1 --preset veryfast \$extra
    done
  " 2>&1 | tee "$work/pipeline.txt"
else
  step "3. skipped (GPU only)"
fi
tar czf "$out/logs.tar.gz" -C "$work" $(cd "$work" && ls -d *.txt *.log */log.csv 2>/dev/null)
step "done"
