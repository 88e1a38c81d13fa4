"""Run outputs: ``metrics.jsonl`` (one JSON object per logged step), ``metrics.csv`` (the same rows),
optional TensorBoard event files and ``summary.json``.

Lines are appended and flushed as they are logged, so an interrupted or failed run keeps every
step it logged; files are never truncated or rewritten in place (``summary.json`` and, when a new column
appears or a run is resumed, ``metrics.csv`` are replaced atomically).

``metrics.csv`` holds exactly the rows of ``metrics.jsonl``: its columns are the union of their keys in order of
first appearance, a key a row lacks is an empty cell, inf and nan are written as such. A resumed run rewrites it
from the (repaired) jsonl before appending, so the two never disagree.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import DistclipError


def _clean(v: Any) -> Any:
    """JSON has no inf/nan: write them as strings that :func:`read_metrics` turns back into floats."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsWriter:
    """Appends each logged row to ``metrics.jsonl`` and ``metrics.csv`` beside it, and with ``tensorboard`` to
    TensorBoard event files in ``tensorboard/`` beside it (one scalar per numeric key, at the row's step)."""

    def __init__(self, path: Path, tensorboard: bool = False) -> None:
        self.path = path
        self.csv_path = path.with_suffix(".csv")
        earlier = read_metrics(path) if path.exists() else []  # a resumed run: the jsonl is already repaired
        self.columns: list[str] = []
        for row in earlier:
            self.columns += [k for k in row if k not in self.columns]
        self._rewrite_csv(earlier)
        self._f = path.open("a", encoding="utf-8")
        self._csv = self.csv_path.open("a", encoding="utf-8", newline="")
        self._tb = _tensorboard(path.parent / "tensorboard", earlier) if tensorboard else None

    def write(self, record: dict[str, Any]) -> None:
        try:
            self._f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
            self._f.flush()
            new = [k for k in record if k not in self.columns]
            if new:  # a column appears: rewrite the CSV with it (rows so far from the jsonl, this one included)
                self.columns += new
                self._csv.close()
                self._rewrite_csv(read_metrics(self.path))
                self._csv = self.csv_path.open("a", encoding="utf-8", newline="")
            else:
                self._csv.write(_csv_lines(self.columns, [record]))
                self._csv.flush()
        except OSError as e:  # a full disk, a vanished mount: everything before this row is on disk
            raise DistclipError(f"cannot write {self.path} at step {record.get('step')} ({e.strerror or e}); the rows "
                                "before it are kept: free space, then --resume the run") from None
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, record["step"])
            self._tb.flush()

    def _rewrite_csv(self, rows: list[dict[str, Any]]) -> None:
        write_atomic(self.csv_path, (",".join(self.columns) + "\n" if self.columns else "").encode()
                     + _csv_lines(self.columns, rows).encode())

    def close(self) -> None:
        self._f.close()
        self._csv.close()
        if self._tb is not None:
            self._tb.close()


def _csv_lines(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for row in rows:
        w.writerow(["" if row.get(k) is None else row[k] for k in columns])
    return buf.getvalue()


def _tensorboard(log_dir: Path, earlier: list[dict[str, Any]]) -> Any:
    """A SummaryWriter; a resumed run purges events after its last row in the jsonl (logged before a crash)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DistclipError("run.tensorboard = true needs the tensorboard package: pip install 'distclip[tensorboard]' "
                            "(or pip install tensorboard), or set run.tensorboard = false") from None
    purge = earlier[-1]["step"] + 1 if earlier else None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge)


def read_metrics(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """The rows of ``path``. A torn last line (a crash or a full disk mid-write) is an error, or with ``repair``
    is cut off the file, keeping every whole line (see :func:`repair_tail`)."""
    if repair:
        repair_tail(path)
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DistclipError(f"{path} line {number} is not a JSON row (a torn write?); resume the run to "
                                    "repair a torn last line, or delete the file") from None
            rows.append({k: float(v) if v in ("inf", "-inf", "nan") else v for k, v in row.items()})
    return rows


def repair_tail(path: Path) -> int:
    """Cut a torn last line off ``path`` (one that does not end in a newline or is not JSON); return the bytes
    removed (0 when the file ends cleanly). Whole lines before it are kept as they are."""
    data = path.read_bytes()
    if not data:
        return 0
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    keep = len(body) + 1 if body else 0
    try:
        json.loads(last)
        if data.endswith(b"\n"):
            return 0
        keep = len(data)  # a whole row that only lacks its newline: keep it and add the newline
        with path.open("ab") as f:
            f.write(b"\n")
        return 0
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    with path.open("r+b") as f:
        f.truncate(keep)
    return len(data) - keep


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, rename over ``path`` (the old file stays whole
    when anything fails)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise DistclipError(f"cannot write {path} ({e.strerror or e}); free space or choose another --out") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise DistclipError(f"cannot write {path} ({e.strerror or e}); the previous {path.name} is kept: free "
                            "space, then --resume the run") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())
