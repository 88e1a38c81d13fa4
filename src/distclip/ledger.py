"""What a run's config means for privacy: its noise multiplier, its channel and its ε ledger
(docs/algorithms.md §8, §9; the accounting choices are the library's).

Algorithms declare in the registry where their noise sits (``Algorithm.privacy``) and count their noisy
rounds with ``rules.releases(hp, steps)``; their ``Params`` hold the noise keys as a
:class:`~distclip.privacy.dp.DPNoise` group ``dp``. Every counted communication round of a private run is one
release, so ε at a logged step is the accountant's ε after ``comm_rounds`` rounds.

- ``local`` (clip-gd, clip-sgd, clip21, clip21-sgd2m): every message of client i has norm ≤ τ_i and leaves with
  noise std z·τ_i (:class:`~distclip.privacy.channel.LocalNoise`). Neighbouring inputs differ in **any** part of
  one client's data (local DP for the client's whole dataset, which covers each of its samples), so each
  message is a Gaussian mechanism of L2 sensitivity 2τ_i: the accountant composes multiplier z/2 over all
  rounds with q = 1. No amplification by minibatch subsampling is claimed (as in the Clip21-SGD2M paper: the
  client states carry past minibatches forward).
- ``central`` (dp-fedavg): client-level DP, one client added or removed (McMahan et al. 2018): the sum of
  clipped updates has sensitivity C and noise std z·C (z·C/m on the average over m = qN expected clients),
  multiplier z, sampling rate q (``rules.sample_rate``; Poisson sampling of clients).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .algorithms import Algorithm
from .engine.transport import Transport
from .errors import DistclipError
from .privacy import accountant
from .privacy.accountant import Accountant
from .privacy.channel import LocalNoise

SENSITIVITY = {"local": 2.0, "central": 1.0}
UNIT = {"local": "any change of one client's data (local DP; messages of norm <= tau, sensitivity 2 tau)",
        "central": "one client added or removed (client-level central DP; sum sensitivity C)"}


def _sample_rate(spec: Algorithm, hp: Any) -> float:
    rate = getattr(spec.rules, "sample_rate", None)
    return 1.0 if rate is None else rate(hp)


def resolve(spec: Algorithm, hp: Any, steps: int, n_clients: int) -> Any:
    """``hp`` with the noise multiplier calibrated to ``target_epsilon`` over a run of ``steps`` server steps
    (and whatever the rule derives from it: ``Params.with_noise(z, n_clients)``)."""
    if not spec.privacy:
        return hp
    dp = hp.dp
    z = dp.noise_multiplier
    if dp.target_epsilon is not None:
        rounds = spec.rules.releases(hp, steps)
        if rounds == 0:
            raise DistclipError(f"{spec.name} makes no noisy round in {steps} steps; lengthen the run "
                                "(run.steps or run.epochs) to calibrate for algorithm.target_epsilon")
        z = SENSITIVITY[spec.privacy] * accountant.calibrate(dp.target_epsilon, rounds, _sample_rate(spec, hp),
                                                             dp.delta, dp.accountant)
    if hasattr(hp, "with_noise"):
        return hp.with_noise(z, n_clients)
    return dataclasses.replace(hp, dp=dataclasses.replace(dp, noise_multiplier=z))


def ledger(spec: Algorithm, hp: Any, steps: int) -> Accountant | None:
    """The accountant of a private run of ``steps`` server steps (None when it adds no noise); ``hp`` as resolved."""
    if not spec.privacy or hp.dp.noise_multiplier == 0:
        return None
    dp = hp.dp
    return Accountant(dp.noise_multiplier, SENSITIVITY[spec.privacy], _sample_rate(spec, hp), dp.delta, dp.accountant,
                      UNIT[spec.privacy], spec.rules.releases(hp, steps))


def channel(spec: Algorithm, hp: Any, transport: Transport, seed: int) -> Transport:
    """The transport the rules talk through: noisy for local DP, ``transport`` itself otherwise."""
    if spec.privacy != "local" or hp.dp.noise_multiplier == 0:
        return transport
    return LocalNoise(transport, hp.dp.noise_multiplier * hp.tau, seed, hp.dp.secure_noise)


__all__ = ["SENSITIVITY", "UNIT", "channel", "ledger", "resolve"]
