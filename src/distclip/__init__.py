"""distclip: distributed and federated training with gradient clipping (CELGC, Clip21, EF21, baselines)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("distclip")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

from .errors import DistclipError  # noqa: E402
from .runner import RunResult, run, run_sweep  # noqa: E402

__all__ = ["DistclipError", "RunResult", "__version__", "run", "run_sweep"]
