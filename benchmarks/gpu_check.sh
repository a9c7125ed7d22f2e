#!/usr/bin/env bash
# The GPU check of issue 16, one script: installs what a bare GPU machine with jax,
# flax and optax lacks, runs the GPU tests and every GPU timing, and writes
# benchmarks/results/{kernels,train_speed}_gpu.{md,json} naming the card. Each step
# has its own time limit (at most 8 minutes in all; about 6 expected on an H200).
#
#   bash benchmarks/gpu_check.sh [WHEEL_DIR]
#
# WHEEL_DIR (default .whl, filled by benchmarks/gpu_wheels.sh where PyPI is reachable):
# wheels installed with --no-index when tensorflow-datasets or ml-collections is
# missing; without them, pip installs both from PyPI. The repository itself is used
# from the working tree (PYTHONPATH), not installed. Where $OUT is set (the device
# tool), the results files and the logs are also copied there.
#
# Steps (what each checks, issue 16's items):
#   1. the card and jax's devices;
#   2. the GPU tests: tests/kernels (the Pallas kernels exact), tests/packed (packed
#      model = eval-mode model, item 1), tests/nn (layers, precision, compute paths);
#   3. benchmarks.kernels --device=gpu --quick=1: the XNOR matmul against bf16 and int8
#      dots on the issue's shapes (items 2 and 3) -> kernels_gpu.md;
#   4. benchmarks.train_speed at ImageNet's geometry (224x224x3, 1000 classes, batch
#      256 training, 1 and 64 inference): training img/s with bfloat16 (auto) and
#      float32 binary products and the float twin's, eval-mode against packed inference
#      and their argmax agreement (items 1, 4, 5) -> train_speed_gpu.md.
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

step devices 60 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total \
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
else
  RESULTS=benchmarks/results
  # The one test of these that trains on MNIST is left out: a bare GPU machine has no
  # npm to fetch it (it runs in CI).
  step tests 180 "$PY" -m pytest -q -n 8 \
    --maxfail=20 -p no:cacheprovider tests/kernels tests/packed tests/nn --deselect \
    tests/nn/compute_test.py::test_trainer_loss_curve_and_accuracy_equal_for_both_backends
  step kernels 120 "$PY" -m benchmarks.kernels --device=gpu --quick=1 --out="$RESULTS"
  step models 150 "$PY" -m benchmarks.train_speed --image_size=224 --channels=3 \
    --classes=1000 --batch=256 --eval_batch=64 --backends=float \
    --compute_dtypes=auto,float32 --also_methods= --repeats=10 --warmup=3 \
    --out="$RESULTS"
fi

if [ -n "${OUT:-}" ]; then
  cp "$RESULTS"/kernels_*.md "$RESULTS"/kernels_*.json "$RESULTS"/train_speed_*.md \
    "$RESULTS"/train_speed_*.json "$OUT"/ 2>/dev/null
fi
echo "gpu_check: exit status $status"
exit $status
