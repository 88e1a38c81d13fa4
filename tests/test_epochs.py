"""Runs measured in epochs: run length, log cadence and milestones resolved from rows per client."""

import pytest

from distclip.config import from_dict
from distclip.errors import DistclipError
from distclip.runner import run


def config(**run_keys):
    algorithm = run_keys.pop("algorithm", {})
    return {
        "seed": 1,
        "problem": {"kind": "logreg", "dataset": "breast-cancer_scale"},
        "partition": {"clients": 4, "scheme": "iid"},
        "algorithm": {"name": "sgd", "lr": 0.5, **algorithm},
        "run": {"batch_size": 50, **run_keys},
    }


def test_epochs_set_the_run_length_and_log_cadence():
    # 683 rows over 4 clients: 170 rows each, batch 50 -> 3 steps per epoch
    result = run(config(epochs=2.5, log_every_epochs=1))
    steps = [r["step"] for r in result.metrics]
    assert result.summary["steps_per_epoch"] == 3 and result.summary["steps"] == 8
    assert steps == [0, 3, 6, 8]
    assert [r["epoch"] for r in result.metrics] == [0, 1, 2, 8 / 3]


def test_full_gradients_make_every_step_an_epoch():
    result = run(config(batch_size=0, steps=4, algorithm={"name": "gd"}))
    assert [r["epoch"] for r in result.metrics] == [0, 1, 2, 3, 4]


def test_milestones_in_epochs_equal_the_same_milestones_in_steps():
    decay = {"lr_schedule": "milestones", "decay": 0.5}
    by_epoch = run(config(steps=9, algorithm={**decay, "milestones": [1, 2], "milestone_unit": "epochs"}))
    by_step = run(config(steps=9, algorithm={**decay, "milestones": [3, 6]}))
    assert [r["loss"] for r in by_epoch.metrics] == [r["loss"] for r in by_step.metrics]


@pytest.mark.parametrize("keys, message", [
    ({"epochs": 2, "steps": 10}, "run.epochs and run.steps both given"),
    ({"log_every_epochs": 1, "log_every": 10}, "run.log_every_epochs and run.log_every both given"),
    ({"epochs": -1}, "run.epochs = -1.0 must be a finite number >= 0"),
])
def test_bad_epoch_settings_are_one_line_errors(keys, message):
    with pytest.raises(DistclipError, match=message):
        from_dict(config(**keys))
