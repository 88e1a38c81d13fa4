"""Run directories: the lock, resume that refuses what it cannot continue, torn last lines, safe labels, no stub
directories, and config.toml rerunning the run for every problem kind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import assert_csv_matches

from distclip.cli import main
from distclip.config import dump_toml, from_dict
from distclip.errors import DistclipError
from distclip.rundir import LOCK, Lock
from distclip.runner import run, run_sweep

ROOT = Path(__file__).parents[1]
TOY = {"problem": {"kind": "quadratic", "centres": [3.0, -3.0], "x0": 1.0},
       "algorithm": {"name": "clip21", "lr": 0.5, "tau": 1.0}, "run": {"steps": 20, "checkpoint_every": 5}}


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def error_of(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(DistclipError) as info:
        fn(*args, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_directory_in_use_is_refused_and_a_dead_holder_taken_over(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "run"
    out.mkdir()
    held = Lock(out)
    try:
        assert "is in use by another distclip process" in error_of(run, TOY, out)
        assert not (out / "metrics.jsonl").exists()
    finally:
        held.release()
    (out / LOCK).write_text("999999999\n")  # a pid no process has: the holder was killed
    run(TOY, out)
    assert "taking it over" in capsys.readouterr().err
    assert (out / LOCK).read_text() == ""  # released at the end


def test_resume_refuses_what_it_cannot_continue(tmp_path: Path) -> None:
    out = tmp_path / "run"
    full = run(TOY, out)
    assert "holds a finished run (20 steps)" in error_of(run, TOY, out, resume=True)
    assert "below the checkpoint's step 20" in error_of(run, {**TOY, "run": {**TOY["run"], "steps": 10}}, out,
                                                        resume=True)
    (out / "checkpoint.pt").unlink()
    longer = {**TOY, "run": {**TOY["run"], "steps": 30}}
    assert "has no checkpoint.pt to resume from" in error_of(run, longer, out, resume=True)
    other = tmp_path / "gap"
    run({**TOY, "run": {**TOY["run"], "steps": 10}}, other)
    (other / "metrics.jsonl").unlink()
    assert "its metrics.jsonl is missing" in error_of(run, TOY, other, resume=True)
    assert full.metrics[-1]["step"] == 20


def test_a_torn_last_line_is_repaired_on_resume(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "run"
    run({**TOY, "run": {**TOY["run"], "steps": 10}}, out)
    whole = (out / "metrics.jsonl").read_bytes()
    (out / "metrics.jsonl").write_bytes(whole + b'{"step": 11, "loss": 0.5')  # a crash mid-write
    again = run(TOY, out, resume=True)
    assert "torn line" in capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(21))
    assert comparable(rows) == comparable(run(TOY).metrics) == comparable(again.metrics)
    assert_csv_matches(out)


def test_a_checkpoint_of_another_shape_is_one_line_and_keeps_config_toml(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run({**TOY, "run": {**TOY["run"], "steps": 10}}, out)
    before = (out / "config.toml").read_text()
    payload = torch.load(out / "checkpoint.pt", weights_only=True)
    payload["state"]["mem"] = torch.zeros(7, 3, dtype=torch.float64)
    torch.save(payload, out / "checkpoint.pt")
    assert "does not fit this run" in error_of(run, TOY, out, resume=True)
    assert (out / "config.toml").read_text() == before


@pytest.mark.parametrize(("label", "slug"), [("..", "run"), ("a/../../b", "a_.._.._b"), (".", "run")])
def test_labels_stay_inside_out(tmp_path: Path, label: str, slug: str) -> None:
    doc = {**TOY, "sweep": [{"set": {"algorithm.tau": 1.0}, "label": label}]}
    run_sweep(from_dict(doc), tmp_path / "sweep")
    assert (tmp_path / "sweep" / slug / "metrics.jsonl").exists()
    assert not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.parametrize("label", ["{", "{nope}", "}{"])
def test_bad_label_templates_are_one_line(tmp_path: Path, label: str) -> None:
    doc = {**TOY, "sweep": [{"set": {"algorithm.tau": 1.0}, "label": label}]}
    assert "cannot be formatted" in error_of(run_sweep, from_dict(doc), tmp_path / "s")
    assert not (tmp_path / "s").exists()  # nothing written: the corrected rerun is not blocked


def test_a_failed_validation_leaves_no_stub_directory(tmp_path: Path) -> None:
    doc = {**TOY, "sweep": [{"grid": {"algorithm.tau": [1.0, -1.0]}}]}
    config = tmp_path / "s.toml"
    config.write_text(dump_toml(doc))
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
    doc["sweep"] = [{"grid": {"algorithm.tau": [1.0, 0.5]}}]
    config.write_text(dump_toml(doc))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet", "--no-plot"]) == 0


KINDS = {
    "logreg": {"problem": {"kind": "logreg", "dataset": "breast-cancer_scale"}, "partition": {"clients": 4}},
    "quadratic": {"problem": {"kind": "quadratic", "centres": [[1.0, 2.0], [0.0, -1.0]]}},
    "quartic": {"problem": {"kind": "quartic", "H": 1.0, "sigma": 0.5}, "partition": {"clients": 4},
                "run": {"batch_size": 2}},
    "mlp": {"problem": {"kind": "mlp", "dataset": "digits", "hidden": [8]}, "partition": {"clients": 4},
            "run": {"batch_size": 8}},
    "cnn": {"problem": {"kind": "cnn", "dataset": "digits", "channels": [2, 4]}, "partition": {"clients": 4},
            "run": {"batch_size": 8}},
    "resnet20": {"problem": {"kind": "resnet20", "dataset": "digits", "width": 2, "eval_rows": 32},
                 "partition": {"clients": 2}, "run": {"batch_size": 4}},
    "lstm": {"problem": {"kind": "lstm", "dataset": "ptb", "path": str(ROOT / "tests/problems/tiny_ptb"),
                         "hidden": [8], "bptt": 5}, "partition": {"clients": 2}, "run": {"batch_size": 2}},
    "lstm-awd": {"problem": {"kind": "lstm", "dataset": "ptb", "path": str(ROOT / "tests/problems/tiny_ptb"),
                             "model": "awd", "hidden": [8, 6], "bptt": 5}, "partition": {"clients": 2},
                 "run": {"batch_size": 2}},
    "torch": {"problem": {"kind": "torch", "model": str(ROOT / "tests/problems/user_models.py:mlp"),
                          "data": str(ROOT / "tests/problems/user_models.py:digits")}, "partition": {"clients": 4},
              "run": {"batch_size": 8}},
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_config_toml_reruns_the_run_for_every_problem_kind(kind: str, tmp_path: Path, monkeypatch: Any) -> None:
    doc = {"seed": 1, "algorithm": {"name": "celgc", "lr": 0.1, "gamma": 0.05, "local_steps": 2}, **KINDS[kind]}
    doc["run"] = {"steps": 4, "log_every": 2, **doc.get("run", {})}
    first = run(doc, tmp_path / "a")
    monkeypatch.chdir(tmp_path)  # from anywhere
    again = run(tmp_path / "a" / "config.toml", tmp_path / "b")
    assert comparable(again.metrics) == comparable(first.metrics)
    assert again.metrics[-1]["loss"] != first.metrics[0]["loss"] or kind == "quartic"  # it trained


def test_a_run_without_a_terminal_prints_a_line_now_and_then(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    import distclip.engine.loop as loop

    monkeypatch.setattr(loop, "HEARTBEAT_S", 0.0)
    run({**TOY, "run": {"steps": 3}}, tmp_path / "run", progress=True)  # pytest's stderr is not a terminal
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("distclip: clip21-quadratic: step")]
    assert [ln.split()[3] for ln in lines] == ["1/3", "2/3", "3/3"]


def test_tiny_inputs_cannot_ask_for_huge_memory(tmp_path: Path, monkeypatch: Any) -> None:
    import gzip

    from distclip.data import libsvm

    bomb = tmp_path / "zeros.gz"
    bomb.write_bytes(gzip.compress(b"0" * 4_000_000))  # 4 MB of zeros in a few KB
    monkeypatch.setattr(libsvm, "MAX_BYTES", 1_000_000)
    assert "decompresses to more than 1,000,000 bytes" in error_of(libsvm.load_libsvm, bomb)
    wide = tmp_path / "wide.txt"
    wide.write_text("1 2000000000:1\n-1 1:1\n")
    assert "feature index 2,000,000,000, above the limit" in error_of(libsvm.load_libsvm, wide)
    doc = {**TOY, "run": {"steps": 1, "batch_size": 10_000_000_000}}
    assert "run.batch_size = 10000000000 must be in [0, 1,000,000]" in error_of(from_dict, doc)
    ok = tmp_path / "ok.gz"
    ok.write_bytes(gzip.compress(b"1 1:0.5\n-1 2:1\n") + gzip.compress(b"1 3:2\n"))  # two gzip members
    assert libsvm.load_libsvm(ok).n_rows == 3


def test_a_sweep_whose_first_run_fails_leaves_no_stub(tmp_path: Path) -> None:
    doc = {"problem": {"kind": "logreg", "path": str(tmp_path / "missing.svm")}, "algorithm": {"name": "gd", "lr": 0.1},
           "sweep": [{"grid": {"algorithm.lr": [0.1, 0.2]}}]}
    assert "missing.svm" in error_of(run_sweep, from_dict(doc), tmp_path / "s")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("problem.x0", float("nan"), "problem.x0 = nan is not finite"),
    ("run.timeout_s", float("inf"), "run.timeout_s = inf must be a finite number"),
])
def test_values_that_used_to_exit_1_are_one_line(tmp_path: Path, capsys: Any, key: str, value: float,
                                                  message: str) -> None:
    section, _, name = key.partition(".")
    doc = {**TOY, section: {**TOY.get(section, {}), name: value}}
    config = tmp_path / "c.toml"
    config.write_text(dump_toml(doc))
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()



RESULTS = sorted((ROOT / "docs" / "results").rglob("*/config.toml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", RESULTS, ids=[str(p.parent.relative_to(ROOT / "docs" / "results")) for p in RESULTS])
def test_every_config_toml_in_docs_results_reruns_its_run(path: Path) -> None:
    """Each recorded run's config.toml reruns it: the logged rows up to its first logged step after 0 agree with
    metrics.jsonl (all fields but wall_s; 1e-9 relative in float64, 1e-5 in float32: the records were made on
    another sitting of this kind of machine, one thread)."""
    from distclip.config import load

    recorded = [json.loads(line) for line in (path.parent / "metrics.jsonl").read_text().splitlines()]
    text = path.read_text()
    length_matters = "target_epsilon" in text or 'lr_schedule = "constant"' not in text and "lr_schedule" in text
    # a run whose noise or schedule is set by its length reruns whole; the others up to their first logged step;
    # the networks (minutes per interval on a CPU) rebuild their start: step 0, f(x⁰) and ‖∇f(x⁰)‖², test metrics
    network = 'kind = "cnn"' in text or 'kind = "lstm"' in text or 'kind = "mlp"' in text
    upto = 0 if network else recorded[1]["step"] if len(recorded) > 1 else 0
    cfg = load(path, [] if length_matters else [f"run.steps={upto}"])
    if cfg.problem.kind == "lstm" and cfg.problem.path and not Path(cfg.problem.path).exists():
        pytest.skip(f"data folder {cfg.problem.path} is not on this machine")
    rows = run(cfg).metrics
    rel = 1e-9 if cfg.run.dtype == "float64" else 1e-5
    for got, want in zip(rows, recorded[: len(rows)], strict=True):
        for key, value in want.items():
            if key != "wall_s" and key in got:
                assert got[key] == pytest.approx(value, rel=rel, abs=1e-12), (key, want["step"])




class _FillingDisk:
    """A file whose 9th write hits a full disk after writing part of its line (as a real full disk does)."""

    def __init__(self, f: Any) -> None:
        self.f, self.writes = f, 0

    def write(self, text: str) -> int:
        import errno

        self.writes += 1
        if self.writes == 9:
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def test_a_full_disk_is_one_line_and_keeps_what_was_written(tmp_path: Path, monkeypatch: Any) -> None:
    from distclip import metrics

    real_init = metrics.MetricsWriter.__init__

    def init(self: Any, path: Path, **kw: Any) -> None:
        real_init(self, path, **kw)
        self._f = _FillingDisk(self._f)

    monkeypatch.setattr(metrics.MetricsWriter, "__init__", init)
    out = tmp_path / "run"
    message = error_of(run, TOY, out)
    assert "No space left on device" in message and "at step 8" in message and "--resume" in message
    monkeypatch.setattr(metrics.MetricsWriter, "__init__", real_init)
    again = run(TOY, out, resume=True)  # the torn row is cut, the run continues from its checkpoint
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert comparable(rows) == comparable(again.metrics) == comparable(run(TOY).metrics)
    assert_csv_matches(out)


def test_an_out_that_cannot_be_written_is_one_line(tmp_path: Path, monkeypatch: Any) -> None:
    """A read-only --out (simulated: this machine's tests run as root, which ignores permission bits) and an --out
    below a file."""
    import errno

    from distclip import rundir

    out = tmp_path / "ro"
    out.mkdir()
    real_open = os.open

    def read_only(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(out)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(rundir.os, "open", read_only)
    assert "cannot write in" in error_of(run, TOY, out) and "Permission denied" in error_of(run, TOY, out)
    monkeypatch.setattr(rundir.os, "open", real_open)
    (tmp_path / "file").write_text("x")
    assert "cannot create output directory" in error_of(run, TOY, tmp_path / "file" / "run")


def test_relative_data_paths_and_the_cuda_hint(tmp_path: Path, monkeypatch: Any) -> None:
    from distclip.config import load

    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "data.svm").write_text("1 1:0.5 2:1\n-1 1:1\n1 2:0.25\n-1 1:0.75 2:0.5\n")
    (folder / "c.toml").write_text('[problem]\nkind = "logreg"\npath = "data.svm"\n[partition]\nclients = 2\n'
                                   '[algorithm]\nname = "gd"\nlr = 0.1\n[run]\nsteps = 2\n')
    monkeypatch.chdir(tmp_path)  # not the config's folder
    cfg = load(folder / "c.toml")
    assert cfg.problem.path == str(folder / "data.svm")
    assert run(cfg).metrics[-1]["step"] == 2
    if not torch.cuda.is_available():
        assert "--quick" in error_of(run, {**TOY, "run": {"steps": 1, "device": "cuda"}})
