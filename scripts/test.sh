#!/usr/bin/env bash
# Create the environment, lint, and run the test suite.
source "$(dirname "$0")/_env.sh"
ruff check src tests
python -m pytest -q "$@"
