#!/usr/bin/env bash
# The GPU run of the speed benchmark (issue #5), as run through the device tool on one H100/H200:
#   wheels for trl/datasets/liger/transformers (not in the GPU image) are carried in .whl/ and installed to /tmp/site.
# Usage: bash benchmarks/run_cuda.sh OUTDIR [REPEATS] [STEPS]
set -u
OUTDIR=${1:?usage: run_cuda.sh OUTDIR [REPEATS] [STEPS]}
REPEATS=${2:-2}
STEPS=${3:-8}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi -L
python3 -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)"
python3 benchmarks/cuda_check.py 2>&1 | tee "$OUTDIR/cuda_check.txt"
for c in A B C; do
  python3 benchmarks/dpo_vs_trl.py --device cuda --configs "$c" --repeats "$REPEATS" --steps "$STEPS" --no-sweeps \
    --json "$OUTDIR/cuda_$c.json" 2>&1 | grep -v "━" | tee -a "$OUTDIR/bench.txt"
done
