"""`prepare`: raw text -> a corpus folder of per-domain Megatron indexed datasets, like OpenSeek-Pretrain-100B.

Steps, per domain: read, clean, deduplicate (by document, across the whole corpus), order by content hash (so a
byte cap keeps a spread of the source rather than its first files), cap, split train/valid by content hash (stable
under reruns), tokenize in worker processes with a progress bar, and write `<domain>/<domain>_train_text_document`
and `..._valid_...` through megatron-core's IndexedDatasetBuilder. The tokenizer is a byte-level BPE trained here
on the train split (or a given Hugging Face tokenizer folder, copied in).

Everything is written to a temporary folder that replaces the output only when complete. `corpus.json` records an
*inputs key* (source fingerprints + options); a rerun with the same key finds the corpus in place and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tokenizers import Tokenizer

from mixture_search.keys import content_key
from trainers.data import tokenizer as tk
from trainers.data.corpus import CORPUS_FILE, FORMAT, Corpus
from trainers.data.errors import DataError
from trainers.data.indexed import TOKEN_DTYPES, IndexedWriter, bin_path, check_vocab_fits, dtype_for_vocab, idx_path
from trainers.data.sources import Source, clean, doc_hash

PREPARE_VERSION = "2"


@dataclass(frozen=True)
class PrepareConfig:
    """Options of `prepare`; all of them enter the inputs key."""

    out: Path
    vocab_size: int = 8192
    tokenizer: Path | None = None
    valid_fraction: float = 0.02
    max_bytes_per_domain: int | None = None
    min_chars: int = 8
    dtype: str | None = None
    tokenizer_train_bytes: int = 2 << 20
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)), compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.valid_fraction < 0.5:
            raise DataError(f"{self.valid_fraction} must be in (0, 0.5)", where="valid_fraction")
        if self.dtype is not None and self.dtype not in TOKEN_DTYPES:
            raise DataError(f"{self.dtype!r} is not one of {sorted(TOKEN_DTYPES)}", where="dtype")
        if self.max_bytes_per_domain is not None and self.max_bytes_per_domain < 1:
            raise DataError("must be positive", where="max_bytes_per_domain")
        if self.tokenizer is None and self.vocab_size < 300:
            raise DataError(
                f"vocab size {self.vocab_size} is too small for a byte-level BPE (>= 300)", where="vocab_size"
            )
        if self.tokenizer is None and self.dtype is not None:
            check_vocab_fits(self.vocab_size, TOKEN_DTYPES[self.dtype], where="vocab_size")

    def key_fields(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("out")
        d.pop("workers")
        d["tokenizer"] = tk.fingerprint(self.tokenizer) if self.tokenizer else None
        return d


@dataclass
class DomainText:
    source: Source
    train: list[str]
    valid: list[str]
    read: int = 0
    dropped: int = 0
    duplicates: int = 0
    capped: int = 0

    @property
    def train_bytes(self) -> int:
        return sum(len(t.encode("utf-8")) for t in self.train)


@dataclass(frozen=True)
class PrepareResult:
    corpus: Corpus
    skipped: bool
    seconds: float


def inputs_key(sources: Sequence[Source], cfg: PrepareConfig) -> str:
    payload = {
        "format": FORMAT,
        "v": PREPARE_VERSION,
        "options": cfg.key_fields(),
        "sources": [[s.name, s.group, s.fingerprint()] for s in sources],
    }
    return content_key(payload, length=20, sort_keys=False)


def up_to_date(out: Path, key: str) -> bool:
    path = out / CORPUS_FILE
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if data.get("inputs_key") != key:
        return False
    for d in data.get("domains", []):
        for split in ("train", "valid"):
            for f in d.get(split, []):
                if not (idx_path(out / f["prefix"]).is_file() and bin_path(out / f["prefix"]).is_file()):
                    return False
    return True


def collect(sources: Sequence[Source], cfg: PrepareConfig, log: Callable[[str], None]) -> list[DomainText]:
    """Read, clean, deduplicate, cap and split every domain."""
    seen: set[bytes] = set()
    names: set[str] = set()
    out = []
    threshold = int(cfg.valid_fraction * (1 << 32))
    for src in sources:
        if src.name in names:
            raise DataError("two inputs name the same domain", where=src.name)
        if not src.name or "/" in src.name or src.name.startswith("."):
            raise DataError("domain names must be plain folder names", where=src.name)
        names.add(src.name)
        dt = DomainText(src, [], [])
        docs: list[tuple[bytes, str]] = []
        for raw in src.documents():
            dt.read += 1
            text = clean(raw, min_chars=cfg.min_chars)
            if text is None:
                dt.dropped += 1
                continue
            h = doc_hash(text)
            if h in seen:
                dt.duplicates += 1
                continue
            seen.add(h)
            docs.append((h, text))
        docs.sort(key=lambda x: x[0])
        if cfg.max_bytes_per_domain is not None:
            kept, total = [], 0
            for h, text in docs:
                if total >= cfg.max_bytes_per_domain:
                    break
                kept.append((h, text))
                total += len(text.encode("utf-8"))
            dt.capped = len(docs) - len(kept)
            docs = kept
        if not docs:
            raise DataError(
                f"empty domain: {dt.read} documents read, {dt.dropped} dropped as binary or too short, "
                f"{dt.duplicates} duplicates",
                where=src.name,
            )
        for h, text in docs:
            (dt.valid if int.from_bytes(h[:4], "little") < threshold else dt.train).append(text)
        if not dt.valid and len(dt.train) >= 2:
            dt.valid.append(dt.train.pop())  # every domain gets a validation split when it can
        if not dt.train:
            dt.train.append(dt.valid.pop())
        log(
            f"{src.name}: {len(dt.train)} train + {len(dt.valid)} valid documents, {dt.train_bytes / 1e6:.2f} MB train "
            f"({dt.dropped} dropped, {dt.duplicates} duplicates, {dt.capped} over the byte cap)"
        )
        out.append(dt)
    return out


def _tokenizer_sample(domains: Sequence[DomainText], per_domain: int) -> Iterator[str]:
    for d in domains:
        total = 0
        for text in d.train:
            yield text
            total += len(text)
            if total >= per_domain:
                break


_WORKER_TOKENIZER: Any = None


def _init_worker(tokenizer_json: str) -> None:
    global _WORKER_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER_TOKENIZER = Tokenizer.from_file(tokenizer_json)


def _encode_batch(texts: list[str]) -> list[np.ndarray]:
    assert _WORKER_TOKENIZER is not None
    return [np.asarray(e.ids, dtype=np.int64) for e in _WORKER_TOKENIZER.encode_batch(texts, add_special_tokens=False)]


def _batches(texts: list[str], size: int = 256) -> Iterator[list[str]]:
    for i in range(0, len(texts), size):
        yield texts[i : i + size]


def prepare(
    sources: Sequence[Source],
    cfg: PrepareConfig,
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> PrepareResult:
    """Build (or find up to date) the corpus for `sources` in `cfg.out`."""
    t0 = time.perf_counter()
    out = Path(cfg.out)
    if not sources:
        raise DataError("no inputs", where="inputs")
    key = inputs_key(sources, cfg)
    if up_to_date(out, key):
        log(f"corpus in {out} is up to date (inputs key {key}); nothing to do")
        return PrepareResult(Corpus.load(out), True, time.perf_counter() - t0)
    domains = collect(sources, cfg, log)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tok_dir = tmp / "tokenizer"
        if cfg.tokenizer is not None:
            tk.tokenizer_file(cfg.tokenizer)
            shutil.copytree(cfg.tokenizer, tok_dir)
            log(f"tokenizer: copied from {cfg.tokenizer}")
        else:
            log(f"tokenizer: training a byte-level BPE with {cfg.vocab_size} ids on the train split")
            tk.train_bpe(_tokenizer_sample(domains, cfg.tokenizer_train_bytes), cfg.vocab_size, tok_dir)
        vocab = tk.vocab_size(tok_dir)
        eod = tk.eod_id(tok_dir)
        dtype = np.dtype(TOKEN_DTYPES[cfg.dtype]) if cfg.dtype else np.dtype(dtype_for_vocab(vocab))
        check_vocab_fits(vocab, dtype, where=str(cfg.tokenizer or "vocab_size"))
        records = _tokenize_and_write(domains, tmp, tok_dir, eod, dtype, cfg.workers, progress)
        content = hashlib.sha256()
        for rec in records:
            for split in ("train", "valid"):
                for f in rec[split]:
                    for p in (idx_path(tmp / f["prefix"]), bin_path(tmp / f["prefix"])):
                        with p.open("rb") as fh:
                            content.update(hashlib.file_digest(fh, "sha256").digest())
        content.update(tk.fingerprint(tok_dir).encode())
        manifest = {
            "format": FORMAT,
            "inputs_key": key,
            "content_hash": content.hexdigest()[:16],
            "tokenizer": "tokenizer",
            "vocab_size": vocab,
            "eod_id": eod,
            "dtype": dtype.name,
            "options": cfg.key_fields(),
            "domains": records,
        }
        (tmp / CORPUS_FILE).write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    corpus = Corpus.load(out)
    log(f"corpus written to {out} (data hash {corpus.data_hash})")
    return PrepareResult(corpus, False, time.perf_counter() - t0)


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace `out` by `tmp` so that `out` is never a half-written corpus (keeps a blend cache folder)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        cache = old / "cache"
        if cache.is_dir():
            os.replace(cache, tmp / "cache")
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _tokenize_and_write(
    domains: Sequence[DomainText], root: Path, tok_dir: Path, eod: int, dtype: np.dtype, workers: int, progress: bool
) -> list[dict[str, Any]]:
    total = sum(len(d.train) + len(d.valid) for d in domains)
    records = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("tokenizing documents", total=total)
        pool = (
            ProcessPoolExecutor(
                max_workers=workers, initializer=_init_worker, initargs=(str(tok_dir / "tokenizer.json"),)
            )
            if workers > 1
            else None
        )
        if pool is None:
            _init_worker(str(tok_dir / "tokenizer.json"))
        try:
            for d in domains:
                rec: dict[str, Any] = {
                    "name": d.source.name,
                    "group": d.source.group,
                    "source": d.source.description,
                    "info": {"read": d.read, "dropped": d.dropped, "duplicates": d.duplicates, "capped": d.capped},
                }
                for split, texts in (("train", d.train), ("valid", d.valid)):
                    prefix = f"{d.source.name}/{d.source.name}_{split}_text_document"
                    with IndexedWriter(root / prefix, dtype) as writer:
                        results = (
                            pool.map(_encode_batch, _batches(texts)) if pool else map(_encode_batch, _batches(texts))
                        )
                        for batch in results:
                            for ids in batch:
                                writer.add(np.append(ids, eod))
                            bar.advance(task, len(batch))
                    rec[split] = (
                        []
                        if writer.documents == 0
                        else [{"prefix": prefix, "tokens": writer.tokens, "documents": writer.documents}]
                    )
                    if writer.documents == 0:
                        for p in (idx_path(root / prefix), bin_path(root / prefix)):
                            p.unlink(missing_ok=True)
                    rec[f"{split}_bytes"] = sum(len(t.encode("utf-8")) for t in texts)
                records.append(rec)
        finally:
            if pool is not None:
                pool.shutdown()
    return records
