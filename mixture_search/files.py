"""Atomic file writes: a reader (another trial, a resumed sweep, a user's `cat`) sees the old file or
the new one, never half of one. Write beside the target, then `os.replace` (atomic on POSIX)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def temp_path(path: str | Path) -> Path:
    """A hidden sibling of `path` unique to this process (same folder, so the rename stays atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: str | Path, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Write `data` (text or bytes) to `path` atomically, creating its folder; returns `path`."""
    return atomic_save(
        path,
        (lambda tmp: tmp.write_bytes(data)) if isinstance(data, bytes) else (lambda tmp: tmp.write_text(data, encoding=encoding)),
    )


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 1, **kwargs: Any) -> Path:
    """`obj` as JSON (with a final newline) to `path`, atomically."""
    return atomic_write(path, json.dumps(obj, indent=indent, **kwargs) + "\n")


def atomic_save(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Let `write(tmp)` fill a temporary sibling (a file or a folder), then move it onto `path`.
    A folder already at `path` is replaced only once the new one is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


__all__ = ["atomic_save", "atomic_write", "atomic_write_json", "temp_path"]
