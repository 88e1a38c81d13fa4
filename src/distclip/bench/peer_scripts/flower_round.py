"""The round in Flower's simulation runtime (``flwr.simulation.run_simulation``, Ray backend).

N virtual SuperNodes, each a ``ClientApp`` that loads the server model, runs the shared local steps
(I ``torch.optim.SGD`` steps on B rows drawn with replacement, clipped to γ/η for CELGC) and returns
its model; the ``ServerApp`` runs ``FedAvg`` with every node in every round (``fraction_train`` = 1,
no federated evaluation). A centralised ``evaluate_fn`` that does nothing marks the end of each round.
One Ray actor per core (``num_cpus`` 1 per client, the job's ``cores`` in all), one thread per actor.
"""

from __future__ import annotations

import os

import _shared
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

params = _shared.job()
client_app, server_app = ClientApp(), ServerApp()
_cache: dict[str, torch.Tensor] = {}


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    if not _cache:
        _cache["x"], _cache["y"] = _shared.data(params)
    i = int(context.node_config["partition-id"])
    model = _shared.mlp()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    gen = torch.Generator().manual_seed(i)
    _shared.local_steps(model, _cache["x"][i], _cache["y"][i], params, gen)
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                          "metrics": MetricRecord({"num-examples": params["batch"] * params["local_steps"]})})
    return Message(content=content, reply_to=msg)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    clock = _shared.Clock(params)
    n = params["clients"]

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round > 0:
            clock.tick()
        return None

    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n,
                      min_evaluate_nodes=0)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(_shared.mlp().state_dict()),
                   num_rounds=params["warmup"] + params["rounds"], train_config=ConfigRecord({}),
                   evaluate_fn=evaluate)
    clock.write()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=params["clients"],
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": params["cores"], "log_to_driver": False}})
