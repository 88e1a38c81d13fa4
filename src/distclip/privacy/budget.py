"""What a config means for privacy: the noise scale of a run, its channel and its ε ledger
(spec: algorithms.md §8, §9; the accounting choices are the library's).

Algorithms declare in the registry where their noise sits (``AlgorithmSpec.privacy``) and count their noisy
rounds with ``rules.releases(hp, steps)``; every counted communication round of a private run is one such
release, so ε at a logged step is the accountant's ε after ``comm_rounds`` rounds.

- ``local`` (clip-gd, clip-sgd, clip21, clip21-sgd2m): every message of client i has norm ≤ τ_i and leaves with
  noise std z·τ_i (:class:`~.channel.LocalNoise`). Neighbouring inputs differ in **any** part of one client's
  data (local DP for the client's whole dataset, which covers each of its samples), so each message is a
  Gaussian mechanism of L2 sensitivity 2τ_i: the accountant composes multiplier z/2 over all rounds with
  q = 1. No amplification by minibatch subsampling is claimed (as in the Clip21-SGD2M paper: the client
  states carry past minibatches forward).
- ``central`` (dp-fedavg): client-level DP, one client added or removed (McMahan et al. 2018): the sum of
  clipped updates has sensitivity C and noise std z·C (z·C/m on the average over m = qN expected clients),
  multiplier z, sampling rate q = ``client_rate`` (Poisson sampling of clients; 1 by default: all take part).
"""

from __future__ import annotations

import dataclasses

from ..algorithms import ALGORITHMS, AlgorithmSpec, Hyper
from ..config import Config
from ..engine.transport import Transport
from ..errors import DistclipError
from . import accountant, quantile
from .accountant import Accountant
from .channel import LocalNoise

SENSITIVITY = {"local": 2.0, "central": 1.0}
UNIT = {"local": "any change of one client's data (local DP; messages of norm <= tau, sensitivity 2 tau)",
        "central": "one client added or removed (client-level central DP; sum sensitivity C)"}


def _spec(cfg: Config) -> AlgorithmSpec:
    return ALGORITHMS[cfg.algorithm.name]


def resolve(cfg: Config, hp: Hyper, steps: int) -> Hyper:
    """``hp`` with the noise multiplier calibrated to ``target_epsilon`` over a run of ``steps`` server steps
    and the count noise σ_b resolved."""
    spec, a = _spec(cfg), cfg.algorithm
    if not spec.privacy:
        return hp
    z = a.noise_multiplier
    if a.target_epsilon is not None:
        rounds = spec.rules.releases(hp, steps)
        if rounds == 0:
            raise DistclipError(f"{a.name} makes no noisy round in {steps} steps; lengthen the run "
                                "(run.steps or run.epochs) to calibrate for algorithm.target_epsilon")
        z = SENSITIVITY[spec.privacy] * accountant.calibrate(a.target_epsilon, rounds, hp.client_rate, a.delta,
                                                             a.accountant)
    sigma_b = hp.count_noise
    if spec.privacy == "central" and a.adaptive_clip != "off":
        expected = cfg.partition.clients * a.client_rate
        sigma_b = a.count_noise if a.count_noise is not None else quantile.default_count_noise(z, expected)
        if z > 0 and z >= 2 * sigma_b:
            raise DistclipError(f"noise multiplier z = {z:.4g} must be below 2·count_noise = {2 * sigma_b:.4g} to "
                                f"leave noise for the update; raise algorithm.count_noise above {z / 2:.4g}")
    return dataclasses.replace(hp, noise_multiplier=z, count_noise=sigma_b, secure_noise=a.secure_noise)


def ledger(cfg: Config, hp: Hyper, steps: int) -> Accountant | None:
    """The accountant of a private run of ``steps`` server steps (None when it adds no noise); ``hp`` as resolved."""
    spec, a = _spec(cfg), cfg.algorithm
    if not spec.privacy or hp.noise_multiplier == 0:
        return None
    return Accountant(hp.noise_multiplier, SENSITIVITY[spec.privacy], hp.client_rate, a.delta, a.accountant,
                      UNIT[spec.privacy], spec.rules.releases(hp, steps))


def channel(cfg: Config, hp: Hyper, transport: Transport) -> Transport:
    """The transport the rules talk through: noisy for local DP, ``transport`` itself otherwise."""
    if _spec(cfg).privacy != "local" or hp.noise_multiplier == 0:
        return transport
    return LocalNoise(transport, hp.noise_multiplier * hp.tau, cfg.seed, hp.secure_noise)


__all__ = ["SENSITIVITY", "UNIT", "channel", "ledger", "resolve"]
