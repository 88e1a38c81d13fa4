"""Problem kind ``torch``: the user's own nn.Module, data and loss (defined in tests/problems/user_models.py, outside
the package), against the built-in stacked MLP and CNN; the vmap and loop paths; dropout independent of placement;
the BatchNorm policy; bad input as one-line errors that write nothing."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
import user_models

from distclip import run
from distclip.cli import main
from distclip.config import dump_toml, from_dict, to_toml
from distclip.errors import DistclipError
from distclip.problems.torch_module import batchnorm_to_groupnorm
from distclip.runner import build_problem

HERE = Path(__file__).parent
USER = HERE / "user_models.py"


def torch_doc(model: str = "mlp", algorithm: dict | None = None, **problem: Any) -> dict[str, Any]:
    return {"seed": 0, "problem": {"kind": "torch", "model": f"{USER}:{model}", "data": f"{USER}:digits", **problem},
            "partition": {"clients": 4, "scheme": "sorted"},
            "algorithm": algorithm or {"name": "clip21", "lr": 0.5, "tau": 0.5},
            "run": {"steps": 12, "batch_size": 16, "log_every": 4}}


def builtin_doc(kind: str, algorithm: dict | None = None) -> dict[str, Any]:
    extra = {"hidden": [user_models.HIDDEN]} if kind == "mlp" else {"channels": [4, 8]}
    doc = torch_doc(algorithm=algorithm)
    doc["problem"] = {"kind": kind, "dataset": "digits", **extra}
    return doc


def loaded(factory: Any, x: torch.Tensor) -> torch.nn.Module:
    """The user's module holding the flat weights ``x`` (so both kinds start from the same point)."""
    module = factory().double()
    torch.nn.utils.vector_to_parameters(x, module.parameters())
    return module


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_same_client_gradients_as_the_builtin_network(kind: str) -> None:
    ref = build_problem(from_dict(builtin_doc(kind)))
    x0 = ref.x0()
    factory = getattr(user_models, kind)
    for path in ("vmap", "loop"):
        mine = build_problem(from_dict(torch_doc(kind, vectorise=path)), objects={"model": loaded(factory, x0)})
        assert mine.path == path and mine.dim == ref.dim
        torch.testing.assert_close(mine.x0(), x0, rtol=0, atol=0)
        clients = torch.arange(4)
        point = x0 + 0.05 * torch.randn(4, ref.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        batch = torch.tensor([[0, 3, 5], [1, 1, 2], [7, 4, 0], [2, 6, 9]])
        for at, rows in ((x0, None), (point, batch), (point, None)):
            torch.testing.assert_close(mine.client_grads(at, clients, rows), ref.client_grads(at, clients, rows),
                                       rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(torch.tensor(mine.loss(x0)), torch.tensor(ref.loss(x0)), rtol=1e-12, atol=0)
        torch.testing.assert_close(mine.grad(x0), ref.grad(x0), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("kind", "algorithm"), [
    ("mlp", {"name": "clip21", "lr": 0.5, "tau": 0.5}),
    ("mlp", {"name": "celgc", "lr": 0.5, "gamma": 0.05, "local_steps": 4}),
    ("cnn", {"name": "celgc", "lr": 0.5, "gamma": 0.05, "local_steps": 3}),
])
def test_same_trajectories_as_the_builtin_network(kind: str, algorithm: dict) -> None:
    ref = run(builtin_doc(kind, algorithm))
    x0 = build_problem(from_dict(builtin_doc(kind, algorithm))).x0()
    mine = run(torch_doc(kind, algorithm), model=loaded(getattr(user_models, kind), x0))
    assert [r["step"] for r in mine.metrics] == [r["step"] for r in ref.metrics]
    for a, b in zip(mine.metrics, ref.metrics, strict=True):
        for key in ("loss", "grad_norm_sq", "test_loss", "test_acc", "train_acc", "clip_frac", "comm_rounds",
                    "floats_up"):
            assert a[key] == pytest.approx(b[key], rel=1e-10, abs=1e-14), (key, a["step"])
    torch.testing.assert_close(mine.model, ref.model, rtol=1e-10, atol=1e-13)
    assert isinstance(mine.module, torch.nn.Module)  # the trained model back as the user's module
    torch.testing.assert_close(torch.nn.utils.parameters_to_vector(mine.module.parameters()), mine.model)


def test_vmap_and_loop_paths_agree_and_say_so() -> None:
    a = run(torch_doc(vectorise="vmap"))
    b = run(torch_doc(vectorise="loop"))
    for x, y in zip(a.metrics, b.metrics, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-10)
    assert a.summary["problem"]["vectorise"] == "vmap" and b.summary["problem"]["vectorise"] == "loop"
    auto = run(torch_doc())
    assert auto.summary["problem"]["vectorise"] == "vmap"
    assert "vmap batches the model" in auto.summary["problem"]["vectorise_reason"]


def test_dropout_masks_depend_on_client_and_step_only() -> None:
    problem = build_problem(from_dict(torch_doc("with_dropout")))
    assert problem.path == "loop" and "dropout" in problem.reason
    x = problem.x0()
    batch = torch.tensor([[0, 1, 2, 3]] * 4)
    together = problem.client_grads(x, torch.arange(4), batch, draw=5)
    alone = torch.cat([problem.client_grads(x, torch.tensor([c]), batch[:1], draw=5) for c in range(4)])
    shuffled = problem.client_grads(x, torch.tensor([2, 0, 3, 1]), batch, draw=5)
    assert torch.equal(together, alone)
    assert torch.equal(together[[2, 0, 3, 1]], shuffled)
    assert not torch.equal(together, problem.client_grads(x, torch.arange(4), batch, draw=6))  # new step, new masks
    assert not torch.equal(together[0], together[1])  # same rows, other client: other masks
    before = torch.random.get_rng_state()
    problem.client_grads(x, torch.arange(4), batch, draw=5)
    assert torch.equal(before, torch.random.get_rng_state())  # the user's generator is left alone


def test_a_model_vmap_cannot_batch_falls_back_to_the_loop() -> None:
    result = run(torch_doc("Branchy"))
    info = result.summary["problem"]
    assert info["vectorise"] == "loop" and "vmap cannot batch this model" in info["vectorise_reason"]
    with pytest.raises(DistclipError, match="problem.vectorise = 'vmap' but vmap cannot batch"):
        run(torch_doc("Branchy", vectorise="vmap"))


def test_batchnorm_is_refused_and_converted() -> None:
    with pytest.raises(DistclipError, match=r"layer '1' \(BatchNorm2d\) keeps running statistics.*GroupNorm"):
        run(torch_doc("batchnorm"))
    converted = batchnorm_to_groupnorm(user_models.batchnorm())
    assert isinstance(converted[1], torch.nn.GroupNorm) and not list(converted.buffers())
    result = run(torch_doc(), model=converted)
    assert result.metrics[-1]["loss"] < result.metrics[0]["loss"]


def test_natural_partition_and_python_loss(tmp_path: Path) -> None:
    doc = torch_doc(data=f"{USER}:per_client")
    del doc["partition"]["scheme"]
    seen = []

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(len(y))
        return torch.nn.functional.cross_entropy(out, y)

    result = run(doc, loss=loss)
    info = result.summary["problem"]
    assert info["partition"] == "natural" and info["rows_per_client"] == min(
        len(d) for d in user_models.per_client())
    assert seen and info["objects"]["loss"] == "python object"


def test_config_toml_reruns_the_run(tmp_path: Path) -> None:
    first = run(torch_doc(algorithm={"name": "celgc", "lr": 0.5, "gamma": 0.05, "local_steps": 2}), tmp_path / "a")
    text = (tmp_path / "a" / "config.toml").read_text()
    assert str(USER) in text and 'kind = "torch"' in text
    again = run(tmp_path / "a" / "config.toml", tmp_path / "b")
    assert comparable(again.metrics) == comparable(first.metrics)
    assert tomllib.loads(text)["problem"]["model"].endswith("user_models.py:mlp")


def test_relative_paths_are_read_from_the_config_folder(tmp_path: Path, monkeypatch: Any) -> None:
    config = HERE / "_relative.toml"
    try:
        config.write_text(to_toml(from_dict(torch_doc())).replace(f"{HERE}/", ""))  # model = "user_models.py:mlp"
        assert '"user_models.py:mlp"' in config.read_text()
        monkeypatch.chdir(tmp_path)
        assert main(["run", str(config), "--out", str(tmp_path / "out"), "--no-plot", "--quiet"]) == 0
    finally:
        config.unlink()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["status"] == "ok"


BAD = {
    "missing-file": ({"model": "nowhere.py:mlp"}, "problem.model: file"),
    "missing-module": ({"model": "no_such_package.models:mlp"}, "module 'no_such_package.models' cannot be imported"),
    "missing-name": ({"model": f"{USER}:nope"}, "has no 'nope'"),
    "factory-raises": ({"model": f"{USER}:broken"}, "broken() raised ValueError: no GPU found; fix the factory"),
    "loss-not-scalar": ({"loss": f"{USER}:summed_loss"}, "problem.loss returned [2], not a scalar"),
    "no-labels": ({"data": f"{USER}:digits_unlabelled"}, "partition.scheme = 'sorted' splits by label"),
    "shape-changes": ({"model": f"{USER}:unstable"}, "parameters change between calls"),
    "bad-vectorise": ({"vectorise": "jit"}, "problem.vectorise = 'jit' is not allowed"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(case: str, tmp_path: Path, capsys: Any) -> None:
    problem, message = BAD[case]
    doc = torch_doc()
    doc["problem"].update(problem)
    config = tmp_path / "c.toml"
    config.write_text(dump_toml(doc))
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())
