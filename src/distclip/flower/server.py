"""The ServerApp side: :class:`DistclipStrategy` drives the nodes through a distclip run over a Flower ``Grid``.

Every node holds one client and a replica of the server state (as every rank does under torchrun, see
:mod:`distclip.engine.distributed`); the strategy is the all-reduce: at each exchange it receives one row per
client, averages them in client order (``torch.stack(rows).mean(0)``, the simulator's reduction), counts the
round with :class:`~distclip.engine.transport.CommCounter` exactly as the simulator does, and sends the average
back. At each logged step the nodes return ``model(state)``; the strategy checks that the replicas agree
bitwise and evaluates the model on its own copy of the problem (centralised evaluation, uncounted like the
simulator's logging). Rows and summary are the simulator's (``metrics.jsonl``, ``summary.json`` under ``out``).

A node that fails, or does not answer within ``run.timeout_s``, stops the run with one line naming the client:
the rules average over all N clients and each client's memory lives only on its node, so no exact run can go on
without it. Rows logged before are kept.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from torch import Tensor

from .. import ledger, rundir
from ..algorithms import ALGORITHMS
from ..config import Config, from_dict, load, to_toml
from ..engine.transport import CommCounter, InProcess
from ..errors import DistclipError
from ..metrics import MetricsWriter
from ..problems.kinds import build_problem
from ..runner import build_context, default_name, resolve_length
from ..version import __version__
from . import records
from .node import refuse_unsupported
from .sampling import check_fraction


@dataclass
class FlowerRun:
    """What a Flower run produced (as :class:`distclip.runner.RunResult`): rows, summary, final model."""

    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    model: Tensor


def logged_steps(steps: int, log_every: int) -> list[int]:
    """The steps :func:`distclip.engine.loop.train` logs: 0, every ``log_every``, and the last."""
    return [0, *(s for s in range(1, steps + 1) if s % log_every == 0 or s == steps)]


class DistclipStrategy:
    """Run the distclip experiment ``config`` (Config, dict, or TOML path) on the nodes of a Flower grid.

    ``fraction``: Flower's fraction of nodes per round (see :mod:`distclip.flower.sampling`); ``wait_s``:
    how long to wait for the N nodes to connect."""

    def __init__(self, config: Config | dict[str, Any] | str | Path, out: str | Path | None = None, *,
                 fraction: float = 1.0, wait_s: float = 120.0) -> None:
        cfg = config if isinstance(config, Config) else from_dict(config) if isinstance(config, dict) else load(config)
        if cfg.sweep:
            raise DistclipError("this config has [[sweep]] entries; give Flower one run (one entry's settings)")
        self.cfg, self.out, self.wait_s = cfg, None if out is None else Path(out), wait_s
        self.spec = ALGORITHMS[cfg.algorithm.name]
        check_fraction(self.spec, cfg, fraction)
        self.problem = build_problem(cfg)
        refuse_unsupported(cfg, self.problem)
        self.n = self.problem.n_clients
        self.ctx, self.facts = build_context(cfg, self.problem, InProcess(self.n, self.problem.x0().device))
        self.length = resolve_length(cfg, self.problem)
        self.accountant = ledger.ledger(self.spec, self.ctx.hp, self.length.steps)
        self.counter = CommCounter()
        self.toml = to_toml(cfg)

    # -- talking to the nodes ---------------------------------------------------------------------------
    def _exchange(self, grid: Grid, nodes: list[int], kind: str, contents: list[RecordDict]) -> list[RecordDict]:
        """Send one message per client, return the replies in client order (or stop with one line)."""
        timeout = self.cfg.run.timeout_s
        messages = [Message(c, dst_node_id=nid, message_type=kind) for c, nid in zip(contents, nodes, strict=True)]
        start = time.monotonic()
        replies = {m.metadata.src_node_id: m for m in grid.send_and_receive(messages, timeout=timeout)}
        out = []
        for client, nid in enumerate(nodes):
            m = replies.get(nid)
            if m is None:
                why = (f"did not answer within run.timeout_s = {timeout:g} s (its SuperNode hangs or died)"
                       if time.monotonic() - start >= timeout else "left the federation (its SuperNode stopped)")
                raise DistclipError(f"client {client} (node {nid}) {why}; the rules need every client, so the "
                                    "run stops")
            if m.has_error():
                raise DistclipError(f"client {client} (node {nid}) failed ({_last_line(m.error.reason)}); the rules "
                                    "need every client, so the run stops")
            meta = m.content.config_records["meta"]
            if meta["kind"] == "error":
                raise DistclipError(f"client {client}: {meta['error']}")
            out.append(m.content)
        return out

    def connect(self, grid: Grid) -> list[int]:
        """Wait for the N nodes, send each the config; the node ids in client order."""
        deadline = time.monotonic() + self.wait_s
        while len(ids := sorted(grid.get_node_ids())) < self.n:
            if time.monotonic() > deadline:
                raise DistclipError(f"{len(ids)} of {self.n} nodes connected after {self.wait_s:g} s: start one "
                                    "SuperNode per client (partition-id 0..N-1), or change partition.clients")
            time.sleep(0.1)
        if len(ids) > self.n:
            raise DistclipError(f"{len(ids)} nodes for {self.n} clients: run one SuperNode per client "
                                "(or set partition.clients to the number of nodes)")
        hello = RecordDict({"meta": ConfigRecord({"config": self.toml})})
        answers = self._exchange(grid, ids, "query", [hello] * self.n)
        by_client = {int(a.config_records["meta"]["client"]): nid for a, nid in zip(answers, ids, strict=True)}
        if sorted(by_client) != list(range(self.n)):
            raise DistclipError(f"the nodes are clients {sorted(by_client)}; give the SuperNodes partition-id "
                                f"0..{self.n - 1}, each once")
        return [by_client[c] for c in range(self.n)]

    def advance(self, grid: Grid, nodes: list[int], until: int) -> tuple[Tensor, dict[str, list[int]]]:
        """Drive every node to the model at step ``until``, serving each exchange; (model, per-client tallies)."""
        result = None
        while True:
            replies = self._exchange(grid, nodes, "train", [records.request(until, result)] * self.n)
            metas = [r.config_records["meta"] for r in replies]
            what = {(m["kind"], int(m["step"]), int(m["stage_pos"]), tuple(m["shape"])) for m in metas}
            if len(what) > 1:
                raise DistclipError(f"the nodes disagree on the exchange at step {metas[0]['step']} "
                                    f"({sorted(what)}); restart the run")
            kind, meta = metas[0]["kind"], metas[0]
            rows = [records.row(r) for r in replies]
            if kind == "model":
                if any(not torch.equal(rows[0], r) for r in rows[1:]):
                    raise DistclipError(f"the server state replicated on the nodes differs at step {until}; "
                                        "every node must run the same distclip and torch versions")
                tallies = {k: [int(m[k]) for m in metas] for k in ("count_now", "count_sum", "steps_since_log",
                                                                    "last_clip")}
                return rows[0], tallies
            if kind == "mean":
                sparse_k = None if int(meta["sparse_k"]) < 0 else int(meta["sparse_k"])
                self.counter.record(rows[0].numel(), rows[0].element_size(), bool(meta["down"]), sparse_k)
            result = rows[0] if kind == "broadcast" else torch.stack(rows).mean(dim=0)

    # -- the run ----------------------------------------------------------------------------------------
    def _row(self, x: Tensor, tallies: dict[str, list[int]], step: int, wall: float) -> dict[str, Any]:
        """The simulator's metrics row at ``step`` (see :func:`distclip.engine.loop.train`); ``wall_s`` here is the
        ServerApp's time since the start, messages included."""
        g = self.problem.grad(x)
        now, total, since = sum(tallies["count_now"]), sum(tallies["count_sum"]), tallies["steps_since_log"][0]
        row = {"step": step, "loss": self.problem.loss(x), "grad_norm_sq": float(g @ g), **self.counter.as_dict(),
               "clip_frac": now / self.n, "clip_frac_mean": total / (self.n * since) if since else now / self.n,
               "wall_s": wall, **self.problem.extra_metrics(x), "epoch": step / self.length.steps_per_epoch}
        if self.accountant is not None:
            row["epsilon"] = self.accountant.epsilon(row["comm_rounds"])
        return row

    def start(self, grid: Grid) -> FlowerRun:
        """Run the experiment to its end; write ``out``'s files as it goes."""
        writer = None
        if self.out is not None:
            rundir.prepare(self.out, continuing=False)
            rundir.write_config(self.out, self.cfg)
            writer = MetricsWriter(self.out / "metrics.jsonl")
        summary: dict[str, Any] = {
            "label": default_name(self.cfg), "algorithm": self.cfg.algorithm.name, "version": __version__,
            "torch": torch.__version__, "engine": "Flower", "world_size": self.n, "n_clients": self.n,
            "steps": self.length.steps, "steps_per_epoch": self.length.steps_per_epoch, **self.facts}
        rows: list[dict[str, Any]] = []
        t0, x, last_clip = time.perf_counter(), self.ctx.x0, -1
        try:
            nodes = self.connect(grid)
            for step in logged_steps(self.length.steps, self.length.log_every):
                x, tallies = self.advance(grid, nodes, step)
                last_clip = max(tallies["last_clip"])
                rows.append(self._row(x, tallies, step, time.perf_counter() - t0))
                if writer is not None:
                    writer.write(rows[-1])
                _report(summary["label"], rows[-1], self.length.steps)
        except DistclipError as e:
            summary.update(status="failed", error=str(e), final=rows[-1] if rows else None)
            if self.out is not None:
                rundir.write_summary(self.out, summary)
                raise DistclipError(f"{e} (metrics up to step {rows[-1]['step'] if rows else '-'} kept in "
                                    f"{self.out})") from None
            raise
        finally:
            if writer is not None:
                writer.close()
        summary.update(status="ok", final=rows[-1], total_s=time.perf_counter() - t0, last_clip_step=last_clip,
                       steps_done=self.length.steps)
        if self.out is not None:
            rundir.write_summary(self.out, summary)
        return FlowerRun(rows, summary, x)


def _report(label: str, row: dict[str, Any], steps: int) -> None:
    """One line per logged step on the ServerApp's stderr (what ``flwr run --stream`` shows)."""
    extra = "".join(f", {k} {row[k]:.4f}" for k in ("test_acc", "test_loss") if k in row)
    print(f"distclip: {label}: step {row['step']}/{steps}, loss {row['loss']:.4f}{extra}, comm_rounds "
          f"{row['comm_rounds']}, floats_up {row['floats_up']}", file=sys.stderr, flush=True)


def _last_line(text: str) -> str:
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no reason given"
