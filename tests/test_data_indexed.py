"""Megatron indexed datasets: counts from .idx alone, megatron-core compatibility, one-line errors on bad files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BAD_INPUTS
from trainers.data.errors import DataError
from trainers.data.indexed import IndexedWriter, IndexFile, TokenFile, check_vocab_fits, dtype_for_vocab, read_index

BAD = BAD_INPUTS / "data"


def write(prefix: Path, docs: list[list[int]], dtype: type = np.uint16) -> None:
    with IndexedWriter(prefix, dtype) as w:
        for d in docs:
            w.add(np.array(d))


def test_counts_come_from_the_index_and_megatron_reads_our_files(tmp_path: Path) -> None:
    docs = [[1, 2, 3, 0], [4, 0], [5, 6, 7, 8, 9, 0]]
    prefix = tmp_path / "dom" / "dom_train_text_document"
    write(prefix, docs)
    info = read_index(prefix)
    assert (info.documents, info.sequences, info.tokens, info.dtype) == (3, 3, 12, np.dtype(np.uint16))
    flat = TokenFile(prefix, info.dtype, info.tokens).array
    assert flat.tolist() == [t for d in docs for t in d]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(str(prefix))
    assert len(ds) == 3
    assert [ds[i].tolist() for i in range(3)] == docs


def test_int32_for_large_vocabularies(tmp_path: Path) -> None:
    assert dtype_for_vocab(8192) is np.uint16
    assert dtype_for_vocab(129_280) is np.int32
    write(tmp_path / "big_text_document", [[100_000, 3, 0]], np.int32)
    assert read_index(tmp_path / "big_text_document").dtype == np.dtype(np.int32)
    with pytest.raises(DataError, match=r"tok: tokenizer vocabulary of 129280 ids exceeds the uint16 token dtype"):
        check_vocab_fits(129_280, np.uint16, where="tok")


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    prefix = tmp_path / "x_text_document"
    with pytest.raises(RuntimeError), IndexedWriter(prefix, np.uint16) as w:
        w.add(np.array([1, 2]))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated_idx", r"truncated_idx_text_document\.idx: truncated or corrupt index: 3 sequences and 4 document"),
        ("truncated_bin", r"truncated_bin_text_document\.bin: size mismatch: \.idx describes 12 uint16 tokens"),
        ("bad_magic", r"bad_magic_text_document\.idx: not a Megatron indexed dataset"),
        ("missing_bin", r"missing_bin_text_document\.bin: data file not found"),
        ("bad_pointers", r"bad_pointers_text_document\.idx: corrupt index: byte pointers"),
        ("bad_doc_index", r"bad_doc_index_text_document\.idx: corrupt index: document boundaries are not in order"),
    ],
)
def test_corrupt_files_fail_with_one_line_naming_the_file(name: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as err:
        IndexFile(BAD / f"{name}_text_document")
    assert "\n" not in str(err.value)


def test_missing_index(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.idx: index file not found"):
        read_index(tmp_path / "nope")
