"""distclip's algorithms inside Flower (``pip install 'distclip[flower]'``, Flower's Message API).

- :func:`server_app` / :class:`DistclipStrategy`: the ServerApp, which averages and counts the messages and
  evaluates the model (:mod:`distclip.flower.server`);
- :func:`client_app`: the ClientApp, one node per distclip client running the same rule modules
  (:mod:`distclip.flower.client`, :mod:`distclip.flower.node`, :mod:`distclip.flower.replay`);
- :func:`run_simulation`: both in Flower's simulation runtime, returning the simulator's rows.

The configuration is a distclip config; the same experiment runs in distclip's simulator, under torchrun, or
here, with the same trajectory (docs in README.md, section "Flower").
"""

from __future__ import annotations

try:
    import flwr  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the install
    from ..errors import DistclipError

    raise DistclipError("distclip.flower needs Flower: pip install 'distclip[flower]'") from e

from .apps import run_simulation, server_app
from .client import client_app
from .server import DistclipStrategy, FlowerRun

__all__ = ["DistclipStrategy", "FlowerRun", "client_app", "run_simulation", "server_app"]
