#!/usr/bin/env bash
# Downloads, into .whl/ (git-ignored), the Python 3.12 x86-64 wheels that a bare GPU
# machine with jax, flax and optax lacks for benchmarks/gpu_check.sh: tensorflow-datasets,
# ml-collections and their dependencies not in that image (the device image's package
# list: /work/.library/device/KINDS.md). `promise` has no wheel on PyPI: one is built
# from its sdist. Run it on a machine that reaches PyPI:
#
#   bash benchmarks/gpu_wheels.sh            # then carry .whl to the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
mkdir -p "$DEST"
PY=${PYTHON:-python3}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64 --platform any)
PACKAGES=(tensorflow-datasets==4.9.10 ml-collections==1.1.0 array-record==0.8.6
          dm-tree immutabledict simple-parsing docstring-parser tensorflow-metadata
          googleapis-common-protos termcolor toml importlib-resources)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$DEST" "${PACKAGES[@]}"
if ! ls "$DEST"/promise-*.whl >/dev/null 2>&1; then
  "$PY" -m pip wheel -q --no-deps -w "$DEST" promise==2.3
fi
ls -la "$DEST"
du -sh "$DEST"
