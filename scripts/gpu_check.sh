#!/usr/bin/env bash
# GPU readiness check for a CUDA machine with the repository copied onto it (issue 16, docs/performance.md):
#   1. the tests marked `cuda` (no host synchronisation per training step, CUDA == CPU results, the NaN/Inf alarm);
#   2. `distclip bench gpu`: AWD-LSTM with 8 clients against one model on the 8x batch, ResNet-20 on CIFAR-shaped
#      data with 8 clients, a FedAvg MLP round with N = 1,000 against the floor; it prints the ratios.
# About 3-6 minutes on one H100/H200-class GPU, under 8 with the limits below.
# It installs nothing and needs no network: it uses the machine's own python with a CUDA build of torch ($PYTHON,
# default python3; numpy, scipy, scikit-learn, matplotlib, tqdm and pytest must be importable) and runs distclip
# from src/ (PYTHONPATH). Results go to $OUT (default runs/gpu-check): pytest.log, bench.log, gpu.json.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
DEST=${OUT:-runs/gpu-check}
mkdir -p "$DEST"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
"$PY" - <<'PY' || exit 1
import sys
import torch
missing = []
for name in ("numpy", "scipy", "sklearn", "matplotlib", "tqdm", "pytest"):
    try:
        __import__(name)
    except ImportError:
        missing.append(name)
if missing:
    sys.exit(f"gpu_check: missing Python packages {', '.join(missing)} (carry them as wheels; see the script header)")
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA device; run this on a GPU machine")
print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY
status=0
echo "== tests marked cuda"
timeout 240 "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider 2>&1 | tee "$DEST/pytest.log" || status=1
echo "== distclip bench gpu"
timeout 300 "$PY" -m distclip bench gpu --out "$DEST" 2>&1 | tee "$DEST/bench.log" || status=1
echo "gpu_check: $([ $status = 0 ] && echo done || echo FAILED); logs and gpu.json in $DEST"
exit $status
