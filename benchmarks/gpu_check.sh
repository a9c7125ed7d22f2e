#!/usr/bin/env bash
# The GPU check of issue 16, one script: installs what a bare GPU machine with jax,
# flax and optax lacks, runs the GPU tests and every GPU timing, and writes
# benchmarks/results/{kernels,train_speed}_gpu.{md,json} naming the card. Each step
# has its own time limit (at most 14 minutes in all; about 8-9 expected on an H200,
# so GPU_CHECK_STEPS picks a subset where less device time is left).
#
#   bash benchmarks/gpu_check.sh [WHEEL_DIR]
#
# WHEEL_DIR (default .whl, filled by benchmarks/gpu_wheels.sh where PyPI is reachable):
# wheels installed with --no-index when tensorflow-datasets or ml-collections is
# missing; without them, pip installs both from PyPI. The repository itself is used
# from the working tree (PYTHONPATH), not installed. Where $OUT is set (the device
# tool), the logs are written there as each step runs (so a call stopped at its limit
# still returns them), and at the end they and the results files are packed into
# $OUT/gpu_check.tar.gz, with the three tables beside it.
#
# Steps (what each checks, issue 16's items), the timings first on an idle GPU:
#   1. the card and jax's devices;
#   2. benchmarks.kernels --device=gpu --quick=1: the XNOR matmul against bf16 and int8
#      dots on the issue's shapes (items 2 and 3) -> kernels_gpu.md;
#   3. benchmarks.train_speed at ImageNet's geometry (224x224x3, 1000 classes, batch
#      256 training, 1 and 64 inference): training img/s with bfloat16 (auto) and
#      float32 binary products and the float twin's, eval-mode against packed inference
#      and their argmax agreement (items 1, 4, 5) -> train_speed_gpu.md;
#   4. benchmarks.gpu_precision: what the float layers' HIGHEST precision costs (train
#      steps) and buys (packed against eval-mode logits, and eval mode against itself
#      in two programs), with DEFAULT (TF32) beside it, and a profile of the binary
#      train step (item 1, 5) -> gpu_precision_gpu.md;
#   5. the GPU tests: first those that failed on the H200 (2026-11-30) alone, for their
#      tracebacks; then tests/kernels (the Pallas kernels exact), tests/packed (packed
#      model = eval-mode model, item 1), tests/nn (layers, precision, compute paths);
#   6. tuning: other tilings (GPU_TUNE_VARIANTS) of the popcount and mma_a8 paths on
#      the target shapes (kernels_tune_gpu.md; its failure does not count in the exit
#      status).
# GPU_CHECK_STEPS=devices,tests,... runs only the steps named.
# The script goes on after a failed step and exits with the first failure's status.
#
# GPU_CHECK_CPU=1 rehearses it on a CPU in about a minute (tiny sizes, a few tests,
# results to /tmp/gpu_check_cpu, never over benchmarks/results): the plumbing, not
# the GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:-.whl}
PY=${PYTHON:-python3}
LOGS=${OUT:-/tmp/gpu_check}/gpu_check_logs
mkdir -p "$LOGS" benchmarks/results
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# 8 test processes share the GPU: none may preallocate most of its memory.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
status=0
# GPU_CHECK_STEPS: the steps to run, comma-separated (default all of them).
STEPS=${GPU_CHECK_STEPS:-devices,kernels,models,precision,focus,tests,tune}
want() { [[ ",$STEPS," == *",$1,"* ]]; }
TUNE=${GPU_TUNE_VARIANTS:-popcount:64x256,popcount:32x512,mma_a8:256x64x4,mma_a8:256x128x4}
step() {  # step NAME SECONDS COMMAND...: runs COMMAND under a limit, logs it
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$LOGS/$name.log"
  echo "=== $name: rc=$rc in $((SECONDS - t0)) s"
  if [ $rc -ne 0 ] && [ $status -eq 0 ]; then status=$rc; fi
}

if ! "$PY" -c "import tensorflow_datasets, ml_collections" 2>/dev/null; then
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/bnnjax_site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/bnnjax_site"
  else
    "$PY" -m pip install -q tensorflow-datasets ml-collections || exit 1
  fi
fi

want devices && step devices 40 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv; $PY -c 'import jax, flax; print(jax.__version__, flax.__version__, \
  jax.devices())'"
if [ "${GPU_CHECK_CPU:-0}" = 1 ]; then
  RESULTS=/tmp/gpu_check_cpu
  mkdir -p "$RESULTS"
  step tests 300 "$PY" -m pytest -q -x -p no:cacheprovider tests/nn/precision_test.py \
    tests/kernels/lowering_test.py
  step kernels 300 "$PY" -m benchmarks.kernels --device=gpu --quick=1 --interpret=1 \
    --table=1x256x128,40x512x256 --weights=1 --copy_mib=8 --repeats=1 --out="$RESULTS"
  step models 300 "$PY" -m benchmarks.train_speed --image_size=32 --channels=3 \
    --classes=10 --batch=4 --eval_batch=2 --width=4 --backends=float \
    --compute_dtypes=auto,bfloat16 --also_methods= --repeats=1 --warmup=1 \
    --out="$RESULTS"
  step precision 300 "$PY" -m benchmarks.gpu_precision --image_size=32 --classes=10 \
    --width=4 --batch=4 --eval_batch=2 --repeats=1 --warmup=1 --profile_steps=1 \
    --out="$RESULTS"
else
  RESULTS=benchmarks/results
  # Timings first, on a GPU nothing else uses; then the tests (8 processes).
  want kernels && step kernels 110 "$PY" -m benchmarks.kernels --device=gpu --quick=1 \
    --out="$RESULTS"
  want models && step models 140 "$PY" -m benchmarks.train_speed --image_size=224 \
    --channels=3 --classes=1000 --batch=256 --eval_batch=64 --backends=float \
    --compute_dtypes=float32,bfloat16 --also_methods= --repeats=10 --warmup=3 \
    --out="$RESULTS"
  want precision && step precision 170 "$PY" -m benchmarks.gpu_precision \
    --out="$RESULTS"
  # The tests that failed on the H200 on 2026-11-30, alone and without xdist, so that
  # their tracebacks come back even if the whole suite below runs out of time (xdist
  # prints them only at the end).
  want focus && step focus 90 "$PY" -m pytest -q --tb=long -p no:cacheprovider \
    tests/nn/precision_test.py::test_every_lowering_accumulates_bfloat16_operands_in_float32 \
    tests/nn/compute_test.py::test_packed_and_float_agree_in_a_training_step \
    tests/nn/layers_test.py tests/kernels/float_conv_test.py
  # The one test of these that trains on MNIST is left out: a bare GPU machine has no
  # npm to fetch it (it runs in CI).
  want tests && step tests 200 "$PY" -m pytest -v -n 8 --tb=short -rfE \
    --maxfail=60 -p no:cacheprovider tests/kernels tests/packed tests/nn --deselect \
    tests/nn/compute_test.py::test_trainer_loss_curve_and_accuracy_equal_for_both_backends
  # Tuning: the kernels' other tilings on the two target shapes (not in the status).
  saved=$status
  want tune && step tune 90 "$PY" -m benchmarks.kernels --device=gpu --quick=1 \
    --out=/tmp/gpu_tune --table=1x16384x16384,16x16384x16384,4096x8192x8192 \
    --variants="$TUNE"
  status=$saved
  cp /tmp/gpu_tune/kernels_gpu.md "$LOGS/kernels_tune_gpu.md" 2>/dev/null
fi

if [ -n "${OUT:-}" ]; then
  # At most 8 files come back from $OUT: one archive of the logs and results, and the
  # three tables beside it.
  cp "$RESULTS"/kernels_*.md "$RESULTS"/kernels_*.json "$RESULTS"/train_speed_*.md \
    "$RESULTS"/train_speed_*.json "$RESULTS"/gpu_precision_*.md \
    "$RESULTS"/gpu_precision_*.json "$LOGS"/ 2>/dev/null
  tar -czf "$OUT/gpu_check.tar.gz" -C "$(dirname "$LOGS")" "$(basename "$LOGS")" \
    && rm -rf "$LOGS"
  cp "$RESULTS"/kernels_gpu.md "$RESULTS"/train_speed_gpu.md \
    "$RESULTS"/gpu_precision_gpu.md "$OUT"/ 2>/dev/null
fi
echo "gpu_check: exit status $status"
exit $status
