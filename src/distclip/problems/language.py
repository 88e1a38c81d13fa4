"""Word-level language modelling with an LSTM over stacked client weights (spec: experiments.md §2.1).

f_i(x) = mean next-word cross-entropy over client i's BPTT windows. The training stream is cut into
N contiguous shards (client i holds shard i; with ``rotate`` it reads shard (i + e) mod N in epoch e,
the official CELGC assignment). A minibatch is ``batch_size`` windows of ``bptt`` tokens drawn from
(seed, client, step); every window starts from a zero hidden state (no carry-over between windows).

The model: embedding -> LSTM layers -> decoder tied to the embedding, written with ``baddbmm`` on
``[n, ...]`` weight stacks so n clients run as one batched recurrence. The logged f and ∇f are taken on
a fixed sample of training windows (``EVAL_WINDOWS`` per client); ``extra_metrics`` adds the loss and
perplexity on the whole validation stream (training perplexity is exp of the logged loss).
Dropout, AWD-LSTM regularisation and hidden-state carry-over: :mod:`distclip.problems.awd_lstm`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.corpus import Corpus
from ..errors import DistclipError
from .models import Layout

EVAL_WINDOWS = 32
VALID_CHUNK = 128


class LSTMModel:
    def __init__(self, vocab: int, width: int, layers: int) -> None:
        self.vocab, self.width, self.layers = vocab, width, layers
        self.shapes: dict[str, tuple[int, ...]] = {"emb": (vocab, width)}
        for i in range(layers):
            self.shapes |= {f"wi{i}": (4 * width, width), f"wh{i}": (4 * width, width), f"b{i}": (4 * width,)}
        self.shapes["dec_b"] = (vocab,)

    def init_bound(self, name: str) -> float:
        """x^0 of LSTM tensor ``name`` is uniform in ±this (torch.nn.LSTM's default)."""
        return 1 / math.sqrt(self.width)

    def forward(self, p: dict[str, Tensor], tokens: Tensor) -> Tensor:
        """tokens [n, B, T] -> logits [n, B·T, V]."""
        n, batch, steps = tokens.shape
        h_seq = p["emb"][torch.arange(n, device=tokens.device)[:, None, None], tokens]  # [n, B, T, E]
        for i in range(self.layers):
            proj = torch.baddbmm(p[f"b{i}"].unsqueeze(1), h_seq.reshape(n, batch * steps, -1),
                                 p[f"wi{i}"].transpose(1, 2)).view(n, batch, steps, -1)
            wh = p[f"wh{i}"].transpose(1, 2)
            h = proj.new_zeros(n, batch, self.width)
            c = torch.zeros_like(h)
            outs = []
            for t in range(steps):
                gates = torch.baddbmm(proj[:, :, t], h, wh)
                gi, gf, gg, go = gates.chunk(4, dim=-1)
                c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
                h = torch.sigmoid(go) * torch.tanh(c)
                outs.append(h)
            h_seq = torch.stack(outs, dim=2)
        return torch.baddbmm(p["dec_b"].unsqueeze(1), h_seq.reshape(n, batch * steps, -1), p["emb"].transpose(1, 2))


class LanguageModel:
    def __init__(self, corpus: Corpus, n_clients: int, width: int, layers: int, bptt: int, rotate: bool,
                 batch_size: int, seed: int, dtype: torch.dtype, device: torch.device, model: Any = None) -> None:
        self.corpus, self.bptt, self.rotate = corpus, bptt, rotate
        self.model = model or LSTMModel(len(corpus.vocab), width, layers)
        self.layout = Layout(self.model.shapes)
        self.dim = self.layout.dim
        self.n_clients = n_clients
        shard = len(corpus.train) // n_clients
        self.windows = (shard - 1) // bptt
        if self.windows < 1:
            raise DistclipError(f"{n_clients} clients leave fewer than {bptt + 1} tokens each; use fewer clients")
        stream = torch.as_tensor(corpus.train[: n_clients * shard]).view(n_clients, shard)
        starts = torch.arange(self.windows) * bptt
        self.W = stream[:, starts[:, None] + torch.arange(bptt + 1)].to(device)  # [N, windows, T+1]
        self.steps_per_epoch = max(1, self.windows // max(1, batch_size))
        valid = torch.as_tensor(corpus.valid)
        k = (len(valid) - 1) // bptt
        self.V = valid[(torch.arange(k) * bptt)[:, None] + torch.arange(bptt + 1)].to(device)  # [k, T+1]
        self.eval_rows = torch.arange(min(EVAL_WINDOWS, self.windows), device=device)
        self.dtype, self.device = dtype, device
        g = torch.Generator().manual_seed(seed)
        parts = [torch.rand(s, generator=g, dtype=torch.float64) * 2 - 1 for s in self.layout.sizes]
        for j, name in enumerate(self.layout.names):
            parts[j] *= 0.1 if name == "emb" else (0.0 if name == "dec_b" else self.model.init_bound(name))
        self._x0 = torch.cat(parts).to(dtype).to(device)

    def with_x0(self, x0: Tensor) -> LanguageModel:
        self._x0 = x0
        return self

    def _params(self, stack: Tensor) -> dict[str, Tensor]:
        return self.layout.split(stack)

    def _windows(self, clients: Tensor, batch: Tensor | None, draw: int) -> Tensor:
        shard = clients
        if self.rotate:
            shard = (clients + draw // self.steps_per_epoch) % self.n_clients
        if batch is None:
            return self.W[shard]
        return self.W[shard.unsqueeze(1), batch]

    def _loss(self, stack: Tensor, windows: Tensor) -> Tensor:
        """Per-row mean cross-entropy of windows [n, B, T+1] -> [n]."""
        logits = self.model.forward(self._params(stack), windows[:, :, :-1])
        target = windows[:, :, 1:].reshape(len(stack), -1)
        ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
        return ce.view(len(stack), -1).mean(dim=1)

    # -- the Problem interface ---------------------------------------------------------------------
    def x0(self) -> Tensor:
        return self._x0.clone()

    def client_grads(self, x: Tensor, clients: Tensor, batch: Tensor | None, draw: int = 0) -> Tensor:
        stack = (x.expand(len(clients), -1) if x.dim() == 1 else x).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            windows = self._windows(clients, batch, draw)
            (grad,) = torch.autograd.grad(self._loss(stack, windows).sum(), stack)
        return grad

    def client_losses(self, x: Tensor, clients: Tensor) -> Tensor:
        stack = x.expand(len(clients), -1) if x.dim() == 1 else x
        return self._loss(stack, self.W[clients][:, self.eval_rows])

    def _sample_loss(self, x: Tensor, grad: bool) -> tuple[float, Tensor | None]:
        clients = torch.arange(self.n_clients, device=self.device)
        p = x.detach().clone().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            loss = self._loss(p.expand(self.n_clients, -1), self.W[clients][:, self.eval_rows]).mean()
            g = torch.autograd.grad(loss, p)[0] if grad else None
        return float(loss.detach()), g

    def loss(self, x: Tensor) -> float:
        return self._sample_loss(x, False)[0]

    def grad(self, x: Tensor) -> Tensor:
        return self._sample_loss(x, True)[1]

    def extra_metrics(self, x: Tensor) -> dict[str, float]:
        stack = x.unsqueeze(0)
        total = 0.0
        with torch.no_grad():
            for s in range(0, len(self.V), VALID_CHUNK):
                chunk = self.V[s : s + VALID_CHUNK].unsqueeze(0)
                total += float(self._loss(stack, chunk)) * chunk.shape[1]
        valid = total / len(self.V)
        return {"valid_loss": valid, "valid_ppl": math.exp(min(valid, 50.0))}  # train ppl = exp(loss)

    def smoothness(self) -> float:
        raise DistclipError("a network has no known smoothness constant L; give algorithm.lr as a number")

    def rows_per_client(self) -> int:
        return self.windows

    def targets(self) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"dim": self.dim, "vocab": len(self.corpus.vocab), "windows_per_client": self.windows,
                "train_tokens": int(len(self.corpus.train)), "rotate": self.rotate, "rows_dropped": 0}
