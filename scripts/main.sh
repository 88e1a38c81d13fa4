#!/usr/bin/env bash
# Create the environment and run the main job: Clip21 vs Clip-GD vs EF21 vs GD on bundled a9a
# (N = 20, sorted shards, tau in {1, 0.1, 0.01}); prints a table and the paper's claims checked,
# writes plots and report.md under runs/. Extra arguments go to `distclip reproduce` (e.g. --quick).
# One intra-op thread (set OMP_NUM_THREADS to override): on a loaded 2-core machine the quick suite took 93 s
# with torch's default threads and 45 s with one. Without a terminal it prints a progress line every 30 s.
source "$(dirname "$0")/_env.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
distclip reproduce clip21-logreg "$@"
