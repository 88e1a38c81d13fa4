"""The differential-privacy keys a private rule holds, and the checks that make its messages private
(docs/algorithms.md §5, §8, §9).

:class:`DPNoise` is the group of ``[algorithm]`` keys of every private rule: the noise multiplier z (or an
ε target that calibrates it), δ, the accountant and the noise source. Where the noise is added and what
its scale means is the rule's own business (local noise z·τ_i on each message, or z·C/m on an average);
:func:`check_local_dp` is what local noise needs of a rule's messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import DistclipError
from ..schema import choice, in_range, key, positive
from .accountant import KINDS


@dataclass(frozen=True)
class DPNoise:
    noise_multiplier: float = key(0.0, "DP noise multiplier z >= 0 (0: no noise); see the algorithm for its scale")
    target_epsilon: float | None = key(None, "calibrate noise_multiplier so that ε at the end of the run is this")
    delta: float = key(1e-5, "DP δ at which ε is reported, in (0, 1)")
    accountant: str = key("rdp", "rdp | prv (Opacus accountants)")
    secure_noise: bool = key(False, "draw DP noise from OS entropy (not reproducible)")

    @property
    def private(self) -> bool:
        return self.noise_multiplier > 0 or self.target_epsilon is not None

    def validate(self, cfg: Any) -> None:
        if not (0 <= self.noise_multiplier < math.inf):
            raise DistclipError(f"algorithm.noise_multiplier = {self.noise_multiplier} must be a finite number >= 0")
        if self.target_epsilon is not None:
            if self.noise_multiplier > 0:
                raise DistclipError("give algorithm.noise_multiplier or algorithm.target_epsilon (calibrates it), "
                                    "not both")
            positive("algorithm.target_epsilon", self.target_epsilon, allow_inf=False)
            if cfg.run.steps == 0:
                raise DistclipError("algorithm.target_epsilon needs run.steps > 0 to calibrate the noise over")
        in_range("algorithm.delta", self.delta, 0, 1, closed="()")
        choice("algorithm.accountant", self.accountant, KINDS)


def check_local_dp(name: str, dp: DPNoise, tau: float | list[float] | None, clip: str, *,
                   clip_at: str = "client", official: bool = False, init: str | None = None) -> None:
    """With local noise every message must be clipped to a finite norm τ_i (its sensitivity)."""
    if not dp.private:
        return
    if clip_at != "client" or official:
        raise DistclipError(f"{name} with DP noise needs clip_at = 'client' and official = false: every "
                            "message must be clipped")
    if init == "grad":
        raise DistclipError(f"{name} with DP noise cannot use init = 'grad' (unclipped first message); "
                            "use clip_grad or zero")
    if clip == "coordinate":
        raise DistclipError("DP noise needs a norm-bounded message; use clip = 'norm' or 'soft'")
    if tau is None or any(math.isinf(t) for t in (tau if isinstance(tau, list) else [tau])):
        raise DistclipError(f"{name} with DP noise needs a finite algorithm.tau (the noise std is z·tau)")
