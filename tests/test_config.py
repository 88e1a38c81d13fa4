"""Config validation, overrides, the resolved-config round trip and sweep expansion (distclip.config)."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

from distclip import runner
from distclip.algorithms.base import lr_factor
from distclip.config import Config, expand, from_dict, load, to_toml
from distclip.errors import DistclipError


def toy(**alg: Any) -> dict[str, Any]:
    return {"problem": {"kind": "quadratic", "centres": [3.0, -3.0], "x0": 1.0},
            "algorithm": {"name": "clip21", "lr": 0.5, "tau": 1.0, **alg}, "run": {"steps": 20}}


def bc(name: str, clients: int = 4, batch: int = 0, **alg: Any) -> dict[str, Any]:
    return {"seed": 2, "problem": {"kind": "logreg", "dataset": "breast-cancer_scale", "lambda": 0.1},
            "partition": {"clients": clients, "scheme": "contiguous"}, "algorithm": {"name": name, **alg},
            "run": {"steps": 15, "batch_size": batch}}


def with_(doc: dict[str, Any], section: str, **values: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc.setdefault(section, {}).update(values)
    return doc


def without(doc: dict[str, Any], section: str, key: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    del doc[section][key]
    return doc


def error_of(fn: Any, *args: Any) -> str:
    with pytest.raises(DistclipError) as info:
        fn(*args)
    msg = str(info.value)
    assert msg and "\n" not in msg, f"not a one-line message: {msg!r}"
    return msg


TOY = toy()
INVALID: list[tuple[str, dict[str, Any], str]] = [
    # unknown keys and sections
    ("unknown-key", with_(TOY, "problem", foo=1), "unknown key problem.foo"),
    ("unknown-alg-key", with_(TOY, "algorithm", taus=1.0), "unknown key algorithm.taus"),
    ("unknown-section", dict(TOY, foo={"a": 1}), "unknown section"),
    ("section-not-table", dict(TOY, run=3), "run must be a table"),
    # wrong types
    ("type-tau-str", with_(TOY, "algorithm", tau="x"), "algorithm.tau = 'x' has the wrong type"),
    ("type-steps-float", with_(TOY, "run", steps=2.5), "run.steps = 2.5 has the wrong type"),
    ("type-steps-bool", with_(TOY, "run", steps=True), "run.steps = True has the wrong type"),
    ("type-local-steps", toy(name="celgc", local_steps=2.0), "algorithm.local_steps = 2.0 has the wrong type"),
    ("type-seed", dict(TOY, seed=1.5), "seed = 1.5"),
    ("seed-negative", dict(TOY, seed=-1), "seed = -1"),
    # thresholds
    ("tau-zero", toy(tau=0.0), "algorithm.tau = 0.0 must be > 0"),
    ("tau-negative", toy(tau=-1.0), "algorithm.tau = -1.0 must be > 0"),
    ("tau-nan", toy(tau=math.nan), "must be > 0"),
    ("tau-list-zero", toy(tau=[1.0, 0.0]), "must be > 0"),
    ("tau-missing", without(TOY, "algorithm", "tau"), "clip21 needs algorithm.tau"),
    ("tau-list-length", toy(tau=[1.0, 2.0, 3.0]), "algorithm.tau lists 3"),
    # step sizes
    ("lr-zero", toy(lr=0), "algorithm.lr = 0 must be > 0"),
    ("lr-negative", toy(lr=-0.5), "algorithm.lr = -0.5 must be > 0"),
    ("lr-inf", toy(lr=math.inf), "algorithm.lr = inf must be > 0 and finite"),
    ("lr-0/L", toy(lr="0/L"), "algorithm.lr = '0/L'"),
    ("lr--1/L", toy(lr="-1/L"), "algorithm.lr = '-1/L'"),
    ("lr-text", toy(lr="fast"), "algorithm.lr = 'fast'"),
    ("lr-missing", without(TOY, "algorithm", "lr"), "clip21 needs algorithm.lr"),
    # algorithm names and keys that do not apply
    ("name-unknown", toy(name="adam"), "algorithm.name = 'adam' is not allowed"),
    ("gd-tau", toy(name="gd"), "algorithm.tau does not apply to gd"),
    ("clip21-local-steps", toy(local_steps=2), "algorithm.local_steps does not apply to clip21"),
    ("clip21-momentum", toy(momentum=0.9), "algorithm.momentum does not apply to clip21"),
    ("avg-lr", toy(name="clip21-avg"), "algorithm.lr does not apply to clip21-avg"),
    ("ef21-tau", toy(name="ef21", compressor="identity"), "algorithm.tau does not apply to ef21"),
    ("init-choice", toy(init="compressed_grad"), "algorithm.init (for clip21)"),
    # batches
    ("gd-batch", with_(bc("gd", lr=0.1), "run", batch_size=4), "gd uses full gradients"),
    ("clip-gd-batch", with_(bc("clip-gd", lr=0.1, tau=1.0), "run", batch_size=4), "clip-gd uses full gradients"),
    ("sgd-no-batch", bc("sgd", lr=0.1), "sgd needs run.batch_size > 0"),
    ("batch-negative", with_(bc("sgd", lr=0.1), "run", batch_size=-1), "run.batch_size = -1"),
    # CELGC
    ("celgc-gamma-and-tau", toy(name="celgc", gamma=0.5), "celgc needs exactly one of algorithm.gamma"),
    ("celgc-neither", without(toy(name="celgc"), "algorithm", "tau"), "celgc needs exactly one of algorithm.gamma"),
    ("celgc-gamma-length", with_(without(toy(name="celgc"), "algorithm", "tau"), "algorithm", gamma=[1.0]),
     "algorithm.gamma lists 1"),
    ("celgc-baseline-global", toy(name="celgc", baseline=True, option="global_average"), "baseline"),
    ("celgc-coordinate", toy(name="celgc", clip="coordinate"), "coordinate"),
    ("celgc-option", toy(name="celgc", option="median"), "algorithm.option = 'median'"),
    ("local-steps-zero", toy(name="celgc", local_steps=0), "algorithm.local_steps = 0"),
    ("momentum-one", toy(name="celgc", momentum=1.0), "algorithm.momentum = 1.0"),
    ("nesterov-no-momentum", toy(name="celgc", nesterov=True), "nesterov"),
    ("weight-decay-negative", toy(name="celgc", weight_decay=-0.1), "algorithm.weight_decay"),
    # clip placement and operators
    ("clip-kind", toy(clip="hard"), "algorithm.clip = 'hard'"),
    ("clip-at-server-list", toy(name="clip-gd", clip_at="server", tau=[1.0, 2.0]), "per-client thresholds"),
    ("naive-at-client", toy(name="naive-parallel-clip", clip_at="client"), "algorithm.clip_at (for naive-parallel"),
    ("ef21-top-k-without-k", without(toy(name="ef21"), "algorithm", "tau"), "ef21 with compressor top-k needs"),
    ("avg-logreg", bc("clip21-avg", tau=1.0), "clip21-avg averages the vectors a_i"),
    # problems
    ("logreg-no-data", {"problem": {"kind": "logreg"}, "algorithm": {"name": "gd", "lr": 0.1}}, "logreg needs"),
    ("logreg-centres", with_(bc("gd", lr=0.1), "problem", centres=[1.0]),
     "problem.centres does not apply to kind = 'logreg'"),
    ("lambda-negative", with_(bc("gd", lr=0.1), "problem", **{"lambda": -0.1}), "problem.lambda = -0.1"),
    ("quadratic-dataset", with_(TOY, "problem", dataset="a9a"), "problem.dataset does not apply to kind = 'quadratic'"),
    ("quadratic-no-centres", without(TOY, "problem", "centres"), "quadratic needs problem.centres"),
    ("centres-ragged", with_(TOY, "problem", centres=[[1.0, 2.0], [3.0]]), "same non-zero length"),
    ("curvatures-length", with_(TOY, "problem", curvatures=[1.0]), "problem.curvatures has 1"),
    ("curvature-zero", with_(TOY, "problem", curvatures=[1.0, 0.0]), "problem.curvatures"),
    ("clients-mismatch", with_(TOY, "partition", clients=3), "partition.clients = 3"),
    ("clients-zero", with_(bc("gd", lr=0.1), "partition", clients=0), "partition.clients = 0"),
    ("scheme", with_(bc("gd", lr=0.1), "partition", scheme="random"), "partition.scheme = 'random'"),
    ("kind", with_(TOY, "problem", kind="svm"), "problem.kind = 'svm'"),
    ("features", with_(bc("gd", lr=0.1), "problem", features="csr"), "problem.features = 'csr'"),
    # run section
    ("steps-negative", with_(TOY, "run", steps=-1), "run.steps = -1"),
    ("log-every", with_(TOY, "run", log_every=0), "run.log_every = 0"),
    ("dtype", with_(TOY, "run", dtype="float16"), "run.dtype = 'float16'"),
    ("device", with_(TOY, "run", device="tpu"), "run.device = 'tpu'"),
    # sweeps
    ("sweep-not-array", dict(TOY, sweep={"grid": {}}), "sweep must be an array of tables"),
    ("sweep-key", dict(TOY, sweep=[{"grids": {}}]), "unknown key sweep.grids"),
    ("sweep-empty-grid", dict(TOY, sweep=[{"grid": {"algorithm.tau": []}}]), "sweep.grid must map keys"),
]


@pytest.mark.parametrize(("doc", "message"), [(d, m) for _, d, m in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_configs_raise_one_line_errors(doc: dict[str, Any], message: str) -> None:
    assert message in error_of(from_dict, doc)


def test_valid_examples() -> None:
    for doc in (toy(), toy(tau=math.inf), toy(tau=[1.0, 2.0]), toy(name="clip-gd", clip="soft"),
                toy(name="celgc", local_steps=4, option="max", momentum=0.9, nesterov=True),
                bc("gd", lr="1/L"), bc("gd", lr="2.5/L"), bc("sgd", batch=8, lr=0.1),
                bc("ef21", lr="1/L", k=3), bc("celgc", batch=4, lr=0.3, gamma=[0.1, 0.2, 0.3, 0.4]),
                with_(toy(), "partition", clients=2)):
        cfg = from_dict(doc)
        assert isinstance(cfg, Config)


def test_defaults_resolved() -> None:
    cfg = from_dict(toy())
    assert cfg.algorithm.init == "clip_grad" and not hasattr(cfg.algorithm, "clip_at")  # clip21 clips on clients
    assert from_dict(toy(name="clip-gd")).algorithm.clip_at == "client"
    assert cfg.partition.clients == 2 and cfg.seed == 0
    assert from_dict(bc("ef21", lr=0.1, k=1)).algorithm.init == "compressed_grad"
    assert from_dict(toy(name="naive-parallel-clip")).algorithm.clip_at == "server"
    assert from_dict(toy(name="celgc")).algorithm.option == "local"
    cfg = from_dict(bc("gd", lr=1))
    assert cfg.problem.lam == 0.1 and isinstance(cfg.run.steps, int)
    assert lr_factor("1/L") == (1.0, True) and lr_factor("/L") == (1.0, True)
    assert lr_factor("0.5/L") == (0.5, True) and lr_factor(2) == (2.0, False)


def test_clients_exceeding_rows_raise_when_built() -> None:
    cfg = from_dict(bc("gd", clients=684, lr=0.1))  # breast-cancer has 683 rows
    msg = error_of(runner.build_problem, cfg)
    assert "partition.clients = 684" in msg
    assert "683" in error_of(runner.run, bc("gd", clients=684, lr=0.1))
    runner.build_problem(from_dict(bc("gd", clients=683, lr=0.1)))  # one row each is fine


def test_build_time_errors_are_one_line() -> None:
    error_of(runner.build_problem, from_dict(with_(TOY, "problem", x0=[1.0, 2.0])))  # x0 of the wrong dimension
    bad = with_(toy(name="celgc"), "run", batch_size=2)  # quadratic has no samples
    cfg = from_dict(bad)
    error_of(runner.run, cfg)
    error_of(runner.build_problem, from_dict({"problem": {"kind": "logreg", "dataset": "nope"},
                                              "algorithm": {"name": "gd", "lr": 0.1}}))


# -- files and overrides ----------------------------------------------------------------------------------------
def write(tmp_path: Path, text: str, name: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_load_and_overrides(toy_config: Path, tmp_path: Path) -> None:
    path = toy_config
    cfg = load(path)
    assert cfg.seed == 0 and cfg.algorithm.tau == 1.0 and cfg.run.steps == 30
    cfg = load(path, ["algorithm.tau=0.1"])
    assert cfg.algorithm.tau == 0.1
    cfg = load(path, ["algorithm.tau = inf", "run.steps=3", "seed=9", "algorithm.init=zero"])
    assert cfg.algorithm.tau == math.inf and cfg.run.steps == 3 and cfg.seed == 9 and cfg.algorithm.init == "zero"
    cfg = load(path, ["algorithm.tau=[1.0, 2.0]", "algorithm.name=\"clip-gd\"", "algorithm.clip_at=client"])
    assert cfg.algorithm.tau == [1.0, 2.0] and cfg.algorithm.name == "clip-gd"
    cfg = load(path, ["partition.clients=2"])  # a new section from an override
    assert cfg.partition.clients == 2
    # the override wins over the file and gives the same run as writing it into the file
    a = runner.run(load(path, ["algorithm.tau=0.1"]))
    b = runner.run(load(write(tmp_path, path.read_text().replace("tau = 1.0", "tau = 0.1"), "d.toml")))
    assert a.model.tolist() == b.model.tolist()


def test_load_errors(toy_config: Path, tmp_path: Path) -> None:
    path = toy_config
    assert "algorithm.tau = -1" in error_of(load, path, ["algorithm.tau=-1"])
    assert "section.key=value" in error_of(load, path, ["algorithm.tau"])
    assert "section.key=value" in error_of(load, path, ["=3"])
    assert "unknown key algorithm.tua" in error_of(load, path, ["algorithm.tua=1"])
    assert "not found" in error_of(load, tmp_path / "missing.toml")
    assert "not valid TOML" in error_of(load, write(tmp_path, "[problem\nkind = 1", "bad.toml"))
    assert "wrong type" in error_of(load, path, ["run.steps=ten"])


# -- the resolved config round-trips -------------------------------------------------------------------------------
ROUND_TRIP = {
    "toy-clip21": toy(),
    "toy-zero-inf": toy(init="zero", tau=math.inf),
    "toy-per-client": toy(name="clip-gd", tau=[1.0, 2.0]),
    "toy-server-soft": toy(name="clip-gd", clip_at="server", clip="soft"),
    "quad-3d-celgc": {"problem": {"kind": "quadratic", "centres": [[1.0, 2.0, 0.0], [-1.0, 0.0, 3.0]],
                                  "curvatures": [1, 3], "x0": [0.5, 0.5, 0.5]},
                      "algorithm": {"name": "celgc", "lr": 0.3, "tau": 2, "local_steps": 3, "option": "max",
                                    "momentum": 0.5, "weight_decay": 0.01}, "run": {"steps": 12, "log_every": 5}},
    "bc-celgc": bc("celgc", batch=4, lr="1/L", gamma=0.05, local_steps=2),
    "bc-ef21": bc("ef21", lr="2/L", k=2, init="grad"),
    "bc-sgd-iid": with_(bc("sgd", batch=3, lr=0.2, momentum=0.9), "partition", scheme="iid"),
    "bc-sparse": with_(bc("clip21", lr="1/L", tau=0.1), "problem", features="sparse", x0=0.1),
    "avg": {"problem": {"kind": "quadratic", "centres": [[5.0, 0.0], [-1.0, 2.0]]},
            "algorithm": {"name": "clip21-avg", "tau": 1.0}, "run": {"steps": 6}},
}


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_to_toml_round_trips_to_the_same_run(name: str) -> None:
    cfg = from_dict(copy.deepcopy(ROUND_TRIP[name]))
    text = to_toml(cfg)
    again = from_dict(tomllib.loads(text))
    assert to_toml(again) == text  # a fixed point
    for section in ("problem", "partition", "algorithm", "run"):
        assert getattr(again, section) == getattr(cfg, section), section
    assert again.seed == cfg.seed
    a, b = runner.run(cfg), runner.run(again)
    assert comparable(a.metrics) == comparable(b.metrics)
    assert torch.equal(a.model, b.model)


def test_to_toml_written_by_run(tmp_path: Path) -> None:
    res = runner.run(bc("clip21", lr="1/L", tau=0.5), tmp_path / "out")
    text = (tmp_path / "out" / "config.toml").read_text(encoding="utf-8")
    assert text == to_toml(res.config)
    rerun = runner.run(from_dict(tomllib.loads(text)))
    assert comparable(rerun.metrics) == comparable(res.metrics)
    assert "lambda = 0.1" in text and "tau = 0.5" in text and 'lr = "1/L"' in text
    assert "local_steps" not in text and "momentum" not in text  # keys that do not apply are left out


# -- sweeps ------------------------------------------------------------------------------------------------------
def test_sweep_expansion() -> None:
    doc = toy()
    doc["sweep"] = [
        {"grid": {"algorithm.name": ["clip21", "clip-gd"], "algorithm.tau": [1.0, 0.5]}},
        {"set": {"algorithm.init": "zero"}, "grid": {"algorithm.lr": [0.5, 0.25]}, "label": "zero-lr{lr}"},
    ]
    cfg = from_dict(doc)
    assert cfg.sweep and len(cfg.sweep) == 2
    runs = expand(cfg)
    labels = [label for label, _ in runs]
    assert labels == ["clip21-1.0", "clip21-0.5", "clip-gd-1.0", "clip-gd-0.5", "zero-lr0.5", "zero-lr0.25"]
    got = [(c.algorithm.name, c.algorithm.tau, c.algorithm.lr, getattr(c.algorithm, "init", None)) for _, c in runs]
    assert got == [("clip21", 1.0, 0.5, "clip_grad"), ("clip21", 0.5, 0.5, "clip_grad"),
                   ("clip-gd", 1.0, 0.5, None), ("clip-gd", 0.5, 0.5, None),
                   ("clip21", 1.0, 0.5, "zero"), ("clip21", 1.0, 0.25, "zero")]
    for _, c in runs:
        assert not c.sweep and c.run.steps == 20
    # each expanded run equals the same config written without a sweep
    single = runner.run(from_dict(toy(name="clip-gd", tau=0.5)))
    assert comparable(runner.run(runs[3][1]).metrics) == comparable(single.metrics)
    # a sweep config is not a single run
    assert "sweep" in error_of(runner.run, cfg)


def test_sweep_errors() -> None:
    doc = toy()
    doc["sweep"] = [{"grid": {"algorithm.tau": [1.0, -1.0]}}]
    msg = error_of(expand, from_dict(doc))
    assert "sweep run '-1.0'" in msg and "algorithm.tau = -1.0 must be > 0" in msg
    doc["sweep"] = [{"set": {"algorithm.tau": 1.0}}, {"set": {"algorithm.tau": 1.0}}]
    assert "distinct labels" in error_of(expand, from_dict(doc))
    doc["sweep"] = [{"set": "tau"}]
    assert "sweep.set must be a table" in error_of(from_dict, doc)


def test_sweep_config_round_trips_through_toml() -> None:
    doc = toy()
    doc["sweep"] = [{"grid": {"algorithm.tau": [1.0, 0.1]}, "label": "tau{tau}"}]
    cfg = from_dict(doc)
    again = from_dict(tomllib.loads(to_toml(cfg)))
    assert [(label, c.algorithm.tau) for label, c in expand(again)] == [("tau1.0", 1.0), ("tau0.1", 0.1)]
    assert [label for label, _ in expand(cfg)] == [label for label, _ in expand(again)]


def test_relative_step_size_resolved_in_summary() -> None:
    res = runner.run(with_(bc("gd", lr="2/L"), "run", steps=1))
    problem = runner.build_problem(from_dict(bc("gd", lr="2/L")))
    assert res.summary["L"] == pytest.approx(problem.smoothness(), rel=1e-14)
    assert res.summary["lr"] == pytest.approx(2.0 / res.summary["L"], rel=1e-14)
    res = runner.run(toy(lr="1/L"))  # quadratic: L = mean curvature = 1
    assert res.summary["L"] == 1.0 and res.summary["lr"] == 1.0
    res = runner.run(toy())
    assert "L" not in res.summary and res.summary["lr"] == 0.5
    assert res.summary["problem"]["dim"] == 1 and res.summary["n_clients"] == 2


# -- the generated reference -------------------------------------------------------------------------------------
def test_config_reference_is_current() -> None:
    """docs/config.md is generated from the dataclasses; regenerate it with `python -m distclip.reference`."""
    from distclip.reference import markdown

    path = Path(__file__).parents[1] / "docs" / "config.md"
    assert path.read_text(encoding="utf-8") == markdown(), "docs/config.md is stale: python -m distclip.reference"


def test_every_key_is_documented_and_every_component_listed() -> None:
    from distclip import schema
    from distclip.algorithms import ALGORITHMS
    from distclip.problems import kinds
    from distclip.reference import component, markdown

    text = markdown()
    for name, a in ALGORITHMS.items():
        assert f"### name = {name!r}" in text
        for key, k in schema.keys(a.Params).items():
            assert k.help, f"{name}: algorithm.{key} has no help text"
            assert key in component(name)
    for name in kinds.MODULES:
        assert repr(name) in text
        for key, k in schema.keys(kinds.get(name).config).items():
            assert k.help, f"{name}: problem.{key} has no help text"
    assert "unknown" not in component("celgc") and "required" in component("celgc")  # lr is required
    assert "neither an algorithm nor a problem kind" in error_of(component, "adam")


def test_set_with_an_empty_value_unsets_the_key(toy_config: Path) -> None:
    assert load(toy_config, ["run.steps="]).run.steps == 1000  # the default again
    assert "clip21 needs algorithm.tau" in error_of(load, toy_config, ["algorithm.tau="])
    assert "must be an integer >= 0" not in error_of(load, toy_config, ["run.steps=2e2"])
    assert "expected an integer" in error_of(load, toy_config, ["run.steps=2e2"])
