"""Logistic regression with a nonconvex regulariser (spec: experiments.md §3.2):

    f_i(x) = (1/m) Σ_{j ∈ shard i} log(1 + exp(−b_j a_jᵀx)) + λ Σ_k x_k²/(1 + x_k²),  b_j ∈ {−1, +1},

on equal shards of m rows, so f = (1/N) Σ_i f_i is the mean over all kept rows. Losses use softplus
and gradients the sigmoid, both stable for any margin. Client gradients are batched: dense features
are stored as ``[N, m, d]`` and go through one ``bmm``; sparse features (too large to densify) use
one scatter-add over the nonzeros. λ = 0 gives the convex problem.
Kind ``logreg``: keys ``dataset`` or ``path`` (or ``rows`` synthetic rows, :mod:`distclip.data.synthetic`),
``n_features``, ``lambda``, ``features``, ``x0``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.libsvm import Dataset, load_dataset
from ..data.partition import Partition
from ..data.synthetic import linear_classification
from ..errors import DistclipError
from ..schema import choice, key
from .kinds import ProblemKind, build_partition, local_path, start, start_key

DENSE_LIMIT_BYTES = 1 << 30  # "auto" densifies features up to 1 GiB
SYNTHETIC_FEATURES = 20


class LogReg:
    def __init__(
        self,
        data: Dataset,
        part: Partition,
        lam: float,
        x0: Tensor,
        features: str = "auto",
    ) -> None:
        self.lam = lam
        self._x0 = x0
        self.dtype, self.device = x0.dtype, x0.device
        self.n_clients, self.m = part.rows.shape
        self.dim = data.n_features
        self._part = part
        csr = data.features[part.rows.reshape(-1)].tocsr()  # kept rows in client order
        self._csr = csr
        self.b = torch.as_tensor(data.labels[part.rows], dtype=self.dtype, device=self.device)  # [N, m]
        itemsize = torch.finfo(self.dtype).bits // 8
        self.dense = features == "dense" or (
            features == "auto" and csr.shape[0] * self.dim * itemsize <= DENSE_LIMIT_BYTES
        )
        if self.dense:
            a = torch.as_tensor(csr.toarray(), dtype=self.dtype, device=self.device)
            self.A = a.view(self.n_clients, self.m, self.dim)
        else:
            coo = csr.tocoo()
            self.rows = torch.as_tensor(coo.row, dtype=torch.long, device=self.device)
            self.cols = torch.as_tensor(coo.col, dtype=torch.long, device=self.device)
            self.vals = torch.as_tensor(coo.data, dtype=self.dtype, device=self.device)
            self.A_flat = torch.sparse_coo_tensor(
                torch.stack([self.rows, self.cols]), self.vals, (csr.shape[0], self.dim), check_invariants=True
            ).coalesce()

    # -- margins and the data term on blocks of clients ------------------------------------------
    @staticmethod
    def _take(t: Tensor, clients: Tensor) -> Tensor:
        """``t[clients]``, as a view (no copy of the data) when the block is a contiguous range."""
        n = len(clients)
        first = int(clients[0]) if n else 0
        if n and int(clients[-1]) - first == n - 1 and bool((clients.diff() == 1).all()):
            return t[first : first + n]
        return t[clients]

    def _margins(self, x: Tensor, clients: Tensor, batch: Tensor | None) -> tuple[Tensor, Tensor]:
        """z[j, r] = a_rᵀ x_j for the rows r of client j (all rows, or ``batch[j]``), and labels."""
        b = self._take(self.b, clients) if batch is None else self.b[clients.unsqueeze(1), batch]
        if self.dense:
            a = self._take(self.A, clients) if batch is None else self.A[clients.unsqueeze(1), batch]
            z = a @ x if x.dim() == 1 else torch.bmm(a, x.unsqueeze(2)).squeeze(2)
            return z, b
        rows = self._global_rows(clients, batch)
        sub = self.A_flat.index_select(0, rows.reshape(-1)).coalesce()
        r, c = sub.indices()
        xs = x.expand(len(clients), self.dim) if x.dim() == 1 else x
        owner = r // rows.shape[1]
        z = torch.zeros(rows.numel(), dtype=self.dtype, device=self.device)
        z.index_add_(0, r, sub.values() * xs[owner, c])
        return z.view(rows.shape), b

    def _global_rows(self, clients: Tensor, batch: Tensor | None) -> Tensor:
        local = torch.arange(self.m, device=self.device).expand(len(clients), self.m) if batch is None else batch
        return clients.unsqueeze(1) * self.m + local

    def _data_grad(self, w: Tensor, clients: Tensor, batch: Tensor | None) -> Tensor:
        """Σ_r w[j, r] a_r for each client j of the block, shape ``[n_block, d]``."""
        if self.dense:
            a = self._take(self.A, clients) if batch is None else self.A[clients.unsqueeze(1), batch]
            return torch.bmm(w.unsqueeze(1), a).squeeze(1)
        rows = self._global_rows(clients, batch)
        sub = self.A_flat.index_select(0, rows.reshape(-1)).coalesce()
        r, c = sub.indices()
        owner = r // rows.shape[1]
        out = torch.zeros(len(clients) * self.dim, dtype=self.dtype, device=self.device)
        out.index_add_(0, owner * self.dim + c, sub.values() * w.reshape(-1)[r])
        return out.view(len(clients), self.dim)

    def _reg(self, x: Tensor) -> Tensor:
        return self.lam * (1 / (1 + 1 / (x * x))).sum(dim=-1)  # = x²/(1+x²), finite for any x

    def _reg_grad(self, x: Tensor) -> Tensor:
        return self.lam * 2 * x / (1 + x * x) ** 2

    # -- the Problem interface ---------------------------------------------------------------------
    def x0(self) -> Tensor:
        return self._x0.clone()

    def client_grads(self, x: Tensor, clients: Tensor, batch: Tensor | None, draw: int = 0) -> Tensor:
        z, b = self._margins(x, clients, batch)
        w = -b * torch.sigmoid(-b * z) / z.shape[1]
        return self._data_grad(w, clients, batch) + self._reg_grad(x)

    def client_losses(self, x: Tensor, clients: Tensor) -> Tensor:
        z, b = self._margins(x, clients, None)
        return F.softplus(-b * z).mean(dim=1) + self._reg(x)

    def loss(self, x: Tensor) -> float:
        return float(self.client_losses(x, torch.arange(self.n_clients, device=self.device)).mean())

    def grad(self, x: Tensor) -> Tensor:
        """∇f(x) in one pass over all kept rows (the reference cost of a full gradient)."""
        if self.dense:
            a = self.A.view(-1, self.dim)
            b = self.b.view(-1)
            w = -b * torch.sigmoid(-b * (a @ x))
            return (w @ a) / a.shape[0] + self._reg_grad(x)
        b = self.b.view(-1)
        w = -b * torch.sigmoid(-b * torch.sparse.mm(self.A_flat, x.unsqueeze(1)).squeeze(1))
        return torch.sparse.mm(self.A_flat.t(), w.unsqueeze(1)).squeeze(1) / b.numel() + self._reg_grad(x)

    def smoothness(self) -> float:
        """L = λ_max(AᵀA)/(4M) + 2λ over the M kept rows (docs/algorithms.md §4)."""
        a = self._csr
        if a.shape[1] <= 2000:
            gram = (a.T @ a).toarray()
            top = float(np.linalg.eigvalsh(gram)[-1])
        else:
            top = float(scipy.sparse.linalg.eigsh(a.T @ a, k=1, which="LA", return_eigenvectors=False)[0])
        return top / (4 * a.shape[0]) + 2 * self.lam

    def extra_metrics(self, x: Tensor) -> dict[str, float]:
        return {}

    def rows_per_client(self) -> int:
        return self.m

    def targets(self) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"dim": self.dim, **self._part.info(), "features": "dense" if self.dense else "sparse"}


@dataclass(frozen=True)
class LogRegConfig:
    dataset: str | None = key(None, "bundled LIBSVM name (see `distclip list`)")
    path: str | None = key(None, "svmlight file (plain or .gz) instead of dataset")
    rows: int | None = key(None, "synthetic data instead of dataset or path: this many i.i.d. rows of Gaussian "
                           "features with labels of a seeded linear model (many clients: client sampling)")
    n_features: int | None = key(None, "feature count (default: from the file; 20 for synthetic rows)")
    lam: float = key(0.1, "weight λ of Σ x_k²/(1+x_k²)", toml="lambda")
    features: str = key("auto", "auto | dense | sparse feature storage")
    x0: float | list[float] = start_key(0.0)

    def validate(self, cfg: Any) -> LogRegConfig:
        choice("problem.features", self.features, ("auto", "dense", "sparse"))
        if sum(v is not None for v in (self.dataset, self.path, self.rows)) != 1:
            raise DistclipError("logreg needs exactly one of problem.dataset (bundled name), problem.path (file) or "
                                "problem.rows (synthetic rows)")
        if self.rows is not None and (self.rows < 1 or (self.n_features is not None and self.n_features < 1)):
            raise DistclipError("problem.rows and problem.n_features of synthetic data must be >= 1")
        if self.lam < 0 or math.isnan(self.lam) or math.isinf(self.lam):
            raise DistclipError(f"problem.lambda = {self.lam} must be a finite number >= 0")
        return dataclasses.replace(self, path=local_path(self.path, cfg))


def labelled(cfg: Any) -> tuple[Dataset, np.ndarray]:
    p = cfg.problem
    if p.rows is not None:
        data = linear_classification(p.rows, p.n_features or SYNTHETIC_FEATURES, cfg.seed)
        return data, np.arange(data.n_rows)
    data = load_dataset(p.dataset, p.path, p.n_features)
    return data, np.arange(data.n_rows)


def build(cfg: Any, dtype: torch.dtype, device: torch.device) -> LogReg:
    data, part = build_partition(cfg)
    p = cfg.problem
    return LogReg(data, part, p.lam, start(p.x0, data.n_features, dtype, device), p.features)


KINDS = {"logreg": ProblemKind("logreg", "logistic regression + λ Σ x²/(1+x²) on LIBSVM data (dataset or path)",
                               LogRegConfig, build, labelled)}
