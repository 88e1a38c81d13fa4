"""Run logs besides metrics.jsonl: metrics.csv (always, the same rows) and TensorBoard event files
(run.tensorboard = true / --tensorboard, read back with TensorBoard's own event reader)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_csv_matches

from distclip.cli import main
from distclip.errors import DistclipError
from distclip.metrics import MetricsWriter, read_metrics
from distclip.runner import run

TOY = {"problem": {"kind": "quadratic", "centres": [3.0, -3.0], "x0": 1.0},
       "algorithm": {"name": "clip21", "lr": 0.5, "tau": 1.0}, "run": {"steps": 20, "checkpoint_every": 5}}
HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def test_csv_has_the_rows_of_the_jsonl(tmp_path: Path) -> None:
    run(TOY, tmp_path / "run")
    assert_csv_matches(tmp_path / "run")
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["step", "loss", "grad_norm_sq"]  # the jsonl's key order


def test_a_column_that_appears_later_rewrites_the_csv_with_it(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path)
    writer.write({"step": 0, "loss": 1.5})
    writer.write({"step": 1, "loss": 0.5, "test_acc": 0.25})
    writer.write({"step": 2, "loss": math.inf, "test_acc": 0.75})
    writer.close()
    assert (tmp_path / "metrics.csv").read_text() == "step,loss,test_acc\n0,1.5,\n1,0.5,0.25\n2,inf,0.75\n"
    assert_csv_matches(tmp_path)
    again = MetricsWriter(path)  # reopened (a resume): same columns, rows appended after the earlier ones
    again.write({"step": 3, "loss": 0.25, "test_acc": 1.0})
    again.close()
    assert (tmp_path / "metrics.csv").read_text().splitlines()[-1] == "3,0.25,1.0"
    assert_csv_matches(tmp_path)


def test_a_resumed_run_keeps_the_csv_equal_to_the_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run({**TOY, "run": {**TOY["run"], "steps": 10}}, out)
    with (out / "metrics.csv").open("a") as f:
        f.write("11,0.5")  # a crash mid-row in the CSV too
    run(TOY, out, resume=True)
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(21))
    assert_csv_matches(out)


@pytest.mark.skipif(not HAVE_TENSORBOARD, reason="tensorboard is not installed (pip install 'distclip[tensorboard]')")
def test_tensorboard_events_read_back_equal_the_jsonl(tmp_path: Path, capsys: Any) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run({**TOY, "run": {**TOY["run"], "steps": 10}}, out)  # no tensorboard in the first part
    assert main(["run", "--resume", str(out), "--tensorboard", "--quiet", "--no-plot",
                 "--set", "run.steps=20"]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"loss", "grad_norm_sq", "comm_rounds", "floats_up", "clip_frac"} <= set(events.Tags()["scalars"])
    loss = {e.step: e.value for e in events.Scalars("loss")}
    assert sorted(loss) == list(range(11, 21))  # the rows this session logged (the first had no tensorboard)
    for r in rows[11:]:
        assert loss[r["step"]] == pytest.approx(r["loss"], rel=1e-6)  # event files hold float32


@pytest.mark.skipif(not HAVE_TENSORBOARD, reason="tensorboard is not installed (pip install 'distclip[tensorboard]')")
def test_tensorboard_from_the_config_key(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run({**TOY, "run": {**TOY["run"], "tensorboard": True}}, tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("grad_norm_sq")]
    assert steps == [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]


def test_tensorboard_without_the_package_is_one_line(tmp_path: Path, monkeypatch: Any) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(DistclipError) as info:
        run({**TOY, "run": {**TOY["run"], "tensorboard": True}}, tmp_path / "run")
    assert "pip install 'distclip[tensorboard]'" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()  # refused when the config is read, before anything is written
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # installed but broken: the import fails
    with pytest.raises(DistclipError, match="needs the tensorboard package"):
        MetricsWriter(tmp_path / "metrics.jsonl", tensorboard=True)
