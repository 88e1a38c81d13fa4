"""peers: one federated round in distclip against the frameworks people use instead, each in its own process.

The round: FedAvg (distclip ``local-sgd``) or CELGC with I = 5 local steps of batch B = 32 per client, an
MLP 784-128-10 on the bundled MNIST rows (iid shards of N clients, every client in every round), float32.
Contenders, each a separate process run one after the other and interleaved over the repetitions:

- **distclip**: the real training loop (``engine.loop.train``) over the rule, at ``run.threads`` = 1, and
  again at 2 threads (the thread setting's check: more threads must not make a round slower);
- **floor**: one nn.Module doing the N·B rows of each local step in one forward and backward pass;
- **plain loop**: one nn.Module per client with its own ``torch.optim.SGD``, trained in turn, averaged;
- **pfl**: pfl-research's ``FederatedAveraging`` on its ``SimulatedBackend`` (CELGC: ``local_max_grad_norm``);
- **flower**: Flower's simulation runtime (Ray), ``FedAvg`` with one actor per core.

pfl and Flower run in a separate environment (``--setup`` creates it; never the default install): the
scripts in ``peer_scripts/`` are run by its python. Each process reports its startup (spawn to the end of
the first round) and its timed rounds (after 2 warm-up rounds); the parent samples the resident memory of
the process and all its children. Ratios are paired: per repetition, a contender's mean round over
distclip's in the same repetition, and the table gives the median over repetitions.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DistclipError
from .common import Result, Target

NAME = "peers"
TITLE = "one FedAvg / CELGC round (I = 5, B = 32, MLP on MNIST) in distclip, a plain loop, pfl, Flower and the floor"
SCRIPTS = Path(__file__).with_name("peer_scripts")
DEFAULT_VENV = Path(".venv-peers")
PEER_PACKAGES = ("flwr[simulation]", "pfl")
LOCAL_STEPS, BATCH, LR, CLIP = 5, 32, 0.1, 3.0  # CELGC: γ = 0.3, threshold γ/η = 3
WARMUP = 2
TARGETS = {"floor": 1.5, "plain loop": 4.0, "pfl": 5.0, "flower": 20.0}  # floor: at most; others: distclip ahead by


@dataclass(frozen=True)
class Contender:
    name: str
    script: str
    peer: bool = False  # run by the peer environment's python
    threads: int = 1
    rounds: int = 5  # timed rounds per process (quick: at most 3)
    algorithms: tuple[str, ...] = ("fedavg", "celgc")


CONTENDERS = (
    Contender("distclip", "distclip_round.py"),
    Contender("distclip 2 threads", "distclip_round.py", threads=2, rounds=3),
    Contender("floor", "floor.py", algorithms=("fedavg",)),
    Contender("plain loop", "plain_loop.py"),
    Contender("pfl", "pfl_round.py", peer=True),
    Contender("flower", "flower_round.py", peer=True, rounds=3),
)


def peer_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def setup(venv: Path, echo: Any = print) -> None:
    """Create the peer environment: a venv with this torch version, Flower's simulation extra and pfl."""
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"
    echo(f"creating {venv} with {torch_pin} {' '.join(PEER_PACKAGES)} (a few minutes, about 1.5 GB)")
    for cmd in ([sys.executable, "-m", "venv", str(venv)],
                [str(peer_python(venv)), "-m", "pip", "install", "--quiet", torch_pin, *PEER_PACKAGES]):
        if subprocess.run(cmd).returncode != 0:
            raise DistclipError(f"`{' '.join(cmd)}` failed; the peer environment in {venv} is incomplete (remove it "
                                "and run `distclip bench peers --setup` again)")


def _config(algorithm: str, n: int, threads: int) -> dict[str, Any]:
    alg = ({"name": "local-sgd"} if algorithm == "fedavg" else {"name": "celgc", "gamma": LR * CLIP})
    return {"problem": {"kind": "mlp", "dataset": "mnist", "hidden": [128]},
            "partition": {"clients": n, "scheme": "iid"},
            "algorithm": {**alg, "lr": LR, "local_steps": LOCAL_STEPS},
            "run": {"batch_size": BATCH, "dtype": "float32", "threads": threads}}


def write_data(n: int, folder: Path) -> None:
    """distclip's client rows for N clients as x.npy [N, m, 784] and y.npy [N, m], for the other contenders."""
    from ..config import from_dict
    from ..problems.kinds import build_problem

    problem = build_problem(from_dict(_config("fedavg", n, 1)))
    np.save(folder / "x.npy", problem.X.flatten(2).numpy())
    np.save(folder / "y.npy", problem.Y.numpy())


class PeakRSS(threading.Thread):
    """Samples the resident memory of a process and its descendants (and its session) every ``every`` s."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.procs = pid, every, 0, 0
        self.done = threading.Event()
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> tuple[int, int]:
        parent, session, rss = {}, {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/statm", encoding="utf-8") as f:
                    rss[int(entry)] = int(f.read().split()[1]) * self.page
            except (OSError, IndexError, ValueError):
                continue
            parent[int(entry)], session[int(entry)] = int(fields[1]), int(fields[3])
        tree = {self.pid}
        for pid in parent:
            chain, p = [], pid
            while p > 1 and p not in tree and len(chain) < 64:
                chain.append(p)
                p = parent.get(p, 0)
            if p in tree or session.get(pid) == self.pid:
                tree.update(chain)
        members = tree & set(rss)
        return sum(rss[p] for p in members), len(members)

    def run(self) -> None:
        while not self.done.wait(self.every):
            total, count = self._sample()
            if total > self.peak:
                self.peak, self.procs = total, count


def run_one(c: Contender, algorithm: str, n: int, data: Path, venv: Path, quick: bool, cores: int) -> dict[str, Any]:
    """One process of contender ``c``: its mean timed round, startup to the first round, peak memory."""
    job = {"clients": n, "batch": BATCH, "local_steps": LOCAL_STEPS, "lr": LR, "data": str(data),
           "clip": None if algorithm == "fedavg" else CLIP, "warmup": WARMUP, "threads": c.threads,
           "rounds": min(c.rounds, 3) if quick else c.rounds, "cores": cores,
           "config": _config(algorithm, n, c.threads)}
    python = str(peer_python(venv)) if c.peer else sys.executable
    src = str(Path(__file__).parents[2])
    env = {**os.environ, "OMP_NUM_THREADS": str(c.threads), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(SCRIPTS)] + ([] if c.peer else [src]))}
    with tempfile.TemporaryDirectory() as tmp:
        jp, rp = Path(tmp) / "job.json", Path(tmp) / "result.json"
        jp.write_text(json.dumps(job), encoding="utf-8")
        spawned = time.time()
        proc = subprocess.Popen([python, str(SCRIPTS / c.script), str(jp), str(rp)], env=env, cwd=tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        mem = PeakRSS(proc.pid)
        mem.start()
        out, _ = proc.communicate(timeout=1800)
        mem.done.set()
        mem.join()
        if proc.returncode != 0 or not rp.exists():
            tail = " | ".join(out.strip().splitlines()[-4:])
            raise RuntimeError(f"{c.name} ({algorithm}, N = {n}) failed with exit code {proc.returncode}: {tail}")
        res = json.loads(rp.read_text(encoding="utf-8"))
    return {"round_s": statistics.fmean(res["round_s"]), "rounds": res["round_s"],
            "startup_s": res["first_round_at"] - spawned, "peak_rss_mb": mem.peak / 2**20, "processes": mem.procs,
            "load_1min": os.getloadavg()[0]}


def sizes(quick: bool, clients: list[int] | None) -> list[int]:
    return clients or ([8] if quick else [16, 64])


def run(quick: bool, out: Path, repeats: int, venv: Path | None = None, clients: list[int] | None = None,
        algorithms: list[str] | None = None, do_setup: bool = False) -> Result:
    venv, algorithms = venv or DEFAULT_VENV, algorithms or ["fedavg", "celgc"]
    if not set(algorithms) <= {"fedavg", "celgc"}:
        raise DistclipError(f"--algorithms {','.join(algorithms)}: each must be fedavg or celgc")
    if do_setup and not peer_python(venv).exists():
        setup(venv)
    have_peers = peer_python(venv).exists()
    chosen = [c for c in CONTENDERS if have_peers or not c.peer]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    raw: dict[str, Any] = {}
    for n in sizes(quick, clients):
        with tempfile.TemporaryDirectory() as tmp:
            write_data(n, Path(tmp))
            for alg in algorithms:
                here = [c for c in chosen if alg in c.algorithms]
                reps = raw.setdefault(f"{alg}-N{n}", [])
                for r in range(repeats):
                    order = here[r % len(here):] + here[:r % len(here)]  # rotate who goes first
                    rep = {}
                    for c in order:
                        rep[c.name] = one = run_one(c, alg, n, Path(tmp), venv, quick, cores)
                        print(f"peers: {alg} N={n} repetition {r + 1}/{repeats}: {c.name} {one['round_s'] * 1e3:.1f} ms"
                              f" per round, load {one['load_1min']:.1f}", file=sys.stderr, flush=True)
                    reps.append({c.name: rep[c.name] for c in here})
                    out.mkdir(parents=True, exist_ok=True)  # what is measured so far, in case the run is cut off
                    (out / f"{NAME}-partial.json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return report(raw, repeats, venv, have_peers, cores)


def report(raw: dict[str, Any], repeats: int, venv: Path, have_peers: bool, cores: int) -> Result:
    """The table (median round, paired ratio against distclip, startup, peak memory) and the targets."""
    rows, targets = [], []
    for key, reps in raw.items():
        alg, n = key.split("-N")
        for name in reps[0]:
            own = [rep[name]["round_s"] for rep in reps]
            ratio = statistics.median(rep[name]["round_s"] / rep["distclip"]["round_s"] for rep in reps)
            rows.append({"round": alg, "N": int(n), "contender": name, "ms per round": statistics.median(own) * 1e3,
                         "/ distclip (paired median)": ratio,
                         "startup s": statistics.median(rep[name]["startup_s"] for rep in reps),
                         "peak RSS MB": max(rep[name]["peak_rss_mb"] for rep in reps),
                         "processes": max(rep[name]["processes"] for rep in reps)})
            if name in TARGETS:
                limit = TARGETS[name]
                text = (f"{alg} N={n}: distclip / floor" if name == "floor" else f"{alg} N={n}: {name} / distclip")
                targets.append(Target(text, 1 / ratio if name == "floor" else ratio, limit, at_least=name != "floor"))
            if name == "distclip 2 threads":
                targets.append(Target(f"{alg} N={n}: distclip 2 threads / 1 thread", ratio, 1.0))
    res = Result(NAME, TITLE, ["round", "N", "contender", "ms per round", "/ distclip (paired median)", "startup s",
                               "peak RSS MB", "processes"], rows, targets=targets, raw=raw,
                 params={"repeats": repeats, "local_steps": LOCAL_STEPS, "batch": BATCH, "lr": LR,
                         "celgc_threshold": CLIP, "warmup_rounds": WARMUP, "cores": cores, "peer_venv": str(venv),
                         "rounds": {c.name: c.rounds for c in CONTENDERS}, "dtype": "float32"})
    res.notes.append("each contender is a separate process; ratios are paired per repetition (same sitting), "
                     "peak RSS sums the process and its children (shared pages counted in each)")
    if not have_peers:
        res.notes.append(f"pfl and flower skipped: no peer environment at {venv} (create it with "
                         "`distclip bench peers --setup`)")
    return res
