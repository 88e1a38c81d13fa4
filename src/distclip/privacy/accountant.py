"""ε of a run after r noisy rounds, from Opacus' accountants (docs/algorithms.md §9, library choice).

Each round of a private run is one Gaussian mechanism with noise multiplier z (noise std / sensitivity)
applied with sampling rate q; the accountant composes r of them and returns ε at the configured δ
(``rdp``: Rényi DP, Mironov 2017 with the subsampled-Gaussian bound of Mironov et al. 2019; ``prv``: the
privacy-loss-random-variable accountant of Gopi et al. 2021, tighter, slower). No formula is written
here: the numbers are Opacus' own (``RDPAccountant``, ``PRVAccountant``, ``get_noise_multiplier``).
Opacus is imported on first use, so runs without noise do not pay for it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

KINDS = ("rdp", "prv")


def _accountant(kind: str) -> Any:
    from opacus.accountants import PRVAccountant, RDPAccountant

    return {"rdp": RDPAccountant, "prv": PRVAccountant}[kind]()


@lru_cache(maxsize=4096)
def epsilon(rounds: int, noise_multiplier: float, sample_rate: float, delta: float, kind: str = "rdp") -> float:
    """ε after ``rounds`` Gaussian mechanisms with multiplier z, sampling rate q, at δ (0 rounds: 0; z = 0: inf)."""
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    acc = _accountant(kind)
    acc.history = [(noise_multiplier, sample_rate, rounds)]
    with warnings.catch_warnings(), np.errstate(divide="ignore"):  # PRV takes log(1 - q) = -inf at q = 1
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(acc.get_epsilon(delta))


def calibrate(target_epsilon: float, rounds: int, sample_rate: float, delta: float, kind: str = "rdp") -> float:
    """The noise multiplier z whose ε after ``rounds`` is just below ``target_epsilon`` (Opacus' bisection)."""
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                          sample_rate=sample_rate, steps=rounds, accountant=kind))


@dataclass(frozen=True)
class Accountant:
    """The privacy ledger of one run: ε as a function of the noisy rounds done so far.

    ``noise_multiplier`` is z of the noise as configured (std z·τ per message, or z·C on the sum);
    ``sensitivity`` is the L2 sensitivity in units of that threshold, so the accountant sees z / sensitivity.
    """

    noise_multiplier: float
    sensitivity: float
    sample_rate: float
    delta: float
    kind: str
    unit: str  # what neighbouring inputs differ in (for the report)
    rounds: int  # noisy rounds the run will do

    @property
    def effective_multiplier(self) -> float:
        return self.noise_multiplier / self.sensitivity

    def epsilon(self, rounds: int) -> float:
        return epsilon(rounds, self.effective_multiplier, self.sample_rate, self.delta, self.kind)

    def describe(self) -> dict[str, Any]:
        return {"noise_multiplier": self.noise_multiplier, "sensitivity": self.sensitivity,
                "effective_multiplier": self.effective_multiplier, "sample_rate": self.sample_rate,
                "delta": self.delta, "accountant": self.kind, "unit": self.unit, "rounds": self.rounds,
                "epsilon": self.epsilon(self.rounds)}
