"""AWD-LSTM language model (Merity et al. 2018) on stacked client weights (spec: experiments.md §2.1).

The CELGC paper trains a 3-layer AWD-LSTM: embedding 400, hidden 1150, 1150 and 400 (the last layer
has the embedding's size so the decoder is tied to the embedding), BPTT 70, and these
regularisations, all applied only to the training gradients (f, ∇f and perplexities are evaluated
without them):

- embedding dropout ``dropoute``: whole rows of the embedding (words) are zeroed, the rest scaled
  by 1/(1 − p); the tied decoder uses the undropped matrix;
- locked (variational) dropout: one mask per sequence, shared by all time steps, on the embedded
  input (``dropouti``), between layers (``dropouth``) and on the last layer's output (``dropout``);
- weight drop ``wdrop``: DropConnect on each layer's hidden-to-hidden matrix (one mask per client
  and step);
- activation regularisation ``ar``·mean(dropped output²) and temporal ``tar``·mean((h_t − h_{t−1})²)
  of the last layer.

Every mask is a pure function of (seed, client id, step, mask) drawn with the counter-based hash of
:func:`distclip.rng.uniform`, so a client's gradient does not depend on which clients it is
computed with, which process holds it, or the device; n clients run as one batched recurrence
(``baddbmm`` over ``[n, ...]`` stacks, no loop over clients).

Hidden-state carry-over (``carry``): as AWD-LSTM's ``batchify``, client i's shard is cut into
B = ``run.batch_size`` contiguous streams; step t reads window t mod K of every stream (K windows
per stream = steps per epoch; the sampled minibatch rows are not used) and starts from the hidden
state in which the client's step t − 1 ended, detached, or from zero at the first window of an
epoch (AWD-LSTM resets it each epoch; with ``rotate`` the shard changes there). Under CELGC each
client thus continues its own stream with its own local model. The hidden state is the state of a
client's data stream, not of the optimiser, so the problem keeps it (per client id, for the clients
this process computes) and the algorithms stay unaware of it: the simulator and the distributed
engine compute the same numbers. Checkpoints gather it from every rank next to the algorithm state
(``client_state`` / ``load_client_state``), so a resumed run, at any world size, is bit-identical to
an uninterrupted one. Validation then also carries the state, as AWD-LSTM's ``evaluate``: 10 streams
of the validation tokens read window after window (:meth:`AWDLanguageModel.extra_metrics`), so
perplexities compare with the paper's. Re-deriving the state instead (running the previous window again) would cost
a forward pass per step and not be the standard recurrence; keeping it in every algorithm's state
would make the algorithms know the problem.
Not done: AWD-LSTM's random BPTT length (N(70, 5), halved with probability 0.05) and its step size
rescaling, and NT-ASGD averaging.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.corpus import Corpus
from ..errors import DistclipError
from ..rng import uniform
from .language import LanguageModel

#: per-layer widths of the paper's model (the last one is the embedding size)
AWD_SIZES = (1150, 1150, 400)
#: streams the validation tokens are cut into for carried evaluation (AWD-LSTM's eval_batch_size)
EVAL_STREAMS = 10

State = list[tuple[Tensor, Tensor]]  # (h, c) per layer, each [n, B, H_l]


@dataclass(frozen=True)
class Regularisation:
    dropout: float = 0.0  # locked dropout on the last layer's output
    dropouth: float = 0.0  # locked dropout between layers
    dropouti: float = 0.0  # locked dropout on the embedded input
    dropoute: float = 0.0  # embedding dropout (whole words)
    wdrop: float = 0.0  # DropConnect on hidden-to-hidden weights
    ar: float = 0.0  # activation regularisation α
    tar: float = 0.0  # temporal activation regularisation β


#: the model presets' defaults (awd: the official CELGC PTB scripts' values, spec experiments.md §2.1)
PRESETS = {"small": Regularisation(), "awd": Regularisation(0.4, 0.25, 0.4, 0.1, 0.5, 2.0, 1.0)}


def regularisation(p: Any) -> Regularisation:
    """The regularisation of a validated ``[problem]`` section (the preset already filled in)."""
    return Regularisation(**{f.name: getattr(p, f.name) for f in fields(Regularisation)})


def needs_awd(p: Any) -> bool:
    """Whether a validated lstm ``[problem]`` needs this module (else the plain :class:`LanguageModel`)."""
    return p.model != "small" or bool(p.carry) or regularisation(p) != Regularisation()


@dataclass(frozen=True)
class Masks:
    """Dropout masks of one training pass, already scaled (0 or 1/(1 − p)); None where p = 0."""

    emb: Tensor | None  # [n, V]
    inp: Tensor | None  # [n, B, E]
    hid: list[Tensor | None]  # [n, B, H_l] after layer l < L − 1
    out: Tensor | None  # [n, B, E]
    wh: list[Tensor | None]  # [n, 4H_l, H_l]


class Pass(NamedTuple):
    logits: Tensor  # [n, B·T, V]
    state: State  # the hidden state after the last step
    raw: Tensor  # the last layer's outputs [n, B, T, E] before output dropout
    out: Tensor  # ... and after it


def lstm_layer(proj: Tensor, wh: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer: proj [n, B, T, 4H] (input projection plus bias), wh [n, 4H, H], h, c [n, B, H]."""
    wh_t = wh.transpose(1, 2)
    outs = []
    for t in range(proj.shape[2]):
        gi, gf, gg, go = torch.baddbmm(proj[:, :, t], h, wh_t).chunk(4, dim=-1)
        c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
        h = torch.sigmoid(go) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=2), h, c


class AWDLSTM:
    """Embedding E = sizes[-1] -> LSTM layers of widths ``sizes`` -> decoder tied to the embedding."""

    def __init__(self, vocab: int, sizes: list[int] | tuple[int, ...]) -> None:
        self.vocab, self.sizes, self.layers, self.emb = vocab, list(sizes), len(sizes), sizes[-1]
        self.inputs = [self.emb, *self.sizes[:-1]]
        self.shapes: dict[str, tuple[int, ...]] = {"emb": (vocab, self.emb)}
        for i, (a, h) in enumerate(zip(self.inputs, self.sizes, strict=True)):
            self.shapes |= {f"wi{i}": (4 * h, a), f"wh{i}": (4 * h, h), f"b{i}": (4 * h,)}
        self.shapes["dec_b"] = (vocab,)

    def init_bound(self, name: str) -> float:
        return 1 / math.sqrt(self.sizes[int(name.lstrip("wihb"))])

    def forward(self, p: dict[str, Tensor], tokens: Tensor) -> Tensor:
        """Evaluation: tokens [n, B, T] from a zero state, no dropout -> logits [n, B·T, V]."""
        return self.run(p, tokens).logits

    def run(self, p: dict[str, Tensor], tokens: Tensor, state: State | None = None, masks: Masks | None = None) -> Pass:
        n, batch, steps = tokens.shape
        rows = torch.arange(n, device=tokens.device)[:, None, None]
        x = p["emb"][rows, tokens]  # [n, B, T, E]
        if masks is not None and masks.emb is not None:
            x = x * masks.emb[rows, tokens].unsqueeze(-1)
        x = _locked(x, masks and masks.inp)
        new_state = []
        for i in range(self.layers):
            proj = torch.baddbmm(p[f"b{i}"].unsqueeze(1), x.reshape(n, batch * steps, -1),
                                 p[f"wi{i}"].transpose(1, 2)).view(n, batch, steps, -1)
            wh = p[f"wh{i}"] if masks is None or masks.wh[i] is None else p[f"wh{i}"] * masks.wh[i]
            h, c = state[i] if state is not None else (proj.new_zeros(n, batch, self.sizes[i]),) * 2
            x, h, c = lstm_layer(proj, wh, h, c)
            new_state.append((h, c))
            if i < self.layers - 1:
                x = _locked(x, masks and masks.hid[i])
        raw, x = x, _locked(x, masks and masks.out)
        logits = torch.baddbmm(p["dec_b"].unsqueeze(1), x.reshape(n, batch * steps, -1), p["emb"].transpose(1, 2))
        return Pass(logits, new_state, raw, x)


def _locked(x: Tensor, mask: Tensor | None) -> Tensor:
    """Locked dropout: the mask [n, B, H] is shared by all time steps of x [n, B, T, H]."""
    return x if mask is None else x * mask.unsqueeze(2)


def draw_masks(reg: Regularisation, model: AWDLSTM, seed: int, clients: Tensor, draw: int, batch: int,
               dtype: torch.dtype) -> Masks:
    """The masks of ``clients`` at step ``draw`` for ``batch`` sequences, from (seed, client, draw) only."""

    def mask(p: float, stream: int, shape: tuple[int, ...]) -> Tensor | None:
        if p == 0:
            return None
        return (uniform(seed, clients, draw, stream, shape) >= p).to(dtype) / (1 - p)

    last = model.layers - 1
    return Masks(
        emb=mask(reg.dropoute, 0, (model.vocab,)),
        inp=mask(reg.dropouti, 1, (batch, model.emb)),
        hid=[mask(reg.dropouth, 10 + i, (batch, model.sizes[i])) for i in range(last)],
        out=mask(reg.dropout, 2, (batch, model.emb)),
        wh=[mask(reg.wdrop, 100 + i, model.shapes[f"wh{i}"]) for i in range(model.layers)],
    )


def training_loss(reg: Regularisation, run: Pass, windows: Tensor) -> Tensor:
    """Per-client cross-entropy plus AR and TAR, [n]; windows [n, B, T+1]."""
    n = len(windows)
    ce = F.cross_entropy(run.logits.flatten(0, 1), windows[:, :, 1:].flatten(), reduction="none").view(n, -1)
    loss = ce.mean(dim=1)
    if reg.ar:
        loss = loss + reg.ar * run.out.pow(2).flatten(1).mean(dim=1)
    if reg.tar:
        loss = loss + reg.tar * (run.raw[:, :, 1:] - run.raw[:, :, :-1]).pow(2).flatten(1).mean(dim=1)
    return loss


class AWDLanguageModel(LanguageModel):
    """The language-model problem with :class:`AWDLSTM`, dropout in its gradients and optional carry-over."""

    def __init__(self, corpus: Corpus, n_clients: int, sizes: list[int], reg: Regularisation, carry: bool,
                 bptt: int, rotate: bool, batch_size: int, seed: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__(corpus, n_clients, sizes[-1], len(sizes), bptt, rotate, batch_size, seed, dtype, device,
                         model=AWDLSTM(len(corpus.vocab), sizes))
        self.reg, self.carry, self.seed, self.streams = reg, carry, seed, batch_size
        if carry and self.windows < batch_size:
            raise DistclipError(f"carry-over cuts each client's {self.windows} windows into run.batch_size = "
                                f"{batch_size} streams; use a smaller batch_size or fewer clients")
        # carried hidden states per client id: the state step `drawn` started from and ended in
        self._drawn = torch.full((n_clients,), -1, dtype=torch.int64, device=device)
        shapes = [(n_clients, 2, batch_size, h) for h in sizes] if carry else []
        self._start = [torch.zeros(s, dtype=dtype, device=device) for s in shapes]  # per layer, h and c
        self._end = [torch.zeros(s, dtype=dtype, device=device) for s in shapes]

    def _stream_rows(self, n: int, draw: int) -> Tensor:
        """Window t mod K of each of the B streams (stream b holds windows b·K ... b·K + K − 1)."""
        k = self.steps_per_epoch
        return (torch.arange(self.streams, device=self.device) * k + draw % k).expand(n, -1)

    def _start_state(self, clients: Tensor, draw: int) -> State | None:
        if not self.carry:
            return None
        drawn = self._drawn[clients][:, None, None, None]
        go_on = (drawn == draw - 1) & (draw % self.steps_per_epoch != 0)
        state = []
        for start, end in zip(self._start, self._end, strict=True):
            hc = torch.where(drawn == draw, start[clients], torch.where(go_on, end[clients], 0.0))
            state.append((hc[:, 0], hc[:, 1]))
        return state

    def _remember(self, clients: Tensor, draw: int, start: State, end: State) -> None:
        for i, (h, c) in enumerate(end):
            self._start[i][clients] = torch.stack(start[i], dim=1)
            self._end[i][clients] = torch.stack((h, c), dim=1).detach()
        self._drawn[clients] = draw

    def client_state(self, clients: Tensor) -> dict[str, Tensor]:
        """The carried hidden states of ``clients`` (saved in checkpoints; empty without ``carry``)."""
        if not self.carry:
            return {}
        return {"drawn": self._drawn[clients], **{f"start{i}": s[clients] for i, s in enumerate(self._start)},
                **{f"end{i}": e[clients] for i, e in enumerate(self._end)}}

    def load_client_state(self, clients: Tensor, state: dict[str, Tensor]) -> None:
        self._drawn[clients] = state["drawn"]
        for i in range(len(self._start)):
            self._start[i][clients] = state[f"start{i}"]
            self._end[i][clients] = state[f"end{i}"]

    def client_grads(self, x: Tensor, clients: Tensor, batch: Tensor | None, draw: int = 0) -> Tensor:
        stack = (x.expand(len(clients), -1) if x.dim() == 1 else x).detach().clone().requires_grad_(True)
        rows = self._stream_rows(len(clients), draw) if self.carry else batch
        windows = self._windows(clients, rows, draw)
        start = self._start_state(clients, draw)
        masks = draw_masks(self.reg, self.model, self.seed, clients, draw, windows.shape[1], stack.dtype)
        with torch.enable_grad():
            run = self.model.run(self._params(stack), windows[:, :, :-1], start, masks)
            (grad,) = torch.autograd.grad(training_loss(self.reg, run, windows).sum(), stack)
        if self.carry:
            self._remember(clients, draw, start, run.state)
        return grad

    def extra_metrics(self, x: Tensor) -> dict[str, float]:
        """Validation loss and perplexity. With ``carry`` as in AWD-LSTM's ``evaluate``: the validation
        tokens are cut into EVAL_STREAMS contiguous streams read window after window, each window
        continuing from the previous one's hidden state (the per-token loss of one pass over each whole
        stream); without it, the zero-state windows of :class:`LanguageModel`."""
        if not self.carry:
            return super().extra_metrics(x)
        valid = torch.as_tensor(self.corpus.valid, device=self.device)
        length = len(valid) // EVAL_STREAMS
        streams = valid[: EVAL_STREAMS * length].view(1, EVAL_STREAMS, length)
        params, state, total = self._params(x.unsqueeze(0)), None, 0.0
        with torch.no_grad():
            for s in range(0, length - 1, self.bptt):
                chunk = streams[:, :, s : min(s + self.bptt, length - 1) + 1]
                run = self.model.run(params, chunk[:, :, :-1], state)
                state = run.state
                total += float(F.cross_entropy(run.logits[0], chunk[0, :, 1:].reshape(-1), reduction="sum"))
        loss = total / (EVAL_STREAMS * (length - 1))
        return {"valid_loss": loss, "valid_ppl": math.exp(min(loss, 50.0))}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "sizes": self.model.sizes, **asdict(self.reg), "carry": self.carry}
