#!/usr/bin/env bash
# The GPU run of issue #21 on one H100/H200 through the device tool, as ONE command (about 7-8 minutes; run it with
# timeout_s=570): decoding speed (DeRa vs one model, 256 / 1024 new tokens), then gpu_scale.py (Qwen2.5 shapes,
# alignkit vs TRL 1.16 + Liger, the length curve). gpu_scale starts no worker after GPU_SCALE_DEADLINE_S seconds
# (default 300), so the command ends inside the tool's 10-minute limit; what it skipped is listed in gpu_scale.json
# ("skipped") and can be run next with --parts / --shapes / --refs into another folder.
# Before: `bash benchmarks/gpu_wheels.sh` here (wheels into .whl/), then run with carry [".whl"]:
#   bash benchmarks/run_gpu_scale.sh "$OUT" [GPU_SCALE_DEADLINE_S]
# Results (JSON, PNG, logs) land in OUTDIR; copy them to benchmarks/cuda/ and write them up in RESULTS.md.
set -u
OUTDIR=${1:?usage: run_gpu_scale.sh OUTDIR [GPU_SCALE_DEADLINE_S]}
DEADLINE=${2:-300}
mkdir -p "$OUTDIR"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{
  nvidia-smi -L
  python3 -c "import torch, transformers, trl, importlib.util as u; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'liger', u.find_spec('liger_kernel') is not None)"
  # item 2 (varlen attention, not yet wired in): which varlen kernel this torch offers, for docs/speed.md's plan
  python3 -c "import inspect, torch.nn.attention.varlen as v; print('varlen_attn', inspect.signature(v.varlen_attn))" || echo "no torch.nn.attention.varlen"
} 2>&1 | tee "$OUTDIR/env.txt"
timeout 60 python3 benchmarks/decode_speed.py --device cuda --new-tokens 256,1024 --repeats 1 \
  --json "$OUTDIR/decode_speed_cuda.json" 2>&1 | tee "$OUTDIR/decode_speed.log"
python3 benchmarks/gpu_scale.py --device cuda --out "$OUTDIR" --deadline-s "$DEADLINE" 2>&1 \
  | grep -v "━" | tee "$OUTDIR/gpu_scale.log"
