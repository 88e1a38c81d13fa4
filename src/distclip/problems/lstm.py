"""Problem kind ``lstm``: a word-level LSTM language model on Penn Treebank (bundled) or WikiText-2 (a path).

``model = "small"`` is the plain CPU model (equal widths, no regularisation,
:class:`~distclip.problems.language.LanguageModel`); ``model = "awd"`` is the paper's AWD-LSTM
(:class:`~distclip.problems.awd_lstm.AWDLanguageModel`, widths 1150/1150/400, its dropouts, AR/TAR and
hidden-state carry-over). Regularisation keys left unset take the preset's value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..data.corpus import load_corpus
from ..errors import DistclipError
from ..schema import choice, in_range, key
from .awd_lstm import AWD_SIZES, PRESETS, AWDLanguageModel, needs_awd, regularisation
from .kinds import ProblemKind, local_path, start_key, with_start
from .language import LanguageModel

_REGULARISATION = ("dropout", "dropouth", "dropouti", "dropoute", "wdrop", "ar", "tar")


@dataclass(frozen=True)
class LSTMConfig:
    dataset: str | None = key(None, "ptb (bundled) | wikitext2 (needs path)")
    path: str | None = key(None, "folder of {train,valid,test}.txt(.gz) instead of the bundled corpus")
    hidden: list[int] = key(help="one width per layer (awd: the last is the embedding size)", factory=lambda: [64])
    bptt: int = key(35, "tokens per training window")
    rotate: bool = key(False, "client i reads shard (i + epoch) mod N (CELGC code)")
    model: str = key("small", "small (equal widths, no regularisation) | awd (AWD-LSTM: hidden [1150, 1150, 400], "
                     "dropouts, carry)")
    dropout: float | None = key(None, "locked dropout on the output (awd 0.4)")
    dropouth: float | None = key(None, "locked dropout between layers (awd 0.25)")
    dropouti: float | None = key(None, "locked dropout on the input (awd 0.4)")
    dropoute: float | None = key(None, "embedding dropout, whole words (awd 0.1)")
    wdrop: float | None = key(None, "DropConnect on hidden-to-hidden (awd 0.5)")
    ar: float | None = key(None, "activation regularisation α (awd 2)")
    tar: float | None = key(None, "temporal activation regularisation β (awd 1)")
    carry: bool | None = key(None, "carry the hidden state across a client's consecutive windows (awd true)")
    x0: float | list[float] | None = start_key(None)

    def validate(self, cfg: Any) -> LSTMConfig:
        """Check the keys and fill those left unset from the ``model`` preset."""
        choice("problem.dataset (for lstm)", self.dataset, ("ptb", "wikitext2"))
        choice("problem.model", self.model, tuple(PRESETS))
        filled: dict[str, Any] = {}
        hidden = list(AWD_SIZES) if self.model == "awd" and "problem.hidden" not in cfg.given else self.hidden
        if not hidden or min(hidden) < 1:
            raise DistclipError("lstm: problem.hidden lists one width >= 1 per layer (awd: the last is the "
                                "embedding size)")
        for name in _REGULARISATION:
            value = getattr(self, name)
            value = filled[name] = getattr(PRESETS[self.model], name) if value is None else value
            in_range(f"problem.{name}", value, 0, 1.0 if name not in ("ar", "tar") else float("inf"))
        filled["carry"] = self.model == "awd" if self.carry is None else self.carry
        if self.model == "small" and len(set(hidden)) != 1:
            raise DistclipError("lstm: problem.hidden lists one equal width per layer, e.g. [64] or [400, 400, 400]")
        if self.bptt < 1:
            raise DistclipError(f"problem.bptt = {self.bptt} must be >= 1")
        if cfg.run.batch_size < 1:
            raise DistclipError("lstm trains on minibatches of windows; set run.batch_size >= 1")
        return dataclasses.replace(self, hidden=hidden, path=local_path(self.path, cfg), **filled)


def build(cfg: Any, dtype: torch.dtype, device: torch.device) -> LanguageModel:
    p, n, b = cfg.problem, cfg.partition.clients, cfg.run.batch_size
    corpus = load_corpus(p.dataset, p.path)
    if needs_awd(p):
        lm = AWDLanguageModel(corpus, n, p.hidden, regularisation(p), bool(p.carry), p.bptt, p.rotate, b, cfg.seed,
                              dtype, device)
    else:
        lm = LanguageModel(corpus, n, p.hidden[0], len(p.hidden), p.bptt, p.rotate, b, cfg.seed, dtype, device)
    return with_start(lm, p.x0, dtype, device)


KINDS = {"lstm": ProblemKind("lstm", "word-level LSTM language model on ptb (bundled) or wikitext2 (path); model "
                             "small or awd", LSTMConfig, build, no_rows="the token stream is cut into N shards")}
