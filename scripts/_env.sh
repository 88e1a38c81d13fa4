# Sourced by scripts/main.sh and scripts/test.sh: create .venv (once) and install distclip into it.
# torch is pinned to the CPU wheel 2.13.0 first; an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[${DISTCLIP_EXTRAS:-dev}]"  # DISTCLIP_EXTRAS: the extras to install
