"""Content keys: every cache key, output folder and run id in MixSweep is derived from its inputs
with this one function, so two sites that hash the same inputs always agree."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

KEY_LENGTH = 16
_NOT_IN_METRIC_KEY = re.compile(r"[^A-Za-z0-9_\-./ ]")


def content_key(payload: Any, *, length: int = KEY_LENGTH, sort_keys: bool = True) -> str:
    """`length` hex digits of sha256 over `payload`: a `str` or `bytes` as it is, anything else as its
    JSON (`sort_keys` on by default, values JSON cannot write as their `str`)."""
    if isinstance(payload, bytes):
        data = payload
    elif isinstance(payload, str):
        data = payload.encode()
    else:
        data = json.dumps(payload, sort_keys=sort_keys, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:length]


def metric_key(name: str) -> str:
    """A metric or param name trackers accept: MLflow allows [A-Za-z0-9_-. /] in keys, so anything
    else (e.g. `Reasoning&Instruct`) becomes `_`."""
    return _NOT_IN_METRIC_KEY.sub("_", name)


__all__ = ["KEY_LENGTH", "content_key", "metric_key"]
