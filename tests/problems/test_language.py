"""Word-level corpora and the batched LSTM language model."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from distclip.config import from_dict
from distclip.data.corpus import build, load_corpus
from distclip.errors import DistclipError
from distclip.runner import build_problem, run

WT2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "wikitext2"
F64 = torch.float64


def test_ptb_token_counts_and_vocabulary():
    ptb = load_corpus("ptb")
    assert len(ptb.train) == 929_589 and len(ptb.vocab) == 10_000
    assert len(ptb.valid) == 73_760 and len(ptb.test) == 82_430
    assert ptb.vocab[ptb.train[-1]] == "<eos>"


@pytest.mark.skipif(not WT2.exists(), reason="shared WikiText-2 files not present")
def test_wikitext2_token_counts_and_vocabulary():
    wt2 = load_corpus("wikitext2", str(WT2))
    assert len(wt2.train) == 2_088_628 and len(wt2.vocab) == 33_278
    assert len(wt2.valid) == 217_646 and len(wt2.test) == 245_569


def test_corpus_errors(tmp_path):
    with pytest.raises(DistclipError, match="not bundled"):
        load_corpus("wikitext2")
    with pytest.raises(DistclipError, match="lacks train.txt"):
        load_corpus("wikitext2", str(tmp_path))
    with pytest.raises(DistclipError, match="no <unk>"):
        build("x", {"train": "a b\n", "valid": "a c\n", "test": "a\n"})
    tiny = build("x", {"train": "a b <unk>\nb\n", "valid": "a zzz\n", "test": "b\n"})
    assert tiny.vocab == ["a", "b", "<unk>", "<eos>"] and tiny.valid.tolist() == [0, 2, 3]


def lm(clients=3, rotate=False, width=8, layers=1, dtype="float64"):
    return build_problem(from_dict({
        "seed": 1, "problem": {"kind": "lstm", "dataset": "ptb", "hidden": [width] * layers, "bptt": 5,
                               "rotate": rotate},
        "partition": {"clients": clients}, "algorithm": {"name": "sgd", "lr": 1.0},
        "run": {"batch_size": 2, "dtype": dtype},
    }))


def reference_loss(problem, x, windows):
    """The same model with torch.nn.LSTM on one client's windows [B, T+1]."""
    p = {k: v[0] for k, v in problem._params(x.unsqueeze(0)).items()}
    layers = problem.model.layers
    width = problem.model.width
    lstm = torch.nn.LSTM(width, width, num_layers=layers, batch_first=True, dtype=F64)
    params = {}
    for i in range(layers):
        params |= {f"weight_ih_l{i}": p[f"wi{i}"], f"weight_hh_l{i}": p[f"wh{i}"], f"bias_ih_l{i}": p[f"b{i}"],
                   f"bias_hh_l{i}": torch.zeros_like(p[f"b{i}"])}
    out, _ = torch.func.functional_call(lstm, params, (p["emb"][windows[:, :-1]],))
    logits = out @ p["emb"].T + p["dec_b"]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))


@pytest.mark.parametrize("layers", [1, 2])
def test_batched_lstm_gradients_equal_torch_lstm_per_client(layers):
    problem = lm(layers=layers)
    g = torch.Generator().manual_seed(0)
    X = problem.x0().expand(3, -1) + 0.05 * torch.randn(3, problem.dim, generator=g, dtype=F64)
    clients = torch.arange(3)
    batch = torch.randint(0, problem.windows, (3, 2), generator=g)
    got = problem.client_grads(X, clients, batch)
    for i in range(3):
        x = X[i].clone().requires_grad_(True)
        (want,) = torch.autograd.grad(reference_loss(problem, x, problem.W[i][batch[i]]), x)
        torch.testing.assert_close(got[i], want, rtol=1e-9, atol=1e-12)
    shared = problem.client_grads(X[0], clients, batch)
    one = torch.stack([problem.client_grads(X[0], clients[i : i + 1], batch[i : i + 1])[0] for i in range(3)])
    torch.testing.assert_close(shared, one, rtol=1e-10, atol=1e-13)


def test_rotating_shards_follow_the_epoch():
    problem = lm(clients=3, rotate=True)
    clients, batch = torch.arange(3), torch.zeros(3, 1, dtype=torch.long)
    epoch = problem.steps_per_epoch
    assert torch.equal(problem._windows(clients, batch, 0)[:, 0], problem.W[[0, 1, 2], 0])
    assert torch.equal(problem._windows(clients, batch, epoch)[:, 0], problem.W[[1, 2, 0], 0])
    assert torch.equal(lm(clients=3)._windows(clients, batch, epoch)[:, 0], problem.W[[0, 1, 2], 0])


def test_lstm_training_lowers_perplexity():
    r = run({"seed": 3, "problem": {"kind": "lstm", "dataset": "ptb", "hidden": [16], "bptt": 8},
             "partition": {"clients": 2}, "algorithm": {"name": "celgc", "lr": 20.0, "gamma": 5.0, "local_steps": 2},
             "run": {"steps": 30, "batch_size": 4, "log_every": 30, "dtype": "float32"}})
    first, last = r.metrics[0], r.metrics[-1]
    assert first["valid_ppl"] > 5000 and last["valid_ppl"] < 0.5 * first["valid_ppl"]
    assert last["loss"] < first["loss"] and "valid_loss" in last


def test_lstm_config_errors():
    base = {"problem": {"kind": "lstm", "dataset": "ptb"}, "algorithm": {"name": "sgd", "lr": 1.0},
            "run": {"batch_size": 4}}
    with pytest.raises(DistclipError, match="one equal width per layer"):
        from_dict({**base, "problem": {**base["problem"], "hidden": [8, 16]}})
    with pytest.raises(DistclipError, match="run.batch_size >= 1"):
        from_dict({**base, "algorithm": {"name": "gd", "lr": 1.0}, "run": {"batch_size": 0}})
    with pytest.raises(DistclipError, match="choose one of: ptb, wikitext2"):
        from_dict({**base, "problem": {"kind": "lstm", "dataset": "digits"}})
