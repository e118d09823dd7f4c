"""A table of past runs: a CSV with one row per run, weight columns and metric columns.

Nothing is assumed about the domains: their names come from the weight columns (a prefix stripped,
or an explicit list), there may be any number of them, and weights may be shares, percentages
(`12.5` or `12.5%`) or raw token counts: every row is normalised to shares, as Megatron does.
Metric cells may be empty (or `nan`, `NA`, `null`): a failed run. Everything else that is not a
number is an error naming the file, line and column.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixture_search.catalog import DomainCatalog
from mixture_search.errors import SearchError
from mixture_search.files import atomic_save
from mixture_search.mixture import Mixture

#: prefixes recognised when neither --weight-prefix nor --weights is given: a word that says "weight"
#: and one separator (weight_, w., mix:, share/, Ratio-, ...); the one on most columns wins
KNOWN_PREFIX = re.compile(r"^(weights?|w|mix|mixture|shares?|ratio|prop|proportion|domain)[_.:/ -]", re.IGNORECASE)
MISSING = {"", "nan", "na", "n/a", "null", "none", "-"}


@dataclass(frozen=True)
class Table:
    """A CSV as text cells, with the file line of every row (for messages)."""

    path: Path
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]

    def index(self, column: str) -> int:
        try:
            return self.header.index(column)
        except ValueError:
            raise SearchError(
                f"no column {column!r} (columns: {', '.join(self.header)})", where=str(self.path)
            ) from None

    def numbers(self, column: str, *, allow_missing: bool) -> np.ndarray:
        j = self.index(column)
        out = np.empty(len(self.rows))
        for r, row in enumerate(self.rows):
            out[r] = parse_number(row[j], f"{self.path}:{self.lines[r]} {column}", allow_missing=allow_missing)
        return out


def read_table(path: Path | str) -> Table:
    """Read a CSV (or TSV, or ;-separated) with a header row; `#` lines and blank lines are skipped."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise SearchError("file not found", where=str(path)) from None
    except IsADirectoryError:
        raise SearchError("is a folder, not a CSV file", where=str(path)) from None
    except UnicodeDecodeError:
        raise SearchError("not a UTF-8 text file", where=str(path)) from None
    lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1)]
    body = [(i, line) for i, line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not body:
        raise SearchError("empty table (no header row)", where=str(path))
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _delimiter(body[0][1])
    parsed = list(csv.reader(io.StringIO("\n".join(line for _, line in body)), delimiter=delimiter))
    header = tuple(h.strip() for h in parsed[0])
    if any(not h for h in header):
        raise SearchError(
            f"empty column name in the header (column {header.index('') + 1})", where=f"{path}:{body[0][0]}"
        )
    dupes = [h for h in header if header.count(h) > 1]
    if dupes:
        raise SearchError(f"column {dupes[0]!r} appears twice in the header", where=f"{path}:{body[0][0]}")
    rows, numbers = [], []
    for (lineno, _), row in zip(body[1:], parsed[1:]):
        if len(row) > len(header):
            raise SearchError(f"{len(row)} cells for {len(header)} columns", where=f"{path}:{lineno}")
        rows.append(tuple(c.strip() for c in row) + ("",) * (len(header) - len(row)))
        numbers.append(lineno)
    return Table(path=path, header=header, rows=tuple(rows), lines=tuple(numbers))


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_number(cell: str, where: str, *, allow_missing: bool) -> float:
    raw = cell.strip()
    if raw.lower() in MISSING:
        if allow_missing:
            return math.nan
        raise SearchError("empty cell" if not raw else f"{raw!r} is not a number", where=where)
    text = raw[:-1].strip() if raw.endswith("%") else raw
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise SearchError(f"{raw!r} is not a number", where=where) from None
    if math.isinf(value) or (math.isnan(value) and not allow_missing):
        raise SearchError(f"{raw!r} is not a finite number", where=where)
    return value


@dataclass(frozen=True)
class RunsTable:
    """Runs (or candidates) with their mixtures as shares in domain order."""

    table: Table
    weight_columns: tuple[str, ...]
    domains: tuple[str, ...]
    weights: np.ndarray  # (n, m), rows add up to 1

    @property
    def path(self) -> Path:
        return self.table.path

    @property
    def n(self) -> int:
        return len(self.table.rows)

    def mixtures(self) -> list[Mixture]:
        return [Mixture(zip(self.domains, row.tolist())) for row in self.weights]

    def metrics(self, names: Sequence[str]) -> np.ndarray:
        """(n, len(names)) metric values; NaN marks a missing value (a failed run)."""
        clash = [n for n in names if n in self.weight_columns]
        if clash:
            raise SearchError("a target is also a weight column", where=f"{self.path} {clash[0]}")
        return np.column_stack([self.table.numbers(n, allow_missing=True) for n in names])


def resolve_weight_columns(
    header: Sequence[str], *, prefix: str | None, weights: Sequence[str] | None, where: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(weight columns, domain names). Explicit columns win; `A..B` names a range of the header."""
    if weights:
        columns: list[str] = []
        for item in weights:
            if ".." in item and item not in header:
                first, last = (s.strip() for s in item.split("..", 1))
                for end in (first, last):
                    if end not in header:
                        raise SearchError(f"--weights range end {end!r} is not a column", where=where)
                i, j = header.index(first), header.index(last)
                if j < i:
                    raise SearchError(f"--weights range {item!r} runs backwards", where=where)
                columns.extend(header[i : j + 1])
            elif item not in header:
                raise SearchError(f"--weights column {item!r} is not in the header ({', '.join(header)})", where=where)
            else:
                columns.append(item)
        if len(set(columns)) != len(columns):
            raise SearchError("a weight column is listed twice", where=where)
        domains = [c[len(prefix) :] if prefix and c.startswith(prefix) and c != prefix else c for c in columns]
    else:
        if prefix:
            prefixes = [prefix]
        else:
            found = [m.group(0) for m in map(KNOWN_PREFIX.match, header) if m]
            prefixes = sorted((p for p in set(found) if found.count(p) >= 2), key=lambda p: (-found.count(p), p))
        if not prefixes:
            raise SearchError(
                "no weight columns found: name them with --weights C1,C2,... (or FIRST..LAST) "
                f"or --weight-prefix (header: {', '.join(header)})",
                where=where,
            )
        chosen = prefixes[0]
        columns = [h for h in header if h.startswith(chosen) and len(h) > len(chosen)]
        if not columns:
            raise SearchError(f"no column starts with the weight prefix {chosen!r}", where=where)
        domains = [c[len(chosen) :] for c in columns]
    if len(set(domains)) != len(domains):
        raise SearchError("two weight columns give the same domain name", where=where)
    return tuple(columns), tuple(domains)


def read_runs(path: Path | str, *, weight_prefix: str | None = None, weights: Sequence[str] | None = None) -> RunsTable:
    table = read_table(path)
    columns, domains = resolve_weight_columns(
        table.header, prefix=weight_prefix, weights=weights, where=str(table.path)
    )
    return _with_weights(table, columns, domains)


def read_like(path: Path | str, like: RunsTable) -> RunsTable:
    """Candidates for the domains of `like`: each domain as the same weight column, or by its bare name."""
    table = read_table(path)
    columns = []
    for column, domain in zip(like.weight_columns, like.domains):
        if column in table.header:
            columns.append(column)
        elif domain in table.header:
            columns.append(domain)
        else:
            raise SearchError(f"no weight column for domain {domain!r} (expected {column!r})", where=str(table.path))
    return _with_weights(table, tuple(columns), like.domains)


def _with_weights(table: Table, columns: tuple[str, ...], domains: tuple[str, ...]) -> RunsTable:
    if not table.rows:
        raise SearchError("the table has a header but no rows", where=str(table.path))
    W = np.column_stack([table.numbers(c, allow_missing=False) for c in columns])
    for r, c in zip(*np.nonzero(W < 0)):
        raise SearchError(f"weight {float(W[r, c])!r} is negative", where=f"{table.path}:{table.lines[r]} {columns[c]}")
    sums = W.sum(axis=1)
    for r in np.flatnonzero(sums <= 0):
        raise SearchError("all weights are zero", where=f"{table.path}:{table.lines[r]}")
    return RunsTable(table=table, weight_columns=columns, domains=domains, weights=W / sums[:, None])


def read_tokens(path: Path | str, domains: Sequence[str]) -> tuple[dict[str, float], Any]:
    """Token counts for `domains` from a catalog token table (dataset_prefix,tokens[,domain_label]),
    whose files, domains or groups the names may be, or from a plain `domain,tokens` table. Returns
    the counts and the catalog (None for a plain table)."""
    table = read_table(path)
    if any(c in table.header for c in ("dataset_prefix", "prefix", "path")):
        catalog = DomainCatalog.from_tokens_csv(table.path)
        level = catalog.level_of(Mixture.uniform(domains))
        known = {name: float(count) for name, count in catalog.tokens(level).items() if count is not None}
        return {d: known[d] for d in domains if d in known}, catalog
    name_col = next((c for c in ("domain", "name", "group") if c in table.header), None)
    if name_col is None or "tokens" not in table.header:
        raise SearchError(
            "token table needs columns domain,tokens (or a catalog's dataset_prefix,tokens)", where=str(table.path)
        )
    names = [row[table.index(name_col)] for row in table.rows]
    values = table.numbers("tokens", allow_missing=False)
    counts: dict[str, float] = dict(zip(names, values.tolist()))
    missing = [d for d in domains if d not in counts]
    if missing:
        raise SearchError(f"no token count for domain {missing[0]!r} ({len(missing)} missing)", where=str(table.path))
    return {d: counts[d] for d in domains}, None


def write_csv(path: Path | str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write atomically (temp name, then rename), numbers with full precision."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in rows:
                writer.writerow([_cell(v) for v in row])

    return atomic_save(path, write)


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else repr(float(value))
    return str(value)
