"""sampling: time per round and memory with client sampling, a cohort of m = 100 clients out of N.

Each workload runs, in one child process and interleaved (so the ratios share the machine's load), rounds of
the same rule through the engine path (config -> problem -> ``build_context`` -> ``runner.sampled_rules``):

- **full m**: N = m = 100 clients, no sampling (every client, every round): the cost of the cohort itself;
- **cohort of m**, for a small N and a large N: ``[sampling] scheme = "fixed", clients = m``; at the largest N
  also Poisson sampling with rate q = m/N (same expected cohort; its draw hashes every client id).

Workloads: EF21 (Top-5, one step per round, per-client memories g_i of all N clients kept in a store) and FedAvg
(``local-sgd``, I = 5, B = 2, no per-client state) on synthetic logistic regression (d = 123, 2 rows per client,
float64), and FedAvg (I = 5, B = 32, float32) on the 784-128-10 MLP on the bundled MNIST rows (10,000 rows: one
row per client at N = 10,000, minibatches drawn with replacement). Reported per contender: ms per round (median
of the interleaved samples), its ratio to **full m**, the memory the process gained when the contender was built
and run (resident set growth: data, model, per-client store), the per-client store alone, and the peak RSS.
The target: at the same cohort, a round at the large N costs at most 1.25 times a round at the small N.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..algorithms import ALGORITHMS
from ..config import from_dict
from ..engine.memory import keep_freed_memory
from ..engine.transport import InProcess
from ..runner import build_context, build_problem, sampled_rules
from .common import Result, Target, clock_name, measure, median, use_clock

NAME = "sampling"
TITLE = "client sampling: time per round and memory for a cohort of 100 out of N clients"
COHORT = 100
WORKLOADS = {  # name: (algorithm, problem, batch, dtype, (small N, large N), quick (small N, large N))
    "logreg-ef21": ({"name": "ef21", "lr": 0.5, "k": 5, "init": "zero"}, "logreg", 0, "float64",
                    (1_000, 100_000), (1_000, 10_000)),
    "logreg-fedavg": ({"name": "local-sgd", "lr": 0.5, "local_steps": 5}, "logreg", 2, "float64",
                      (1_000, 100_000), (1_000, 10_000)),
    "mlp-fedavg": ({"name": "local-sgd", "lr": 0.05, "local_steps": 5}, "mlp", 32, "float32",
                   (1_000, 10_000), (200, 1_000)),
}


def _problem(kind: str, n: int) -> dict[str, Any]:
    if kind == "logreg":
        return {"kind": "logreg", "rows": 2 * n, "n_features": 123, "lambda": 0.1}
    return {"kind": "mlp", "dataset": "mnist", "hidden": [128], "test_fraction": 0.0, "eval_rows": 1000}


def _rss_mb(key: str = "VmRSS") -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        line = next(line for line in f if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024


def contender(workload: str, n: int, sampling: dict[str, Any] | None) -> tuple[Any, dict[str, float]]:
    """A function running one round (I steps) of ``workload`` with N = ``n``, and its memory figures."""
    alg, kind, batch, dtype, _, _ = WORKLOADS[workload]
    before = _rss_mb()
    doc = {"seed": 1, "problem": _problem(kind, n), "partition": {"clients": n, "scheme": "iid"},
           "algorithm": alg, "run": {"batch_size": batch, "dtype": dtype}}
    if sampling:
        doc["sampling"] = sampling
    cfg = from_dict(doc)
    problem = build_problem(cfg)
    ctx, _ = build_context(cfg, problem, InProcess(problem.n_clients))
    rules = sampled_rules(cfg, ALGORITHMS[alg["name"]], ctx.hp, problem)
    box = {"state": rules.init(ctx)[0], "t": 0}
    interval = alg.get("local_steps", 1)

    def one_round() -> None:
        for _ in range(interval):
            box["state"], _ = rules.step(box["state"], ctx, box["t"])
            box["t"] += 1

    one_round()
    store = sum(v.numel() * v.element_size() for v in getattr(rules, "store", {}).values() if v is not None)
    return one_round, {"d": problem.dim, "gained_mb": _rss_mb() - before, "store_mb": store / 2**20}


def child(params: dict[str, Any]) -> dict[str, Any]:
    """Build every contender of one workload in this process, then time them interleaved."""
    keep_freed_memory()
    use_clock(params["clock"])
    small, large = params["sizes"]
    plan = {f"N = {COHORT}, every client": (COHORT, None),
            f"N = {small:,}, cohort {COHORT}": (small, {"scheme": "fixed", "clients": COHORT}),
            f"N = {large:,}, cohort {COHORT}": (large, {"scheme": "fixed", "clients": COHORT}),
            f"N = {large:,}, Poisson q = {COHORT}/N": (large, {"scheme": "poisson", "rate": COHORT / large})}
    fns, memory = {}, {}
    for label, (n, sampling) in plan.items():
        fns[label], memory[label] = contender(params["workload"], n, sampling)
        memory[label]["N"] = n
    samples = measure(fns, params["repeats"])
    return {"samples": samples, "memory": memory, "peak_rss_mb": _rss_mb("VmHWM")}


def run(quick: bool, out: Path, repeats: int) -> Result:
    rows, raw = [], {}
    for workload, spec in WORKLOADS.items():
        params = {"workload": workload, "sizes": spec[5] if quick else spec[4], "repeats": repeats,
                  "clock": clock_name()}
        proc = subprocess.run([sys.executable, "-m", "distclip.bench.sampling", json.dumps(params)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"sampling child ({workload}) failed: {tail}")
        data = raw[workload] = json.loads(proc.stdout.strip().splitlines()[-1])
        base = median(next(iter(data["samples"].values())))
        for label, s in data["samples"].items():
            mem = data["memory"][label]
            rows.append({"workload": workload, "contender": label, "d": mem["d"], "ms per round": median(s) * 1e3,
                         "/ full 100": median(s) / base, "MB gained": mem["gained_mb"],
                         "per-client store MB": mem["store_mb"], "peak RSS MB": data["peak_rss_mb"]})
    res = Result(NAME, TITLE, list(rows[0]), rows, raw=raw, params={"cohort": COHORT, "repeats": repeats})
    for w in WORKLOADS:
        fixed = [r for r in rows if r["workload"] == w and "cohort" in r["contender"]]
        res.targets.append(Target(f"{w}: cost grows with the cohort, not N: round at the largest N / at the small N, "
                                  f"cohort {COHORT} in both", fixed[-1]["ms per round"] / fixed[0]["ms per round"],
                                  1.25))
        res.notes.append(f"{w}: sampling overhead, cohort {COHORT} at the small N / {COHORT} clients without "
                         f"sampling: {fixed[0]['/ full 100']:.2f}")
    res.notes.append("MB gained: resident memory the process grew by while the contender was built and ran one round "
                     "(memory freed earlier is reused, so it can understate); the peak RSS is the whole process's")
    return res


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
