"""bench peers: its table and paired ratios from known numbers, the memory sampler, and the torch-only
contenders' scripts on a tiny job (pfl and Flower run only where a peer environment is named)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from distclip.bench import peers


def _rep(distclip: float, floor: float, loop: float, two: float) -> dict:
    def one(s: float) -> dict:
        return {"round_s": s, "startup_s": 2.0, "peak_rss_mb": 100.0, "processes": 1}
    return {"distclip": one(distclip), "floor": one(floor), "plain loop": one(loop), "distclip 2 threads": one(two)}


def test_report_pairs_each_repetition():
    # repetition ratios plain loop / distclip: 4, 2, 3 -> median 3 (the ratio of medians would be 0.03 / 0.02 = 1.5)
    raw = {"fedavg-N16": [_rep(0.01, 0.005, 0.04, 0.01), _rep(0.02, 0.01, 0.04, 0.04), _rep(0.03, 0.01, 0.09, 0.03)]}
    res = peers.report(raw, 3, Path("v"), False, 2)
    row = {r["contender"]: r for r in res.rows}
    assert row["plain loop"]["/ distclip (paired median)"] == pytest.approx(3.0)
    assert row["distclip"]["ms per round"] == pytest.approx(20.0)
    by = {t.text: t for t in res.targets}
    assert by["fedavg N=16: distclip / floor"].value == pytest.approx(2.0)  # 1 / median(0.5, 0.5, 1/3)
    assert not by["fedavg N=16: distclip / floor"].holds
    assert by["fedavg N=16: plain loop / distclip"].value == pytest.approx(3.0)
    assert by["fedavg N=16: distclip 2 threads / 1 thread"].value == pytest.approx(1.0)
    assert "skipped" in res.notes[-1]


def test_peak_rss_counts_children():
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "p = subprocess.Popen([sys.executable, '-c', 'x = bytearray(60 << 20); "
                              "import time; time.sleep(1.5)']); p.wait()"], start_new_session=True)
    mem = peers.PeakRSS(child.pid, every=0.1)
    mem.start()
    child.wait()
    mem.done.set()
    mem.join()
    assert mem.procs == 2 and mem.peak > 60 << 20


@pytest.mark.parametrize("algorithm", ["fedavg", "celgc"])
def test_torch_only_contenders_run(tmp_path, algorithm):
    peers.write_data(2, tmp_path)
    for c in peers.CONTENDERS:
        if not c.peer and algorithm in c.algorithms and c.threads == 1:
            res = peers.run_one(c, algorithm, 2, tmp_path, tmp_path / "none", True, 1)
            assert len(res["rounds"]) == 3 and res["round_s"] > 0 and 0 < res["startup_s"] < 600


@pytest.mark.skipif(not os.environ.get("DISTCLIP_PEERS_VENV"), reason="needs a peer environment with pfl and Flower "
                    "(distclip bench peers --setup; then DISTCLIP_PEERS_VENV=.venv-peers)")
def test_peer_contenders_run(tmp_path):
    peers.write_data(2, tmp_path)
    venv = Path(os.environ["DISTCLIP_PEERS_VENV"])
    for c in peers.CONTENDERS:
        if c.peer:
            assert len(peers.run_one(c, "celgc", 2, tmp_path, venv, True, 1)["rounds"]) >= 2
