"""From a config to results: build the problem, transport and rules, train, write the outputs.

``run(config)`` is the library entry point (``distclip.run``); ``run_sweep`` runs every entry of a
``[[sweep]]`` config into its own sub-directory. The run directory's files are :mod:`distclip.rundir`'s,
the privacy ledger :mod:`distclip.ledger`'s and the training loop :mod:`distclip.engine.loop`'s.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import checkpoint, ledger, rundir
from .algorithms import ALGORITHMS, Context
from .algorithms.base import Env, resolve
from .config import Config, expand, from_dict, load, to_toml
from .engine.cohort import Sampled
from .engine.distributed import TorchDistributed, agree, broadcast, launched
from .engine.distributed import init as init_distributed
from .engine.loop import NonFinite, Progress, train
from .engine.transport import InProcess, Transport
from .errors import DistclipError
from .metrics import MetricsWriter
from .problems.base import ClientOracle, Problem
from .problems.kinds import build_partition, build_problem
from .rundir import load_run, timestamped
from .version import __version__

__all__ = ["RunResult", "build_context", "build_partition", "build_problem", "load_run", "run", "run_sweep",
           "timestamped"]


@dataclass
class RunResult:
    """What a run produced: the metrics rows, the summary, the final model and where files went."""

    config: Config
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    model: torch.Tensor
    out_dir: Path | None = None
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    module: Any = None  # problem kind torch: the user's nn.Module holding the final weights


@dataclass(frozen=True)
class Length:
    """A run's length and logging cadence in server steps, resolved from steps or epochs."""

    steps_per_epoch: int
    steps: int
    log_every: int


def resolve_length(cfg: Config, problem: Problem) -> Length:
    """Steps and log interval in steps; an epoch is ⌊rows per client / batch⌋ server steps (one pass over
    each client's data; 1 step with full gradients), CELGC's and EPISODE's notion."""
    r = cfg.run
    spe = 1 if r.batch_size == 0 else max(1, problem.rows_per_client() // r.batch_size)
    steps = math.ceil(r.epochs * spe) if r.epochs > 0 else r.steps
    log_every = max(1, round(r.log_every_epochs * spe)) if r.log_every_epochs > 0 else r.log_every
    return Length(spe, steps, log_every)


def build_context(cfg: Config, problem: Problem, transport: Transport) -> tuple[Context, dict[str, Any]]:
    """The rules' context for the clients held here: hyperparameters resolved (``c/L`` step sizes, per-client
    thresholds, DP noise calibrated over the run), the oracle and the (possibly noisy) transport."""
    spec, x0, batch = ALGORITHMS[cfg.algorithm.name], problem.x0(), cfg.run.batch_size
    rows = problem.rows_per_client()
    if batch > 0 and rows == 0:
        raise DistclipError(f"problem {cfg.problem.kind} has no samples for minibatches; set run.batch_size = 0")
    env = Env(transport.clients, problem.n_clients, batch, x0.dtype, x0.device, problem.smoothness)
    hp = resolve(cfg.algorithm.params, env)
    if batch > rows > 0:
        env.facts["note"] = f"batch_size {batch} > {rows} rows per client: sampling with replacement"
    hp = ledger.resolve(spec, hp, resolve_length(cfg, problem).steps, problem.n_clients)
    oracle = ClientOracle(problem, transport.clients, cfg.run.batch_size, cfg.seed)
    return Context(ledger.channel(spec, hp, transport, cfg.seed), oracle, hp, x0), env.facts


def sampled_rules(cfg: Config, spec: Any, hp: Any, problem: Problem) -> Any:
    """The rules the loop runs: the algorithm's own, or with client sampling around them (``[sampling]``, or the
    rule's ``own_sampling``; :mod:`distclip.engine.cohort`)."""
    own = getattr(spec.rules, "own_sampling", None)
    sampling = cfg.sampling if cfg.sampling.active else own(hp) if own is not None else None
    if sampling is None:
        return spec.rules
    carried = getattr(problem, "client_state", None)
    if carried is not None and carried(torch.arange(1)):
        raise DistclipError(f"client sampling with problem kind '{cfg.problem.kind}' carrying per-client state "
                            "(hidden states) is not supported; turn the carry off or remove [sampling]")
    return Sampled(spec.rules, sampling, cfg.seed, empty_rounds=own is not None and not cfg.sampling.active)


def default_name(cfg: Config) -> str:
    p = cfg.problem
    data = getattr(p, "dataset", None) or (Path(p.path).name if getattr(p, "path", None) else p.kind)
    return cfg.run.name or f"{cfg.algorithm.name}-{data}"


def _restarted() -> bool:
    """Whether torchrun restarted this worker group after a failure (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def _setup(cfg: Config, objects: dict[str, Any]) -> tuple[Problem, Transport]:
    """Problem and transport for this process; in distributed mode every rank agrees or all fail."""
    distributed = cfg.run.engine == "distributed" or (cfg.run.engine == "auto" and launched())
    if not distributed:
        problem = build_problem(cfg, None, objects)
        return problem, InProcess(problem.n_clients, problem.x0().device)
    device = init_distributed(cfg.run.backend, cfg.run.device, cfg.run.timeout_s)
    error, problem = None, None
    try:
        problem = build_problem(cfg, device, objects)
    except DistclipError as e:
        error = str(e)
    agree(error)
    mine = to_toml(cfg)
    reference = broadcast(mine)
    agree(None if mine == reference else "config differs from rank 0's; launch every rank with the same config")
    return problem, TorchDistributed(problem.n_clients, device, cfg.run.timeout_s)


def _summary(cfg: Config, label: str, transport: Transport, problem: Problem, length: Length,
             facts: dict[str, Any]) -> dict[str, Any]:
    info = problem.info()
    return {
        "label": label or default_name(cfg), "algorithm": cfg.algorithm.name, "version": __version__,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "engine": type(transport).__name__, "world_size": transport.world, "problem": info,
        "n_clients": problem.n_clients, "rows_dropped": info.get("rows_dropped", 0), "steps": length.steps,
        "steps_per_epoch": length.steps_per_epoch, **facts,
    }


def run(config: Config | dict[str, Any] | str | Path, out: str | Path | None = None, *,
        progress: bool = False, label: str = "", resume: bool = False, model: Any = None, data: Any = None,
        loss: Any = None) -> RunResult:
    """Run one experiment, in this process or as one rank of a ``torch.distributed`` job.

    ``model``, ``data``, ``loss``: the user's objects for ``problem.model``/``data``/``loss`` (see
    :mod:`distclip.problems.torch_module`). With ``out`` set, rank 0 writes config.toml,
    metrics.jsonl, summary.json (and checkpoint.pt every ``run.checkpoint_every`` steps) there.
    ``resume=True`` continues the run in ``out`` from its checkpoint (or from the start if it has none)
    without duplicating logged steps; a worker group restarted by torchrun does this by itself.
    """
    cfg = config if isinstance(config, Config) else from_dict(config) if isinstance(config, dict) else load(config)
    if cfg.sweep:
        raise DistclipError("this config has [[sweep]] entries; run it with run_sweep or `distclip run`")
    with intra_op_threads(cfg.run.threads):
        return _run(cfg, out, progress, label, resume, model, data, loss)


def intra_op_threads(threads: int) -> contextlib.AbstractContextManager[int]:
    """The intra-op threads of torch set to ``threads`` (0: $OMP_NUM_THREADS if set, else 1) while the run lasts."""
    env = re.match(r"\s*([1-9][0-9]*)", os.environ.get("OMP_NUM_THREADS", ""))
    return _threads(threads or (int(env.group(1)) if env else 1))


@contextlib.contextmanager
def _threads(n: int) -> Iterator[int]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def _run(cfg: Config, out: str | Path | None, progress: bool, label: str, resume: bool, model: Any, data: Any,
         loss: Any) -> RunResult:
    objects = {k: v for k, v in {"model": model, "data": data, "loss": loss}.items() if v is not None}
    problem, transport = _setup(cfg, objects)
    ctx, facts = build_context(cfg, problem, transport)
    spec = ALGORITHMS[cfg.algorithm.name]
    out_dir = None if out is None else Path(transport.broadcast(str(out)))
    length = resolve_length(cfg, problem)
    rules = sampled_rules(cfg, spec, ctx.hp, problem)
    found, resumed = _start(cfg, out_dir, transport, rules, ctx, problem, resume, length.steps)
    try:
        return _train(cfg, rules, ctx, problem, transport, out_dir, found, resumed, length, facts, label, progress)
    finally:
        found.release()


def _start(cfg: Config, out_dir: Path | None, transport: Transport, rules: Any, ctx: Context, problem: Problem,
           resume: bool, steps: int) -> tuple[rundir.Resumed, tuple[Any, Progress] | None]:
    """Lock and read the run directory (rank 0), restore the checkpoint (every rank), then write config.toml."""
    continuing = resume or (_restarted() and out_dir is not None and (out_dir / "metrics.jsonl").exists())
    found, error = rundir.Resumed(), None
    if out_dir is not None and transport.rank == 0:
        try:
            found = rundir.open_run(out_dir, cfg, continuing, resume, steps)
        except DistclipError as e:
            error = str(e)
    transport.agree(error)
    payload, resumed, error = transport.broadcast(found.payload), None, None
    if payload is not None:
        try:
            sampled = rules if isinstance(rules, Sampled) else None
            resumed = checkpoint.restore(payload, rules.rules if sampled else rules, transport, ctx.x0.device,
                                         problem, sampled, ctx)
        except Exception as e:  # loadable, but not this run's state (shapes, fields)
            error = f"{out_dir / checkpoint.NAME} does not fit this run ({type(e).__name__}: {e}); delete it to restart"
        found.rows = [r for r in found.rows if resumed is None or r["step"] <= resumed[1].step]
    try:
        transport.agree(error)
        if out_dir is not None and transport.rank == 0:
            rundir.write_config(out_dir, cfg)
    except BaseException:
        found.release()
        raise
    return found, resumed


def _train(cfg: Config, rules: Any, ctx: Context, problem: Problem, transport: Transport, out_dir: Path | None,
           found: rundir.Resumed, resumed: tuple[Any, Progress] | None, length: Length, facts: dict[str, Any],
           label: str, progress: bool) -> RunResult:
    """The training loop with its logging, checkpoints and summary (rank 0 writes)."""
    writer_rank = transport.rank == 0
    label, rows, done = label or found.label, found.rows, found.last_logged
    if resumed is not None:
        facts["resumed_from"] = resumed[1].step
    writer = (MetricsWriter(out_dir / "metrics.jsonl", tensorboard=cfg.run.tensorboard)
              if out_dir is not None and writer_rank else None)
    spec = ALGORITHMS[cfg.algorithm.name]
    accountant = ledger.ledger(spec, ctx.hp, length.steps)

    def log(row: dict[str, Any]) -> None:
        row["epoch"] = row["step"] / length.steps_per_epoch
        if accountant is not None:
            row["epsilon"] = accountant.epsilon(row["comm_rounds"])
        rows.append(row)
        if writer is not None and row["step"] > done:
            writer.write(row)

    def save(state: Any, progress: Progress) -> None:
        snap = checkpoint.snapshot(state, progress, transport, to_toml(cfg), __version__, problem,
                                   rules if isinstance(rules, Sampled) else None, ctx)
        if snap is not None and out_dir is not None:
            checkpoint.write(out_dir, snap)

    summary = _summary(cfg, label, transport, problem, length, facts)
    if accountant is not None:
        summary["privacy"] = accountant.describe()
    schedule = getattr(ctx.hp, "schedule", None)
    t0 = time.perf_counter()
    bar = progress and writer_rank and sys.stderr.isatty()

    def heartbeat(step: int, steps: int) -> None:  # without a terminal (CI, nohup, a log file): a line now and then
        print(f"distclip: {summary['label']}: step {step}/{steps} ({100 * step / max(steps, 1):.0f}%), "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    try:
        state, prog = train(
            rules, ctx, problem, length.steps, length.log_every, log, evaluate=writer_rank,
            progress=bar, resume=resumed, heartbeat=heartbeat if progress and writer_rank and not bar else None,
            checkpoint=save if out_dir is not None else None, checkpoint_every=cfg.run.checkpoint_every,
            step_size=None if schedule is None else schedule.step_size(length.steps_per_epoch, length.steps),
        )
    except NonFinite as e:
        summary.update(status="diverged", error=str(e), final=rows[-1] if rows else None)
        if out_dir is not None and writer_rank:
            rundir.write_summary(out_dir, summary)
            kept = f"metrics up to step {rows[-1]['step']}" if rows else "no step was logged; summary.json"
            raise DistclipError(f"{e} ({kept} kept in {out_dir})") from None
        raise
    finally:
        if writer is not None:
            writer.close()
    summary.update(status="ok", final=rows[-1] if rows else None, total_s=time.perf_counter() - t0,
                   last_clip_step=prog.last_clip, steps_done=prog.step)
    x = rules.model(state, ctx)
    if out_dir is not None and writer_rank:
        rundir.write_summary(out_dir, summary)
    module = problem.as_module(x) if hasattr(problem, "as_module") else None
    return RunResult(cfg, rows, summary, x, out_dir, summary["label"], module=module)


def run_sweep(cfg: Config, out: str | Path, *, progress: bool = False,
              on_result: Any = None) -> list[RunResult]:
    """Run every run of a ``[[sweep]]`` config into ``out/<label>``; ``on_result`` sees each result.

    Under torchrun every rank calls this; only rank 0 writes. A restarted worker group continues
    each run where its files leave off (see :func:`run`).
    """
    out = Path(out)
    runs = expand(cfg)  # every run validated before anything is written
    fresh = not (out / "sweep.toml").exists()
    if os.environ.get("RANK", "0") == "0":
        rundir.prepare(out, continuing=True)
        if fresh:
            (out / "sweep.toml").write_text(to_toml(cfg), encoding="utf-8")
        elif not _restarted():
            raise DistclipError(f"{out} already holds a sweep; choose another --out")
    results = []
    try:
        for label, sub in runs:
            result = run(sub, out / label, progress=progress, label=label)
            results.append(result)
            if on_result is not None:
                on_result(result)
    except DistclipError:
        if fresh and os.environ.get("RANK", "0") == "0" and not any(out.glob("*/metrics.jsonl")):
            rundir.remove_stub(out)  # nothing was logged: leave no directory that blocks the corrected rerun
        raise
    return results
