"""AWD-LSTM: seeded per-client dropout, hidden-state carry-over, presets (spec: experiments.md §2.1)."""

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distclip import rng
from distclip.config import from_dict, to_toml
from distclip.data.corpus import load_corpus
from distclip.errors import DistclipError
from distclip.problems.awd_lstm import EVAL_STREAMS, AWDLanguageModel, Regularisation, draw_masks
from distclip.problems.language import LanguageModel
from distclip.runner import build_problem, run

F64 = torch.float64
TINY = Path(__file__).parent / "tiny_ptb"  # the first 400 / 40 / 40 lines of the bundled PTB splits
REG = {"dropout": 0.3, "dropouth": 0.25, "dropouti": 0.2, "dropoute": 0.1, "wdrop": 0.5, "ar": 2.0, "tar": 1.0}


def awd(clients=3, hidden=(7, 5), carry=False, batch=2, **problem):
    return build_problem(from_dict({
        "seed": 4, "problem": {"kind": "lstm", "dataset": "ptb", "model": "awd", "hidden": list(hidden), "bptt": 5,
                               "carry": carry, **problem},
        "partition": {"clients": clients}, "algorithm": {"name": "sgd", "lr": 1.0},
        "run": {"batch_size": batch, "dtype": "float64"},
    }))


def _mul(x, mask):
    return x if mask is None else x * mask


def reference(problem, x, windows, masks, i, state=None):
    """Client i's training loss with one torch.nn.LSTM per layer, client i's masks, from ``state``."""
    m, reg = problem.model, problem.reg
    p = {k: v[0] for k, v in problem._params(x.unsqueeze(0)).items()}
    emb = _mul(p["emb"], None if masks.emb is None else masks.emb[i][:, None])
    h = _mul(emb[windows[:, :-1]], None if masks.inp is None else masks.inp[i][:, None])
    end = []
    for layer in range(m.layers):
        lstm = torch.nn.LSTM(m.inputs[layer], m.sizes[layer], batch_first=True, dtype=F64)
        wh = _mul(p[f"wh{layer}"], None if masks.wh[layer] is None else masks.wh[layer][i])
        params = {"weight_ih_l0": p[f"wi{layer}"], "weight_hh_l0": wh, "bias_ih_l0": p[f"b{layer}"],
                  "bias_hh_l0": torch.zeros_like(p[f"b{layer}"])}
        hx = None if state is None else (state[layer][0][None], state[layer][1][None])
        h, (hn, cn) = torch.func.functional_call(lstm, params, (h, hx))
        end.append((hn[0], cn[0]))
        if layer < m.layers - 1:
            h = _mul(h, None if masks.hid[layer] is None else masks.hid[layer][i][:, None])
    raw, h = h, _mul(h, None if masks.out is None else masks.out[i][:, None])
    logits = h @ p["emb"].T + p["dec_b"]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    return ce + reg.ar * h.pow(2).mean() + reg.tar * (raw[:, 1:] - raw[:, :-1]).pow(2).mean(), end


def test_counter_hash_on_tensors_equals_numpy_and_ignores_the_other_clients():
    z = np.array([0, 1, 2**63 + 5, 12345678901234567, 2**64 - 1], dtype=np.uint64)
    assert np.array_equal(rng.mix_tensor(torch.from_numpy(z.astype(np.int64))).numpy(), rng._mix(z).astype(np.int64))
    u = rng.uniform(7, torch.tensor([2, 5, 9]), 11, 3, (40, 50))
    assert torch.equal(u[1], rng.uniform(7, torch.tensor([5]), 11, 3, (40, 50))[0])
    assert not torch.equal(u[1], rng.uniform(7, torch.tensor([5]), 12, 3, (40, 50))[0])
    assert not torch.equal(u[1], rng.uniform(7, torch.tensor([5]), 11, 4, (40, 50))[0])
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01


def test_dropout_clients_vectorised_equal_per_client_loop_and_torch_lstm():
    problem = awd(**REG)
    assert isinstance(problem, AWDLanguageModel) and problem.model.sizes == [7, 5]
    g = torch.Generator().manual_seed(0)
    X = problem.x0().expand(3, -1) + 0.05 * torch.randn(3, problem.dim, generator=g, dtype=F64)
    clients = torch.arange(3)
    batch = torch.randint(0, problem.windows, (3, 2), generator=g)
    got = problem.client_grads(X, clients, batch, draw=6)
    masks = draw_masks(problem.reg, problem.model, problem.seed, clients, 6, 2, F64)
    assert all(m is not None for m in (masks.emb, masks.inp, masks.out, *masks.hid, *masks.wh))
    for i in range(3):
        one = problem.client_grads(X[i : i + 1], clients[i : i + 1], batch[i : i + 1], draw=6)[0]
        torch.testing.assert_close(one, got[i], rtol=1e-10, atol=1e-13)
        x = X[i].clone().requires_grad_(True)
        (want,) = torch.autograd.grad(reference(problem, x, problem.W[i][batch[i]], masks, i)[0], x)
        torch.testing.assert_close(got[i], want, rtol=1e-9, atol=1e-12)
    other = problem.client_grads(X, clients, batch, draw=7)
    assert not torch.allclose(other, got)  # fresh masks at every step


def test_regularisation_only_in_training_gradients_and_off_is_the_plain_model():
    reg, plain = awd(**REG), awd()
    x = reg.x0() + 0.01
    assert reg.loss(x) == plain.loss(x)
    assert torch.equal(reg.client_losses(x, torch.arange(3)), plain.client_losses(x, torch.arange(3)))
    batch = torch.zeros(3, 2, dtype=torch.long)
    clients = torch.arange(3)
    assert not torch.allclose(reg.client_grads(x, clients, batch), plain.client_grads(x, clients, batch))
    # the AWD code without regularisation computes the small LSTM's numbers (same layout and x^0)
    lm = awd(hidden=(5, 5), model="small")
    off = AWDLanguageModel(load_corpus("ptb"), 3, [5, 5], Regularisation(), False, 5, False, 2, 4, F64,
                           torch.device("cpu"))
    assert type(lm) is LanguageModel and torch.equal(off.x0(), lm.x0())
    torch.testing.assert_close(off.client_grads(lm.x0(), torch.arange(3), batch, 2),
                               lm.client_grads(lm.x0(), torch.arange(3), batch, 2), rtol=1e-10, atol=1e-13)


def test_carry_over_continues_each_clients_stream():
    problem, loop = awd(clients=2, carry=True, **REG), awd(clients=2, carry=True, **REG)
    k, clients = problem.steps_per_epoch, torch.arange(2)
    X = problem.x0().expand(2, -1) + 0.05 * torch.randn(2, problem.dim, generator=torch.Generator().manual_seed(1),
                                                         dtype=F64)
    ignored = torch.zeros(2, 2, dtype=torch.long)
    grads = [problem.client_grads(X, clients, ignored, draw=d) for d in range(2)]
    for d in range(2):  # one client at a time: the same numbers
        for i in range(2):
            one = loop.client_grads(X[i : i + 1], clients[i : i + 1], ignored[:1], draw=d)[0]
            torch.testing.assert_close(one, grads[d][i], rtol=1e-10, atol=1e-13)
    for i in range(2):  # reference: torch.nn.LSTM over window 0, then window 1 from its detached final state
        w0, w1 = (problem.W[i][torch.arange(2) * k + d] for d in range(2))
        assert torch.equal(w0[:, -1], w1[:, 0])  # window 1 continues window 0 in each of the 2 streams
        masks = [draw_masks(problem.reg, problem.model, problem.seed, clients, d, 2, F64) for d in range(2)]
        with torch.no_grad():
            _, state = reference(problem, X[i], w0, masks[0], i)
        x = X[i].clone().requires_grad_(True)
        (want,) = torch.autograd.grad(reference(problem, x, w1, masks[1], i, state)[0], x)
        torch.testing.assert_close(grads[1][i], want, rtol=1e-9, atol=1e-12)
        (fresh,) = torch.autograd.grad(reference(problem, x, w1, masks[1], i)[0], x)
        assert not torch.allclose(grads[1][i], fresh)
    # the same step again starts from the same state; an epoch start or a gap starts from zero
    torch.testing.assert_close(problem.client_grads(X, clients, ignored, draw=1), grads[1], rtol=0, atol=0)
    resumed = awd(clients=2, carry=True, **REG)  # what a checkpoint saves: the next step is the same
    resumed.load_client_state(clients[1:], problem.client_state(clients[1:]))
    torch.testing.assert_close(resumed.client_grads(X[1:], clients[1:], ignored[1:], draw=2),
                               problem.client_grads(X[1:], clients[1:], ignored[1:], draw=2), rtol=0, atol=0)
    cold = awd(clients=2, carry=True, **REG)
    for before, d in ((k - 1, k), (k + 3, k + 5)):
        problem.client_grads(X, clients, ignored, draw=before)
        torch.testing.assert_close(problem.client_grads(X, clients, ignored, draw=d),
                                   cold.client_grads(X, clients, ignored, draw=d), rtol=0, atol=0)


def test_carried_validation_is_one_pass_over_each_stream():
    problem = awd(carry=True, path=str(TINY), **REG)
    x = problem.x0() + 0.05 * torch.randn(problem.dim, dtype=F64, generator=torch.Generator().manual_seed(1))
    valid = torch.as_tensor(problem.corpus.valid)
    length = len(valid) // EVAL_STREAMS
    streams = valid[: EVAL_STREAMS * length].view(1, EVAL_STREAMS, length)
    whole = problem.model.run(problem._params(x.unsqueeze(0)), streams[:, :, :-1])  # no windows, no dropout
    expected = F.cross_entropy(whole.logits[0], streams[0, :, 1:].reshape(-1)).item()
    got = problem.extra_metrics(x)
    assert length - 1 > 3 * problem.bptt  # several carried windows
    assert got["valid_loss"] == pytest.approx(expected, rel=1e-12)
    zero_state = awd(carry=False, path=str(TINY), **REG).extra_metrics(x)["valid_loss"]
    assert abs(zero_state - expected) > 1e-6  # the windowed zero-state evaluation is a different number


def test_awd_lstm_training_lowers_the_loss():
    r = run({"seed": 3, "problem": {"kind": "lstm", "dataset": "ptb", "path": str(TINY), "model": "awd",
                                    "hidden": [24, 16], "bptt": 8},
             "partition": {"clients": 2},
             "algorithm": {"name": "celgc", "lr": 20.0, "gamma": 5.0, "local_steps": 2},
             "run": {"steps": 30, "batch_size": 4, "log_every": 30, "dtype": "float32"}})
    first, last = r.metrics[0], r.metrics[-1]
    assert r.summary["problem"]["carry"] and r.summary["problem"]["wdrop"] == 0.5
    assert last["loss"] < first["loss"] - 1.0 and last["valid_ppl"] < 0.5 * first["valid_ppl"]


def test_model_presets_and_errors():
    cfg = from_dict({"problem": {"kind": "lstm", "dataset": "ptb", "model": "awd"},
                     "algorithm": {"name": "sgd", "lr": 30.0}, "run": {"batch_size": 3}})
    p = cfg.problem
    assert p.hidden == [1150, 1150, 400] and (p.dropout, p.dropouth, p.dropouti, p.dropoute, p.wdrop) == (
        0.4, 0.25, 0.4, 0.1, 0.5) and (p.ar, p.tar, p.carry) == (2.0, 1.0, True)
    again = from_dict(tomllib.loads(to_toml(cfg)))
    assert to_toml(again) == to_toml(cfg)
    small = from_dict({"problem": {"kind": "lstm", "dataset": "ptb", "dropouth": 0.3},
                       "algorithm": {"name": "sgd", "lr": 1.0}, "run": {"batch_size": 3}})
    assert small.problem.dropouth == 0.3 and small.problem.dropout == 0.0 and small.problem.carry is False
    base = {"algorithm": {"name": "sgd", "lr": 1.0}, "run": {"batch_size": 3}}
    with pytest.raises(DistclipError, match=r"problem.wdrop = 1.0 must be in \[0, 1\)"):
        from_dict({**base, "problem": {"kind": "lstm", "dataset": "ptb", "wdrop": 1.0}})
    with pytest.raises(DistclipError, match="choose one of: small, awd"):
        from_dict({**base, "problem": {"kind": "lstm", "dataset": "ptb", "model": "big"}})
    with pytest.raises(DistclipError, match="problem.dropout does not apply"):
        from_dict({**base, "problem": {"kind": "mlp", "dataset": "digits", "dropout": 0.1}})
    with pytest.raises(DistclipError, match="smaller batch_size"):
        awd(clients=1, carry=True, batch=200_000)
