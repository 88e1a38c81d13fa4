"""Run by torchrun in the distclip.optim tests: every case's loop on this rank; rank 0 writes the results.

    torchrun --nproc-per-node=W tests/optim/loop_worker.py OUT.pt
    torchrun --nproc-per-node=2 tests/optim/loop_worker.py --mismatch    (rank 1 builds a wider model)
"""

import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if sys.argv[1] == "--mismatch":
        m = torch.nn.Linear(5, 3 + rank)
        harness.distclip.optim.CELGC(m.parameters(), lr=0.1, gamma=0.1)
        return
    data = harness.client_data(world)[rank]
    results = {}
    for name in harness.CASES:
        m = harness.user_model()
        opt = harness.make_optimizer(name, m)
        harness.train(m, opt, rank, data, harness.STEPS)
        results[name] = {"x": harness.averaged(m, opt), "stats": opt.stats()}
    if rank == 0:
        torch.save(results, sys.argv[1])
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
