#!/usr/bin/env bash
# Wheels the device machine lacks (its image has torch, numpy, opencv-python-headless, tqdm,
# pyyaml; not av or kornia), for its Python 3.12, into the ignored folder .whl (carried by
# tools/gpu_session.sh). Run here, where pip can reach an index. ~42 MB.
set -euo pipefail
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl av==18.1.0 kornia==0.9.0 kornia_rs==0.2.0
ls -la .whl
