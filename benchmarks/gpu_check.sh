#!/usr/bin/env bash
# On a GPU machine without network: install the carried wheels (.gpu-bundle/, from `make gpu-bundle`) into a
# folder of their own, then run the GPU check. Extra arguments go to benchmarks/gpu_check.py.
#     bash benchmarks/gpu_check.sh [--budget 470] [--parts speed,memory]
# Results: the table on stdout and gpu_check.json (plus gpu_check.log) in $OUT, or in the current folder.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=.gpu-bundle
SITE=${LATHE_GPU_SITE:-/tmp/lathe-site}
RESULTS=${OUT:-.}
PYTHON=${PYTHON:-python3}
if [ ! -f "$BUNDLE/requirements.txt" ]; then
  echo "No $BUNDLE here: run 'make gpu-bundle' on a machine with network and carry $BUNDLE along." >&2
  exit 2
fi
"$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target "$SITE" --find-links "$BUNDLE/wheels" -r "$BUNDLE/requirements.txt"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# The imports the check needs, with their versions, before any time is spent training
"$PYTHON" -c "import torch, transformers, trl, peft, datasets, pydantic, yaml; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__, '| trl', trl.__version__, '| peft', peft.__version__, '| datasets', datasets.__version__)"
set -o pipefail
"$PYTHON" benchmarks/gpu_check.py --tokenizer "$BUNDLE/tokenizer" --out "$RESULTS/gpu_check.json" "$@" 2>&1 \
  | tee "$RESULTS/gpu_check.log"
