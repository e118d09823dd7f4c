"""Errors of the data layer: bad data on disk or bad data options, always one line naming the file or field."""

from __future__ import annotations

from mixture_search.errors import MixSweepError


class DataError(MixSweepError):
    """A corpus that cannot be used as asked: truncated or mismatched `.idx`/`.bin`, an empty domain, a tokenizer
    whose vocabulary does not fit the token dtype, a schedule or stop strategy that cannot be honoured."""
