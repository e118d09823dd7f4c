"""A corpus: per-domain Megatron indexed datasets with a train and a held-out validation split.

Two kinds of folder load as a `Corpus`:

* a folder written by `mixsweep data prepare` (`corpus.json`, `<domain>/<domain>_{train,valid}_text_document.*`,
  `tokenizer/`);
* a folder of existing Megatron datasets used in place (e.g. OpenSeek-Pretrain-100B): every `<prefix>.idx` with its
  `.bin`, grouped into domains by folder; counts come from the `.idx` files, and the last documents of each
  domain (about 1% of its tokens, at most 1M) are held out for validation.

`corpus.catalog` is the `mixture_search` DomainCatalog of the train split with `base_dir` = the folder, so mixtures
written against it become Megatron `data_path`s directly.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mixture_search.catalog import DataFile, Domain, DomainCatalog, domain_of, parse_labels
from trainers.data import tokenizer as tk
from trainers.data.errors import DataError
from trainers.data.indexed import (
    IndexFile,
    IndexInfo,
    TokenFile,
    bin_path,
    check_vocab_fits,
    find_prefixes,
    idx_path,
)

CORPUS_FILE = "corpus.json"
FORMAT = "mixsweep-corpus/1"
#: in-place corpora hold out this share of each domain's tokens (whole documents, at the end) for validation
HOLDOUT_SHARE = 0.01
HOLDOUT_MAX_TOKENS = 1 << 20
#: tokens read from each end of every file to check token ids against the tokenizer
TOKEN_ID_SAMPLE = 1 << 16


@dataclass(frozen=True)
class Segment:
    """Tokens [start, stop) of one indexed dataset; `prefix` is relative to the corpus folder."""

    prefix: str
    start: int
    stop: int
    documents: int

    @property
    def tokens(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class CorpusDomain:
    name: str
    group: str
    train: tuple[Segment, ...]
    valid: tuple[Segment, ...]
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def train_tokens(self) -> int:
        return sum(s.tokens for s in self.train)

    @property
    def valid_tokens(self) -> int:
        return sum(s.tokens for s in self.valid)


class Corpus:
    """Domains with train/valid token ranges, the token dtype, an optional tokenizer and a data hash."""

    def __init__(
        self,
        root: Path,
        domains: tuple[CorpusDomain, ...],
        *,
        dtype: np.dtype,
        tokenizer_dir: Path | None,
        eod_id: int | None,
        fingerprints: Mapping[str, str],
        split: str,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if not domains:
            raise DataError("corpus has no domains", where=str(root))
        self.root = Path(root)
        self._domains = domains
        self.dtype = np.dtype(dtype)
        self.tokenizer_dir = tokenizer_dir
        self.eod_id = eod_id
        self._fingerprints = dict(fingerprints)
        self._split = split
        self.meta = dict(meta or {})
        self._files: dict[str, TokenFile] = {}
        #: each file's token count: its segments cover it from 0 to its end
        self._file_tokens: dict[str, int] = {}
        for d in domains:
            for seg in (*d.train, *d.valid):
                self._file_tokens[seg.prefix] = max(self._file_tokens.get(seg.prefix, 0), seg.stop)

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | str, *, tokenizer: Path | str | None = None) -> Corpus:
        """A prepared corpus (folder with corpus.json, or the file itself) or a folder of Megatron datasets."""
        path = Path(path)
        if path.is_file() and path.name == CORPUS_FILE:
            path = path.parent
        if not path.exists():
            raise DataError("corpus folder not found", where=str(path))
        if not path.is_dir():
            raise DataError("expected a corpus folder (or its corpus.json)", where=str(path))
        if (path / CORPUS_FILE).is_file():
            return cls._load_prepared(path, Path(tokenizer) if tokenizer else None)
        return cls._load_in_place(path, Path(tokenizer) if tokenizer else None)

    @classmethod
    def _load_prepared(cls, root: Path, tokenizer: Path | None) -> Corpus:
        where = str(root / CORPUS_FILE)
        try:
            data = json.loads((root / CORPUS_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read corpus file: {' '.join(str(exc).split())}", where=where) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"not a {FORMAT} file", where=where)
        try:
            dtype = np.dtype(data["dtype"])
            domains = []
            for d in data["domains"]:
                parts = {}
                for split in ("train", "valid"):
                    segs = []
                    for f in d[split]:
                        info = IndexFile(root / f["prefix"]).info
                        if info.tokens != f["tokens"] or info.documents != f["documents"]:
                            raise DataError(
                                f"index has {info.tokens} tokens in {info.documents} documents, corpus.json says "
                                f"{f['tokens']} in {f['documents']} (files changed after prepare?)",
                                where=str(idx_path(root / f["prefix"])),
                            )
                        if info.dtype != dtype:
                            raise DataError(
                                f"token dtype {info.dtype.name} differs from the corpus dtype {dtype.name}",
                                where=str(idx_path(root / f["prefix"])),
                            )
                        segs.append(Segment(f["prefix"], 0, info.tokens, info.documents))
                    parts[split] = tuple(segs)
                domains.append(
                    CorpusDomain(
                        name=d["name"],
                        group=d.get("group") or parse_labels(d["name"])["source"],
                        train=parts["train"],
                        valid=parts["valid"],
                        info=d.get("info", {}),
                    )
                )
        except (KeyError, TypeError) as exc:
            raise DataError(f"malformed corpus file: missing or wrong field {exc}", where=where) from None
        tok_dir = tokenizer or (root / data["tokenizer"] if data.get("tokenizer") else None)
        corpus = cls(
            root,
            tuple(domains),
            dtype=dtype,
            tokenizer_dir=tok_dir,
            eod_id=data.get("eod_id"),
            fingerprints={},
            split="prepared",
            meta={k: v for k, v in data.items() if k not in ("domains",)},
        )
        if tok_dir is not None:
            corpus._check_tokenizer()
        return corpus

    @classmethod
    def _load_in_place(cls, root: Path, tokenizer: Path | None) -> Corpus:
        prefixes = find_prefixes(root)
        if not prefixes:
            raise DataError(
                "no Megatron datasets (*.idx with *.bin) and no corpus.json in this folder", where=str(root)
            )
        by_domain: dict[str, list[tuple[str, IndexInfo]]] = {}
        dtypes = set()
        for p in prefixes:
            info = IndexFile(root / p).info  # counts and checks; the index is not kept (nor its memory)
            dtypes.add(info.dtype)
            by_domain.setdefault(domain_of(p), []).append((p, info))
        if len(dtypes) > 1:
            raise DataError(f"datasets mix token dtypes {sorted(d.name for d in dtypes)}", where=str(root))
        domains = []
        for name, files in by_domain.items():
            total = sum(ix.tokens for _, ix in files)
            if total == 0:
                raise DataError("domain has no tokens", where=f"{root}/{name}")
            train = [Segment(p, 0, ix.tokens, ix.documents) for p, ix in files]
            valid: list[Segment] = []
            last_prefix, last = files[-1]
            want = max(1, min(int(total * HOLDOUT_SHARE), HOLDOUT_MAX_TOKENS))
            n_docs = last.documents
            if n_docs >= 2:
                # hold out whole documents from the end, keeping at least one document for training; a binary
                # search over the index finds the cut without reading the whole file's index
                index = IndexFile(root / last_prefix, check_bin=False, check=False)
                cut_doc = max(index.last_document_at_or_before(last.tokens - want), 1)
                if cut_doc < n_docs:
                    cut = index.document_start(cut_doc)
                    train[-1] = Segment(last_prefix, 0, cut, cut_doc)
                    valid = [Segment(last_prefix, cut, last.tokens, n_docs - cut_doc)]
            domains.append(
                CorpusDomain(name=name, group=parse_labels(name)["source"], train=tuple(train), valid=tuple(valid))
            )
        tok_dir = tokenizer
        if tok_dir is None and (root / "tokenizer" / "tokenizer.json").is_file():
            tok_dir = root / "tokenizer"
        fingerprints = {p: _fingerprint(root / p) for p in prefixes}
        corpus = cls(
            root,
            tuple(domains),
            dtype=dtypes.pop(),
            tokenizer_dir=tok_dir,
            eod_id=tk.eod_id(tok_dir) if tok_dir else None,
            fingerprints=fingerprints,
            split=f"tail:{HOLDOUT_SHARE}:{HOLDOUT_MAX_TOKENS}",
        )
        if tok_dir is not None:
            corpus._check_tokenizer()
        return corpus

    def _check_tokenizer(self) -> None:
        """The tokenizer fits the token dtype and matches the data: the vocabulary `corpus.json` recorded
        at prepare time, and no sampled token id at or past its vocabulary."""
        assert self.tokenizer_dir is not None
        vocab = tk.vocab_size(self.tokenizer_dir)
        check_vocab_fits(vocab, self.dtype, where=str(self.tokenizer_dir))
        recorded = self.meta.get("vocab_size")
        if recorded is not None and int(recorded) != vocab:
            raise DataError(
                f"tokenizer has {vocab} ids but the data was tokenized with {recorded} "
                f"({CORPUS_FILE} vocab_size): not the corpus' tokenizer",
                where=str(self.tokenizer_dir),
            )
        self.check_token_ids(vocab)

    def check_token_ids(self, vocab_size: int, *, sample: int = TOKEN_ID_SAMPLE) -> None:
        """No token id >= `vocab_size` in the first and last `sample` tokens of every file (a bounded read
        from the memory map, so a 100B-token corpus costs the same as a small one)."""
        for d in self._domains:
            for s in (*d.train, *d.valid):
                arr = self.tokens(s.prefix).array
                for lo, hi in ((s.start, min(s.stop, s.start + sample)), (max(s.start, s.stop - sample), s.stop)):
                    if hi <= lo:
                        continue
                    top = int(arr[lo:hi].max())
                    if top >= vocab_size:
                        raise DataError(
                            f"token id {top} is outside the tokenizer's {vocab_size} ids "
                            f"(tokenizer {self.tokenizer_dir or '?'} does not match the data)",
                            where=str(bin_path(self.root / s.prefix)),
                        )

    # -- contract ---------------------------------------------------------------------------------
    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(d.name for d in self._domains)

    @property
    def domain_info(self) -> tuple[CorpusDomain, ...]:
        return self._domains

    def domain(self, name: str) -> CorpusDomain:
        for d in self._domains:
            if d.name == name:
                return d
        raise DataError("unknown domain", where=name)

    @cached_property
    def catalog(self) -> DomainCatalog:
        """The train split as a mixture_search catalog (one DataFile per train file, base_dir = the folder)."""
        domains = tuple(
            Domain(
                name=d.name,
                files=tuple(DataFile(s.prefix, s.tokens, s.documents) for s in d.train),
                group=d.group,
                labels=parse_labels(d.name),
            )
            for d in self._domains
        )
        return DomainCatalog(domains=domains, base_dir=self.root)

    @cached_property
    def vocab_size(self) -> int:
        """From the tokenizer; without one, the largest token id in the train files + 1 (reads every .bin)."""
        if self.tokenizer_dir is not None:
            return tk.vocab_size(self.tokenizer_dir)
        if "vocab_size" in self.meta:
            return int(self.meta["vocab_size"])
        top = 0
        for d in self._domains:
            for s in (*d.train, *d.valid):
                arr = self.tokens(s.prefix).array
                if len(arr):
                    top = max(top, int(arr.max()))
        return top + 1

    @cached_property
    def data_hash(self) -> str:
        """Changes when any data file, the split or the tokenizer changes."""
        h = hashlib.sha256()
        h.update(self._split.encode())
        for d in self._domains:
            h.update(d.name.encode())
            for split, segs in (("train", d.train), ("valid", d.valid)):
                for s in segs:
                    h.update(f"{split}:{s.prefix}:{s.start}:{s.stop}:{s.documents}".encode())
                    h.update(self._fingerprints.get(s.prefix, "").encode())
        if self.meta.get("content_hash"):
            h.update(str(self.meta["content_hash"]).encode())
        if self.tokenizer_dir is not None:
            h.update(tk.fingerprint(self.tokenizer_dir).encode())
        return h.hexdigest()[:16]

    # -- token access -----------------------------------------------------------------------------
    def tokens(self, prefix: str) -> TokenFile:
        """The memory-mapped tokens of one of the corpus' files (by relative prefix)."""
        tf = self._files.get(prefix)
        if tf is None:
            tokens = self._file_tokens.get(prefix)
            if tokens is None:  # not one of the corpus' files: read (and check) its index
                index = IndexFile(self.root / prefix, check_bin=True)
                tf = TokenFile(self.root / prefix, index.dtype, index.tokens)
            else:  # checked when the corpus was loaded (index and .bin size): no second pass over the index
                tf = TokenFile(self.root / prefix, self.dtype, tokens)
            self._files[prefix] = tf
        return tf

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    def __repr__(self) -> str:
        return f"Corpus({self.root}, {len(self._domains)} domains, data_hash={self.data_hash})"

    def relpath(self, path: Path) -> str:
        return PurePosixPath(os.path.relpath(path, self.root)).as_posix()


def _fingerprint(prefix: Path) -> str:
    """Cheap identity of a dataset of any size: sizes plus the head and tail of its .idx."""
    ip, bp = idx_path(prefix), bin_path(prefix)
    h = hashlib.sha256()
    size = ip.stat().st_size
    h.update(f"{size}:{bp.stat().st_size}".encode())
    with ip.open("rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(size - (1 << 20))
            h.update(fh.read())
    return h.hexdigest()[:16]
