"""Megatron indexed datasets (`<prefix>.bin` + `<prefix>.idx`): read and check them without reading `.bin`.

The `.idx` layout is megatron-core's `_IndexWriter`: a 9-byte magic, version 1, a dtype code, the sequence and
document counts, then int32 sequence lengths, int64 byte pointers and int64 document boundaries. Token and
document counts come from the `.idx` alone; `.bin` is only `stat`-ed (its size must be exactly the tokens times
the dtype size), so checking a 100B-token corpus such as OpenSeek-Pretrain-100B costs only its index files.

Writing goes through megatron-core's own `IndexedDatasetBuilder` (so Megatron reads what we write), into temporary
names that are renamed into place only when complete.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from trainers.data.errors import DataError

MAGIC = b"MMIDIDX\x00\x00"
HEADER_BYTES = 34  # magic 9 + version 8 + dtype code 1 + sequence count 8 + document count 8
DTYPE_CODES: dict[int, type[np.number]] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
CODE_OF = {np.dtype(t): code for code, t in DTYPE_CODES.items()}
TOKEN_DTYPES = {"uint16": np.uint16, "int32": np.int32}
#: index entries validated per read: memory for checking an index stays flat (~50 MB) whatever its size
CHECK_CHUNK = 1 << 21


def idx_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.idx")


def bin_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.bin")


def dtype_for_vocab(vocab_size: int) -> type[np.number]:
    """megatron-core's `DType.optimal_dtype`: uint16 below 65500 ids, else int32."""
    return np.uint16 if vocab_size < 65500 else np.int32


def check_vocab_fits(vocab_size: int, dtype: Any, *, where: str) -> None:
    """A token id must fit the dtype of the `.bin` it is written to."""
    info = np.iinfo(np.dtype(dtype))
    if vocab_size - 1 > info.max:
        raise DataError(
            f"tokenizer vocabulary of {vocab_size} ids exceeds the {np.dtype(dtype).name} token dtype "
            f"(largest id {info.max}); use int32",
            where=where,
        )


@dataclass(frozen=True)
class IndexInfo:
    """What a `.idx` says about its dataset; `tokens` and `documents` are exact counts."""

    prefix: str
    dtype: np.dtype
    sequences: int
    documents: int
    tokens: int
    multimodal: bool

    @property
    def bin_bytes(self) -> int:
        return self.tokens * self.dtype.itemsize


class IndexFile:
    """A checked `.idx`: sequence lengths, byte pointers and document boundaries (memory-mapped when asked for).

    The check reads the index in chunks (`CHECK_CHUNK` entries), so its memory stays flat for an index of any size
    and nothing of it stays mapped; `check=False` trusts an index checked before and reads only its header and
    last entries. Raises `DataError` naming the file for: a missing `.idx` or `.bin`, a foreign header, a truncated or padded
    `.idx`, pointers that are not the running sum of lengths, document boundaries out of order, and a `.bin` whose
    size disagrees with the index.
    """

    def __init__(self, prefix: str | Path, *, check_bin: bool = True, check: bool = True) -> None:
        self.prefix = str(prefix)
        path = idx_path(prefix)
        where = str(path)
        if not path.is_file():
            raise DataError("index file not found", where=where)
        size = path.stat().st_size
        if size < HEADER_BYTES:
            raise DataError(f"truncated index: {size} bytes, shorter than the {HEADER_BYTES}-byte header", where=where)
        with path.open("rb") as fh:
            head = fh.read(HEADER_BYTES)
        if head[:9] != MAGIC:
            raise DataError("not a Megatron indexed dataset (bad magic header)", where=where)
        (version,) = struct.unpack("<Q", head[9:17])
        if version != 1:
            raise DataError(f"unsupported index version {version}", where=where)
        code = head[17]
        if code not in DTYPE_CODES:
            raise DataError(f"unknown token dtype code {code}", where=where)
        self.dtype = np.dtype(DTYPE_CODES[code])
        self.sequence_count, self.document_count = struct.unpack("<QQ", head[18:34])
        s, d = self.sequence_count, self.document_count
        body = 4 * s + 8 * s + 8 * d
        if size == HEADER_BYTES + body:
            self.multimodal = False
        elif size == HEADER_BYTES + body + s:
            self.multimodal = True
        else:
            raise DataError(
                f"truncated or corrupt index: {s} sequences and {d} document boundaries need "
                f"{HEADER_BYTES + body} bytes, the file has {size}",
                where=where,
            )
        self._path = path
        self._mm: np.ndarray | None = None
        if check:
            self.tokens = self._check(where)
        elif s:  # checked before: the total is the last pointer plus the last length (two reads)
            last_pointer = int(self._read(np.int64, HEADER_BYTES + 4 * s, s - 1, 1)[0])
            self.tokens = last_pointer // self.dtype.itemsize + int(self._read(np.int32, HEADER_BYTES, s - 1, 1)[0])
        else:
            self.tokens = 0
        if check_bin:
            self.check_bin()

    def _read(self, dtype: type[np.number], offset: int, start: int, count: int) -> np.ndarray:
        """`count` items of `dtype` from item `start` of the array at byte `offset` (a plain read: the pages it
        touches stay in the page cache, not in this process' memory)."""
        size = np.dtype(dtype).itemsize
        with self._path.open("rb") as fh:
            fh.seek(offset + start * size)
            return np.fromfile(fh, dtype=dtype, count=count)

    def _check(self, where: str) -> int:
        """Validate the index in chunks of CHECK_CHUNK entries (memory stays flat whatever its size); returns the
        token count."""
        s, d = self.sequence_count, self.document_count
        lengths_at, pointers_at, docs_at = HEADER_BYTES, HEADER_BYTES + 4 * s, HEADER_BYTES + 12 * s
        if d < 1 or self._read(np.int64, docs_at, 0, 1)[0] != 0 or self._read(np.int64, docs_at, d - 1, 1)[0] != s:
            raise DataError(f"corrupt index: document boundaries must run from 0 to {s} sequences", where=where)
        prev = 0
        for lo in range(0, d, CHECK_CHUNK):
            docs = self._read(np.int64, docs_at, lo, min(CHECK_CHUNK, d - lo))
            if docs[0] < prev or bool(np.any(np.diff(docs) < 0)):
                raise DataError("corrupt index: document boundaries are not in order", where=where)
            prev = int(docs[-1])
        total = 0  # tokens before the chunk
        step = self.dtype.itemsize
        for lo in range(0, s, CHECK_CHUNK):
            n = min(CHECK_CHUNK, s - lo)
            lengths = self._read(np.int32, lengths_at, lo, n)
            if bool(np.any(lengths < 0)):
                raise DataError("corrupt index: negative sequence length", where=where)
            expected = np.empty(n, dtype=np.int64)
            expected[0] = total
            np.cumsum(lengths[:-1], dtype=np.int64, out=expected[1:])
            expected[1:] += total
            total = int(expected[-1]) + int(lengths[-1])
            expected *= step
            if not np.array_equal(expected, self._read(np.int64, pointers_at, lo, n)):
                raise DataError("corrupt index: byte pointers are not the running sum of sequence lengths", where=where)
        return total

    def _map(self) -> np.ndarray:
        if self._mm is None:
            self._mm = np.memmap(self._path, dtype=np.uint8, mode="r")
        return self._mm

    @property
    def sequence_lengths(self) -> np.ndarray:
        """int32 per sequence (memory-mapped on first use)."""
        return np.frombuffer(self._map(), dtype=np.int32, count=self.sequence_count, offset=HEADER_BYTES)

    @property
    def sequence_pointers(self) -> np.ndarray:
        """int64 byte offset of each sequence in the `.bin` (memory-mapped on first use)."""
        s = self.sequence_count
        return np.frombuffer(self._map(), dtype=np.int64, count=s, offset=HEADER_BYTES + 4 * s)

    @property
    def document_indices(self) -> np.ndarray:
        """int64 document boundaries in sequences, 0 .. sequence count (memory-mapped on first use)."""
        s = self.sequence_count
        return np.frombuffer(self._map(), dtype=np.int64, count=self.document_count, offset=HEADER_BYTES + 12 * s)

    def check_bin(self) -> None:
        path = bin_path(self.prefix)
        if not path.is_file():
            raise DataError("data file not found (its .idx exists)", where=str(path))
        have = path.stat().st_size
        want = self.tokens * self.dtype.itemsize
        if have != want:
            raise DataError(
                f"size mismatch: .idx describes {self.tokens} {self.dtype.name} tokens ({want} bytes), "
                f".bin has {have} bytes (truncated, or written for another index)",
                where=str(path),
            )

    @property
    def info(self) -> IndexInfo:
        return IndexInfo(
            prefix=self.prefix,
            dtype=self.dtype,
            sequences=self.sequence_count,
            documents=self.document_count - 1,
            tokens=self.tokens,
            multimodal=self.multimodal,
        )

    def document_token_offsets(self) -> np.ndarray:
        """Token offset where each document starts, plus the total (length documents + 1)."""
        seq_starts = np.zeros(self.sequence_count + 1, dtype=np.int64)
        np.cumsum(self.sequence_lengths, dtype=np.int64, out=seq_starts[1:])
        return seq_starts[self.document_indices]

    def document_start(self, i: int) -> int:
        """Token offset where document i starts (i = documents: the total), from two entries of the index."""
        seq = int(self.document_indices[i])
        if seq >= self.sequence_count:
            return self.tokens
        return int(self.sequence_pointers[seq]) // self.dtype.itemsize

    def last_document_at_or_before(self, token: int) -> int:
        """The largest document i with `document_start(i) <= token` (-1 if none): a binary search that reads
        O(log documents) entries, so finding a hold-out cut in a file of millions of documents costs microseconds."""
        return bisect.bisect_right(range(self.document_count), token, key=self.document_start) - 1


def read_index(prefix: str | Path, *, check_bin: bool = True) -> IndexInfo:
    """Counts of one Megatron dataset from its `.idx` (the `.bin` is only checked by size)."""
    return IndexFile(prefix, check_bin=check_bin).info


def find_prefixes(root: Path) -> list[str]:
    """Every `<prefix>.idx` under `root` (recursively), as posix paths relative to `root`, sorted."""
    root = Path(root)
    out = []
    for path in sorted(root.rglob("*.idx")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        out.append(path.relative_to(root).with_suffix("").as_posix())
    return out


class TokenFile:
    """The tokens of a `.bin` as one flat memory-mapped array (documents are stored back to back).

    The map is advised random access (`MADV_RANDOM`): a trainer reads windows of a few KB at random places of
    files of tens of GB, and on a fault in a mapped file the kernel otherwise reads around it, up to
    `read_ahead_kb` (8 MB on this machine's disk): thousands of times the window, measured as a 100x slower
    first read of each window (benchmarks/scale_data.py)."""

    def __init__(self, prefix: str | Path, dtype: np.dtype, tokens: int) -> None:
        self.prefix = str(prefix)
        self.dtype = np.dtype(dtype)
        self.tokens = tokens
        self._mm: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._mm is None:
            if self.tokens == 0:
                self._mm = np.empty(0, dtype=self.dtype)
            else:
                mm = np.memmap(bin_path(self.prefix), dtype=self.dtype, mode="r", shape=(self.tokens,))
                raw = getattr(mm, "_mmap", None)
                if raw is not None and hasattr(mmap, "MADV_RANDOM"):
                    raw.madvise(mmap.MADV_RANDOM)
                self._mm = mm
        return self._mm

    def __getstate__(self) -> dict[str, Any]:  # reopen in DataLoader workers instead of copying the map
        return {"prefix": self.prefix, "dtype": self.dtype.str, "tokens": self.tokens}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["prefix"], np.dtype(state["dtype"]), state["tokens"])  # type: ignore[misc]


def _megatron_builder() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # lazy: megatron-core imports torch; reading .idx/.bin files needs only numpy
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    return IndexedDatasetBuilder


class IndexedWriter:
    """Write documents with megatron-core's `IndexedDatasetBuilder` to temporary files, renamed on success.

    >>> with IndexedWriter("out/code/code_train_text_document", np.uint16) as w:  # doctest: +SKIP
    ...     w.add(np.array([5, 6, 0]))
    """

    def __init__(self, prefix: str | Path, dtype: Any) -> None:
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in TOKEN_DTYPES:
            raise DataError(f"token dtype must be one of {sorted(TOKEN_DTYPES)}", where=str(self.prefix))
        self.documents = 0
        self.tokens = 0
        tag = f".tmp-{os.getpid()}"
        self._bin_tmp = Path(f"{self.prefix}.bin{tag}")
        self._idx_tmp = Path(f"{self.prefix}.idx{tag}")
        self._builder: Any = None

    def __enter__(self) -> IndexedWriter:
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._builder = _megatron_builder()(str(self._bin_tmp), dtype=DTYPE_CODES[CODE_OF[self.dtype]])
        return self

    def add(self, tokens: np.ndarray) -> None:
        """One document (its end-of-document token already appended)."""
        arr = np.asarray(tokens)
        self._builder.add_document(arr.astype(self.dtype, copy=False), [int(arr.size)])
        self.documents += 1
        self.tokens += int(arr.size)

    def add_many(self, docs: Iterator[np.ndarray]) -> None:
        for doc in docs:
            self.add(doc)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self._builder.finalize(str(self._idx_tmp))
            os.replace(self._bin_tmp, bin_path(self.prefix))
            os.replace(self._idx_tmp, idx_path(self.prefix))
        else:
            self._builder.data_file.close()
            for p in (self._bin_tmp, self._idx_tmp):
                p.unlink(missing_ok=True)
