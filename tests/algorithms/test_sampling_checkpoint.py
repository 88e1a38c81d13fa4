"""Checkpoints with client sampling (docs/algorithms.md §13) and the clip fraction over participants.

A run cut by an exception and resumed from its checkpoint logs exactly the rows of the uncut run: the sampling
wrapper's store, rounds and cohort-sized state come back bit for bit, on the device or the host, also when the
checkpoint falls inside a round (local steps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from rules_harness import logreg_doc

from distclip import checkpoint, config, rng, runner
from distclip.algorithms import ALGORITHMS
from distclip.engine.cohort import Sampled
from distclip.engine.transport import InProcess
from distclip.metrics import read_metrics


def doc(name: str, sampling: dict | None, batch: int = 0, **alg: Any) -> dict:
    d = logreg_doc(name, batch=batch, clients=7, steps=24, **alg)
    d["run"].update(log_every=2, checkpoint_every=5)  # 5: inside a round of 2 or 3 local steps
    return d if sampling is None else {**d, "sampling": sampling}


CASES = {
    "ef21-topk-fixed": doc("ef21", {"scheme": "fixed", "clients": 3}, lr=0.5, k=2),
    "clip21-poisson-host": doc("clip21", {"scheme": "poisson", "rate": 0.5, "state": "host"}, lr=0.5, tau=0.05),
    "scaffold-fixed-host": doc("scaffold", {"scheme": "fixed", "clients": 3, "state": "host"}, batch=8, lr=0.5,
                               local_steps=3),
    "celgc-momentum-poisson": doc("celgc", {"scheme": "poisson", "rate": 0.4}, batch=8, lr=1.0, gamma=0.05,
                                  local_steps=2, momentum=0.9),
    "local-sgd-fixed": doc("local-sgd", {"scheme": "fixed", "clients": 2}, batch=8, lr=0.5, local_steps=3),
    "dp-fedavg-client-rate": doc("dp-fedavg", None, batch=8, lr=0.5, tau=0.05, local_steps=2, client_rate=0.6,
                                 momentum=0.5, noise_multiplier=1.0),
}


def cut_at(monkeypatch: pytest.MonkeyPatch, name: str, step: int) -> None:
    """The rule raises at its first step >= ``step`` (Poisson rounds without participants run no rule step)."""
    rules = ALGORITHMS[name].rules
    original = rules.step

    def step_fn(state: Any, ctx: Any, t: int) -> Any:
        if t >= step:
            raise KeyboardInterrupt
        return original(state, ctx, t)

    monkeypatch.setattr(rules, "step", step_fn)


def strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


@pytest.mark.parametrize("label", list(CASES))
def test_resume_with_sampling_is_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str) -> None:
    d = CASES[label]
    full = runner.run(config.from_dict(d), tmp_path / "full")
    with monkeypatch.context() as m:
        cut_at(m, d["algorithm"]["name"], 17)
        with pytest.raises(KeyboardInterrupt):
            runner.run(config.from_dict(d), tmp_path / "cut")
    resumed = runner.run(config.from_dict(d), tmp_path / "cut", resume=True)
    assert resumed.summary["resumed_from"] == 15
    assert strip(read_metrics(tmp_path / "cut" / "metrics.jsonl")) == strip(full.metrics)
    assert torch.equal(resumed.model, full.model)
    assert resumed.summary["last_clip_step"] == full.summary["last_clip_step"]


def test_the_checkpoint_holds_the_store_of_every_client_and_the_cohort_rows(tmp_path: Path) -> None:
    d = CASES["scaffold-fixed-host"]
    runner.run(config.from_dict({**d, "run": {**d["run"], "steps": 5}}), tmp_path / "r")
    payload = checkpoint.read(tmp_path / "r")
    assert payload is not None
    own = payload["sampling"]
    assert (own["round"], own["kept_round"]) == (1, 1)  # step 5 is inside round 1 (steps 3, 4, 5)
    assert own["store"]["ci"].shape[0] == 7  # every client's control variate
    assert payload["state"]["X"].shape[0] == 3  # the cohort's local models only


def test_a_checkpoint_without_sampling_does_not_fit_a_sampled_run(tmp_path: Path) -> None:
    d = CASES["ef21-topk-fixed"]
    plain = {k: v for k, v in d.items() if k != "sampling"}
    runner.run(config.from_dict({**plain, "run": {**plain["run"], "steps": 5}}), tmp_path / "r")
    cfg = config.from_dict(d)
    problem = runner.build_problem(cfg)
    ctx, _ = runner.build_context(cfg, problem, InProcess(problem.n_clients))
    rules = runner.sampled_rules(cfg, ALGORITHMS["ef21"], ctx.hp, problem)
    assert isinstance(rules, Sampled)
    with pytest.raises(Exception, match="without client sampling"):
        checkpoint.restore(checkpoint.read(tmp_path / "r"), rules.rules, ctx.transport, ctx.x0.device, problem,
                           rules, ctx)


def test_clip_frac_is_over_the_participants() -> None:
    """τ tiny: every message is clipped, so each fraction is 1 whenever someone took part (÷ N would give |S|/N)."""
    d = logreg_doc("clip-gd", clients=7, steps=12, lr=0.5, tau=1e-9)
    d["run"]["log_every"] = 3
    fixed = runner.run({**d, "sampling": {"scheme": "fixed", "clients": 2}})
    assert [r["clip_frac"] for r in fixed.metrics[1:]] == [1.0] * 4
    assert [r["clip_frac_mean"] for r in fixed.metrics[1:]] == [1.0] * 4
    poisson = runner.run({**d, "sampling": {"scheme": "poisson", "rate": 0.15}})
    sizes = [len(rng.cohort(3, t, 7, rate=0.15)) for t in range(12)]  # one step per round
    assert 0 in sizes and max(sizes) > 0  # both kinds of round occur
    for row in poisson.metrics[1:]:
        t = row["step"]
        assert row["clip_frac"] == (1.0 if sizes[t - 1] else 0.0)
        assert row["clip_frac_mean"] == (1.0 if any(sizes[t - 3:t]) else 0.0)
