#!/usr/bin/env bash
# Create the environment and run the main job: Clip21 vs Clip-GD vs EF21 vs GD on bundled a9a
# (N = 20, sorted shards, tau in {1, 0.1, 0.01}); prints a table and the paper's claims checked,
# writes plots and report.md under runs/. Extra arguments go to `distclip reproduce` (e.g. --quick).
source "$(dirname "$0")/_env.sh"
distclip reproduce clip21-logreg "$@"
