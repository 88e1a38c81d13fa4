#!/usr/bin/env bash
# Create the environment, lint, and run the test suite.
# One intra-op thread per process: the tests run many tiny ops (and torchrun workers side by side),
# where torch's thread pool costs more than it gains; set OMP_NUM_THREADS to override.
source "$(dirname "$0")/_env.sh"
# The tests also read back TensorBoard event files: the optional extra (about 30 MB with grpcio and protobuf) is
# installed here for them only; `pip install distclip` and scripts/main.sh stay without it.
python -m pip install --quiet -e ".[dev,tensorboard]"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ruff check src tests benchmarks
python -m pytest -q "$@"
