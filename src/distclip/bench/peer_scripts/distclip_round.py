"""The round in distclip: the real training loop (``engine.loop.train``) over the rule, one process, N clients.

Run by distclip's own python. The job's ``config`` is the run (``local-sgd`` for FedAvg, or ``celgc``);
the loop runs with ``run.threads`` applied as ``distclip run`` applies it, no logging between the first and
the last step, and a callback every I steps (the loop's checkpoint hook, which first reads the device
tallies as a checkpoint would) marks the end of each round.
"""

from __future__ import annotations

import _shared

from distclip.algorithms import ALGORITHMS
from distclip.config import from_dict
from distclip.engine.loop import train
from distclip.engine.transport import InProcess
from distclip.runner import build_context, build_problem, intra_op_threads

params = _shared.job()
cfg = from_dict(params["config"])
with intra_op_threads(cfg.run.threads):
    problem = build_problem(cfg)
    ctx, _ = build_context(cfg, problem, InProcess(problem.n_clients))
    clock = _shared.Clock(params)
    steps = cfg.algorithm.local_steps * (params["warmup"] + params["rounds"])
    train(ALGORITHMS[cfg.algorithm.name].rules, ctx, problem, steps, steps, lambda row: None, evaluate=False,
          checkpoint=lambda state, progress: clock.tick(), checkpoint_every=cfg.algorithm.local_steps)
    clock.write()
