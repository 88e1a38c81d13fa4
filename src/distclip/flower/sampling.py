"""Flower's node sampling (``fraction-train``) against what each distclip algorithm allows.

A rule with partial participation samples its clients itself: DP-FedAvg's ``client_rate`` q draws S_r from
(seed, client, round) (:mod:`distclip.algorithms.dp_fedavg`), the same on every engine. Flower's fraction is
then that q: it must equal ``algorithm.client_rate``, and the nodes outside S_r answer the round with the zero
row the rule gives them, as in distclip's simulator (whose counters count every client's message). Every other
rule needs all N clients at every step (error-feedback memories, control variates and local models enter every
average), so a fraction below 1 is refused with one line.
"""

from __future__ import annotations

from ..algorithms import Algorithm
from ..config import Config
from ..errors import DistclipError


def check_fraction(spec: Algorithm, cfg: Config, fraction: float) -> None:
    """Accept Flower's ``fraction`` of nodes per round for ``cfg``'s algorithm, or raise one line."""
    if not 0 < fraction <= 1:
        raise DistclipError(f"fraction-train = {fraction} must be in (0, 1]")
    rate = getattr(cfg.algorithm.params, "client_rate", None)
    if rate is None:
        if fraction < 1:
            raise DistclipError(f"{spec.name} needs every client at every step (each client's state enters every "
                                "average); set fraction-train = 1")
    elif fraction != rate:
        raise DistclipError(f"{spec.name} samples its clients itself with algorithm.client_rate = {rate:g}; set "
                            f"fraction-train = algorithm.client_rate (both {fraction:g}, or both {rate:g})")
