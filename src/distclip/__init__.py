"""distclip: distributed and federated training with gradient clipping (CELGC, Clip21, EPISODE, DP-FedAvg, ...).

``distclip.run(config)`` runs one experiment and ``distclip.run_sweep`` every run of a sweep (imported on first
use, so ``import distclip`` and ``distclip --version`` stay cheap).
"""

from typing import Any

from .errors import DistclipError
from .version import __version__

__all__ = ["DistclipError", "RunResult", "__version__", "run", "run_sweep"]


def __getattr__(name: str) -> Any:
    if name in ("RunResult", "run", "run_sweep"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'distclip' has no attribute {name!r}")
