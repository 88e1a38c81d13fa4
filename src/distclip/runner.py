"""From a config to results: build the problem, transport and rules, train, write the outputs.

``run(config)`` is the library entry point (``distclip.run``); ``run_sweep`` runs every entry of a
``[[sweep]]`` config into its own sub-directory.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__, checkpoint
from .algorithms import ALGORITHMS, Context, Hyper
from .compressors import Compressor
from .config import IMAGE_KINDS, Config, expand, from_dict, load, lr_factor, to_toml
from .data.corpus import load_corpus
from .data.images import Images, load_images, split_rows
from .data.libsvm import Dataset, load_dataset
from .data.partition import Partition, partition
from .engine.distributed import TorchDistributed, agree, broadcast, launched
from .engine.distributed import init as init_distributed
from .engine.loop import NonFinite, Progress, train
from .engine.transport import InProcess, Transport
from .errors import DistclipError
from .metrics import MetricsWriter, read_metrics, write_json_atomic
from .privacy import budget as privacy
from .problems.awd_lstm import AWDLanguageModel, needs_awd, regularisation
from .problems.base import ClientOracle, Problem
from .problems.language import LanguageModel
from .problems.logreg import LogReg
from .problems.models import CNN, MLP
from .problems.network import Network
from .problems.quadratic import Quadratic
from .problems.quartic import Quartic
from .problems.resnet import deep_model
from .schedule import StepSize


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


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DistclipError(f"run.device = {name!r} but CUDA is not available here; use device = 'cpu'")
    return torch.device(name)


def _x0(value: float | list[float], dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(value, list):
        if len(value) != dim:
            raise DistclipError(f"problem.x0 has {len(value)} entries but the problem has dimension {dim}")
        return torch.tensor(value, dtype=dtype, device=device)
    return torch.full((dim,), float(value), dtype=dtype, device=device)


def build_problem(cfg: Config, device: torch.device | None = None) -> Problem:
    """The problem of ``cfg`` (data loaded, partitioned) in its dtype, on ``device`` or ``run.device``."""
    p = cfg.problem
    dtype, device = getattr(torch, cfg.run.dtype), device or _device(cfg.run.device)
    if p.kind == "quadratic":
        centres = torch.tensor([c if isinstance(c, list) else [c] for c in p.centres], dtype=dtype, device=device)
        curv = torch.tensor(p.curvatures or [1.0] * len(centres), dtype=dtype, device=device)
        return Quadratic(centres, curv, _x0(p.x0, centres.shape[1], dtype, device))
    if p.kind == "quartic":
        return Quartic(cfg.partition.clients, p.het, p.sigma, _x0(p.x0, 1, dtype, device))
    if p.kind == "lstm" and needs_awd(p):
        lm = AWDLanguageModel(load_corpus(p.dataset, p.path), cfg.partition.clients, p.hidden, regularisation(p),
                              bool(p.carry), p.bptt, p.rotate, cfg.run.batch_size, cfg.seed, dtype, device)
        return lm if "problem.x0" not in cfg.given else lm.with_x0(_x0(p.x0, lm.dim, dtype, device))
    if p.kind == "lstm":
        lm = LanguageModel(load_corpus(p.dataset, p.path), cfg.partition.clients, p.hidden[0], len(p.hidden), p.bptt,
                           p.rotate, cfg.run.batch_size, cfg.seed, dtype, device)
        return lm if "problem.x0" not in cfg.given else lm.with_x0(_x0(p.x0, lm.dim, dtype, device))
    data, part = build_partition(cfg)
    if isinstance(data, Images):
        shape, classes = data.x.shape[1:], data.n_classes
        if p.kind in ("mlp", "cnn"):
            model = MLP(shape, p.hidden, classes) if p.kind == "mlp" else CNN(shape, p.channels, classes)
        else:
            model = deep_model(p.kind, shape, classes, p.width, p.groups)
        test = split_rows(data, p.test_fraction, cfg.seed)[1]
        net = Network(model, data, part, test, cfg.seed, dtype, device, p.augment, p.eval_rows)
        return net if "problem.x0" not in cfg.given else net.with_x0(_x0(p.x0, net.dim, dtype, device))
    return LogReg(data, part, p.lam, _x0(p.x0, data.n_features, dtype, device), p.features)


def build_partition(cfg: Config) -> tuple[Dataset | Images, Partition]:
    """The dataset of ``cfg`` and its split into clients (problems with labelled rows only).

    For the network problems only the training rows are split; partition rows index the whole set.
    """
    p = cfg.problem
    if p.kind in ("quadratic", "lstm", "quartic"):
        what = {"quadratic": "its clients are its centres", "quartic": "its clients are the h_i",
                "lstm": "the token stream is cut into N shards"}[p.kind]
        raise DistclipError(f"problem kind '{p.kind}' has no labelled rows to partition; {what}")
    if p.kind in IMAGE_KINDS:
        data = load_images(p.dataset, p.path)
        train = split_rows(data, p.test_fraction, cfg.seed)[0]
    else:
        data = load_dataset(p.dataset, p.path, p.n_features)
        train = np.arange(data.n_rows)
    part = partition(data.labels[train], cfg.partition.clients, cfg.partition.scheme, cfg.seed,
                     similarity=cfg.partition.similarity, alpha=cfg.partition.alpha)
    rows = train[part.rows]
    rows.setflags(write=False)
    return data, dataclasses.replace(part, rows=rows)


def build_context(cfg: Config, problem: Problem, transport: Transport) -> tuple[Context, dict[str, Any]]:
    """Resolve hyperparameters (``c/L`` step sizes, per-client thresholds) for the clients held here."""
    a, spec = cfg.algorithm, ALGORITHMS[cfg.algorithm.name]
    x0 = problem.x0()
    facts: dict[str, Any] = {}
    lr = 0.0
    if spec.uses_lr:
        c, relative = lr_factor(a.lr)
        if relative:
            facts["L"] = problem.smoothness()
            lr = c / facts["L"]
        else:
            lr = c
        facts["lr"] = lr
    if cfg.run.batch_size > 0:
        rows = problem.rows_per_client()
        if rows == 0:
            raise DistclipError(f"problem {cfg.problem.kind} has no samples for minibatches; set run.batch_size = 0")
        if cfg.run.batch_size > rows:
            facts["note"] = f"batch_size {cfg.run.batch_size} > {rows} rows per client: sampling with replacement"

    def per_client(value: float | list[float] | None) -> torch.Tensor:
        v = math.inf if value is None else value
        full = torch.as_tensor(v, dtype=x0.dtype, device=x0.device).expand(problem.n_clients)
        return full[transport.clients].contiguous()

    tau, gamma = per_client(a.tau), None
    if a.name in ("celgc", "episode"):
        gamma = per_client(a.gamma) if a.gamma is not None else tau * lr
        tau = gamma / lr
    hp = Hyper(
        lr=lr, tau=tau, gamma=gamma, clip=a.clip, clip_at=a.clip_at or "client", local_steps=a.local_steps,
        option=a.option, init=a.init or "default", compressor=Compressor(a.compressor if a.name == "ef21" else
        "identity", a.k), momentum=a.momentum, dampening=a.dampening, nesterov=a.nesterov,
        weight_decay=a.weight_decay, baseline=a.baseline, official=a.official,
        resample_batch=cfg.run.batch_size * a.local_steps if a.resample_batch is None else a.resample_batch,
        comparison=a.comparison,
        beta1=a.beta1, beta2=a.beta2, noise_multiplier=a.noise_multiplier, adaptive_clip=a.adaptive_clip,
        quantile=a.quantile, clip_lr=a.clip_lr, client_rate=a.client_rate,
    )
    hp = privacy.resolve(cfg, hp, resolve_length(cfg, problem).steps)
    oracle = ClientOracle(problem, transport.clients, cfg.run.batch_size, cfg.seed)
    return Context(privacy.channel(cfg, hp, transport), oracle, hp, x0), facts


def default_name(cfg: Config) -> str:
    data = cfg.problem.dataset or (Path(cfg.problem.path).name if cfg.problem.path else cfg.problem.kind)
    return cfg.run.name or f"{cfg.algorithm.name}-{data}"


def timestamped(base: str | Path, name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(base) / f"{name}-{stamp}"


def _prepare_out(out: Path, continuing: bool) -> Path:
    if not continuing and (out / "metrics.jsonl").exists():
        raise DistclipError(f"{out} already holds a run (metrics.jsonl); choose another --out, or --resume it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DistclipError(f"cannot create output directory {out}: {e.strerror}; choose another --out") from None
    return out


@dataclass(frozen=True)
class Length:
    """A run's length and logging cadence in server steps, resolved from steps or epochs."""

    steps_per_epoch: int
    steps: int
    log_every: int
    milestones: list[int]


def resolve_length(cfg: Config, problem: Problem) -> Length:
    """Steps, log interval and milestones in steps; an epoch is ⌊rows per client / batch⌋ server steps
    (one pass over each client's data; 1 step with full gradients), CELGC's and EPISODE's notion."""
    r, a = cfg.run, cfg.algorithm
    spe = 1 if r.batch_size == 0 else max(1, problem.rows_per_client() // r.batch_size)
    steps = math.ceil(r.epochs * spe) if r.epochs > 0 else r.steps
    log_every = max(1, round(r.log_every_epochs * spe)) if r.log_every_epochs > 0 else r.log_every
    milestones = [m * spe for m in a.milestones] if a.milestone_unit == "epochs" else list(a.milestones)
    return Length(spe, steps, log_every, milestones)


def same_run(config_toml: str, cfg: Config) -> bool:
    """Whether a checkpoint's config describes ``cfg``'s run, up to its length (``run.steps``)."""
    other = from_dict(tomllib.loads(config_toml))
    other.run.steps, other.run.epochs = cfg.run.steps, cfg.run.epochs
    return to_toml(other) == to_toml(cfg)


def _restarted() -> bool:
    """Whether torchrun restarted this worker group after a failure (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def _setup(cfg: Config) -> tuple[Problem, Transport]:
    """Problem and transport for this process; in distributed mode every rank agrees or all fail."""
    distributed = cfg.run.engine == "distributed" or (cfg.run.engine == "auto" and launched())
    if not distributed:
        problem = build_problem(cfg)
        return problem, InProcess(problem.n_clients, problem.x0().device)
    device = init_distributed(cfg.run.backend, cfg.run.device, cfg.run.timeout_s)
    error, problem = None, None
    try:
        problem = build_problem(cfg, device)
    except DistclipError as e:
        error = str(e)
    agree(error)
    mine = to_toml(cfg)
    reference = broadcast(mine)
    agree(None if mine == reference else "config differs from rank 0's; launch every rank with the same config")
    return problem, TorchDistributed(problem.n_clients, device, cfg.run.timeout_s)


def run(config: Config | dict[str, Any] | str | Path, out: str | Path | None = None, *,
        progress: bool = False, label: str = "", resume: bool = False) -> RunResult:
    """Run one experiment, in this process or as one rank of a ``torch.distributed`` job.

    With ``out`` set, rank 0 writes config.toml, metrics.jsonl, summary.json (and checkpoint.pt every
    ``run.checkpoint_every`` steps) there. ``resume=True`` continues the run in ``out`` from its
    checkpoint (or from the start if it has none) without duplicating logged steps; a worker group
    restarted by torchrun does this by itself.
    """
    cfg = config if isinstance(config, Config) else from_dict(config) if isinstance(config, dict) else load(config)
    if cfg.sweep:
        raise DistclipError("this config has [[sweep]] entries; run it with run_sweep or `distclip run`")
    problem, transport = _setup(cfg)
    writer_rank = transport.rank == 0
    ctx, facts = build_context(cfg, problem, transport)
    rules = ALGORITHMS[cfg.algorithm.name].rules
    out_dir = None if out is None else Path(transport.broadcast(str(out)))
    continuing = resume or (_restarted() and out_dir is not None and (out_dir / "metrics.jsonl").exists())
    payload, rows, done, error = None, [], -1, None
    if out_dir is not None and writer_rank:
        try:
            _prepare_out(out_dir, continuing)
            if continuing:
                payload = checkpoint.read(out_dir)
                if payload is not None and not same_run(payload["config"], cfg):
                    raise DistclipError(f"{out_dir / checkpoint.NAME} was written with another config; "
                                        "resume with the run's own config.toml")
                if (out_dir / "metrics.jsonl").exists():
                    rows = read_metrics(out_dir / "metrics.jsonl")
                    done = rows[-1]["step"] if rows else -1
                if not label and (out_dir / "summary.json").exists():
                    label = json.loads((out_dir / "summary.json").read_text()).get("label", "")
            (out_dir / "config.toml").write_text(to_toml(cfg), encoding="utf-8")
        except DistclipError as e:
            error = str(e)
    transport.agree(error)
    payload = transport.broadcast(payload)
    resumed = None
    if payload is not None:
        resumed = checkpoint.restore(payload, rules, transport, ctx.x0.device, problem)
        rows = [r for r in rows if r["step"] <= resumed[1].step]
        facts["resumed_from"] = resumed[1].step
    writer = MetricsWriter(out_dir / "metrics.jsonl") if out_dir is not None and writer_rank else None
    length = resolve_length(cfg, problem)
    ledger = privacy.ledger(cfg, ctx.hp, length.steps)

    def log(row: dict[str, Any]) -> None:
        row["epoch"] = row["step"] / length.steps_per_epoch
        if ledger is not None:
            row["epsilon"] = ledger.epsilon(row["comm_rounds"])
        rows.append(row)
        if writer is not None and row["step"] > done:
            writer.write(row)

    def save(state: Any, progress: Progress) -> None:
        snap = checkpoint.snapshot(state, progress, transport, to_toml(cfg), __version__, problem)
        if snap is not None and out_dir is not None:
            checkpoint.write(out_dir, snap)

    summary: dict[str, Any] = {
        "label": label or default_name(cfg),
        "algorithm": cfg.algorithm.name,
        "version": __version__,
        "torch": torch.__version__,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "engine": type(transport).__name__,
        "world_size": transport.world,
        "problem": (info := problem.info()),
        "n_clients": problem.n_clients,
        "rows_dropped": info.get("rows_dropped", 0),
        "steps": length.steps,
        "steps_per_epoch": length.steps_per_epoch,
        **facts,
    }
    if ledger is not None:
        summary["privacy"] = ledger.describe()
    t0 = time.perf_counter()
    try:
        state, prog = train(
            rules, ctx, problem, length.steps, length.log_every, log, evaluate=writer_rank,
            progress=progress and writer_rank, resume=resumed,
            checkpoint=save if out_dir is not None else None, checkpoint_every=cfg.run.checkpoint_every,
            step_size=None if cfg.algorithm.lr_schedule == "constant" else StepSize(
                cfg.algorithm.lr_schedule, length.milestones, cfg.algorithm.decay, length.steps),
        )
    except NonFinite as e:
        summary.update(status="diverged", error=str(e), final=rows[-1] if rows else None)
        if out_dir is not None and writer_rank:
            write_json_atomic(out_dir / "summary.json", summary)
            raise DistclipError(f"{e} (metrics up to step {rows[-1]['step']} kept in {out_dir})") from None
        raise
    finally:
        if writer is not None:
            writer.close()
    summary.update(status="ok", final=rows[-1] if rows else None, total_s=time.perf_counter() - t0,
                   last_clip_step=prog.last_clip, steps_done=prog.step)
    model = rules.model(state, ctx)
    if out_dir is not None and writer_rank:
        write_json_atomic(out_dir / "summary.json", summary)
    return RunResult(cfg, rows, summary, model, out_dir, summary["label"])


def run_sweep(cfg: Config, out: str | Path, *, progress: bool = False,
              on_result: Any = None) -> list[RunResult]:
    """Run every run of a ``[[sweep]]`` config into ``out/<label>``; ``on_result`` sees each result.

    Under torchrun every rank calls this; only rank 0 writes. A restarted worker group continues
    each run where its files leave off (see :func:`run`).
    """
    out = Path(out)
    if os.environ.get("RANK", "0") == "0":
        _prepare_out(out, continuing=True)
        if not (out / "sweep.toml").exists():
            (out / "sweep.toml").write_text(to_toml(cfg), encoding="utf-8")
        elif not _restarted():
            raise DistclipError(f"{out} already holds a sweep; choose another --out")
    results = []
    for label, sub in expand(cfg):
        result = run(sub, out / label, progress=progress, label=label)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def load_run(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Metrics and summary of a run directory written by :func:`run`."""
    metrics = read_metrics(path / "metrics.jsonl")
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"label": path.name}
    return metrics, summary
