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
        self._f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                rows.append({k: float(v) if v in ("inf", "-inf", "nan") else v for k, v in row.items()})
    return rows


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())
