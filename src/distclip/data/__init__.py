"""Datasets (bundled LIBSVM files or user svmlight files) and their split across clients."""

from distclip.data.libsvm import (
    BUNDLED,
    BundledInfo,
    Dataset,
    load_bundled,
    load_dataset,
    load_libsvm,
)
from distclip.data.partition import SCHEMES, Partition, partition

__all__ = [
    "BUNDLED",
    "SCHEMES",
    "BundledInfo",
    "Dataset",
    "Partition",
    "load_bundled",
    "load_dataset",
    "load_libsvm",
    "partition",
]
