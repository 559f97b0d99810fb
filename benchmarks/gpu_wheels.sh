#!/usr/bin/env bash
# Fetch (here, where PyPI is reachable) the wheels the GPU image lacks into .whl/ (git-ignored, ~16 MB), for
# benchmarks/run_gpu_scale.sh and run_cuda.sh: the image has torch 2.11 + transformers 5.17 but no trl, datasets or
# liger-kernel; alignkit's pinned stack is transformers 5.24 / trl 1.16. Python 3.12, x86-64 manylinux (the image's).
set -eu
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  trl==1.16.0 transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 liger-kernel==0.8.5
du -sh .whl
