"""A stand-in for OpenSeek-Pretrain-100B on disk: its 84 Megatron datasets with their real names and token counts.

Why. The data path (`Corpus.load`, the blend, the validation hold-out, token delivery) has to be measured at the
size a user trains on, 100B tokens in 84 files, and no machine here holds 400 GB of tokens. What the data path
reads is the layout and the `.idx` files (document and sequence counts, lengths, pointers); the tokens themselves
are only ever sliced. So the fixture writes:

* every prefix of `shared/fixtures/openseek/pretrain_100B_files_tokens.csv` (folder = domain, 84 files in 79
  folders), with exactly `round(tokens * scale)` tokens;
* real `.idx` files in megatron-core's `_IndexWriter` layout (megatron-core's `IndexedDataset` reads them), one
  sequence per document;
* sparse `.bin` files of the right size (`truncate`, no block allocated: every token reads as id 0), so 100B int32
  tokens take 400 GB apparent size and no disk beyond the `.idx` files (about 2 GB at 100%);
* `tokenizer/`: a stand-in with the vocabulary size of OpenSeek's Qwen tokenizer (151,851 ids, end of document
  `<|endoftext|>` at 151,643 as in Qwen), so the corpus has the token dtype (int32) and the vocabulary a real run
  has, and nothing has to scan 400 GB of tokens to learn the vocabulary. A user with the real data puts the real
  tokenizer folder at `<data>/tokenizer` (or a symlink).

Document lengths. Log-normal per source, `median * exp(sigma * N(0, 1))`, clipped to [16, 2**24] tokens: document
lengths of web text, code and papers are heavy-tailed with a roughly log-normal body, and what the data path cares
about is the number of documents per file (the `.idx` size, Megatron's document index, the hold-out's search) and a
long tail that makes windows cross documents. The medians below are orders of magnitude typical of each source
(web pages ~10^3 tokens, synthetic rephrasings shorter, papers ~10^4, books ~10^5), not measured on OpenSeek; they
give about 90M documents at 100%. Lengths do not shrink with `--scale` (a 1% fixture has 1% of the documents), and
a file's last document takes the remainder so the token count is exact.

Deterministic: a file's lengths depend only on `--seed` and its prefix. A rerun with the same inputs does nothing
(`fixture.json` records them).

    .venv/bin/python benchmarks/openseek_fixture.py --out /tmp/openseek-fixture-1pct --scale 0.01
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import struct
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the repository's packages
    sys.path.insert(0, str(REPO))

from mixture_search.files import atomic_write_json  # noqa: E402
from mixture_search.keys import content_key  # noqa: E402
from trainers.data.errors import DataError  # noqa: E402
from trainers.data.indexed import CODE_OF, HEADER_BYTES, MAGIC, bin_path, idx_path  # noqa: E402

COUNTS_CSV = REPO.parent / "shared" / "fixtures" / "openseek" / "pretrain_100B_files_tokens.csv"
MANIFEST = "fixture.json"
VERSION = 1
#: OpenSeek's tokenizer (QwenTokenizerFS in its 1.4B config): vocabulary size and end-of-document id
VOCAB_SIZE = 151_851
EOD_ID = 151_643
EOD_TOKEN = "<|endoftext|>"
MIN_DOC, MAX_DOC = 16, 1 << 24


@dataclass(frozen=True)
class DocLengths:
    """Log-normal document lengths in tokens: `median * exp(sigma * z)`."""

    median: float
    sigma: float

    @property
    def mean(self) -> float:
        return self.median * float(np.exp(self.sigma**2 / 2))


#: per `domain_label` of the CSV (see the module docstring for why these)
LENGTHS: dict[str, DocLengths] = {
    "CC-EN": DocLengths(600, 1.0),  # web pages
    "CC-EN-Synth": DocLengths(400, 0.7),  # rephrasings, QA pairs, knowledge lists of web pages
    "CC-ZH": DocLengths(500, 1.0),
    "Code": DocLengths(800, 1.2),  # source files
    "Code-Synth": DocLengths(700, 0.6),  # chain-of-thought syntheses (all the *-Synth below)
    "Math": DocLengths(700, 1.0),  # web math pages
    "Math-Synth": DocLengths(700, 0.6),
    "Arxiv": DocLengths(12_000, 0.6),  # whole papers
    "Arxiv-Synth": DocLengths(700, 0.6),
    "Books": DocLengths(80_000, 0.8),  # whole books
    "Pes2o": DocLengths(6_000, 0.7),  # paper full texts and abstracts
    "Wiki": DocLengths(400, 1.1),  # articles, many stubs
    "Wiki-Synth": DocLengths(700, 0.6),
    "ForumQA": DocLengths(500, 1.0),  # question + answers threads
    "Reasoning&Instruct": DocLengths(600, 0.8),
}


@dataclass(frozen=True)
class FixtureFile:
    prefix: str  # relative to the fixture folder, e.g. "books/016_00007_text_document"
    label: str  # the CSV's domain_label
    real_tokens: int
    baseline_weight_pct: float

    def tokens(self, scale: float) -> int:
        return max(1, round(self.real_tokens * scale))


def read_counts(path: Path = COUNTS_CSV) -> list[FixtureFile]:
    """The CSV's files, in its order. A missing column or unknown label is one line naming the file."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(f"cannot read token counts: {exc.strerror}", where=str(path)) from None
    out = []
    for i, row in enumerate(rows):
        try:
            label = row["domain_label"]
            out.append(FixtureFile(row["dataset_prefix"], label, int(row["tokens"]), float(row["baseline_weight_pct"])))
        except (KeyError, ValueError) as exc:
            raise DataError(f"row {i + 2}: bad or missing column {exc}", where=str(path)) from None
        if label not in LENGTHS:
            raise DataError(f"row {i + 2}: no document-length model for domain_label {label!r}", where=str(path))
    if not out:
        raise DataError("no rows", where=str(path))
    return out


def document_lengths(tokens: int, lengths: DocLengths, seed: int, prefix: str) -> np.ndarray:
    """int32 lengths summing to exactly `tokens` (the last document takes the remainder; at least one)."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(prefix.encode())])
    parts: list[np.ndarray] = []
    total = 0
    while total < tokens:
        n = max(16, int((tokens - total) / lengths.mean * 1.05) + 16)
        draw = lengths.median * np.exp(lengths.sigma * rng.standard_normal(n))
        draw = np.clip(np.rint(draw), MIN_DOC, MAX_DOC).astype(np.int64)
        parts.append(draw)
        total += int(draw.sum())
    lens = np.concatenate(parts)
    ends = np.cumsum(lens)
    last = int(np.searchsorted(ends, tokens))  # first document whose end reaches `tokens`
    lens = lens[: last + 1]
    lens[last] = tokens - (int(ends[last - 1]) if last else 0)
    return lens.astype(np.int32)


def write_index(prefix: Path, lengths: np.ndarray, dtype: np.dtype) -> None:
    """megatron-core's `.idx` layout, one sequence per document: header, int32 lengths, int64 byte pointers,
    int64 document boundaries 0..n."""
    n = len(lengths)
    pointers = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], dtype=np.int64, out=pointers[1:])
    pointers *= dtype.itemsize
    path = idx_path(prefix)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        fh.write(MAGIC + struct.pack("<Q", 1) + bytes([CODE_OF[dtype]]) + struct.pack("<QQ", n, n + 1))
        fh.write(np.ascontiguousarray(lengths, dtype=np.int32).tobytes())
        fh.write(pointers.tobytes())
        fh.write(np.arange(n + 1, dtype=np.int64).tobytes())
    assert tmp.stat().st_size == HEADER_BYTES + 20 * n + 8
    os.replace(tmp, path)


def write_sparse_bin(prefix: Path, nbytes: int) -> None:
    """A `.bin` of `nbytes` with no block allocated (reads as zeros)."""
    path = bin_path(prefix)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        fh.truncate(nbytes)
    os.replace(tmp, path)


def write_tokenizer(folder: Path) -> None:
    """A word-level stand-in with OpenSeek's vocabulary size: ids below EOD_ID are distinct strings of GPT-2's
    byte alphabet (so byte lengths are exact), then the special tokens."""
    # lazy: only writing the stand-in tokenizer needs the tokenizers package
    from tokenizers import Tokenizer, models

    from trainers.data.tokenizer import BYTE_OF_CHAR

    alphabet = sorted(BYTE_OF_CHAR)
    vocab: dict[str, int] = {}
    width, first = 1, 0  # ids [first, first + 256**width) are the base-256 numerals of width `width`
    while len(vocab) < EOD_ID:
        i = len(vocab) - first
        if i >= 256**width:
            width, first = width + 1, len(vocab)
            continue
        vocab["".join(alphabet[(i >> (8 * k)) & 255] for k in reversed(range(width)))] = len(vocab)
    specials = [EOD_TOKEN] + [f"<|extra_{i}|>" for i in range(VOCAB_SIZE - EOD_ID - 1)]
    for s in specials:
        vocab[s] = len(vocab)
    assert len(vocab) == VOCAB_SIZE and vocab[EOD_TOKEN] == EOD_ID
    tok = Tokenizer(models.WordLevel(vocab, unk_token=EOD_TOKEN))
    tok.add_special_tokens(specials)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    cfg = {"eos_token": EOD_TOKEN, "bos_token": EOD_TOKEN, "tokenizer_class": "PreTrainedTokenizerFast"}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class FileRow:
    prefix: str
    label: str
    tokens: int
    documents: int


@dataclass(frozen=True)
class FixtureConfig:
    out: Path
    scale: float = 1.0
    seed: int = 0
    dtype: str = "int32"
    counts: Path = COUNTS_CSV
    tokenizer: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise DataError(f"scale {self.scale} must be in (0, 1]", where="--scale")
        if self.dtype not in ("int32", "uint16"):
            raise DataError(f"dtype {self.dtype!r} must be int32 or uint16", where="--dtype")


def fixture_key(cfg: FixtureConfig, files: list[FixtureFile]) -> str:
    payload = {
        "v": VERSION,
        "scale": cfg.scale,
        "seed": cfg.seed,
        "dtype": cfg.dtype,
        "tokenizer": cfg.tokenizer,
        "files": [asdict(f) for f in files],
        "lengths": {k: asdict(v) for k, v in LENGTHS.items()},
    }
    return content_key(payload, length=16)


def build_fixture(cfg: FixtureConfig, *, log: bool = False) -> dict[str, Any]:
    """Write the fixture under `cfg.out` (skipped when `fixture.json` says it is there); returns the manifest."""
    files = read_counts(cfg.counts)
    key = fixture_key(cfg, files)
    manifest_path = cfg.out / MANIFEST
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if old.get("key") == key:
            return dict(old)
    if cfg.out.exists() and any(cfg.out.iterdir()) and not manifest_path.is_file():
        raise DataError(
            "folder exists and is not an OpenSeek fixture (no fixture.json); refusing to write", where=str(cfg.out)
        )
    manifest_path.unlink(missing_ok=True)  # a half-written fixture never looks complete
    dtype = np.dtype(cfg.dtype)
    t0 = time.perf_counter()
    rows: list[FileRow] = []
    for f in files:
        prefix = cfg.out / f.prefix
        prefix.parent.mkdir(parents=True, exist_ok=True)
        tokens = f.tokens(cfg.scale)
        lens = document_lengths(tokens, LENGTHS[f.label], cfg.seed, f.prefix)
        write_index(prefix, lens, dtype)
        write_sparse_bin(prefix, tokens * dtype.itemsize)
        rows.append(FileRow(f.prefix, f.label, tokens, len(lens)))
        if log:
            print(f"  {f.prefix:<72} {tokens:>14,} tokens {len(lens):>10,} docs", flush=True)
    if cfg.tokenizer:
        tok_dir = cfg.out / "tokenizer"
        if tok_dir.exists():
            shutil.rmtree(tok_dir)
        write_tokenizer(tok_dir)
    manifest = {
        "format": "mixsweep-openseek-fixture/1",
        "key": key,
        "scale": cfg.scale,
        "seed": cfg.seed,
        "dtype": cfg.dtype,
        "counts": str(cfg.counts),
        "tokens": sum(r.tokens for r in rows),
        "documents": sum(r.documents for r in rows),
        "seconds": round(time.perf_counter() - t0, 2),
        "files": [asdict(r) for r in rows],
    }
    atomic_write_json(manifest_path, manifest)
    return manifest


def disk_usage(root: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every file under `root` (like `du --apparent-size` and `du`)."""
    apparent = allocated = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="fixture folder (outside the repository, e.g. /tmp/...)")
    ap.add_argument("--scale", type=float, default=1.0, help="share of the real token counts, in (0, 1]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="int32", help="token dtype (OpenSeek's Qwen vocabulary needs int32)")
    ap.add_argument("--counts", type=Path, default=COUNTS_CSV, help="the per-file token counts CSV")
    ap.add_argument("--no-tokenizer", action="store_true", help="do not write the stand-in tokenizer/")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = FixtureConfig(args.out, args.scale, args.seed, args.dtype, args.counts, not args.no_tokenizer)
        manifest = build_fixture(cfg, log=args.verbose)
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None
    apparent, allocated = disk_usage(args.out)
    print(
        f"{args.out}: {len(manifest['files']):,} files, {manifest['tokens']:,} tokens, "
        f"{manifest['documents']:,} documents; {apparent / 2**30:.2f} GiB apparent, "
        f"{allocated / 2**30:.3f} GiB on disk (written in {manifest['seconds']} s)"
    )


if __name__ == "__main__":
    main()
