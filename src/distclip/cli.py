"""The ``distclip`` command: ``run``, ``plot`` and ``list``.

Errors in the input (config, data, a diverging run) print one line on stderr and exit with 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .cli_bench import add_bench, cmd_bench
from .errors import DistclipError
from .report import fmt, format_table, grid_groups, group_file
from .version import __version__

EXIT_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the fix (argparse prints the whole usage block otherwise)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if "unrecognized arguments" in message and "--set" in sys.argv:
            message += " (write --set section.key=value, one key per --set)"
        sys.stderr.write(f"{self.prog}: error: {message}; see {self.prog} --help\n")
        sys.exit(EXIT_INPUT)


class _Help(argparse.HelpFormatter):
    """Descriptions and epilogs wrapped line by line; lines that start with two spaces (examples) kept as they are."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        return "\n".join(line if line.startswith("  ") else textwrap.fill(line, width, initial_indent=indent,
                                                                          subsequent_indent=indent)
                          for line in text.splitlines())


def _override(text: str) -> str:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} must look like section.key=value, e.g. run.steps=200")
    return text


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="distclip",
        description="Distributed and federated training with gradient clipping: Clip21, CELGC, EPISODE, "
        "Clip21-SGD2M, DP-FedAvg (fixed or adaptive clipping, with its epsilon), EF21 and the baselines (GD/SGD, "
        "Clip-GD/SGD, Local SGD/FedAvg, SCAFFOLD, FedProx), in one process or under torchrun.",
        epilog="examples:\n"
        "  distclip reproduce clip21-logreg --quick            a paper figure: runs, claims checked, report.md\n"
        "  distclip run examples/cnn_mnist_dirichlet.toml      a [[sweep]] config: every run, a table, figures\n"
        "  distclip run CONFIG --dry-run                       the resolved config of each run, nothing run\n"
        "  distclip run CONFIG --only celgc --set run.steps=200 --tensorboard\n"
        "  distclip plot runs/x --metric test_acc --x rounds   any logged metric against rounds, floats, ...\n"
        "  torchrun --nproc-per-node=2 -m distclip run CONFIG  the same runs on 2 processes (gloo)\n"
        "  distclip list celgc                                 an algorithm's or problem's config keys\n"
        "`distclip COMMAND --help` explains each command's options; examples/ holds configs to copy.",
        formatter_class=_Help,
    )
    p.add_argument("--version", action="version", version=f"distclip {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", type=_override,
        help="override a config value, e.g. --set algorithm.tau=0.1 --set run.steps=200 (TOML value syntax); "
        "--set section.key= unsets the key (its default)",
    )

    run = sub.add_parser(
        "run", parents=[common, overrides], help="run one experiment, or every run of a [[sweep]] config",
        description="Run the experiment of CONFIG (TOML). A config with [[sweep]] entries runs each of them into "
        "its own sub-directory, prints a comparison table and writes plots.",
    )
    run.add_argument("config", type=Path, nargs="?",
                     help="TOML config file (see examples/ and the README's config reference)")
    run.add_argument("--resume", type=Path, metavar="DIR",
                     help="continue the run in DIR from its checkpoint.pt (config from DIR/config.toml)")
    run.add_argument("--checkpoint-every", type=int, metavar="N",
                     help="write DIR/checkpoint.pt every N steps (sets run.checkpoint_every)")
    run.add_argument("--out", type=Path, help="output directory (default: runs/<name>-<timestamp>); must be new")
    run.add_argument("--tensorboard", action="store_true",
                     help="also write TensorBoard event files to DIR/tensorboard (sets run.tensorboard = true; needs "
                     "pip install 'distclip[tensorboard]'); metrics.jsonl and metrics.csv are always written")
    run.add_argument("--no-plot", action="store_true", help="do not write plots")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    run.add_argument("--dry-run", action="store_true",
                     help="print the resolved config (each sweep member's, labelled) and exit without running")
    run.add_argument("--only", metavar="LABEL", help="run only the sweep member LABEL (see --dry-run for the labels)")

    _add_plot(sub, common)
    part = sub.add_parser(
        "partition", parents=[common, overrides], help="print each client's label histogram for a config's partition",
        description="Load the config's dataset, split it into clients as the run would, and print every "
        "client's label histogram and the number of rows dropped.",
    )
    part.add_argument("config", type=Path, help="TOML config file")

    rep = sub.add_parser(
        "reproduce", parents=[common, overrides], help="run a paper figure's suite and write its figures and report",
        description="Run every setting of a named suite (see --list), write the figures and report.md with a "
        "results table and, for each of the paper's claims, whether it was reproduced and the numbers.",
    )
    rep.add_argument("name", nargs="?", help="suite name")
    rep.add_argument("--quick", action="store_true", help="the reduced version (minutes on 2 CPU cores)")
    rep.add_argument("--out", type=Path, help="output directory (default: runs/<name>-<timestamp>); must be new")
    rep.add_argument("--list", action="store_true", help="list the suites and exit")

    lst = sub.add_parser(
        "list", parents=[common], help="list algorithms, problems, bundled datasets and options",
        description="Without NAME: every algorithm, problem kind, bundled dataset and option. With NAME (an "
        "algorithm, a problem kind, run, partition or sampling): its config keys with type, default and meaning.",
    )
    lst.add_argument("name", nargs="?", metavar="NAME",
                     help="an algorithm or problem kind (e.g. celgc, lstm), or run, partition, sampling")

    add_bench(sub, common)
    return p


def _add_plot(sub: Any, common: argparse.ArgumentParser) -> None:
    plot = sub.add_parser(
        "plot", parents=[common], help="draw figures from run directories: any logged metric against any x",
        description="Draw figures from run or sweep directories (all their runs). Without --metric: the standard "
        "figure (||grad f||^2 and f - f_min against iterations and floats sent; for networks the training panels). "
        "Runs that differ only in run.seed/seed are drawn as their mean with a min-max band; each run label keeps "
        "one colour; legends are in natural order (I=1, 4, 16) and name the folder when several folders are "
        "given and one is a sweep.",
        epilog="examples:\n"
        "  distclip plot runs/sweep                                   standard figure of every run of a sweep\n"
        "  distclip plot runs/mnist --metric test_acc,loss --x rounds  accuracy and loss against rounds\n"
        "  distclip plot runs/a runs/b --metric gap --x floats --logx  f - f_min against floats, log x forced\n"
        "metrics: any key of metrics.jsonl (loss, grad_norm_sq, test_acc, valid_ppl, clip_frac_mean, epsilon, "
        "...) and gap = f - f_min (f_min: the smallest f of the runs of the same objective; floored at "
        "1e-15*|f_min|)",
        formatter_class=_Help,
    )
    plot.add_argument("dirs", type=Path, nargs="+", metavar="RUN_OR_SWEEP", help="run or sweep directories")
    plot.add_argument("--out", type=Path, help="PNG file to write (default: <first DIR>/plots/comparison.png)")
    plot.add_argument("--title", default="", help="figure title")
    plot.add_argument("--metric", metavar="NAME[,NAME]",
                      help="metrics to draw, one panel each (default: the standard figure); gap = f - f_min")
    plot.add_argument("--x", default="steps", choices=("steps", "rounds", "floats", "bytes", "epochs", "wall"),
                      help="x axis with --metric: iterations, communication rounds, floats or bytes sent per "
                      "client, epochs, or wall clock in algorithm steps (default: steps)")
    for axis in ("x", "y"):
        plot.add_argument(f"--log{axis}", action=argparse.BooleanOptionalAction, default=None,
                          help=f"force a logarithmic (--log{axis}) or linear (--no-log{axis}) {axis} axis; default: "
                          + ("log when the curves' extents differ by more than about 12x" if axis == "x" else
                             "log when the positive values span more than two decades"))


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import expand, to_toml
    from .reproduce.suites import load_config as load  # a suite file runs its full version
    from .runner import default_name, run, run_sweep, timestamped

    if (args.config is None) == (args.resume is None):
        raise DistclipError("give a CONFIG to start a run, or --resume DIR to continue one (not both)")
    overrides = list(args.overrides)
    if args.checkpoint_every is not None:
        overrides.append(f"run.checkpoint_every={args.checkpoint_every}")
    if args.tensorboard:
        overrides.append("run.tensorboard=true")
    cfg = load(args.config or args.resume / "config.toml", overrides)
    if args.dry_run:
        members = expand(cfg) if cfg.sweep else [("", cfg)]
        print("\n".join((f"# sweep member {label}\n" if label else "") + to_toml(c) for label, c in members), end="")
        return 0
    if args.only is not None:
        members = dict(expand(cfg)) if cfg.sweep else {}
        if args.only not in members:
            raise DistclipError(f"--only {args.only!r}: the config's sweep members are "
                                f"{', '.join(members) or 'none (it is not a sweep)'}")
        cfg = members[args.only]
    name = cfg.run.name or (args.config.stem if cfg.sweep else default_name(cfg))
    out = args.resume or args.out or timestamped("runs", name)
    lead = _rank() == 0  # under torchrun only rank 0 prints and plots
    progress = lead and not args.quiet  # a bar on a terminal, else a line every 30 s
    if not cfg.sweep:
        result = run(cfg, out, progress=progress, resume=args.resume is not None)
        out = result.out_dir or out
        if lead and not args.quiet:
            print(format_table([result]))
        if lead and not args.no_plot:
            _plot([result], {"convergence": [result]}, out, result.label)
        if lead:
            print(f"wrote {out}")
        return 0

    def announce(result: Any) -> None:
        result.extra["sweep"] = cfg.sweep
        if not args.quiet:
            final = result.metrics[-1]
            print(f"  {result.label}: |grad f|^2 = {fmt(final['grad_norm_sq'])} after {final['step']} steps",
                  file=sys.stderr)

    results = run_sweep(cfg, out, progress=progress, on_result=announce if lead else None)
    if not lead:
        return 0
    table = format_table(results)
    (out / "table.txt").write_text(table + "\n", encoding="utf-8")
    if not args.quiet:
        print(table)
    if not args.no_plot:
        _plot(results, {"all": results, **grid_groups(results)}, out, name)
    print(f"wrote {out}")
    return 0


def _plot(results: list[Any], figures: dict[str, list[Any]], out: Path, title: str) -> None:
    """``out/plots/NAME.png`` for each figure's runs: the training panels for networks, else the Clip21 axes;
    colours by label over all ``results``."""
    from .figures import plot_runs, plot_training, series_of
    from .plotting import palette

    networks = any("test_acc" in r or "valid_ppl" in r for res in results for r in res.metrics)
    draw = plot_training if networks else plot_runs
    colours = palette(s.label for s in series_of(results))
    for name, members in figures.items():
        own = name in ("all", "convergence")  # the whole run or sweep, else one value of a grid key
        draw(series_of(members), out / "plots" / f"{group_file(name)}.png", title if own else f"{title}: {name}",
             colours)


def _cmd_plot(args: argparse.Namespace) -> int:
    from .figures import load_series, plot_runs, plot_training
    from .plotting import find_runs, plot_metrics

    series = load_series(args.dirs, find_runs(args.dirs))
    out = args.out or args.dirs[0] / "plots" / "comparison.png"
    if args.metric:
        metrics = [m.strip() for m in args.metric.split(",") if m.strip()]
        path = plot_metrics(series, metrics, args.x, out, args.title, args.logx, args.logy)
    else:
        networks = any("test_acc" in r or "valid_ppl" in r for s in series for r in s.rows)
        path = (plot_training if networks else plot_runs)(series, out, args.title)
    print(f"wrote {path}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import SUITES, reproduce
    from .runner import timestamped

    if args.list or not args.name:
        width = max(map(len, SUITES))
        for name, suite in SUITES.items():
            needs = "  [needs --set problem.path=DIR]" if suite.needs_path else ""
            print(f"  {name:<{width}}  {suite.title}{needs}")
        return 0
    out = args.out or timestamped("runs", args.name + ("-quick" if args.quick else ""))
    results, claims, report = reproduce(args.name, out, args.quick, args.overrides, progress=True)
    print(format_table(results))
    for c in claims:
        print(f"  [{'ok' if c.holds else 'NO'}] {c.text}: {c.evidence}")
    print(f"{sum(c.holds for c in claims)} of {len(claims)} claims reproduced; report: {report}")
    return 0


def _cmd_partition(args: argparse.Namespace) -> int:
    from .config import expand
    from .reproduce.suites import load_config as load
    from .runner import build_partition

    cfg = load(args.config, args.overrides)
    if cfg.sweep:  # the runs of a sweep may differ in their partition: show the first one's
        label, cfg = expand(cfg)[0]
        print(f"sweep run {label} (the first of the sweep):")
    data, part = build_partition(cfg)
    print(f"{data.name}: {data.n_rows} rows, labels {', '.join(f'{c:g}' for c in part.classes)}")
    print(part.report())
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .algorithms import ALGORITHMS
    from .clipping import KINDS as CLIPS
    from .compressors import KINDS as COMPRESSORS
    from .data.libsvm import BUNDLED
    from .data.partition import SCHEMES
    from .problems import kinds
    from .reference import component

    if args.name:
        print(component(args.name))
        return 0
    print("algorithms (algorithm.name; `distclip list NAME` shows its keys):")
    for name, spec in ALGORITHMS.items():
        print(f"  {name:<20} {spec.summary}")
    print("problems (problem.kind; `distclip list KIND` shows its keys):")
    for name in kinds.MODULES:
        print(f"  {name:<20} {kinds.get(name).summary}")
    print("bundled datasets (problem.dataset):")
    for name, info in BUNDLED.items():
        print(f"  {name:<20} {info.n_rows} rows x {info.n_features} features  {info.description}")
    print(f"partition schemes: {', '.join(SCHEMES)}")
    print(f"clipping operators: {', '.join(CLIPS)}; compressors: {', '.join(COMPRESSORS)}")
    return 0


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors (one line, exit 2)
        return e.code if isinstance(e.code, int) else 0
    command = {"run": _cmd_run, "plot": _cmd_plot, "reproduce": _cmd_reproduce, "partition": _cmd_partition,
               "list": _cmd_list, "bench": cmd_bench}[args.command]
    try:
        return command(args)
    except DistclipError as e:
        if args.debug:
            raise
        where = f"[rank {_rank()}] " if "WORLD_SIZE" in os.environ else ""
        sys.stderr.write(f"distclip: error: {where}{e}\n")  # one write: ranks share the terminal
        sys.stderr.flush()
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("distclip: interrupted; everything logged so far is kept", file=sys.stderr)
        return 130
    except Exception as e:  # an internal error: still one line unless --debug
        if args.debug:
            raise
        print(f"distclip: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
    finally:
        from .engine.distributed import shutdown

        shutdown()



