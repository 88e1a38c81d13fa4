"""Binary classification data in svmlight/LIBSVM format: bundled datasets and user files.

Every loader returns a :class:`Dataset` whose labels are mapped to ±1. Results are cached per
process and shared, so their arrays are read-only; copy them before changing them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import math
import os
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import load_svmlight_file

from distclip.errors import DistclipError

_SNIPPET_CHARS = 60
_MAX_INDEX = 2**31 - 1  # sklearn parses feature indices into a C int


@dataclass(frozen=True, eq=False)
class Dataset:
    """A binary classification dataset: sparse features and ±1 labels."""

    features: sp.csr_matrix
    labels: np.ndarray
    name: str
    source: str
    label_map: dict[float, float]

    @property
    def n_rows(self) -> int:
        """Number of samples m."""
        return int(self.features.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features d."""
        return int(self.features.shape[1])


@dataclass(frozen=True)
class BundledInfo:
    """What a bundled dataset file must contain."""

    file: str
    sha256: str
    n_rows: int
    n_features: int
    description: str


BUNDLED: dict[str, BundledInfo] = {
    "a9a": BundledInfo(
        "a9a.gz",
        "f5d5ffd8d865ff41328e7ee043e4b020816914ff6843ff15b98905ddbedce906",
        32561,
        123,
        "UCI Adult, binarised features (training split)",
    ),
    "a9a.t": BundledInfo(
        "a9a.t.gz",
        "1f448a153f0320399a7e40836eb207655b0bde0f21fc941cc472193daa9f5de9",
        16281,
        123,
        "UCI Adult, binarised features (test split; file reaches only feature 122)",
    ),
    "a8a": BundledInfo(
        "a8a.gz",
        "d08a37b3fadd4bd3c8b3fc30bdc93b54d7c0f371265c90cbfb931a7efe97cd28",
        22696,
        123,
        "UCI Adult, binarised features (a8a training split)",
    ),
    "w8a": BundledInfo(
        "w8a.gz",
        "b464b4f6ce6a5d9e181ffc793e19a04751036273722312398ef7673705014902",
        49749,
        300,
        "Platt's web page classification data (w8a training split)",
    ),
    "mushrooms": BundledInfo(
        "mushrooms.gz",
        "51919a59d92e6ec922259e77afd91d9a809299613ee0da052a19abe746aa2244",
        8124,
        112,
        "UCI Mushroom, one-hot features; labels 1/2",
    ),
    "breast-cancer": BundledInfo(
        "breast-cancer.gz",
        "445505b580a88e9e19b533b4f126d3dda1883bc7551e46907041ca263aa3c5d9",
        683,
        10,
        "Wisconsin Breast Cancer (original), unscaled, feature 1 is the sample ID; labels 2/4",
    ),
    "breast-cancer_scale": BundledInfo(
        "breast-cancer_scale.gz",
        "3c90cd8f884810a0ff2eaf2cc7aabf09073f33c2dfcf113d826a13ca60b257ad",
        683,
        10,
        "Wisconsin Breast Cancer (original), features scaled to [-1, 1]; labels 2/4",
    ),
}


def load_bundled(name: str) -> Dataset:
    """Load a dataset shipped with distclip (see ``BUNDLED``), checking its sha256."""
    info = BUNDLED.get(name)
    if info is None:
        raise DistclipError(
            f"unknown bundled dataset {name!r}: use one of {', '.join(BUNDLED)} "
            "or give an svmlight file in problem.path"
        )
    return _load_bundled_cached(name, info)


@functools.cache
def _load_bundled_cached(name: str, info: BundledInfo) -> Dataset:
    resource = resources.files("distclip") / "data" / "libsvm" / info.file
    try:
        raw = gzip.decompress(resource.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise DistclipError(
            f"bundled dataset {name} cannot be read ({_one_line(err)}): reinstall distclip"
        ) from None
    if hashlib.sha256(raw).hexdigest() != info.sha256:
        raise DistclipError(
            f"bundled dataset file {info.file} is corrupt (sha256 mismatch): reinstall distclip"
        )
    return _parse(raw, info.n_features, name=name, source=f"bundled:{name}")


def load_libsvm(path: str | os.PathLike[str], n_features: int | None = None) -> Dataset:
    """Load an svmlight/LIBSVM file, plain or gzip-compressed (detected from its content).

    Feature indices follow sklearn's ``zero_based="auto"``: if any index in the file is 0 the
    indices are zero-based, otherwise they are one-based (index k is column k-1). ``n_features``
    widens the matrix to that many columns (for a test split that never uses the last feature);
    it may not be smaller than what the file uses. Text after ``#`` and blank lines are ignored,
    and an optional ``qid:N`` token after the label is skipped. Labels and values must be finite.
    """
    _check_n_features(n_features)
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DistclipError(
            f"dataset file {p} not found: give an existing svmlight file in problem.path"
        ) from None
    except OSError as err:
        raise DistclipError(
            f"cannot access dataset file {p} ({_one_line(err)}): check the path and its permissions"
        ) from None
    if p.is_dir():
        raise DistclipError(f"dataset path {p} is a directory: give an svmlight file in problem.path")
    return _load_libsvm_cached(str(p.resolve()), st.st_mtime_ns, st.st_size, n_features)


@functools.lru_cache(maxsize=16)
def _load_libsvm_cached(path: str, mtime_ns: int, size: int, n_features: int | None) -> Dataset:
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise DistclipError(
            f"cannot read dataset file {path} ({_one_line(err)}): check the path and its permissions"
        ) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = bounded_gunzip(raw, path)
        except (OSError, EOFError, zlib.error) as err:
            raise DistclipError(
                f"dataset file {path} is not a valid gzip file ({_one_line(err)}): "
                "recompress it or give the uncompressed file"
            ) from None
    name = Path(path).name.removesuffix(".gz")
    return _parse(raw, n_features, name=name, source=path)


#: the most bytes a dataset file may decompress to, and the most features (columns) it may use
MAX_BYTES = int(os.environ.get("DISTCLIP_MAX_DATA_BYTES", str(2**30)))
MAX_FEATURES = 10_000_000


def bounded_gunzip(raw: bytes, path: str) -> bytes:
    """gunzip ``raw``, refusing to produce more than :data:`MAX_BYTES` (a small file of zeros can expand 1000x)."""
    out, stream = [], zlib.decompressobj(16 + zlib.MAX_WBITS)
    total, data = 0, raw
    while data:
        chunk = stream.decompress(data, MAX_BYTES + 1 - total)
        total += len(chunk)
        out.append(chunk)
        if total > MAX_BYTES:
            raise DistclipError(f"dataset file {path} decompresses to more than {MAX_BYTES:,} bytes (the limit); give "
                                "the uncompressed file, or raise DISTCLIP_MAX_DATA_BYTES if it is genuine")
        data = stream.unconsumed_tail
        if stream.eof:
            data = stream.unused_data
            if data:  # another gzip member
                stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    if not stream.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")
    return b"".join(out)


def load_dataset(dataset: str | None, path: str | None, n_features: int | None = None) -> Dataset:
    """Load either a bundled dataset by name or a user file by path (exactly one of them)."""
    if (dataset is None) == (path is None):
        raise DistclipError(
            "give exactly one of problem.dataset (a bundled name) and problem.path (an svmlight file)"
        )
    if path is not None:
        return load_libsvm(path, n_features)
    data = load_bundled(dataset)
    if n_features is not None and n_features != data.n_features:
        raise DistclipError(
            f"problem.n_features = {n_features} does not match bundled dataset {dataset} "
            f"({data.n_features} features): leave problem.n_features unset or set it to {data.n_features}"
        )
    return data


def _check_n_features(n_features: int | None) -> None:
    if n_features is None:
        return
    if isinstance(n_features, bool) or not isinstance(n_features, int | np.integer) or n_features < 1:
        raise DistclipError(
            f"problem.n_features = {n_features!r} is invalid: give a positive integer or leave it unset"
        )


def _parse(raw: bytes, n_features: int | None, *, name: str, source: str) -> Dataset:
    """Parse decompressed svmlight bytes into a read-only Dataset with ±1 labels."""
    try:
        x, y = load_svmlight_file(io.BytesIO(raw), dtype=np.float64)
    except (ValueError, OverflowError) as err:
        raise _parse_error(raw, source, err) from None
    if not (np.isfinite(x.data).all() and np.isfinite(y).all()):
        raise _parse_error(raw, source, ValueError("non-finite label or feature value"))
    m, d = x.shape
    if max(d, n_features or 0) > MAX_FEATURES:
        raise DistclipError(f"dataset file {source} uses feature index {max(d, n_features or 0):,}, above the limit "
                            f"{MAX_FEATURES:,} (a model vector of that size); check the file's indices")
    if m == 0:
        raise DistclipError(f"dataset file {source} has no data rows: give a non-empty svmlight file")
    if n_features is not None:
        if n_features < d:
            raise DistclipError(
                f"dataset file {source} uses {d} features but problem.n_features = {n_features}: "
                f"set problem.n_features to at least {d} or leave it unset"
            )
        d = n_features
    features = sp.csr_matrix((x.data, x.indices, x.indptr), shape=(m, d))
    features.has_sorted_indices = True
    for arr in (features.data, features.indices, features.indptr):
        arr.setflags(write=False)
    labels, label_map = _map_labels(y, source)
    return Dataset(features=features, labels=labels, name=name, source=source, label_map=label_map)


def _map_labels(y: np.ndarray, source: str) -> tuple[np.ndarray, dict[float, float]]:
    """Map the two distinct labels to ±1: the larger one to +1."""
    found = np.unique(y)
    if found.size != 2:
        shown = ", ".join(f"{v:g}" for v in found[:5]) + (", ..." if found.size > 5 else "")
        raise DistclipError(
            f"dataset file {source} has {found.size} distinct label(s) ({shown}) but binary "
            "classification needs exactly two: relabel the file to two classes"
        )
    low, high = float(found[0]), float(found[1])
    labels = np.where(y == high, 1.0, -1.0)
    labels.setflags(write=False)
    return labels, {low: -1.0, high: 1.0}


def _parse_error(raw: bytes, source: str, err: Exception) -> DistclipError:
    bad = _first_bad_line(raw)
    if bad is None:
        return DistclipError(
            f"cannot parse dataset file {source} ({_one_line(err)}): check that it is in svmlight format"
        )
    lineno, reason, text = bad
    snippet = text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS] + "..."
    return DistclipError(
        f"dataset file {source}, line {lineno}: {reason} in {snippet!r}: "
        "fix it to 'label index:value index:value ...'"
    )


def _first_bad_line(raw: bytes) -> tuple[int, str, str] | None:
    """Find the first line sklearn would reject (or that holds a non-finite number).

    Returns ``(1-based line number, reason, line text)``, or None if every line is valid.
    """
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        reason = _line_problem(line.split(b"#", 1)[0].split())
        if reason is not None:
            return lineno, reason, line.decode("utf-8", errors="replace").strip()
    return None


def _line_problem(parts: list[bytes]) -> str | None:
    """Why one comment-stripped, split line is invalid, or None if it is fine."""
    if not parts:
        return None
    if not _is_finite_number(parts[0]):
        return f"label {_show(parts[0])} is not a finite number"
    tokens = parts[1:]
    if tokens and tokens[0].startswith(b"qid"):
        if b":" not in tokens[0]:
            return f"token {_show(tokens[0])} is not qid:value"
        tokens = tokens[1:]
    prev = -1
    for token in tokens:
        if b":" not in token:
            return f"token {_show(token)} is not index:value"
        index_text, value_text = token.split(b":", 1)
        try:
            index = int(index_text)
        except ValueError:
            return f"feature index {_show(index_text)} is not an integer"
        if index < 0 or index > _MAX_INDEX:
            return f"feature index {index} is out of range"
        if index <= prev:
            return f"feature index {index} does not increase (indices must be sorted and unique)"
        if not _is_finite_number(value_text):
            return f"feature value {_show(value_text)} is not a finite number"
        prev = index
    return None


def _is_finite_number(text: bytes) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _show(token: bytes) -> str:
    return repr(token.decode("utf-8", errors="replace")[:_SNIPPET_CHARS])


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
