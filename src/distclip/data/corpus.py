"""Word-level language-model corpora: Penn Treebank (bundled) and WikiText-2 (by path).

Tokenised as in PyTorch's word_language_model and AWD-LSTM: every line is ``line.split()`` plus one
``<eos>``; the vocabulary is the training split's words in order of first appearance (PTB: 10,000,
WikiText-2: 33,278). Validation and test words outside it map to ``<unk>``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from ..errors import DistclipError

PTB_SHA256 = {
    "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
CORPORA = ("ptb", "wikitext2")


@dataclass(frozen=True, eq=False)
class Corpus:
    name: str
    vocab: list[str]
    train: np.ndarray  # token ids, int64
    valid: np.ndarray
    test: np.ndarray


def _tokens(text: str) -> list[str]:
    return [w for line in text.splitlines() for w in (*line.split(), "<eos>")]


def _text(raw: bytes, where: str) -> str:
    try:
        return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DistclipError(f"cannot read {where}: {e}") from None


def build(name: str, texts: dict[str, str]) -> Corpus:
    index: dict[str, int] = {}
    train = [index.setdefault(w, len(index)) for w in _tokens(texts["train"])]
    unk = index.get("<unk>")

    def ids(split: str) -> np.ndarray:
        out = []
        for w in _tokens(texts[split]):
            i = index.get(w, unk)
            if i is None:
                raise DistclipError(f"{name} {split} has the word {w!r} that train lacks, and there is no <unk>")
            out.append(i)
        return np.asarray(out, dtype=np.int64)

    return Corpus(name, list(index), np.asarray(train, dtype=np.int64), ids("valid"), ids("test"))


@functools.lru_cache(maxsize=2)
def load_corpus(name: str, path: str | None = None) -> Corpus:
    """``ptb`` (bundled unless ``path``) or ``wikitext2`` (``path``: folder of {train,valid,test}.txt[.gz])."""
    if name not in CORPORA:
        raise DistclipError(f"problem.dataset = {name!r} is not a text corpus; choose one of: {', '.join(CORPORA)}")
    texts = {}
    if path is None:
        if name != "ptb":
            raise DistclipError(f"{name} is not bundled; give problem.path = the folder of its train/valid/test files")
        for split, digest in PTB_SHA256.items():
            raw = gzip.decompress((files("distclip") / "data" / "text" / f"{split}.txt.gz").read_bytes())
            if hashlib.sha256(raw).hexdigest() != digest:
                raise DistclipError(f"bundled PTB {split}.txt.gz is corrupt (sha256 mismatch); reinstall distclip")
            texts[split] = raw.decode("utf-8")
        return build(name, texts)
    root = Path(path)
    for split in ("train", "valid", "test"):
        candidates = [root / f"{split}.txt.gz", root / f"{split}.txt"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise DistclipError(f"{root} lacks {split}.txt or {split}.txt.gz; give problem.path = the corpus folder")
        texts[split] = _text(found.read_bytes(), str(found))
    return build(name, texts)
