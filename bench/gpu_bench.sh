#!/usr/bin/env bash
# One GPU session's figures, in priority order, each run bounded by `timeout` and saved under $OUT as it ends:
#   A  gpu-60s : our trainer (KERAS_BACKEND=jax, bf16, jit) sized to finish within 60 s, compilation included
#   T  anchor  : ../shared/anchors/fast_torch.py (PyTorch) beside it, same machine, for the ratio
#   B  gpu-best: a longer run of the same code for the best accuracy within 5 minutes
#   C  cpu-preset candidates: accuracy per epoch of CPU preset shapes (hardware-independent; timing comes from CPU)
# Needs, carried into the repo: .whl/ (keras, namex, optree, pydantic + deps for Python 3.12) and .gpudata/
# (the four IDX .gz files and fast_torch.py). SMOKE=1 runs the same steps tiny, on CPU, to check the script.
set -u
OUT=${OUT:-/tmp/gpu-bench-out}; mkdir -p "$OUT"
if [ -d .whl ] && [ "${SMOKE:-0}" != 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export KERAS_BACKEND=jax FM_DIR=$PWD/.gpudata PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
PY=${PY:-python3}
if [ "${SMOKE:-0}" = 1 ]; then
  SMALL="--train-limit 2000 --epochs 2 --width 8"; LIMIT_A=600; LIMIT_T=60; LIMIT_B=600; LIMIT_C=600
else
  SMALL=""; LIMIT_A=100; LIMIT_T=90; LIMIT_B=130; LIMIT_C=90
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"
$PY -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"

bench() {  # label timeout args...
  local label=$1 limit=$2; shift 2
  timeout "$limit" $PY bench/bench_train.py --label "$label" --out "$OUT/runs.jsonl" "$@" $SMALL \
    > "$OUT/$label.log" 2>&1
  echo "$label exit $?"; grep -E '^(== |\{"curve")' "$OUT/$label.log" | tail -4
}

step() { case " ${STEPS:-A T B C} " in *" $1 "*) return 0;; esac; return 1; }

# A: the 60-second run (XLA compilation and autotuning included in its clock)
step A && bench gpu-60s $LIMIT_A --preset full --mixed-precision --augment --width 96 --epochs 30 --batch-size 512 \
  --learning-rate 2e-3 --curve

# T: the PyTorch anchor on the same GPU, alone
if step T; then
  if [ "${SMOKE:-0}" = 1 ]; then export SUB=2000 RUNS='[[1, 8]]'; else export RUNS='[[20, 96]]'; fi
  timeout $LIMIT_T $PY .gpudata/fast_torch.py > "$OUT/anchor.log" 2>&1; echo "anchor exit $?"; tail -2 "$OUT/anchor.log"
  unset SUB RUNS
fi

# B: the longer run
step B && bench gpu-best $LIMIT_B --preset full --mixed-precision --augment --width 128 --epochs 50 --batch-size 512 \
  --learning-rate 2e-3 --curve

# C: CPU preset shapes, three at once (accuracy only; their times mean nothing here). The flags name what the
# presets were at the time, so the record stays reproducible after the presets changed.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
if step C; then
  bench cpu-demo $LIMIT_C --preset demo --epochs 5 --curve &
  bench cpu-full-w24 $LIMIT_C --preset full --width 24 --augment --epochs 8 --curve &
  bench cpu-full-w32 $LIMIT_C --preset full --augment --epochs 8 --curve &
  wait
fi

# P (second session): candidate CPU presets after C showed full w32 + augmentation at 8 epochs reaching 92.6%
if step P; then
  bench cpu-demo-e4 $LIMIT_C --preset demo --epochs 4 --curve &
  bench cpu-full-w32-aug-e10 $LIMIT_C --preset full --epochs 10 --augment --curve &
  bench cpu-full-w32-noaug-e10 $LIMIT_C --preset full --epochs 10 --no-augment --curve &
  bench cpu-full-w32-aug-e12 $LIMIT_C --preset full --epochs 12 --augment --curve &
  bench cpu-full-w24-noaug-e10 $LIMIT_C --preset full --width 24 --epochs 10 --no-augment --curve &
  wait
fi
unset XLA_PYTHON_CLIENT_PREALLOCATE

# A2 / B2 (second session): more epochs, now that one epoch is known to take ~0.5 s at width 128 (A2 = preset gpu)
step A2 && bench gpu-60s-w128-e70 $LIMIT_A --preset full --mixed-precision --augment --width 128 --epochs 70 \
  --batch-size 512 --learning-rate 2e-3 --curve
step B2 && bench gpu-best-w192-e80 $LIMIT_B --preset full --mixed-precision --augment --width 192 --epochs 80 \
  --batch-size 512 --learning-rate 2e-3 --curve
echo done
