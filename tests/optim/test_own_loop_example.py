"""examples/own_loop/train_lm.py, shortened: under torchrun with 2 ranks, checkpoint and resume, every --optimizer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "examples/own_loop/train_lm.py")
SHORT = ["--batch", "4", "--eval-windows", "8", "--local-steps", "2"]


def launch(world: int, *args: str) -> str:
    launcher = [] if world == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}"]
    cmd = [sys.executable, *launcher, SCRIPT, *SHORT, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_torchrun_resume_continues_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    out = launch(2, "--optimizer", "celgc", "--steps", "6", "--eval-every", "3", "--ckpt-every", "6",
                 "--out", str(straight))
    assert "celgc on 2 rank(s)" in out and "validation perplexity" in out
    launch(2, "--optimizer", "celgc", "--steps", "3", "--ckpt-every", "3", "--out", str(split))
    out = launch(2, "--optimizer", "celgc", "--steps", "6", "--ckpt-every", "6", "--out", str(split), "--resume")
    assert "resumed at step 3" in out
    for rank in (0, 1):
        a, b = (torch.load(d / f"rank{rank}.pt") for d in (straight, split))
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert a["opt"]["distclip"]["counter"] == b["opt"]["distclip"]["counter"]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["clip21", "episode", "local-sgd", "ddp-sgd"])
def test_every_optimizer_option_runs(optimizer, tmp_path):
    out = launch(1, "--optimizer", optimizer, "--steps", "3", "--eval-every", "3", "--ckpt-every", "0",
                 "--out", str(tmp_path))
    assert f"{optimizer} on 1 rank(s)" in out and "validation perplexity" in out
