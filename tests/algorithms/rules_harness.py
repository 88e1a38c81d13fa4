"""Shared by the algorithm tests: the small quadratic instance, config builders, and a driver that runs
a rule module's init/step directly (no engine loop), keeping its state."""

from __future__ import annotations

from typing import Any

import torch

from distclip import config, runner
from distclip.algorithms import ALGORITHMS
from distclip.engine.transport import InProcess

F64 = torch.float64

# three clients in d = 2: f_i(x) = ½ c_i ‖x − a_i‖²
A3 = [[1.0, 2.0], [-2.0, 0.5], [3.0, -1.0]]
C3 = [1.0, 2.0, 0.5]
X0 = [0.5, -0.5]


def quad_doc(name: str, a: list[list[float]] = A3, c: list[float] | None = C3, x0: Any = X0,
             steps: int = 5, **alg: Any) -> dict[str, Any]:
    """A config of algorithm ``name`` on the quadratics ``a`` (curvatures ``c``) from ``x0``."""
    problem: dict[str, Any] = {"kind": "quadratic", "centres": a, "x0": x0}
    if c is not None:
        problem["curvatures"] = c
    return {"problem": problem, "algorithm": {"name": name, **alg}, "run": {"steps": steps}}


def logreg_doc(name: str, batch: int = 0, clients: int = 4, steps: int = 20, seed: int = 3,
               **alg: Any) -> dict[str, Any]:
    """A config of algorithm ``name`` on label-sorted breast-cancer logistic regression (λ = 0.1)."""
    return {"seed": seed, "problem": {"kind": "logreg", "dataset": "breast-cancer_scale", "lambda": 0.1},
            "partition": {"clients": clients, "scheme": "sorted"}, "algorithm": {"name": name, **alg},
            "run": {"steps": steps, "batch_size": batch}}


class Driver:
    """init/step a rule module directly, keeping the state of every step."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.cfg = config.from_dict(doc)
        self.problem = runner.build_problem(self.cfg)
        self.transport = InProcess(self.problem.n_clients)
        self.ctx, self.facts = runner.build_context(self.cfg, self.problem, self.transport)
        self.rules = ALGORITHMS[self.cfg.algorithm.name].rules
        self.state, self.info = self.rules.init(self.ctx)
        self.t = 0

    def step(self, times: int = 1) -> Any:
        for _ in range(times):
            self.state, self.info = self.rules.step(self.state, self.ctx, self.t)
            self.t += 1
        return self.state

    def model(self) -> torch.Tensor:
        return self.rules.model(self.state, self.ctx)

    @property
    def counter(self) -> dict[str, int]:
        return self.transport.counter.as_dict()
