"""Run outputs: ``metrics.jsonl`` (one JSON object per logged step) and ``summary.json``.

Lines are appended and flushed as they are logged, so an interrupted or failed run keeps every
step it logged; files are never truncated or rewritten in place (``summary.json`` is replaced
atomically).
"""

from __future__ import annotations

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
    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        try:
            self._f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
            self._f.flush()
        except OSError as e:  # a full disk, a vanished mount: everything before this row is on disk
            raise DistclipError(f"cannot write {self.path} at step {record.get('step')} ({e.strerror or e}); the rows "
                                "before it are kept: free space, then --resume the run") from None

    def close(self) -> None:
        self._f.close()


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
