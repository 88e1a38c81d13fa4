#!/usr/bin/env bash
# Create the environment, lint, and run the test suite.
# One intra-op thread per process: the tests run many tiny ops (and torchrun workers side by side),
# where torch's thread pool costs more than it gains; set OMP_NUM_THREADS to override.
# The tests install two optional extras too, so that their tests run rather than skip: flower (flwr[simulation],
# with Ray: about 1 min and 250 MB; tests/flower runs Flower's simulation runtime) and tensorboard (about 30 MB;
# the logs tests read back event files). `pip install distclip` and scripts/main.sh stay without them;
# DISTCLIP_EXTRAS=dev skips them (those tests then skip with the reason).
export DISTCLIP_EXTRAS=${DISTCLIP_EXTRAS:-dev,flower,tensorboard}
source "$(dirname "$0")/_env.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ruff check src tests benchmarks
python -m pytest -q "$@"
