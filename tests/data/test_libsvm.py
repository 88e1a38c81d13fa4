"""Loading bundled and user svmlight files into ±1-labelled datasets."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from distclip.data.libsvm import BUNDLED, load_bundled, load_dataset, load_libsvm
from distclip.errors import DistclipError


def _write(tmp_path: Path, name: str, text: str, compress: bool = False) -> Path:
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _counts(labels: np.ndarray) -> dict[float, int]:
    values, counts = np.unique(labels, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def test_a9a_shape_labels_and_cache() -> None:
    data = load_bundled("a9a")
    assert isinstance(data.features, sp.csr_matrix)
    assert data.features.dtype == np.float64 and data.labels.dtype == np.float64
    assert (data.n_rows, data.n_features) == (32561, 123)
    assert _counts(data.labels) == {-1.0: 24720, 1.0: 7841}
    assert data.name == "a9a" and data.source == "bundled:a9a"
    assert data.label_map == {-1.0: -1.0, 1.0: 1.0}
    assert load_bundled("a9a") is data
    assert not data.labels.flags.writeable and not data.features.data.flags.writeable


def test_a9a_test_split_has_123_features() -> None:
    data = load_bundled("a9a.t")
    assert (data.n_rows, data.n_features) == (16281, 123)
    assert data.features[:, 122].nnz == 0
    assert _counts(data.labels) == {-1.0: 12435, 1.0: 3846}


@pytest.mark.parametrize(
    ("name", "label_map", "counts"),
    [
        ("mushrooms", {1.0: -1.0, 2.0: 1.0}, {-1.0: 3916, 1.0: 4208}),
        ("breast-cancer", {2.0: -1.0, 4.0: 1.0}, {-1.0: 444, 1.0: 239}),
    ],
)
def test_bundled_label_mapping(name: str, label_map: dict[float, float], counts: dict[float, int]) -> None:
    data = load_bundled(name)
    assert data.label_map == label_map
    assert _counts(data.labels) == counts
    assert (data.n_rows, data.n_features) == (BUNDLED[name].n_rows, BUNDLED[name].n_features)


def test_bundled_sha256_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = dataclasses.replace(BUNDLED["breast-cancer_scale"], sha256="0" * 64)
    monkeypatch.setitem(BUNDLED, "breast-cancer_scale", bad)
    with pytest.raises(DistclipError, match="corrupt.*reinstall"):
        load_bundled("breast-cancer_scale")


def test_unknown_bundled_name_lists_names() -> None:
    with pytest.raises(DistclipError, match="unknown bundled dataset 'a10a'.*a9a, a9a.t"):
        load_bundled("a10a")


@pytest.mark.parametrize("compress", [False, True])
def test_parse_plain_and_gzip(tmp_path: Path, compress: bool) -> None:
    text = "+1 1:0.5 3:2 # comment\n\n-1 2:1.5\n+1 qid:7 1:1\n"
    path = _write(tmp_path, "small.svm", text, compress)
    data = load_libsvm(path)
    expected = np.array([[0.5, 0.0, 2.0], [0.0, 1.5, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(data.features.toarray(), expected)
    np.testing.assert_array_equal(data.labels, [1.0, -1.0, 1.0])
    assert data.name == "small.svm" and data.source == str(path.resolve())


def test_gzip_detected_from_content_not_extension(tmp_path: Path) -> None:
    gz = load_libsvm(_write(tmp_path, "data.txt", "1 1:1\n-1 2:1\n", compress=True))
    plain = load_libsvm(_write(tmp_path, "data.gz", "1 1:1\n-1 2:1\n"))
    np.testing.assert_array_equal(gz.features.toarray(), plain.features.toarray())
    assert plain.name == "data"


def test_zero_based_auto(tmp_path: Path) -> None:
    one_based = load_libsvm(_write(tmp_path, "one.svm", "1 1:1 2:2\n-1 3:3\n"))
    zero_based = load_libsvm(_write(tmp_path, "zero.svm", "1 0:1 2:2\n-1 3:3\n"))
    assert one_based.n_features == 3 and one_based.features[0, 0] == 1.0
    assert zero_based.n_features == 4 and zero_based.features[0, 2] == 2.0


def test_n_features_widens_and_rejects_too_small(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.svm", "1 1:1\n-1 2:1\n")
    assert load_libsvm(path, n_features=5).n_features == 5
    with pytest.raises(DistclipError, match="uses 2 features but problem.n_features = 1"):
        load_libsvm(path, n_features=1)
    with pytest.raises(DistclipError, match="positive integer"):
        load_libsvm(path, n_features=0)


def test_label_mapping_zero_one(tmp_path: Path) -> None:
    data = load_libsvm(_write(tmp_path, "z.svm", "0 1:1\n1 1:2\n0 2:1\n"))
    assert data.label_map == {0.0: -1.0, 1.0: 1.0}
    np.testing.assert_array_equal(data.labels, [-1.0, 1.0, -1.0])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 1:1\n2 1:1\n3 1:1\n", r"3 distinct label\(s\) \(1, 2, 3\)"),
        ("1 1:1\n1 2:1\n", r"1 distinct label\(s\) \(1\)"),
    ],
)
def test_labels_must_be_two_classes(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(DistclipError, match=match):
        load_libsvm(_write(tmp_path, "l.svm", text))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("x 1:1", "label 'x' is not a finite number"),
        ("1 1:1 oops", "token 'oops' is not index:value"),
        ("1 a:1", "feature index 'a' is not an integer"),
        ("1 -2:1", "feature index -2 is out of range"),
        ("1 3:1 2:1", "feature index 2 does not increase"),
        ("1 1:abc", "feature value 'abc' is not a finite number"),
        ("1 1:nan", "feature value 'nan' is not a finite number"),
    ],
)
def test_malformed_row_reports_line(tmp_path: Path, bad: str, reason: str) -> None:
    path = _write(tmp_path, "bad.svm", f"# header\n1 1:1\n\n-1 2:1\n{bad}\n1 1:1\n", compress=True)
    with pytest.raises(DistclipError) as info:
        load_libsvm(path)
    message = str(info.value)
    assert "\n" not in message
    assert "line 5:" in message and reason in message and repr(bad) in message


def test_malformed_row_snippet_truncated(tmp_path: Path) -> None:
    bad = "1 " + " ".join(f"{i}:1" for i in range(1, 40)) + " junk"
    with pytest.raises(DistclipError, match=r"line 1: token 'junk'.*\.\.\.'"):
        load_libsvm(_write(tmp_path, "long.svm", bad + "\n"))


def test_missing_directory_empty_and_bad_gzip(tmp_path: Path) -> None:
    with pytest.raises(DistclipError, match="not found: give an existing svmlight file"):
        load_libsvm(tmp_path / "missing.svm")
    with pytest.raises(DistclipError, match="is a directory"):
        load_libsvm(tmp_path)
    with pytest.raises(DistclipError, match="no data rows"):
        load_libsvm(_write(tmp_path, "empty.svm", "# only a comment\n\n"))
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(b"1 1:1\n")[:-6])
    with pytest.raises(DistclipError, match="not a valid gzip file"):
        load_libsvm(broken)


def test_cache_follows_file_changes(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.svm", "1 1:1\n-1 1:2\n")
    first = load_libsvm(path)
    assert load_libsvm(str(path)) is first
    path.write_text("1 1:1\n-1 1:2\n1 2:3\n")
    assert load_libsvm(path).n_rows == 3


def test_load_dataset_requires_exactly_one(tmp_path: Path) -> None:
    assert load_dataset("breast-cancer", None) is load_bundled("breast-cancer")
    path = _write(tmp_path, "p.svm", "1 1:1\n-1 2:1\n")
    assert load_dataset(None, str(path), n_features=4).n_features == 4
    for dataset, file in ((None, None), ("a9a", str(path))):
        with pytest.raises(DistclipError, match="exactly one of problem.dataset"):
            load_dataset(dataset, file)
    with pytest.raises(DistclipError, match="set it to 10"):
        load_dataset("breast-cancer", None, n_features=12)


def test_qid_comments_and_empty_rows_accepted(tmp_path: Path) -> None:
    data = load_libsvm(_write(tmp_path, "q.svm", "1 qid:3 0:1 5:2e-3 # c\n\n-1\n"))
    assert (data.n_rows, data.n_features) == (2, 6)
    assert data.features[1].nnz == 0
