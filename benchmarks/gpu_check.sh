#!/usr/bin/env bash
# The one GPU check of issue 13: run it once on a machine with a CUDA GPU, from anywhere:
#
#     bash benchmarks/gpu_check.sh            # about 6-8 minutes on one H100 / H200
#
# 1. the GPU tests (pytest -m gpu) of the kernels, the chunked cross-entropy and the model
#    (kernel configs fixed, QCODER_TRITON_AUTOTUNE=0, so that they compile quickly);
# 2. benchmarks/train_step_gpu.py: tokens/s, MFU, peak memory of the 0.5B preset and the course
#    gpu preset, transformers vs ours per backend, with and without torch.compile;
# 3. benchmarks/kernels.py: RoPE and attention vs every SDPA backend, and what SDPA's default
#    dispatch runs (causal and packed-document masks).
# Each part has its own time limit (120 + 240 + 150 s: at most 8.5 minutes), so one that hangs
# cannot eat the others' time; everything printed goes to
# benchmarks/results/<date>-<card>.txt, the figures to <date>-<card>-{train_step,kernels}.json
# (all copied to $OUT/ when $OUT is set).
# PYTHON=... picks the interpreter (default: .venv/bin/python if present, else python3).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
card=$($PY -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>/dev/null)
if [ -z "$card" ]; then
  echo "benchmarks/gpu_check.sh: no CUDA GPU visible to $PY; nothing to check (exit 0)."
  exit 0
fi
unset TRITON_INTERPRET
slug=$(echo "$card" | tr -c 'A-Za-z0-9.\n-' '_' | sed 's/__*/_/g; s/_$//')
mkdir -p benchmarks/results
out="benchmarks/results/$(date -u +%Y-%m-%d)-$slug.txt"
t0=$(date +%s)

part() {  # part NAME SECONDS COMMAND...: run with a limit, say how it ended
  local name=$1 limit=$2
  shift 2
  local s=$(date +%s)
  echo
  echo "=================== $name (limit ${limit}s): $*"
  timeout -k 10 "$limit" "$@"
  local rc=$?
  [ $rc -eq 124 ] && echo "[gpu_check] $name: TIMED OUT after ${limit}s"
  echo "[gpu_check] $name: exit $rc in $(( $(date +%s) - s ))s"
}

{
  echo "# benchmarks/gpu_check.sh  $(date -u '+%Y-%m-%d %H:%M UTC')  card: $card"
  echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (+ local changes)')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null
  $PY -c "import torch, triton, transformers; print(f'torch {torch.__version__}, triton {triton.__version__}, transformers {transformers.__version__}, cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}')"
  part "GPU tests" 120 env QCODER_TRITON_AUTOTUNE=0 $PY -m pytest -q -p no:cacheprovider -o addopts= -m gpu \
    tests/test_kernels_cross_entropy.py tests/test_kernels_rope.py tests/test_kernels_attention.py tests/test_model.py
  part "train step" 240 $PY benchmarks/train_step_gpu.py --json "${out%.txt}-train_step.json"
  part "kernels" 150 $PY benchmarks/kernels.py --json "${out%.txt}-kernels.json"
  echo
  echo "[gpu_check] all parts in $(( $(date +%s) - t0 ))s; output in $out"
} 2>&1 | tee "$out"
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then cp "${out%.txt}"* "$OUT/"; fi
