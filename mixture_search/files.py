"""Atomic file writes: a reader (another trial, a resumed sweep, a user's `cat`) sees the old file or
the new one, never half of one. Write beside the target, then `os.replace` (atomic on POSIX).

This guards against a process that dies mid-write (a killed trial, a timeout). It does not fsync: a
power loss may still lose the latest version (outputs are keyed by their inputs, so a rerun redoes it).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def temp_path(path: str | Path) -> Path:
    """A hidden sibling of `path` unique to this process and thread (same folder, so the rename stays
    atomic; two threads of one Ray worker writing the same file do not share a temporary)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def atomic_write(path: str | Path, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Write `data` (text or bytes) to `path` atomically, creating its folder; returns `path`."""
    raw = data if isinstance(data, bytes) else data.encode(encoding)
    return atomic_save(path, lambda tmp: tmp.write_bytes(raw))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 1, **kwargs: Any) -> Path:
    """`obj` as JSON (with a final newline) to `path`, atomically; `kwargs` go to `json.dumps`."""
    return atomic_write(path, json.dumps(obj, indent=indent, **kwargs) + "\n")


def atomic_save(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Let `write(tmp)` fill a temporary sibling (a file or a folder), then move it onto `path`.
    A folder already at `path` is replaced only once the new one is complete. If `write` raises,
    the temporary is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}-{threading.get_ident()}")
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
