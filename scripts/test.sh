#!/usr/bin/env bash
# Create the environment, lint, and run the test suite.
# One intra-op thread per process: the tests run many tiny ops (and torchrun workers side by side),
# where torch's thread pool costs more than it gains; set OMP_NUM_THREADS to override.
source "$(dirname "$0")/_env.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ruff check src tests benchmarks
python -m pytest -q "$@"
