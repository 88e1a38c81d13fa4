"""Figures: one test per `distclip plot` option and per drawing rule (seeds, colours, order, log axes, f_min,
folder names). Figures are inspected through matplotlib's objects, captured as they are saved."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from distclip import plotting
from distclip.cli import main
from distclip.figures import label_series, load_series, plot_runs
from distclip.plotting import (
    GAP_FLOOR,
    XS,
    Series,
    aggregate,
    natural_sorted,
    palette,
    plot_metrics,
    set_f_min,
    strip_seed,
)


def rows(losses: list[float], every: int = 1, **extra: list[float]) -> list[dict[str, Any]]:
    """Metrics rows at steps 0, every, 2·every, ... with the usual counters (one round and 10 floats per step)."""
    out = []
    for i, loss in enumerate(losses):
        step = i * every
        row = {"step": step, "loss": loss, "grad_norm_sq": loss ** 2, "comm_rounds": step, "floats_up": 10 * step,
               "bytes_up": 80 * step, "epoch": step / 4, "wall_s": 0.5 * step}
        row.update({k: v[i] for k, v in extra.items()})
        out.append(row)
    return out


@pytest.fixture
def capture(monkeypatch: Any) -> dict[str, Any]:
    """The figure and its axes as plotting.save receives them (the PNG is still written)."""
    seen: dict[str, Any] = {}
    real = plotting.save

    def save(fig: Any, axes: Any, title: str, out: Path, note: str = "") -> Path:
        seen.update(fig=fig, axes=[ax for ax in axes if ax.get_visible()], note=note)
        path = real(fig, axes, title, out, note)
        seen["legend"] = [t.get_text() for t in fig.legends[0].get_texts()] if fig.legends else []
        return path

    monkeypatch.setattr(plotting, "save", save)
    import distclip.figures as figures

    monkeypatch.setattr(figures, "save", save)
    return seen


def test_metric_gives_one_panel_per_name(tmp_path: Path, capture: dict[str, Any]) -> None:
    series = [Series("a", rows([2.0, 1.0, 0.5], test_acc=[0.1, 0.5, 0.9]))]
    out = plot_metrics(series, ["test_acc", "loss", "grad_norm_sq"], "steps", tmp_path / "f.png")
    assert out.stat().st_size > 1000
    assert [ax.get_ylabel().split(" (")[0] for ax in capture["axes"]] == [
        "test accuracy", "training loss f(x)", plotting.LABELS["grad_norm_sq"]]


@pytest.mark.parametrize("x", list(XS))
def test_x_draws_against_its_key(x: str, tmp_path: Path, capture: dict[str, Any]) -> None:
    data = rows([3.0, 2.0, 1.0], every=5)
    plot_metrics([Series("a", data)], ["loss"], x, tmp_path / "f.png", logx=False)
    line = capture["axes"][0].get_lines()[0]
    assert list(line.get_xdata()) == [r[XS[x][0]] for r in data]
    assert capture["axes"][0].get_xlabel().startswith(XS[x][1])


def test_logy_is_automatic_over_two_decades_and_can_be_forced(tmp_path: Path, capture: dict[str, Any]) -> None:
    wide, narrow = [Series("a", rows([1.0, 1e-2, 1e-4]))], [Series("a", rows([4.0, 3.0, 2.0]))]
    plot_metrics(wide, ["loss"], "steps", tmp_path / "f.png")
    assert capture["axes"][0].get_yscale() == "log"
    plot_metrics(narrow, ["loss"], "steps", tmp_path / "f.png")
    assert capture["axes"][0].get_yscale() == "linear"
    plot_metrics(narrow, ["loss"], "steps", tmp_path / "f.png", logy=True)  # --logy
    assert capture["axes"][0].get_yscale() == "log"
    plot_metrics(wide, ["loss"], "steps", tmp_path / "f.png", logy=False)  # --no-logy
    assert capture["axes"][0].get_yscale() == "linear"
    fraction = [Series("a", rows([1.0, 1.0, 1.0], clip_frac_mean=[0.5, 0.001, 0.0]))]
    plot_metrics(fraction, ["clip_frac_mean"], "steps", tmp_path / "f.png")  # a fraction stays linear: 0 is drawn
    assert capture["axes"][0].get_yscale() == "linear" and len(capture["axes"][0].get_lines()[0].get_ydata()) == 3


def test_logx_is_automatic_when_extents_differ_and_can_be_forced(tmp_path: Path, capture: dict[str, Any]) -> None:
    # I = 1 runs 64 rounds, I = 16 four: extents 16x apart -> log x; 10x (EF21's Top-12 of 123) stays linear
    apart = [Series("I=1", rows([1.0] * 65)), Series("I=16", rows([1.0] * 5))]
    plot_metrics(apart, ["loss"], "rounds", tmp_path / "f.png")
    ax = capture["axes"][0]
    assert ax.get_xscale() == "log" and ax.get_xlabel().endswith("(log)")
    assert 0 not in ax.get_lines()[0].get_xdata()  # x = 0 cannot be drawn on a log axis
    close = [Series("a", rows([1.0] * 11)), Series("b", rows([1.0] * 2))]
    plot_metrics(close, ["loss"], "rounds", tmp_path / "f.png")
    assert capture["axes"][0].get_xscale() == "linear"
    plot_metrics(close, ["loss"], "rounds", tmp_path / "f.png", logx=True)  # --logx
    assert capture["axes"][0].get_xscale() == "log"
    plot_metrics(apart, ["loss"], "rounds", tmp_path / "f.png", logx=False)  # --no-logx
    assert capture["axes"][0].get_xscale() == "linear"


def test_seeds_are_drawn_as_mean_and_min_max_band(tmp_path: Path, capture: dict[str, Any]) -> None:
    series = [Series("celgc", rows([1.0, 3.0])), Series("celgc", rows([3.0, 7.0])), Series("gd", rows([2.0, 2.0]))]
    plot_metrics(series, ["loss"], "steps", tmp_path / "f.png", logy=False)
    ax = capture["axes"][0]
    mean = next(line for line in ax.get_lines() if line.get_label() == "celgc")
    assert list(mean.get_ydata()) == [2.0, 5.0]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert min(band) == 1.0 and max(band) == 7.0
    assert len(ax.collections) == 1  # the single-seed run has no band
    assert capture["note"] == "mean of 2 seeds, band: min–max"
    slow = rows([3.0, 7.0])
    for r in slow:
        r["wall_s"] *= 3  # seeds differ in wall clock: the band still follows the mean's x
    plot_metrics([Series("celgc", rows([1.0, 3.0])), Series("celgc", slow)], ["loss"], "wall", tmp_path / "w.png",
                 logy=False, logx=False)
    band = capture["axes"][0].collections[0].get_paths()[0].vertices
    assert set(band[:, 0]) == {0.0, 1.0} and max(band[:, 1]) == 7.0  # mean wall clock 0 and (0.5 + 1.5) / 2


def test_labels_are_in_natural_order_with_a_fixed_colour_each(tmp_path: Path, capture: dict[str, Any]) -> None:
    assert natural_sorted(["I=16", "I=1", "I=4", "tau=1.0", "tau=0.01", "tau=0.1"]) == [
        "I=1", "I=4", "I=16", "tau=0.01", "tau=0.1", "tau=1.0"]
    every = ["I=16", "I=1", "I=4"]
    colours = palette(every)
    assert colours == palette(reversed(every))  # by natural order, not by the order given
    plot_metrics([Series(k, rows([1.0, 0.5])) for k in every], ["loss"], "steps", tmp_path / "a.png",
                 colours=colours)
    assert capture["legend"] == ["I=1", "I=4", "I=16"]
    plot_metrics([Series("I=16", rows([1.0, 0.5]))], ["loss"], "steps", tmp_path / "b.png", colours=colours)
    assert capture["axes"][0].get_lines()[0].get_color() == colours["I=16"]["color"]  # same colour in a subset


def test_gap_defines_f_min_per_objective_with_a_floor(tmp_path: Path, capture: dict[str, Any]) -> None:
    same = [Series("a", rows([1.0, 0.5])), Series("b", rows([2.0, 0.5]))]
    plot_metrics(same, ["gap"], "steps", tmp_path / "f.png")
    ax = capture["axes"][0]
    assert "f_min = 0.5" in ax.get_ylabel()
    # both end exactly at f_min: drawn at the floor, not dropped from the log axis
    assert all(line.get_ydata()[-1] == pytest.approx(GAP_FLOOR * 0.5) for line in ax.get_lines())
    curves = aggregate([Series("H=0", rows([1.0, -6.0]), "H=0"), Series("H=4", rows([1.0, -18.0]), "H=4")])
    set_f_min(curves)
    assert [c.f_min for c in curves] == [-6.0, -18.0]
    plot_metrics([Series("H=0", rows([1.0, -6.0]), "H=0"), Series("H=4", rows([1.0, -18.0]), "H=4")], ["gap"],
                 "steps", tmp_path / "f.png")
    assert "f_min per objective" in capture["axes"][0].get_ylabel()


def test_title_and_out(tmp_path: Path, capture: dict[str, Any]) -> None:
    out = plot_metrics([Series("a", rows([1.0, 0.5]))], ["loss"], "steps", tmp_path / "deep" / "t.png", "My title")
    assert out == tmp_path / "deep" / "t.png" and out.exists()
    assert capture["fig"]._suptitle.get_text() == "My title"


def _write_run(path: Path, label: str, seed: int, losses: list[float], **config: Any) -> None:
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(losses)))
    (path / "summary.json").write_text(json.dumps({"label": label}))
    problem = "\n".join(f"{k} = {json.dumps(v)}" for k, v in config.items())
    (path / "config.toml").write_text(f'seed = {seed}\n\n[problem]\nkind = "quadratic"\n{problem}\n')


def test_seed_runs_and_folders_from_directories(tmp_path: Path) -> None:
    for seed in (0, 1):
        _write_run(tmp_path / "a" / f"celgc-seed={seed}", f"celgc-seed={seed}", seed, [1.0 + seed, 0.5])
    _write_run(tmp_path / "b" / "celgc", "celgc", 0, [1.0, 0.25], x0=2.0)
    one = load_series([tmp_path / "a"], sorted((tmp_path / "a").iterdir()))
    assert [s.label for s in one] == ["celgc", "celgc"]  # differ only in seed: one setting
    both = load_series([tmp_path / "a", tmp_path / "b"],
                       [*sorted((tmp_path / "a").iterdir()), tmp_path / "b" / "celgc"])
    assert sorted({s.label for s in both}) == ["a: celgc", "b: celgc"]  # two sweeps: the folder names the run
    assert len({s.objective for s in both}) == 2  # b's x0 is another objective: its own f_min
    assert strip_seed("episode-H=1.0-seed=3", 3) == "episode-H=1.0"
    other = label_series([("", "x-seed=0", {"seed": 0, "run": {"steps": 5}}, []),
                          ("", "x-seed=1", {"seed": 1, "run": {"steps": 9}}, [])])
    assert [s.label for s in other] == ["x-seed=0", "x-seed=1"]  # differ in more than the seed: kept apart


def test_plot_command_options_end_to_end(tmp_path: Path, capsys: Any) -> None:
    for seed in (0, 1):
        _write_run(tmp_path / "sweep" / f"run-seed={seed}", f"run-seed={seed}", seed, [1.0, 1e-3, 1e-6])
    out = tmp_path / "x.png"
    args = ["plot", str(tmp_path / "sweep"), "--metric", "loss,grad_norm_sq", "--x", "rounds", "--no-logy",
            "--logx", "--title", "t", "--out", str(out)]
    assert main(args) == 0 and out.stat().st_size > 1000
    assert main(["plot", str(tmp_path / "sweep"), "--out", str(tmp_path / "std.png")]) == 0  # the standard figure
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "sweep"), "--metric", "test_acc", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run logged metric 'test_acc'" in err[0] and "grad_norm_sq" in err[0]


def test_standard_figure_has_the_four_panels(tmp_path: Path, capture: dict[str, Any]) -> None:
    plot_runs([Series("a", rows([1.0, 1e-3, 1e-9]))], tmp_path / "f.png")
    labels = [(ax.get_xlabel(), ax.get_ylabel().split(",")[0]) for ax in capture["axes"]]
    assert [x.split(" (")[0] for x, _ in labels] == ["iteration k", "floats sent per client"] * 2
    assert all(math.isfinite(v) for ax in capture["axes"] for line in ax.get_lines() for v in line.get_ydata())


PERFORMANCE = Path(__file__).parents[1] / "docs" / "performance"


@pytest.mark.parametrize("name", ["simulator-vs-loop", "scaling", "communication", "torch-kind"])
def test_benchmark_figures_draw_from_their_json(name: str, tmp_path: Path) -> None:
    """Each benchmark's figure is drawn from its JSON alone (as scripts/redraw_figures.py --performance does)."""
    from distclip.bench import BENCHMARKS

    doc = json.loads((PERFORMANCE / f"{name}.json").read_text())
    assert BENCHMARKS[name].draw(doc, tmp_path) == [f"{name}.png"]
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
