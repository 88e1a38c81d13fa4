"""Your own training loop with distclip.optim: a small Transformer language model on the bundled Penn Treebank.

    torchrun --nproc-per-node=4 examples/own_loop/train_lm.py --optimizer celgc      # 4 clients, one per rank
    torchrun --nproc-per-node=4 examples/own_loop/train_lm.py --optimizer ddp-sgd    # the usual DDP baseline
    python examples/own_loop/train_lm.py --optimizer clip21                          # one process, one client

The loop is plain PyTorch: a model, a data shard per rank, a forward, a backward and ``opt.step()``. Only the
optimizer line changes between CELGC, Clip21, EPISODE, Local SGD and DDP + SGD. With a distclip optimizer
the model is NOT wrapped in DistributedDataParallel: the optimizer does all communication (CELGC and
Local SGD average the models every --local-steps steps, Clip21 sends one clipped vector per step).
Validation perplexity is measured on the averaged model (``opt.averaged()``, on every rank). Every
--ckpt-every steps each rank saves model + optimizer state to --out/rank<R>.pt; --resume continues exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import distclip.optim

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "own_model"))
from transformer_ptb import CONTEXT, data  # noqa: E402  (the model and windows of examples/own_model)
from transformer_ptb import model as make_model  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--optimizer", choices=["celgc", "clip21", "episode", "local-sgd", "ddp-sgd"], default="celgc")
ap.add_argument("--steps", type=int, default=300, help="optimizer steps (one backward each)")
ap.add_argument("--batch", type=int, default=16, help="windows of CONTEXT tokens per rank and step")
ap.add_argument("--lr", type=float, default=0.5, help="step size η")
ap.add_argument("--gamma", type=float, default=0.05, help="CELGC/EPISODE maximal step length γ (threshold γ/η)")
ap.add_argument("--tau", type=float, default=1.0, help="Clip21 clipping threshold τ")
ap.add_argument("--local-steps", type=int, default=8, help="CELGC/EPISODE/Local SGD communication interval I")
ap.add_argument("--eval-every", type=int, default=100, help="validation perplexity every this many steps")
ap.add_argument("--eval-windows", type=int, default=64, help="validation windows per evaluation")
ap.add_argument("--ckpt-every", type=int, default=100, help="checkpoint every this many steps (0: never)")
ap.add_argument("--out", default="runs/own_loop", help="checkpoint folder")
ap.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
ap.add_argument("--bf16", action="store_true", help="forward and backward under bfloat16 autocast (CPU)")
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()

# -- processes: one client per rank -----------------------------------------------------------------------------
torch.set_num_threads(1)  # one intra-op thread per rank: ranks share the cores (see README "Threads")
if "RANK" in os.environ:
    dist.init_process_group("gloo")
rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
say = print if rank == 0 else (lambda *a, **k: None)

# -- data: rank r trains on the r-th contiguous share of the training windows -------------------------------------
train, valid = data()
x_all, y_all = train.tensors
share = len(x_all) // world
x_mine, y_mine = x_all[rank * share:(rank + 1) * share], y_all[rank * share:(rank + 1) * share]
x_val, y_val = (t[:args.eval_windows] for t in valid.tensors)


def batch(step: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` windows of this rank's share, drawn from (seed, rank, step): a resumed run draws the same ones."""
    g = torch.Generator().manual_seed(args.seed * 1_000_003 + rank * 10_007 + step)
    idx = torch.randint(0, len(x_mine), (rows,), generator=g)
    return x_mine[idx], y_mine[idx]


# -- model and optimizer: the only lines that depend on the algorithm ---------------------------------------------
torch.manual_seed(args.seed)
model = make_model()
net: nn.Module = model
if args.optimizer == "ddp-sgd":
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
else:
    keys = {"celgc": {"gamma": args.gamma, "local_steps": args.local_steps},
            "clip21": {"tau": args.tau},
            "episode": {"gamma": args.gamma, "local_steps": args.local_steps, "batch_size": args.batch},
            "local-sgd": {"local_steps": args.local_steps}}[args.optimizer]
    opt = distclip.optim.create(args.optimizer, model.parameters(), lr=args.lr, seed=args.seed, **keys)
averaged = opt.averaged if isinstance(opt, distclip.optim.DistclipOptimizer) else contextlib.nullcontext
ckpt = Path(args.out) / f"rank{rank}.pt"
start = 0
if args.resume:
    saved = torch.load(ckpt)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])  # after the model: the optimizer puts back the point of its next gradient
    start = saved["step"]
    say(f"resumed at step {start} from {args.out}")


def evaluate() -> float:
    with averaged(), torch.no_grad():
        logits = net(x_val) if args.optimizer != "ddp-sgd" else model(x_val)
        return math.exp(float(nn.functional.cross_entropy(logits.flatten(0, 1), y_val.flatten())))


def mean_over_ranks(v: float) -> float:
    if world == 1:
        return v
    t = torch.tensor([v])
    dist.all_reduce(t)
    return float(t) / world


# -- the loop -----------------------------------------------------------------------------------------------------
say(f"{args.optimizer} on {world} rank(s), {sum(p.numel() for p in model.parameters()):,} parameters, "
    f"{CONTEXT}-token windows, batch {args.batch} per rank")
t0 = time.perf_counter()
for step in range(start, args.steps):
    rows = args.batch
    if isinstance(opt, distclip.optim.DistclipOptimizer) and opt.request.batch_size:
        rows = opt.request.batch_size  # EPISODE's resampled gradient at a round start (batch·I rows)
    x, y = batch(step, rows)
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        loss = nn.functional.cross_entropy(net(x).flatten(0, 1).float(), y.flatten())
    loss.backward()
    opt.step()
    last = step + 1 == args.steps
    if step % 20 == 0 or last:
        stats = opt.stats() if isinstance(opt, distclip.optim.DistclipOptimizer) else {}
        comm = f"rounds {stats['comm_rounds']}, clipped {stats['clip_frac']:.0%}" if stats else "rounds " + str(step + 1)
        say(f"step {step + 1:5d}  loss {mean_over_ranks(float(loss.detach())):.3f}  {comm}  "
            f"{(time.perf_counter() - t0) / (step + 1 - start) * 1e3:.0f} ms/step")
    if (step + 1) % args.eval_every == 0 or last:
        say(f"step {step + 1:5d}  validation perplexity {evaluate():.1f}")
    if args.ckpt_every and ((step + 1) % args.ckpt_every == 0 or last):
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1}, ckpt)

if dist.is_initialized():
    dist.destroy_process_group()
