"""Where raw text comes from, and how it is cleaned: folders of .txt/.md, .jsonl with a text field, .parquet.

A source yields documents (strings) and a *fingerprint* (paths, sizes, modification times) that enters the
prepare cache key, so a rerun with unchanged inputs does nothing. Cleaning removes ANSI escape codes and other
control characters, drops binary or near-empty documents, and normalises whitespace; deduplication is by document.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainers.data.errors import DataError

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".tex", ".py")
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
BLANK_RUNS = re.compile(r"\n{3,}")


def clean(text: str, *, min_chars: int = 8) -> str | None:
    """Cleaned text, or None for a document to drop (binary, or shorter than `min_chars` once cleaned)."""
    if "\x00" in text:
        return None
    if text.count("\ufffd") > max(8, len(text) // 100):
        return None  # mostly undecodable bytes: binary
    text = ANSI.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = BLANK_RUNS.sub("\n\n", text).strip()
    return text if len(text) >= min_chars else None


def doc_hash(text: str) -> bytes:
    """Identity for deduplication: whitespace-insensitive."""
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=16).digest()


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def stat_fingerprint(paths: Sequence[Path]) -> list[Any]:
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


@dataclass
class Source:
    """A domain's raw text: `documents()` yields strings; `fingerprint()` identifies the inputs."""

    name: str
    group: str
    documents: Callable[[], Iterator[str]]
    fingerprint: Callable[[], Any]
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def _files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(suffixes))


def _jsonl_docs(paths: list[Path], text_field: str) -> Iterator[str]:
    for p in paths:
        with p.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.decode("utf-8", errors="replace").strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"invalid JSON ({exc.msg})", where=f"{p}:{lineno}") from None
                if not isinstance(obj, dict) or text_field not in obj:
                    raise DataError(f"record has no {text_field!r} field", where=f"{p}:{lineno}")
                value = obj[text_field]
                if not isinstance(value, str):
                    raise DataError(f"field {text_field!r} is not a string", where=f"{p}:{lineno}")
                yield value


def _parquet_docs(paths: list[Path], text_field: str) -> Iterator[str]:
    # lazy: pyarrow takes a noticeable time to import and only .parquet inputs need it
    import pyarrow.parquet as pq

    for p in paths:
        try:
            pf = pq.ParquetFile(p)
        except Exception as exc:
            raise DataError(f"cannot read parquet: {' '.join(str(exc).split())}", where=str(p)) from None
        if text_field not in pf.schema_arrow.names:
            raise DataError(f"no column {text_field!r} (columns: {pf.schema_arrow.names})", where=str(p))
        for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
            for value in batch.column(0).to_pylist():
                if isinstance(value, str):
                    yield value


def source_for(name: str, path: Path, *, text_field: str = "text", group: str | None = None) -> Source:
    """A source from a path: a folder (text files, .jsonl and .parquet inside), or one such file."""
    path = Path(path)
    if not path.exists():
        raise DataError("input not found", where=str(path))
    jsonl = _files(path, (".jsonl", ".json"))
    jsonl = [p for p in jsonl if p.suffix == ".jsonl" or path.is_file()]
    parquet = _files(path, (".parquet",))
    text = _files(path, TEXT_SUFFIXES) if path.is_dir() or path.suffix in TEXT_SUFFIXES else []
    if path.is_file():
        jsonl = [path] if path.suffix in (".jsonl", ".json") else []
        parquet = [path] if path.suffix == ".parquet" else []
    every = [*text, *jsonl, *parquet]
    if not every:
        raise DataError(
            f"no input files (.txt/.md/.rst/.tex/.py, .jsonl with a {text_field!r} field, or .parquet)", where=str(path)
        )

    def documents() -> Iterator[str]:
        for p in text:
            yield read_text(p)
        yield from _jsonl_docs(jsonl, text_field)
        yield from _parquet_docs(parquet, text_field)

    return Source(
        name=name,
        group=group or name,
        documents=documents,
        fingerprint=lambda: [text_field, stat_fingerprint(every)],
        description=f"{len(every)} files under {path}",
    )
