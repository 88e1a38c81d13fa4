"""Run under torchrun by the distributed tests: run a list of configs, with optional fault injection.

    torchrun ... tests/distributed/worker.py CASES.json OUT [--kill-rank R --kill-step S] [--hang ...]

CASES.json maps labels to config dicts; each runs into OUT/<label> through ``distclip.run``.
Fault injection wraps the algorithm's ``step`` (first attempt only, so a torchrun restart recovers).
"""

import argparse
import json
import os
import signal
import sys
import time

from distclip.algorithms import ALGORITHMS
from distclip.cli import main as cli_main


def inject(kill_rank: int, kill_step: int, hang: bool) -> None:
    rank = int(os.environ["RANK"])
    first_attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0
    if rank != kill_rank or not first_attempt:
        return
    for spec in ALGORITHMS.values():
        original = spec.rules.step

        def step(state, ctx, t, _original=original):
            if t == kill_step:
                if hang:
                    time.sleep(3600)
                os.kill(os.getpid(), signal.SIGKILL)
            return _original(state, ctx, t)

        spec.rules.step = step


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases")
    ap.add_argument("out")
    ap.add_argument("--kill-rank", type=int, default=-1)
    ap.add_argument("--kill-step", type=int, default=-1)
    ap.add_argument("--hang", action="store_true")
    ap.add_argument("--rank-set", nargs=2, action="append", default=[], metavar=("RANK", "KEY=VALUE"),
                    help="a --set override applied on one rank only (bad-input tests)")
    ap.add_argument("--checkpoint-every", type=int)
    ap.add_argument("--resume-steps", type=int, help="resume OUT/<label> with run.steps set to this")
    args = ap.parse_args()
    inject(args.kill_rank, args.kill_step, args.hang)
    with open(args.cases) as f:
        cases = json.load(f)
    rank = os.environ["RANK"]
    code = 0
    for label, path in cases.items():
        out = os.path.join(args.out, label)
        argv = ["run", path, "--out", out, "--no-plot", "--quiet"]
        if args.resume_steps:
            argv = ["run", "--resume", out, "--set", f"run.steps={args.resume_steps}", "--no-plot", "--quiet"]
        if args.checkpoint_every:
            argv += ["--checkpoint-every", str(args.checkpoint_every)]
        for r, kv in args.rank_set:
            if r == rank:
                argv += ["--set", kv]
        code = cli_main(argv) or code
    return code  # cli_main left the process group; the next run joins a new one


if __name__ == "__main__":
    sys.exit(main())
