"""The round in pfl-research (Apple's pfl): ``FederatedAveraging`` on pfl's ``SimulatedBackend``.

Every client of the N is in each round's cohort (``train_cohort_size`` = N, ``minimize_reuse``
sampling); local training is pfl's own PyTorch step: I steps of ``torch.optim.SGD`` on batches of B of
the user's rows, clipped to γ/η (``local_max_grad_norm``) for CELGC; the server applies the averaged
model difference with SGD at rate 1 (FedAvg). Evaluation is off after the first round (a warm-up).
"""

from __future__ import annotations

import os

os.environ.setdefault("PFL_PYTORCH_DEVICE", "cpu")

import _shared  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pfl.aggregate.simulate import SimulatedBackend  # noqa: E402
from pfl.algorithm import FederatedAveraging, NNAlgorithmParams  # noqa: E402
from pfl.callback.base import TrainingProcessCallback  # noqa: E402
from pfl.data.dataset import Dataset  # noqa: E402
from pfl.data.federated_dataset import FederatedDataset  # noqa: E402
from pfl.data.sampling import get_user_sampler  # noqa: E402
from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams  # noqa: E402
from pfl.metrics import Metrics, Weighted  # noqa: E402
from pfl.model.pytorch import PyTorchModel  # noqa: E402


class Net(torch.nn.Module):
    """The shared MLP with the ``loss`` and ``metrics`` methods pfl asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _shared.mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor, eval: bool = False) -> torch.Tensor:
        return F.cross_entropy(self(x), y)

    def metrics(self, x: torch.Tensor, y: torch.Tensor, eval: bool = False) -> dict:
        with torch.no_grad():
            return {"loss": Weighted(float(F.cross_entropy(self(x), y, reduction="sum")), len(y))}


class Tick(TrainingProcessCallback):
    def __init__(self, clock: _shared.Clock) -> None:
        self.clock = clock

    def after_central_iteration(self, aggregate_metrics, model, *, central_iteration):  # noqa: ANN001
        self.clock.tick()
        return False, Metrics()


params = _shared.job()
x, y = _shared.data(params)
users = list(range(params["clients"]))
fed = FederatedDataset(make_dataset_fn=lambda u: Dataset(raw_data=[x[u], y[u]], user_id=str(u)),
                       user_sampler=get_user_sampler("minimize_reuse", users))
net = Net()
model = PyTorchModel(model=net, local_optimizer_create=torch.optim.SGD,
                     central_optimizer=torch.optim.SGD(net.parameters(), lr=1.0))
rounds = params["warmup"] + params["rounds"]
clock = _shared.Clock(params)
FederatedAveraging().run(
    algorithm_params=NNAlgorithmParams(central_num_iterations=rounds, evaluation_frequency=10**6,
                                       train_cohort_size=len(users), val_cohort_size=0),
    backend=SimulatedBackend(training_data=fed, val_data=fed),
    model=model,
    model_train_params=NNTrainHyperParams(local_num_epochs=None, local_num_steps=params["local_steps"],
                                          local_learning_rate=params["lr"], local_batch_size=params["batch"],
                                          local_max_grad_norm=params["clip"]),
    model_eval_params=NNEvalHyperParams(local_batch_size=params["batch"]),
    callbacks=[Tick(clock)],
)
clock.write()
