"""The ``distclip bench`` subcommand: its options and what it runs (the benchmarks: :mod:`distclip.bench`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import DistclipError


def add_bench(sub: Any, common: argparse.ArgumentParser) -> None:
    bench = sub.add_parser(
        "bench", parents=[common], help="speed benchmarks: simulator vs loops, scaling, communication",
        description="Run speed benchmarks and print their tables: each compares contenders side by side in this "
        "process (median of --repeats samples after a warm-up) and writes DIR/<name>.json with the machine and the "
        "raw numbers, plus PNG figures. Benchmarks: simulator-vs-loop, scaling, clip21-logreg, communication, "
        "distributed-overhead (docs/performance.md explains each).",
    )
    bench.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all; see --list)")
    bench.add_argument("--quick", action="store_true", help="small sizes and 2 repeats (a smoke run of minutes)")
    bench.add_argument("--out", type=Path, help="output directory (default: runs/bench-<timestamp>)")
    bench.add_argument("--repeats", type=int, metavar="R", help="timed samples per contender (default 5, quick 2)")
    bench.add_argument("--threads", type=int, metavar="T", help="torch intra-op threads (default: torch's choice)")
    bench.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                       help="in-process timings: wall (elapsed, default) or cpu (process CPU time: steadier on a "
                       "loaded machine; use with --threads 1). The torchrun benchmarks always use wall time")
    bench.add_argument("--latency-ms", type=float, default=10.0,
                       help="communication: simulated link latency per round in ms (default 10)")
    bench.add_argument("--bandwidth-gbit", type=float, default=1.0,
                       help="communication: simulated link bandwidth in Gbit/s; 0 = no simulated link (default 1)")
    bench.add_argument("--world", type=int, metavar="W", help="communication: gloo ranks (default 4, quick 2)")
    bench.add_argument("--max-clients", type=int, metavar="N", help="scaling: largest N (default 256, quick 16)")
    bench.add_argument("--peers-venv", type=Path, metavar="DIR",
                       help="peers: the separate environment holding Flower and pfl (default .venv-peers); without "
                       "it their rows are skipped")
    bench.add_argument("--setup", action="store_true",
                       help="peers: first create --peers-venv if it is missing (python -m venv, then pip install "
                       "this torch version, flwr[simulation] and pfl; about 1.5 GB)")
    bench.add_argument("--clients", type=_int_list, metavar="N,N", help="peers: client counts (default 16,64; quick 8)")
    bench.add_argument("--algorithms", type=lambda t: t.split(","), metavar="A,A",
                       help="peers: rounds to time, fedavg and/or celgc (default fedavg,celgc)")
    bench.add_argument("--list", action="store_true", help="list the benchmarks and exit")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers >= 1 (e.g. 16,64)")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BENCHMARKS, bench
    from .runner import timestamped

    if args.list:
        for name, module in BENCHMARKS.items():
            print(f"  {name:<22} {module.TITLE}")
        return 0
    if args.repeats is not None and args.repeats < 1 or args.threads is not None and args.threads < 1:
        raise DistclipError("--repeats and --threads must be >= 1")
    out = args.out or timestamped("runs", "bench" + ("-quick" if args.quick else ""))
    options = {"communication": {"latency_ms": args.latency_ms, "bandwidth_gbit": args.bandwidth_gbit,
                                 "world": args.world},
               "scaling": {"max_clients": args.max_clients},
               "peers": {"venv": args.peers_venv, "clients": args.clients, "do_setup": args.setup,
                         "algorithms": args.algorithms}}
    bench(args.names, out, quick=args.quick, repeats=args.repeats, threads=args.threads, clock=args.clock,
          options=options)
    print(f"wrote {out}")
    return 0
