"""One error type for bad user input.

Every message is a single line that names the file, line, field or key at fault, so the CLI can print
it as is and exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class MixSweepError(ValueError):
    """Bad input a user can fix: a malformed config, a bad weight, a missing file."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        message = " ".join(message.split())  # always one line
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class MixtureError(MixSweepError):
    """A mixture that cannot exist: negative, NaN or all-zero weights, duplicate or unknown names."""


class FormatError(MixSweepError):
    """A mixture file that cannot be parsed: odd-length data_path, unknown interpolation, bad YAML."""


class SearchError(MixSweepError):
    """A search that cannot run: an empty search space, bad sampler/surrogate options, an unusable runs table."""
