"""Human token counts: `100B`, `1.5T`, `500M`, `20k` or a plain integer."""

from __future__ import annotations

import re

from mixture_search.errors import MixSweepError

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_COUNT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE](\d+))?\s*([kKmMbBgGtT]?)\s*$")


def parse_count(value: str | int | float, *, field: str = "count") -> int:
    """`'100B'` -> 100_000_000_000. Errors name `field`."""
    if isinstance(value, bool):
        raise MixSweepError(f"{value!r} is not a count", where=field)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        m = _COUNT.match(value)
        if not m:
            raise MixSweepError(f"{value!r} is not a count (use e.g. 1000000, 500M, 100B)", where=field)
        number = float(m.group(1)) * (10 ** int(m.group(2)) if m.group(2) else 1) * _SUFFIX[m.group(3).upper()]
    if number <= 0 or number != number:
        raise MixSweepError(f"{value!r} must be positive", where=field)
    return round(number)


def format_count(n: float | None) -> str:
    """100_660_000_000 -> '100.7B'."""
    if n is None:
        return "-"
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{suffix}"
    return f"{n:.4g}"
