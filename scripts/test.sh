#!/usr/bin/env bash
# Create the environment, lint, and run the test suite.
# One intra-op thread per process: the tests run many tiny ops (and torchrun workers side by side),
# where torch's thread pool costs more than it gains; set OMP_NUM_THREADS to override.
# The tests install the flower extra too (flwr[simulation], with Ray: about 1 min and 250 MB) so that
# tests/flower runs Flower's simulation runtime; DISTCLIP_EXTRAS=dev skips it (those tests then skip).
export DISTCLIP_EXTRAS=${DISTCLIP_EXTRAS:-dev,flower}
source "$(dirname "$0")/_env.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ruff check src tests benchmarks
python -m pytest -q "$@"
