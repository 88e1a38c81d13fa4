"""ResNet / VGG-11 on stacked client weights: equal to torch.nn models client by client, standard sizes, trains."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distclip.config import from_dict
from distclip.errors import DistclipError
from distclip.problems.models import Layout
from distclip.problems.resnet import deep_model
from distclip.runner import build_problem, run

F64 = torch.float64


class RefBlock(nn.Module):
    """A basic block with option-A shortcut and GroupNorm, written with torch.nn."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1, self.gn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(groups, cout)
        self.conv2, self.gn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.GroupNorm(groups, cout)
        self.stride, self.pad = stride, cout // 4

    def forward(self, x):
        out = self.gn2(self.conv2(F.relu(self.gn1(self.conv1(x)))))
        short = x if self.stride == 1 else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


class RefResNet(nn.Module):
    def __init__(self, depth: int, cin: int, width: int, groups: int) -> None:
        super().__init__()
        self.conv, self.gn = nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.GroupNorm(groups, width)
        n, blocks, c = (depth - 2) // 6, [], width
        for s in range(3):
            for i in range(n):
                out = width << s
                blocks.append(RefBlock(c, out, 2 if s and not i else 1, groups))
                c = out
        self.blocks, self.fc = nn.Sequential(*blocks), nn.Linear(c, 10)

    def forward(self, x):
        return self.fc(self.blocks(F.relu(self.gn(self.conv(x)))).mean(dim=(2, 3)))


def ref_vgg11(cin: int, width: int, groups: int) -> nn.Module:
    layers = []
    for item in (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"):
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, width * item, 3, padding=1), nn.GroupNorm(groups, width * item), nn.ReLU()]
            cin = width * item
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin, 10))


def problem(kind, path, clients=3, **extra):
    return build_problem(from_dict({
        "seed": 3,
        "problem": {"kind": kind, "dataset": "cifar10", "path": str(path), **extra},
        "partition": {"clients": clients, "scheme": "iid"},
        "algorithm": {"name": "sgd", "lr": 0.1},
        "run": {"batch_size": 4, "dtype": "float64"},
    }))


@pytest.mark.parametrize("kind, width", [("resnet20", 4), ("vgg11", 2)])
def test_stacked_clients_equal_torch_nn_models_one_client_at_a_time(fake_cifar10, kind, width):
    net = problem(kind, fake_cifar10, width=width, groups=2)
    g = torch.Generator().manual_seed(1)
    X = net.x0().expand(3, -1) + 0.1 * torch.randn(3, net.dim, generator=g, dtype=F64)  # GN affines off (1, 0)
    clients, batch = torch.arange(3), torch.randint(0, net.m, (3, 4), generator=g)
    got = net.client_grads(X, clients, batch)
    for i in range(3):
        ref = (RefResNet(20, 3, width, 2) if kind == "resnet20" else ref_vgg11(3, width, 2)).to(F64)
        params = list(ref.parameters())
        pieces = net.layout.split(X[i : i + 1])
        assert [tuple(p.shape) for p in params] == [tuple(v.shape[1:]) for v in pieces.values()]
        with torch.no_grad():
            for p, v in zip(params, pieces.values(), strict=True):
                p.copy_(v[0])
        images = net._inputs(net.X[i][batch[i]].unsqueeze(0))[0]
        loss = F.cross_entropy(ref(images), net.Y[i][batch[i]])
        want = torch.cat([q.flatten() for q in torch.autograd.grad(loss, params)])
        torch.testing.assert_close(got[i], want, rtol=1e-9, atol=1e-12)
        logits = net.model.forward(net._params(X[i : i + 1]), images.unsqueeze(0))[0]
        torch.testing.assert_close(logits, ref(images), rtol=1e-10, atol=1e-12)


def test_augmented_gradients_do_not_depend_on_the_block_of_clients(fake_cifar10):
    net = problem("resnet20", fake_cifar10, width=2, groups=1, augment=True)
    X = net.x0().expand(3, -1).clone()
    clients, batch = torch.arange(3), torch.randint(0, net.m, (3, 4), generator=torch.Generator().manual_seed(0))
    block = net.client_grads(X, clients, batch, draw=7)
    alone = torch.stack([net.client_grads(X[i], clients[i : i + 1], batch[i : i + 1], draw=7)[0] for i in range(3)])
    torch.testing.assert_close(block, alone, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(net.client_grads(X, clients, batch, draw=8), block)  # a new draw, new crops
    plain = problem("resnet20", fake_cifar10, width=2, groups=1)
    torch.testing.assert_close(plain.grad(X[0]), net.grad(X[0]))  # the metrics are never augmented


def test_standard_parameter_counts():
    counts = {k: Layout(deep_model(k, (3, 32, 32), 10).shapes).dim for k in ("resnet20", "resnet32", "resnet56",
                                                                               "vgg11")}
    assert counts == {"resnet20": 269_722, "resnet32": 464_154, "resnet56": 853_018, "vgg11": 9_231_114}


def test_bad_shapes_fail_with_a_fix():
    with pytest.raises(DistclipError, match="divisible by 32"):
        deep_model("vgg11", (1, 8, 8), 10)
    with pytest.raises(DistclipError, match="divisible by it.*problem.groups"):
        deep_model("resnet20", (3, 32, 32), 10, width=6, groups=4)
    with pytest.raises(DistclipError, match="must be even"):
        deep_model("resnet32", (3, 32, 32), 10, width=5, groups=1)


def test_init_and_eval_rows(fake_cifar10):
    net = problem("resnet20", fake_cifar10, eval_rows=10)
    p = net.layout.split(net.x0().unsqueeze(0))
    assert torch.equal(p["s1.b0.gn2.weight"], torch.ones(1, 32, dtype=F64)) and p["fc.b"].abs().max() <= 1 / 8
    assert p["s2.b2.conv1"].std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    assert net.info()["eval_rows"] == 10 and len(net.Y_test) == 10 and net.info()["test_rows"] == 10


def test_a_tiny_resnet_learns_digits():
    r = run({"problem": {"kind": "resnet20", "dataset": "digits", "width": 4}, "partition": {"clients": 4},
             "algorithm": {"name": "celgc", "lr": 0.3, "gamma": 1.0, "local_steps": 2},
             "run": {"steps": 60, "batch_size": 16, "log_every": 60, "dtype": "float32"}})
    first, last = r.metrics[0], r.metrics[-1]
    assert last["loss"] < 0.5 * first["loss"] and last["test_acc"] > 0.6
