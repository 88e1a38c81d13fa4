"""run.threads: the intra-op threads a run uses, and that the caller's setting comes back afterwards."""

from __future__ import annotations

import pytest
import torch

import distclip
from distclip.errors import DistclipError

TOY = {"problem": {"kind": "quadratic", "centres": [3.0, -3.0], "x0": 1.0},
       "algorithm": {"name": "clip21", "lr": 0.5, "tau": 1.0}, "run": {"steps": 3}}


def _run(monkeypatch: pytest.MonkeyPatch, threads: int, env: str | None) -> int:
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    cfg = {**TOY, "run": {**TOY["run"], "threads": threads}}
    return distclip.run(cfg).summary["threads"]


def test_threads_are_set_for_the_run_and_restored(monkeypatch):
    before = torch.get_num_threads()
    assert _run(monkeypatch, 3, "1") == 3
    assert _run(monkeypatch, 0, "2") == 2  # 0: $OMP_NUM_THREADS
    assert _run(monkeypatch, 0, None) == 1  # 0 without it: one thread
    assert _run(monkeypatch, 0, "junk") == 1
    assert torch.get_num_threads() == before


def test_negative_threads_are_refused():
    with pytest.raises(DistclipError, match="run.threads = -1 must be >= 0"):
        distclip.run({**TOY, "run": {"steps": 3, "threads": -1}})
