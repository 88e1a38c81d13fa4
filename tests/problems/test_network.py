"""Network problems: batched client gradients over stacked weights equal plain PyTorch, per client."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from distclip.config import from_dict
from distclip.data.images import load_digits, load_images
from distclip.errors import DistclipError
from distclip.runner import build_problem, run

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
F64 = torch.float64


def problem(kind: str, clients: int = 4, **extra):
    return build_problem(from_dict({
        "seed": 5,
        "problem": {"kind": kind, "dataset": "digits", **extra},
        "partition": {"clients": clients, "scheme": "iid"},
        "algorithm": {"name": "sgd", "lr": 0.1},
        "run": {"batch_size": 8, "dtype": "float64"},
    }))


def reference_loss(kind, net, x, images, labels):
    """The same network built from torch.nn.functional on one client's rows."""
    p = net._params(x.unsqueeze(0))
    p = {k: v[0] for k, v in p.items()}
    if kind == "mlp":
        h = images.flatten(1)
        for i in range(net.model.layers):
            h = F.linear(h, p[f"w{i}"], p[f"b{i}"])
            h = torch.relu(h) if i < net.model.layers - 1 else h
    else:
        h = F.max_pool2d(torch.relu(F.conv2d(images, p["c1"], p["cb1"], padding=1)), 2)
        h = F.max_pool2d(torch.relu(F.conv2d(h, p["c2"], p["cb2"], padding=1)), 2)
        h = F.linear(h.flatten(1), p["w"], p["b"])
    return F.cross_entropy(h, labels)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_batched_client_gradients_equal_plain_pytorch_per_client(kind):
    net = problem(kind)
    g = torch.Generator().manual_seed(0)
    X = net.x0().expand(4, -1) + 0.05 * torch.randn(4, net.dim, generator=g, dtype=F64)
    clients = torch.arange(4)
    batch = torch.randint(0, net.m, (4, 8), generator=g)
    for stacked, b in ((X, None), (X, batch), (X[0], batch)):
        got = net.client_grads(stacked, clients, b)
        for i in range(4):
            x = (stacked if stacked.dim() == 1 else stacked[i]).clone().requires_grad_(True)
            rows = slice(None) if b is None else b[i]
            loss = reference_loss(kind, net, x, net.X[i][rows], net.Y[i][rows])
            (want,) = torch.autograd.grad(loss, x)
            torch.testing.assert_close(got[i], want, rtol=1e-10, atol=1e-12)
    # a block of clients equals those clients one at a time (the loop a simulator avoids)
    one_by_one = torch.stack([net.client_grads(X[i], clients[i : i + 1], batch[i : i + 1])[0] for i in range(4)])
    torch.testing.assert_close(net.client_grads(X[0], clients, batch)[0], one_by_one[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(net.client_grads(X, clients, batch), one_by_one, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_full_objective_is_mean_of_clients(kind):
    net = problem(kind)
    x = net.x0()
    clients = torch.arange(4)
    torch.testing.assert_close(net.grad(x), net.client_grads(x, clients, None).mean(0), rtol=1e-10, atol=1e-12)
    assert net.loss(x) == pytest.approx(float(net.client_losses(x, clients).mean()), rel=1e-12)
    assert net.info()["test_rows"] == round(0.2 * 1797)
    assert net.dim == (4810 if kind == "mlp" else 8 * 9 + 8 + 16 * 8 * 9 + 16 + 10 * 16 * 2 * 2 + 10)


def test_seeded_init_and_x0_override():
    a, b = problem("mlp"), problem("mlp")
    assert torch.equal(a.x0(), b.x0()) and a.x0().abs().max() < 0.2
    zero = build_problem(from_dict({"problem": {"kind": "mlp", "dataset": "digits", "x0": 0.0},
                                    "algorithm": {"name": "gd", "lr": 0.1}}))
    assert torch.count_nonzero(zero.x0()) == 0


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_training_reduces_loss_and_learns_digits(kind):
    r = run({"problem": {"kind": kind, "dataset": "digits"}, "partition": {"clients": 4, "scheme": "iid"},
             "algorithm": {"name": "celgc", "lr": 0.5, "gamma": 0.5, "local_steps": 4},
             "run": {"steps": 150, "batch_size": 16, "log_every": 150, "dtype": "float32"}})
    first, last = r.metrics[0], r.metrics[-1]
    assert last["loss"] < 0.5 * first["loss"]
    assert last["test_acc"] > 0.8 and "train_acc" in last and "test_loss" in last


def test_image_data():
    digits = load_digits()
    assert digits.x.shape == (1797, 1, 8, 8) and digits.n_classes == 10 and digits.x.max() <= 1.0
    bundled = load_images("mnist", None)
    assert bundled.x.shape == (10000, 1, 28, 28) and bundled.labels[:3].tolist() == [7, 2, 1]
    with pytest.raises(DistclipError, match="not found"):
        load_images("mnist", "/nonexistent/mnist")


@pytest.mark.skipif(not MNIST.exists(), reason="shared MNIST files not present")
def test_mnist_test_split_loads():
    mnist = load_images("mnist", str(MNIST))
    assert (mnist.x == load_images("mnist", None).x).all()
