"""Seed averaging: runs whose configs differ only in ``seed`` are one setting, reported as their mean."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from ..plotting import strip_seed
from ..runner import RunResult

_NOT_SETTINGS = {"seed", "given", "raw", "sweep", "origin"}  # what two runs of one setting may differ in


def _setting(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _NOT_SETTINGS}


def seed_groups(results: list[RunResult]) -> list[list[RunResult]]:
    """``results`` grouped into settings: configs equal but for the seed, each seed at most once (the same
    config twice is two runs of one experiment, not two samples). Groups in order of their first run."""
    groups: list[tuple[dict[str, Any], list[RunResult]]] = []
    for r in results:
        setting = _setting(r.config)
        group = next((members for s, members in groups
                      if s == setting and all(m.config.seed != r.config.seed for m in members)), None)
        if group is None:
            groups.append((setting, [r]))
        else:
            group.append(r)
    return [members for _, members in groups]


def averaged_label(members: list[RunResult]) -> str:
    """The members' label without its ``seed=K`` part (e.g. ``celgc-H=1.0-seed=3`` -> ``celgc-H=1.0``)."""
    labels = {strip_seed(r.label, r.config.seed) for r in members}
    if len(labels) == 1:
        return labels.pop()
    return os.path.commonprefix([r.label for r in members]).rstrip("-_=") or members[0].label


def _mean(values: list) -> object:
    if all(v == values[0] for v in values) or not all(isinstance(v, int | float) for v in values):
        return values[0]
    return sum(values) / len(values)


def average(members: list[RunResult]) -> RunResult:
    """One result for a group of seeds: metrics averaged step by step (the seeds' f, ‖∇f‖², clip fractions,
    ...), model averaged, the label without the seed; a group of one passes through."""
    if len(members) == 1:
        return members[0]
    label = averaged_label(members)
    rows = [{k: _mean([m[k] for m in ms]) for k in ms[0]} for ms in zip(*(r.metrics for r in members), strict=True)]
    summary = {**members[0].summary, "label": label, "seeds": [r.config.seed for r in members],
               "last_clip_step": max(r.summary.get("last_clip_step", -1) for r in members),
               "total_s": sum(r.summary.get("total_s", 0.0) for r in members)}
    model = torch.stack([r.model for r in members]).mean(dim=0)
    return RunResult(members[0].config, rows, summary, model, None, label, dict(members[0].extra))


def average_seeds(results: list[RunResult]) -> list[RunResult]:
    """Merge runs whose configs differ only in ``seed`` (see :func:`seed_groups` and :func:`average`);
    other runs pass through."""
    return [average(members) for members in seed_groups(results)]
