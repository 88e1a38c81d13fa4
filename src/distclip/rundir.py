"""A run directory: what a run writes (config.toml, metrics.jsonl, summary.json, checkpoint.pt) and what a
resumed run reads back from it. Only the writing process (rank 0) touches the files."""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoint
from .config import Config, from_dict, to_toml
from .errors import DistclipError
from .metrics import read_metrics, repair_tail, write_json_atomic

LOCK = ".lock"


def timestamped(base: str | Path, name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(base) / f"{name}-{stamp}"


def prepare(out: Path, continuing: bool) -> Path:
    """Create ``out``; a fresh run refuses a directory that already holds a run."""
    if not continuing and (out / "metrics.jsonl").exists():
        raise DistclipError(f"{out} already holds a run (metrics.jsonl); choose another --out, or --resume it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DistclipError(f"cannot create output directory {out}: {e.strerror}; choose another --out") from None
    return out


def same_run(config_toml: str, cfg: Config) -> bool:
    """Whether a checkpoint's config describes ``cfg``'s run, up to its length (``run.steps``) and logging."""
    doc = tomllib.loads(config_toml)
    doc.setdefault("run", {})["tensorboard"] = cfg.run.tensorboard  # how it is logged, not what it computes
    other = from_dict(doc)
    other.run.steps, other.run.epochs = cfg.run.steps, cfg.run.epochs
    return to_toml(other) == to_toml(cfg)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    """An exclusive lock on a run directory for the whole run (``flock`` on DIR/.lock, holding the pid).

    The kernel drops the lock of a process that dies, so a directory left by kill -9 is taken over (saying so);
    a second command on a directory in use stops with one line."""

    def __init__(self, out: Path) -> None:
        path = out / LOCK
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DistclipError(f"cannot write in {out}: {e.strerror}; choose another --out") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise DistclipError(f"{out} is in use by another distclip process (pid {holder}); wait for it to end "
                                "or choose another --out") from None
        previous = os.pread(self.fd, 32, 0).decode(errors="replace").strip()
        if previous.isdigit() and int(previous) != os.getpid() and not _running(int(previous)):
            print(f"distclip: {out} was locked by process {previous}, which is gone (killed?); taking it over",
                  file=sys.stderr)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


@dataclass
class Resumed:
    """What a directory holds of an earlier attempt at the same run (and the directory's lock)."""

    payload: dict | None = None  # the checkpoint
    rows: list[dict[str, Any]] = field(default_factory=list)  # logged metrics
    label: str = ""
    lock: Lock | None = None
    last_logged: int = -1  # the last step metrics.jsonl holds (rows after it are written; before, not again)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def open_run(out: Path, cfg: Config, continuing: bool, explicit: bool, steps: int) -> Resumed:
    """Prepare and lock ``out`` for ``cfg``'s run of ``steps`` steps and read what a continued run left.

    ``explicit``: the user asked to resume (a torchrun restart without a checkpoint reruns from step 0, which
    is deterministic and writes only the rows after the last logged one)."""
    prepare(out, continuing)
    found = Resumed(lock=Lock(out))
    try:
        if continuing:
            _read_earlier(out, cfg, found, explicit, steps)
        elif (out / checkpoint.NAME).exists():
            raise DistclipError(f"{out} holds a checkpoint of another run; choose another --out, or --resume it")
    except BaseException:
        found.release()
        raise
    return found


def _read_earlier(out: Path, cfg: Config, found: Resumed, explicit: bool, steps: int) -> None:
    metrics = out / "metrics.jsonl"
    found.payload = checkpoint.read(out)
    if found.payload is not None and not same_run(found.payload["config"], cfg):
        raise DistclipError(f"{out / checkpoint.NAME} was written with another config; "
                            "resume with the run's own config.toml")
    if metrics.exists():
        cut = repair_tail(metrics)
        if cut:
            print(f"distclip: {metrics} ended in a torn line ({cut} bytes, a crash or a full disk); removed it and "
                  "kept every whole line", file=sys.stderr)
        found.rows = read_metrics(metrics)
        found.last_logged = found.rows[-1]["step"] if found.rows else -1
    at = None if found.payload is None else found.payload["progress"]["step"]
    if at is not None and at > steps:
        raise DistclipError(f"run.steps = {steps} is below the checkpoint's step {at}; give run.steps >= {at}")
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
        found.label = summary.get("label", "")
        if explicit and summary.get("status") == "ok" and summary.get("steps_done", -1) >= steps:
            raise DistclipError(f"{out} holds a finished run ({summary.get('steps_done')} steps); nothing to resume "
                                "(to run it longer: --resume DIR --set run.steps=MORE)")
    if at is not None and not found.rows:
        raise DistclipError(f"{out} has a checkpoint at step {at} but its metrics.jsonl is missing or empty; "
                            "its logged rows are gone: start afresh in another --out")
    if at is None and found.rows and explicit:
        raise DistclipError(f"{out} has no {checkpoint.NAME} to resume from (metrics end at step "
                            f"{found.last_logged}); start afresh in another --out, with --checkpoint-every N")


def write_config(out: Path, cfg: Config) -> None:
    """config.toml: the resolved config, which reruns the run (written once the run is known to start)."""
    (out / "config.toml").write_text(to_toml(cfg), encoding="utf-8")


def remove_stub(out: Path) -> None:
    """Remove a sweep directory that holds nothing but its sweep.toml and empty (or lock-only) run folders."""
    for sub in out.iterdir():
        if sub.is_dir() and {p.name for p in sub.iterdir()} <= {LOCK, "config.toml"}:
            for p in sub.iterdir():
                p.unlink()
            sub.rmdir()
    (out / "sweep.toml").unlink(missing_ok=True)
    if not any(out.iterdir()):
        out.rmdir()


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    write_json_atomic(out / "summary.json", summary)


def load_run(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Metrics and summary of a run directory written by :func:`distclip.runner.run`."""
    metrics = read_metrics(path / "metrics.jsonl")
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"label": path.name}
    return metrics, summary
