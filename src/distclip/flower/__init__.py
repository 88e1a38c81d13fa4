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

from importlib import import_module
from typing import Any

from ..errors import DistclipError

_EXPORTS = {"DistclipStrategy": "server", "FlowerRun": "server", "client_app": "client", "run_simulation": "apps",
            "server_app": "apps"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The Flower-facing names, imported on first use (the replay core in ``node``/``replay`` needs no Flower)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = import_module(f"{__name__}.{_EXPORTS[name]}")
    except ImportError as e:
        if e.name is None or not e.name.startswith(("flwr", "ray")):
            raise
        raise DistclipError("distclip.flower needs Flower: pip install 'distclip[flower]'") from None
    return getattr(module, name)
