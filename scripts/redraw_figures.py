"""Redraw the committed figures from the committed data, without rerunning anything.

    python scripts/redraw_figures.py [docs/results/SUITE-quick ...]   # default: every suite under docs/results
    python scripts/redraw_figures.py --performance                    # docs/performance/*.png from their JSON

A suite folder's runs are read back (config.toml, metrics.jsonl, summary.json), its figures are drawn as
`distclip reproduce` draws them (distclip.reproduce.draw_figures) and the "## Figures" list of its report.md is
rewritten to match, and its "## Final values" table in the current format; the rest of the report (claims, the
suite's own tables) is kept as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from distclip.bench import BENCHMARKS
from distclip.config import expand, load
from distclip.report import format_table
from distclip.reproduce import SUITES, Context, draw_figures
from distclip.rundir import load_run
from distclip.runner import RunResult

ROOT = Path(__file__).resolve().parents[1]


def load_suite_runs(folder: Path) -> list[RunResult]:
    sweep = load(folder / "sweep.toml").sweep
    runs = []
    for run in sorted(p.parent for p in folder.glob("*/metrics.jsonl")):
        metrics, summary = load_run(run)
        label = summary.get("label", run.name)
        runs.append(RunResult(load(run / "config.toml"), metrics, summary, torch.zeros(0), run, label,
                              {"sweep": sweep}))
    order = [label for label, _ in expand(load(folder / "sweep.toml"))]
    return sorted(runs, key=lambda r: order.index(r.label) if r.label in order else len(order))


def redraw_suite(folder: Path) -> list[Path]:
    name = folder.name.removesuffix("-quick")
    suite = SUITES[name]
    runs = load_suite_runs(folder)
    for old in (folder / "plots").glob("*.png"):
        old.unlink()
    ctx = Context.of(runs, suite.names)
    figures = draw_figures(suite, ctx, folder)
    report = folder / "report.md"
    text = report.read_text(encoding="utf-8")
    table = text.index("```\n", text.index("## Final values")) + 4
    text = text[:table] + format_table(ctx.results) + "\n" + text[text.index("```", table):]
    head = text[: text.index("## Figures")]
    report.write_text(head + "## Figures\n\n" + "".join(f"![{f.stem}](plots/{f.name})\n" for f in figures),
                      encoding="utf-8")
    return figures


def redraw_performance(folder: Path) -> list[str]:
    drawn = []
    for name, module in BENCHMARKS.items():
        path = folder / f"{name}.json"
        if path.exists() and hasattr(module, "draw"):
            drawn += module.draw(json.loads(path.read_text(encoding="utf-8")), folder)
    return drawn


def main(argv: list[str]) -> None:
    if argv == ["--performance"]:
        print("\n".join(redraw_performance(ROOT / "docs" / "performance")))
        return
    folders = [Path(a) for a in argv] or sorted(p.parent for p in (ROOT / "docs" / "results").glob("*/report.md"))
    for folder in folders:
        for figure in redraw_suite(folder):
            print(figure.relative_to(ROOT) if figure.is_relative_to(ROOT) else figure)


if __name__ == "__main__":
    main(sys.argv[1:])
