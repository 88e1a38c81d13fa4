"""The distclip command end to end: outputs, sweeps, plots and one-line errors that lose nothing."""

import gzip
import json
import subprocess
import sys

import pytest

from distclip.cli import main
from distclip.config import load
from distclip.reproduce import suite_path
from distclip.runner import run


def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_writes_outputs(toy_config, tmp_path, capsys):
    out = tmp_path / "r"
    code, stdout, _ = _run(["run", toy_config, "--out", out], capsys)
    assert code == 0
    assert "clip21" in stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(31))
    for key in ("loss", "grad_norm_sq", "comm_rounds", "floats_up", "floats_down", "clip_frac", "wall_s"):
        assert key in rows[0]
    assert rows[0]["grad_norm_sq"] == pytest.approx(1.0)  # f'(1) = 1 at x0 = 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["final"] == rows[-1]
    assert summary["version"]
    assert (out / "plots" / "convergence.png").stat().st_size > 1000
    # the resolved config reproduces the run exactly
    again = run(load(out / "config.toml"))
    assert [r["loss"] for r in again.metrics] == [r["loss"] for r in rows]


def test_set_overrides_and_log_every(toy_config, tmp_path, capsys):
    out = tmp_path / "r"
    code, _, _ = _run(["run", toy_config, "--out", out, "--set", "run.log_every=7", "--set", "algorithm.tau=inf",
                       "--no-plot", "--quiet"], capsys)
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 7, 14, 21, 28, 30]
    assert all(r["clip_frac"] == 0 for r in rows)
    assert not (out / "plots").exists()


def test_sweep_writes_table_and_plots(tmp_path, capsys):
    out = tmp_path / "s"
    code, stdout, _ = _run(["run", str(suite_path("clip21-toy")), "--out", out, "--set", "run.steps=50"], capsys)
    assert code == 0
    assert "clip21-init=zero" in stdout and "clip-gd-soft" in stdout
    assert (out / "table.txt").exists() and (out / "plots" / "all.png").exists()
    assert (out / "plots" / "init-zero.png").exists()
    clip_gd = [json.loads(x) for x in (out / "clip-gd" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["grad_norm_sq"] == 1.0 for r in clip_gd)  # stuck at x = 1


def test_plot_command(toy_config, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(["run", toy_config, "--out", a, "--no-plot", "--quiet"], capsys)
    _run(["run", toy_config, "--out", b, "--no-plot", "--quiet", "--set", 'algorithm.name="clip-gd"'], capsys)
    target = tmp_path / "cmp.png"
    code, stdout, _ = _run(["plot", a, b, "--out", target], capsys)
    assert code == 0 and target.stat().st_size > 1000


def test_list(capsys):
    code, stdout, _ = _run(["list"], capsys)
    assert code == 0
    for name in ("clip21", "ef21", "celgc", "naive-parallel-clip", "a9a", "mushrooms", "sorted"):
        assert name in stdout


def _error(args, capsys):
    code, _, err = _run(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distclip: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("algorithm.taux=1", "unknown key algorithm.taux"),
        ("algorithm.tau=0", "algorithm.tau = 0 must be > 0"),
        ("algorithm.lr=-1", "algorithm.lr"),
        ('algorithm.tau="big"', "wrong type"),
        ('algorithm.name="adam"', "choose one of"),
        ("algorithm.momentum=0.9", "does not apply to clip21"),
        ("run.batch_size=4", "no samples"),
    ],
)
def test_config_errors_are_one_line(toy_config, tmp_path, capsys, override, fragment):
    line = _error(["run", toy_config, "--out", tmp_path / "r", "--set", override], capsys)
    assert fragment in line


def test_missing_and_malformed_inputs(tmp_path, capsys):
    assert "not found" in _error(["run", tmp_path / "nope.toml"], capsys)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[problem]\nkind = "logreg"\npath = "%s"\n[algorithm]\nname = "gd"\nlr = 1.0\n'
                   "[partition]\nclients = 2\n" % (tmp_path / "d.svm"))
    assert "not found" in _error(["run", cfg, "--out", tmp_path / "o1"], capsys)
    with gzip.open(tmp_path / "d.svm", "wt") as f:
        f.write("1 1:0.5 2:1\n-1 1:0.25\n+1 3:abc\n")
    assert "line 3" in _error(["run", cfg, "--out", tmp_path / "o2"], capsys)
    (tmp_path / "d.svm").write_text("1 1:0.5 2:1\n-1 1:0.25\n1 2:1\n")
    assert "exceeds" in _error(["run", cfg, "--out", tmp_path / "o3", "--set", "partition.clients=5"], capsys)
    cfg.write_text("[problem\n")
    assert "not valid TOML" in _error(["run", cfg], capsys)


def test_divergence_stops_and_keeps_metrics(toy_config, tmp_path, capsys):
    out = tmp_path / "r"
    line = _error(["run", toy_config, "--out", out, "--no-plot", "--set", "algorithm.tau=inf",
                   "--set", "algorithm.lr=3.0", "--set", "run.steps=3000", "--set", "run.log_every=100"], capsys)
    assert "NaN or Inf" in line and "at step" in line
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and len(rows) > 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"


def test_existing_run_is_never_overwritten(toy_config, tmp_path, capsys):
    out = tmp_path / "r"
    _run(["run", toy_config, "--out", out, "--no-plot", "--quiet"], capsys)
    before = (out / "metrics.jsonl").read_bytes()
    assert "already holds a run" in _error(["run", toy_config, "--out", out], capsys)
    assert (out / "metrics.jsonl").read_bytes() == before


def test_debug_shows_traceback(toy_config, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "distclip", "run", str(toy_config), "--debug", "--set", "algorithm.tau=-1"],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_partition_command_prints_histograms(tmp_path, capsys):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[problem]\nkind = "logreg"\ndataset = "breast-cancer_scale"\n[partition]\nclients = 4\n'
                   'scheme = "dirichlet"\nalpha = 0.2\n[algorithm]\nname = "gd"\nlr = 1.0\n')
    code, stdout, _ = _run(["partition", cfg], capsys)
    assert code == 0
    assert "breast-cancer_scale: 683 rows, labels -1, 1" in stdout
    assert "4 clients x 170 rows (dirichlet); 3 rows dropped" in stdout
    assert "scheme = 'dirichlet'" in _error(["partition", cfg, "--set", 'partition.scheme="iid"'], capsys)
    assert "no labelled rows" in _error(["partition", str(suite_path("clip21-toy"))], capsys)


def test_usage_errors_are_one_line(capsys, toy_config):
    for args in (["run", str(toy_config), "--set", "run.steps", "200"], ["run", str(toy_config), "--bogus"], []):
        code, _, err = _run(args, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "must look like section.key=value" in _run(["run", str(toy_config), "--set", "run.steps"], capsys)[2]


def test_dry_run_and_only(capsys, tmp_path):
    from distclip.reproduce import suite_path

    code, out, _ = _run(["run", suite_path("clip21-toy"), "--dry-run"], capsys)
    assert code == 0 and out.count("# sweep member ") == 7 and "# sweep member clip-gd-soft" in out
    assert not (tmp_path / "x").exists()
    code, _, _ = _run(["run", suite_path("clip21-toy"), "--only", "clip-gd-soft", "--out", tmp_path / "one",
                       "--quiet", "--no-plot", "--set", "run.steps=3"], capsys)
    assert code == 0 and (tmp_path / "one" / "metrics.jsonl").exists()
    assert "sweep members are" in _error(["run", suite_path("clip21-toy"), "--only", "nope"], capsys)
