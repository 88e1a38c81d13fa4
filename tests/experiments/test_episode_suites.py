"""The EPISODE suites (experiments.md §8 target 9, §4 heterogeneity) and the seed averaging of reproduce."""

import pytest
import torch

from distclip.config import from_dict
from distclip.reproduce import average_seeds, reproduce
from distclip.runner import RunResult


def _result(label: str, seed: int, losses: list[float]) -> RunResult:
    cfg = from_dict({"seed": seed, "problem": {"kind": "quadratic", "centres": [1.0]}, "algorithm": {"name": "gd",
                                                                                                     "lr": 0.1}})
    rows = [{"step": k, "loss": v, "comm_rounds": k} for k, v in enumerate(losses)]
    return RunResult(cfg, rows, {"label": label, "total_s": 1.0}, torch.tensor([float(seed)]), label=label)


def test_average_seeds_merges_only_seed_variants():
    runs = [_result("a-H=1-seed=0", 0, [1.0, 3.0]), _result("a-H=1-seed=1", 1, [2.0, 5.0]), _result("b", 0, [7.0])]
    merged = {r.label: r for r in average_seeds(runs)}
    assert set(merged) == {"a-H=1", "b"}
    assert [m["loss"] for m in merged["a-H=1"].metrics] == [1.5, 4.0]
    assert [m["comm_rounds"] for m in merged["a-H=1"].metrics] == [0, 1]
    assert merged["a-H=1"].summary["seeds"] == [0, 1] and float(merged["a-H=1"].model[0]) == 0.5
    assert merged["b"] is runs[2]


@pytest.mark.slow  # 40 runs and 6 figures
def test_synthetic_suite_short(tmp_path):
    # 10 rounds instead of 500: EPISODE has already reached the deeper minimum at H = 4, CELGC has not
    results, claims, report = reproduce("episode-synthetic", tmp_path / "s", quick=True, overrides=["run.steps=80"])
    assert len(results) == 8 and len(list((tmp_path / "s").glob("*-seed=*"))) == 40
    by_text = {c.text: c for c in claims}
    assert by_text["H = 4: EPISODE reaches a clearly lower objective (by more than 1)"].holds
    text = report.read_text()
    assert "## Target 9" in text and "| 4 |" in text and "mean over seeds, 40 runs" in text
    assert (tmp_path / "s" / "plots" / "loss.png").stat().st_size > 1000
    assert (tmp_path / "s" / "plots" / "H-4.png").exists()


@pytest.mark.slow
def test_hetero_suite_pipeline(tmp_path):
    _, claims, report = reproduce("episode-hetero", tmp_path / "h", quick=True, overrides=["run.steps=16",
                                                                                          "run.log_every=8"])
    assert len(claims) == 4 and all(isinstance(c.holds, bool) and c.evidence for c in claims)
    assert "## Claims" in report.read_text() and (tmp_path / "h" / "plots" / "all.png").exists()
