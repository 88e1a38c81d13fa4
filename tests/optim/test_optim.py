"""distclip.optim: a user's loop with each optimizer equals ``distclip run`` on the same model and data (kind
``torch``), in one process and under torchrun; state_dict resumes bit-identically; schedulers, autocast, misuse."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import distclip.optim
from distclip.algorithms.descent import descend
from distclip.errors import DistclipError

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REL = 1e-10


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def loop(name: str, steps: int = harness.STEPS, **extra) -> tuple[nn.Module, distclip.optim.DistclipOptimizer]:
    m = harness.user_model()
    opt = harness.make_optimizer(name, m, **extra)
    harness.train(m, opt, 0, harness.client_data(1)[0], steps)
    return m, opt


@pytest.mark.parametrize("name", list(harness.CASES))
def test_one_process_equals_the_engine(name):
    x, row = harness.simulate(name, 1)
    m, opt = loop(name)
    assert rel_err(harness.averaged(m, opt), x) <= REL
    assert {k: opt.stats()[k] for k in harness.COUNTERS} == {k: row[k] for k in harness.COUNTERS}
    assert opt.stats()["clip_frac"] == pytest.approx(row["clip_frac_mean"])


def test_cases_cover_every_optimizer():
    assert set(harness.CASES) == set(distclip.optim.NAMES.values())


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_torchrun_ranks_equal_the_engine(world, tmp_path):
    out = tmp_path / "results.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
           str(ROOT / "tests/optim/loop_worker.py"), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = torch.load(out)
    for name in harness.CASES:
        x, row = harness.simulate(name, world)
        assert rel_err(results[name]["x"], x) <= REL, name
        assert {k: results[name]["stats"][k] for k in harness.COUNTERS} == {k: row[k] for k in harness.COUNTERS}


@pytest.mark.slow
def test_models_differing_across_ranks_fail_on_every_rank(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(ROOT / "tests/optim/loop_worker.py"), "--mismatch"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert "rank 1: its model has 2 parameter tensors of 24 numbers, rank 0's 2 of 18 (or other shapes); build the " \
           "same model on every rank" in proc.stderr


@pytest.mark.parametrize("name", ["clip21", "celgc", "episode", "scaffold", "dp-fedavg"])
def test_state_dict_resumes_bit_identically(name, tmp_path):
    m_full, opt_full = loop(name)
    m, opt = loop(name, steps=3)
    torch.save({"model": m.state_dict(), "opt": opt.state_dict()}, tmp_path / "ck.pt")
    saved = torch.load(tmp_path / "ck.pt")
    m2 = harness.user_model()
    opt2 = harness.make_optimizer(name, m2)
    m2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    harness.train(m2, opt2, 0, harness.client_data(1)[0], harness.STEPS)
    assert torch.equal(harness.averaged(m2, opt2), harness.averaged(m_full, opt_full))
    assert opt2.stats() == opt_full.stats()


def test_episode_resume_between_its_two_round_start_gradients():
    m_full, opt_full = loop("episode")
    m = harness.user_model()
    opt = harness.make_optimizer("episode", m)
    data = harness.client_data(1)[0]
    harness.train(m, opt, 0, data, 3)  # steps 0..2 done: step 3 starts a round and asks for the resample first
    assert opt.request.stream == 1
    harness.train_one(m, opt, 0, data)  # give it: two averages and one gradient logged, the local gradient pending
    assert opt.request.stream == 0 and opt.steps_done == 3
    saved = copy.deepcopy(opt.state_dict())
    m2 = harness.user_model()
    opt2 = harness.make_optimizer("episode", m2)
    opt2.load_state_dict(saved)
    harness.train(m2, opt2, 0, data, harness.STEPS)
    assert torch.equal(harness.averaged(m2, opt2), harness.averaged(m_full, opt_full))


@pytest.mark.parametrize("name", ["clip21", "celgc", "episode", "sgd"])
def test_multistep_lr_equals_the_engines_joint_decay(name):
    """A MultiStepLR stepped after every step() = algorithm.lr_schedule = "milestones" (η and γ decay together);
    EPISODE through a closure, so that one step() is one step of the algorithm."""
    cfg = harness.config(name, 1)
    cfg["algorithm"].update(lr_schedule="milestones", milestones=[2, 5], decay=0.5)
    res = distclip.run(cfg, model=harness.model, data=lambda: harness.client_data(1))
    m = harness.user_model()
    opt = harness.make_optimizer(name, m)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 5], gamma=0.5)
    harness.train(m, opt, 0, harness.client_data(1)[0], harness.STEPS, sched, closure=name == "episode")
    assert rel_err(harness.averaged(m, opt), res.model) <= REL


def test_decay_gamma_false_keeps_the_step_bound():
    """With decay_gamma=False only η follows the param group's lr: CELGC with the lr halved equals a run with η
    halved and the same γ."""
    cfg = harness.config("celgc", 1)
    cfg["algorithm"].update(lr=0.3 * 0.5)
    res = distclip.run(cfg, model=harness.model, data=lambda: harness.client_data(1))
    m = harness.user_model()
    opt = harness.make_optimizer("celgc", m, decay_gamma=False)
    for g in opt.param_groups:
        g["lr"] = 0.3 * 0.5
    harness.train(m, opt, 0, harness.client_data(1)[0], harness.STEPS)
    assert rel_err(harness.averaged(m, opt), res.model) <= REL


def test_closure_takes_every_gradient_of_a_step():
    m_ref, opt_ref = loop("episode")
    m = harness.user_model()
    opt = harness.make_optimizer("episode", m)
    closure = harness.make_closure(m, opt, 0, harness.client_data(1)[0])
    for _ in range(harness.STEPS):
        assert opt.step(closure) is not None
    assert opt.steps_done == harness.STEPS
    assert torch.equal(harness.averaged(m, opt), harness.averaged(m_ref, opt_ref))


def test_bfloat16_autocast_on_cpu():
    torch.manual_seed(0)
    m = harness.model()
    opt = distclip.optim.CELGC(m.parameters(), lr=0.3, gamma=0.1, local_steps=2)
    x, y = harness.client_data(1)[0].tensors
    x = x.float()
    losses = []
    for _ in range(20):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(p.dtype == torch.float32 for p in m.parameters())
    assert losses[-1] < losses[0] and all(map(torch.isfinite, map(torch.tensor, losses)))


def test_parameters_hold_the_next_gradient_point():
    """CELGC at a round start asks for the gradient at the average; Clip21 at x^{k+1} = x^k - γ v^k."""
    m, opt = loop("clip21", steps=2)
    s = opt.stepper
    expected = descend(s.state.x, 0.3, s.state.agg)
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in m.parameters()]), expected)


# -- misuse: one line each ----------------------------------------------------------------------------------------
def test_step_without_gradients():
    m = harness.user_model()
    opt = harness.make_optimizer("celgc", m)
    with pytest.raises(DistclipError, match="no gradients; call loss.backward"):
        opt.step()


def full_backward(m: nn.Module) -> None:
    """One backward on client 0's whole data."""
    x, y = harness.client_data(1)[0].tensors
    nn.functional.cross_entropy(m(x), y).backward()


def test_step_twice_on_one_gradient():
    m = harness.user_model()
    opt = harness.make_optimizer("celgc", m)
    full_backward(m)
    opt.step()
    with pytest.raises(DistclipError, match="without a new backward"):
        opt.step()


def test_parameters_changed_between_steps():
    m = harness.user_model()
    opt = harness.make_optimizer("clip21", m)
    full_backward(m)
    with torch.no_grad():
        m[0].weight.add_(1.0)
    with pytest.raises(DistclipError, match="parameters changed since the last step"):
        opt.step()


def test_world_size_changed_since_saved():
    m, opt = loop("celgc", steps=2)
    sd = opt.state_dict()
    sd["distclip"]["world"] = 4
    with pytest.raises(DistclipError, match="saved with world size 4, now 1; resume with torchrun --nproc-per-node=4"):
        harness.make_optimizer("celgc", harness.user_model()).load_state_dict(sd)
    with pytest.raises(DistclipError, match="not saved by a distclip.optim"):
        opt.load_state_dict(torch.optim.SGD(m.parameters(), lr=0.1).state_dict())


def test_bad_keys_and_algorithms():
    m = harness.user_model()
    with pytest.raises(DistclipError, match="algorithm.k does not apply to celgc"):
        distclip.optim.CELGC(m.parameters(), lr=0.1, gamma=0.1, k=3)
    with pytest.raises(DistclipError, match="no lr_schedule, milestones; use a torch.optim.lr_scheduler"):
        distclip.optim.CELGC(m.parameters(), lr=0.1, gamma=0.1, lr_schedule="milestones", milestones=[3])
    with pytest.raises(DistclipError, match="not available as an optimizer"):
        distclip.optim.create("clip21-avg", m.parameters(), lr=0.1, tau=1.0)
    with pytest.raises(DistclipError, match="episode needs batch_size="):
        distclip.optim.EPISODE(m.parameters(), lr=0.1, gamma=0.1)
    with pytest.raises(DistclipError, match="give lr as a number"):
        distclip.optim.Clip21(m.parameters(), lr="1/L", tau=1.0)
    with pytest.raises(DistclipError, match="pass model.parameters"):
        distclip.optim.Clip21(m, lr=0.1, tau=1.0)


def test_param_groups_must_share_the_step_size():
    m = harness.user_model()
    with pytest.raises(DistclipError, match="param groups have different learning rates"):
        distclip.optim.Clip21([{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 0.01}], lr=0.1,
                              tau=1.0)


@pytest.fixture
def process_group():
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_wrapped_model_is_refused(process_group):
    m = harness.user_model()
    ddp = nn.parallel.DistributedDataParallel(m)
    with pytest.raises(DistclipError, match="belong to a DistributedDataParallel model"):
        distclip.optim.CELGC(ddp.parameters(), lr=0.1, gamma=0.1)
    with pytest.raises(DistclipError, match="not a DistributedDataParallel wrapper"):
        distclip.optim.CELGC(ddp, lr=0.1, gamma=0.1)
