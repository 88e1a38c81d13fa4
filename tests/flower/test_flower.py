"""distclip's rules inside Flower: the same trajectories and counters as distclip's simulator.

The replay core (:mod:`distclip.flower.node`) is checked without Flower by a hand-written driver that plays
the server (average in client order, send back); the ClientApp/ServerApp pair is checked in Flower's
simulation runtime, skipped where the ``flower`` extra (flwr[simulation]) is not installed.
"""

from __future__ import annotations

import math

import pytest
import torch

from distclip import run
from distclip.algorithms import ALGORITHMS
from distclip.config import from_dict, to_toml
from distclip.errors import DistclipError
from distclip.flower.node import Saved, advance, build
from distclip.flower.sampling import check_fraction

RULES = {
    "clip21": ({"name": "clip21", "lr": "1/L", "tau": 0.01}, 0),
    "celgc": ({"name": "celgc", "lr": 1.0, "gamma": 0.05, "local_steps": 3, "momentum": 0.9}, 8),
    "dp-fedavg": ({"name": "dp-fedavg", "lr": 0.5, "tau": 0.05, "local_steps": 3, "adaptive_clip": "geometric"}, 8),
}


def logreg(name: str, clients: int, steps: int = 9) -> dict:
    algorithm, batch = RULES[name]
    return {"seed": 3, "problem": {"kind": "logreg", "dataset": "breast-cancer_scale", "lambda": 0.1},
            "partition": {"clients": clients, "scheme": "sorted"}, "algorithm": algorithm,
            "run": {"steps": steps, "batch_size": batch, "log_every": 3, "dtype": "float64"}}


def assert_same(rows: list[dict], expected: list[dict]) -> None:
    assert [r["step"] for r in rows] == [r["step"] for r in expected]
    for got, want in zip(rows, expected, strict=True):
        for key in ("comm_rounds", "floats_up", "floats_down", "bytes_up", "bytes_down"):
            assert got[key] == want[key], (key, got["step"])
        for key in ("loss", "grad_norm_sq", "clip_frac", "clip_frac_mean"):
            assert math.isclose(got[key], want[key], rel_tol=1e-9, abs_tol=1e-12), (key, got["step"])


def drive(doc: dict) -> list[tuple[int, torch.Tensor, int]]:
    """Play the server by hand: (step, model, exchanges) at each logged step, nodes run by :func:`advance`."""
    toml = to_toml(from_dict(doc))
    n = doc["partition"]["clients"]
    saved = [Saved() for _ in range(n)]
    out = []
    for until in (0, 3, 6, 9):
        result, exchanges = None, 0
        while True:
            replies = [advance(toml, c, saved[c], until, result) for c in range(n)]
            assert len({(r.kind, r.step, r.stage_pos) for r in replies}) == 1
            if replies[0].kind == "model":
                assert all(torch.equal(replies[0].payload, r.payload) for r in replies)
                break
            exchanges += replies[0].kind == "mean"
            result = torch.stack([r.payload for r in replies]).mean(dim=0)
        out.append((until, replies[0].payload, exchanges))
    return out


@pytest.mark.parametrize("clients", [2, 5, 8])
@pytest.mark.parametrize("name", list(RULES))
def test_replayed_nodes_follow_the_simulator(name, clients):
    doc = logreg(name, clients)
    result = run(from_dict(doc))
    built = build(to_toml(from_dict(doc)), 0)
    assert built.rules is ALGORITHMS[doc["algorithm"]["name"]].rules
    rounds = 0
    for (step, x, exchanges), want in zip(drive(doc), result.metrics, strict=True):
        rounds += exchanges
        assert step == want["step"] and rounds == want["comm_rounds"]
        assert math.isclose(_loss(doc, x), want["loss"], rel_tol=1e-12)


def _loss(doc: dict, x: torch.Tensor) -> float:
    from distclip.problems.kinds import build_problem

    return build_problem(from_dict(doc)).loss(x)


def test_sampling_is_refused_in_flower():
    clip21 = from_dict(logreg("clip21", 4))
    with pytest.raises(DistclipError, match="needs every client in every round"):
        check_fraction(ALGORITHMS["clip21"], clip21, 0.5)
    check_fraction(ALGORITHMS["clip21"], clip21, 1.0)
    doc = logreg("dp-fedavg", 4)
    doc["algorithm"] = {**doc["algorithm"], "client_rate": 0.5}
    with pytest.raises(DistclipError, match="client sampling .* is not supported in Flower yet"):
        check_fraction(ALGORITHMS["dp-fedavg"], from_dict(doc), 1.0)
    doc = logreg("clip21", 4)
    doc["sampling"] = {"scheme": "fixed", "clients": 2}
    with pytest.raises(DistclipError, match="is not supported in Flower yet"):
        check_fraction(ALGORITHMS["clip21"], from_dict(doc), 1.0)


def test_a_server_keeping_an_average_to_itself_is_refused():
    doc = {"problem": {"kind": "quadratic", "centres": [[1.0, 0.0], [0.0, 2.0]]},
           "algorithm": {"name": "clip21-avg", "tau": 1.0}, "run": {"steps": 3}}
    toml = to_toml(from_dict(doc))
    saved = Saved()
    advance(toml, 0, saved, 0, None)
    with pytest.raises(DistclipError, match="keeps an average on the server only"):
        advance(toml, 0, saved, 1, None)


# -- in Flower's simulation runtime ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("name", "clients"), [("clip21", 8), ("celgc", 2), ("dp-fedavg", 8)])
def test_flower_simulation_matches_the_simulator(name, clients, tmp_path):
    """One Flower simulation per rule (Ray's start dominates); the replay core is checked at 2, 5, 8 above."""
    pytest.importorskip("ray", reason="Flower's simulation runtime needs the flower extra: pip install "
                        "'distclip[flower]'")
    from distclip.flower import run_simulation

    doc = logreg(name, clients)
    expected = run(from_dict(doc))
    got = run_simulation(from_dict(doc), tmp_path / "run")
    assert_same(got.metrics, expected.metrics)
    assert torch.allclose(got.model, expected.model, rtol=1e-9, atol=1e-12)
    assert got.summary["engine"] == "Flower" and (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_top_k_message_carries_k_values_and_k_indices():
    pytest.importorskip("flwr", reason="the Flower records need the flower extra: pip install 'distclip[flower]'")
    from distclip.flower.node import Reply
    from distclip.flower.records import reply_content, row

    payload = torch.tensor([0.0, -3.0, 0.0, 0.5, 0.0, 2.0], dtype=torch.float64)
    content = reply_content(Reply("mean", 4, payload, sparse_k=2))
    arrays = content.array_records["arrays"].to_torch_state_dict()
    assert sorted(arrays) == ["indices", "values"]
    assert arrays["values"].tolist() == [-3.0, 2.0] and arrays["indices"].tolist() == [1, 5]
    assert row(content).tolist() == [0.0, -3.0, 0.0, 0.0, 0.0, 2.0]
    assert torch.equal(row(reply_content(Reply("mean", 4, payload))), payload)


# -- ServerApp strategy and ClientApp handlers over an in-process grid (Flower's records, no Ray) -------------
class LocalGrid:
    """Delivers each message to the ClientApp handler of its node at once; ``gone`` nodes never answer."""

    def __init__(self, partition_ids: list[int], gone_after: int | None = None) -> None:
        from flwr.app import Context, RecordDict

        self.contexts = {100 + i: Context(run_id=1, node_id=100 + i, node_config={"partition-id": p},
                                          state=RecordDict(), run_config={}) for i, p in enumerate(partition_ids)}
        self.calls, self.gone_after = 0, gone_after

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None):
        from distclip.flower import client

        self.calls += 1
        replies = []
        for m in messages:
            nid = m.metadata.dst_node_id
            if nid == 101 and self.gone_after is not None and self.calls > self.gone_after:
                continue  # node 101 left
            handler = client.hello if m.metadata.message_type == "query" else client.train
            replies.append(handler(m, self.contexts[nid]))
        return replies


@pytest.fixture
def flower_task(monkeypatch):
    pytest.importorskip("flwr", reason="the Flower apps need the flower extra: pip install 'distclip[flower]'")
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)
    from distclip.flower import DistclipStrategy

    return DistclipStrategy


def test_strategy_and_client_app_follow_the_simulator(flower_task, tmp_path):
    doc = logreg("celgc", 3)
    got = flower_task(doc, tmp_path / "run").start(LocalGrid([2, 0, 1]))
    assert_same(got.metrics, run(from_dict(doc)).metrics)
    assert (tmp_path / "run" / "summary.json").exists()


def test_a_node_that_leaves_stops_the_run_with_one_line(flower_task, tmp_path):
    strategy = flower_task(logreg("clip21", 3), tmp_path / "run")
    with pytest.raises(DistclipError, match=r"client 1 \(node 101\) left the federation .* so the run stops "
                       r"\(metrics up to step 0 kept"):
        strategy.start(LocalGrid([0, 1, 2], gone_after=3))


def test_partition_ids_must_name_every_client_once(flower_task):
    with pytest.raises(DistclipError, match=r"the nodes are clients \[0, 2\]; give the SuperNodes partition-id 0..2"):
        flower_task(logreg("clip21", 3)).start(LocalGrid([0, 0, 2]))
