"""Flower's node sampling (``fraction-train``) against distclip's client sampling.

Client sampling in distclip is the engine's (``[sampling]``, or DP-FedAvg's ``client_rate``:
:mod:`distclip.engine.cohort`, docs/algorithms.md §13): a round's cohort computes and sends, the others keep
their state and receive nothing, and the per-client state of the absent clients is held by the engine's store.
In Flower every node holds its own client and a replica of the server state, so a node left out of a round
would have to catch up on the averages it missed; that is not built. Until it is, a run in Flower has every
client in every round: ``fraction-train`` must be 1, and a config with client sampling is refused with one line.
"""

from __future__ import annotations

from ..algorithms import Algorithm
from ..config import Config
from ..errors import DistclipError


def check_fraction(spec: Algorithm, cfg: Config, fraction: float) -> None:
    """Accept Flower's ``fraction`` of nodes per round for ``cfg``, or raise one line."""
    if not 0 < fraction <= 1:
        raise DistclipError(f"fraction-train = {fraction} must be in (0, 1]")
    if fraction < 1:
        raise DistclipError(f"{spec.name} in Flower needs every client in every round (a node's replica of the server "
                            "state follows every average); set fraction-train = 1, or sample in distclip run")
    own = getattr(spec.rules, "own_sampling", None)
    if cfg.sampling.active or (own is not None and own(cfg.algorithm.params) is not None):
        raise DistclipError("client sampling ([sampling], or DP-FedAvg's client_rate < 1) is not supported in "
                            "Flower yet; run it with distclip run, or set client_rate = 1 and remove [sampling]")
