"""A run directory: what a run writes (config.toml, metrics.jsonl, summary.json, checkpoint.pt) and what a
resumed run reads back from it. Only the writing process (rank 0) touches the files."""

from __future__ import annotations

import datetime as _dt
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoint
from .config import Config, from_dict, to_toml
from .errors import DistclipError
from .metrics import read_metrics, write_json_atomic


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
    """Whether a checkpoint's config describes ``cfg``'s run, up to its length (``run.steps``)."""
    other = from_dict(tomllib.loads(config_toml))
    other.run.steps, other.run.epochs = cfg.run.steps, cfg.run.epochs
    return to_toml(other) == to_toml(cfg)


@dataclass
class Resumed:
    """What a directory holds of an earlier attempt at the same run."""

    payload: dict | None = None  # the checkpoint
    rows: list[dict[str, Any]] = field(default_factory=list)  # logged metrics
    label: str = ""

    @property
    def last_logged(self) -> int:
        return self.rows[-1]["step"] if self.rows else -1


def open_run(out: Path, cfg: Config, continuing: bool) -> Resumed:
    """Prepare ``out`` for ``cfg``'s run, read what a continued run left, and write config.toml."""
    prepare(out, continuing)
    found = Resumed()
    if continuing:
        found.payload = checkpoint.read(out)
        if found.payload is not None and not same_run(found.payload["config"], cfg):
            raise DistclipError(f"{out / checkpoint.NAME} was written with another config; "
                                "resume with the run's own config.toml")
        if (out / "metrics.jsonl").exists():
            found.rows = read_metrics(out / "metrics.jsonl")
        if (out / "summary.json").exists():
            found.label = json.loads((out / "summary.json").read_text()).get("label", "")
    (out / "config.toml").write_text(to_toml(cfg), encoding="utf-8")
    return found


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    write_json_atomic(out / "summary.json", summary)


def load_run(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Metrics and summary of a run directory written by :func:`distclip.runner.run`."""
    metrics = read_metrics(path / "metrics.jsonl")
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"label": path.name}
    return metrics, summary
