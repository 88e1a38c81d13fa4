"""Step-size schedules: η and γ decay together (threshold γ/η constant), applied by the engine loop."""

import math

import pytest
import torch

from distclip import run
from distclip.algorithms import celgc
from distclip.algorithms.base import scaled
from distclip.errors import DistclipError
from distclip.schedule import StepSize

TOY = {"problem": {"kind": "quadratic", "centres": [3.0, -3.0], "x0": 1.0}, "run": {"steps": 4}}


def test_factors():
    m = StepSize("milestones", [2, 5], 0.1, 10)
    assert [m.factor(t) for t in (0, 1, 2, 4, 5, 9)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    c = StepSize("cosine", total=10)
    assert c.factor(0) == 1.0 and c.factor(5) == pytest.approx(0.5) and c.factor(10) == pytest.approx(0.0)
    assert StepSize().factor(123) == 1.0


def test_joint_decay_keeps_the_threshold():
    hp = celgc.Params(lr=30.0, tau=torch.tensor([0.25]), gamma=torch.tensor([7.5]))
    low = scaled(hp, 0.1)
    assert low.lr == pytest.approx(3.0) and float(low.gamma[0]) == pytest.approx(0.75)
    assert float(low.gamma[0]) / low.lr == pytest.approx(0.25) and torch.equal(low.tau, hp.tau)


def test_milestones_change_the_gd_step_exactly():
    r = run({**TOY, "algorithm": {"name": "gd", "lr": 0.5, "lr_schedule": "milestones", "milestones": [2],
                                  "decay": 0.5}})
    xs = [math.sqrt(m["grad_norm_sq"]) for m in r.metrics]  # f'(x) = x on the toy
    assert xs == [1.0, 0.5, 0.25, 0.25 * 0.75, 0.25 * 0.75 * 0.75]


def test_schedule_config_errors():
    with pytest.raises(DistclipError, match="go with lr_schedule = 'milestones'"):
        run({**TOY, "algorithm": {"name": "gd", "lr": 0.5, "lr_schedule": "milestones"}})
    with pytest.raises(DistclipError, match="choose one of: constant, milestones, cosine"):
        run({**TOY, "algorithm": {"name": "gd", "lr": 0.5, "lr_schedule": "step"}})
    with pytest.raises(DistclipError, match="does not apply to clip21-avg"):
        run({**TOY, "algorithm": {"name": "clip21-avg", "tau": 1.0, "lr_schedule": "cosine"}})
