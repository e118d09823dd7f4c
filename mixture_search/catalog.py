"""The domain catalog: which Megatron files make up each domain, how many tokens they hold, and labels.

A *file* is a Megatron indexed-dataset prefix (`<prefix>.bin` + `<prefix>.idx`), written relative to a
base directory exactly as it appears in a `data_path` (e.g. `code-high/part_13_text_document`).
A *domain* is the folder a file sits in (`code-high`); one domain may hold many files.
A *group* is a coarser label (`Code`, `CC-EN`, ...): given by a token table, or the `source` label
parsed from the domain name.

Mixtures can be written at any of the three levels; `expand` turns a domain or group mixture into a
file mixture (splitting each weight in proportion to tokens) and `collapse` goes back by summing.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ruamel.yaml import YAML

from mixture_search.errors import FormatError, MixtureError
from mixture_search.keys import content_key
from mixture_search.mixture import Mixture

Level = Literal["file", "domain", "group"]
LEVELS: tuple[Level, ...] = ("file", "domain", "group")

# Dataset-name conventions seen in OpenSeek-Pretrain-100B, most specific first.
_LABEL_PATTERNS = [
    # Nemotron-CC-<classifier quality>-<actual-actual | synthetic-<kind>>-<perplexity bucket>
    re.compile(
        r"^(?P<source>Nemotron-CC)-(?P<quality>high|medium|low)-"
        r"(?P<kind>actual-actual|synthetic-[A-Za-z_]+)-(?P<bucket>high|mid|low)$"
    ),
    # zh_cc-<quality>-loss<k> (OpenSeek spells one bucket "medidum")
    re.compile(r"^(?P<source>zh_cc)-(?P<quality>high|medium|medidum|low)-(?P<bucket>loss\d+)$"),
    # <source>-<quality>: code-high, math-mid, cot_synthesis2_arxiv-low, ...
    re.compile(r"^(?P<source>.+?)-(?P<quality>high|mid|medium|low)$"),
    # <source>-full-train / -full-val
    re.compile(r"^(?P<source>.+?)-(?P<split>full-train|full-val)$"),
]


def parse_labels(domain: str) -> dict[str, str]:
    """Labels encoded in a dataset name: source, and where present quality, kind and bucket.

    >>> parse_labels("Nemotron-CC-high-synthetic-distill-low")
    {'source': 'Nemotron-CC', 'quality': 'high', 'kind': 'synthetic-distill', 'bucket': 'low'}
    """
    for pattern in _LABEL_PATTERNS:
        m = pattern.match(domain)
        if m:
            return {k: v for k, v in m.groupdict().items() if v is not None}
    return {"source": domain}


def domain_of(prefix: str) -> str:
    """The domain a file prefix belongs to: its folder, or its own stem when it sits at the top."""
    p = PurePosixPath(prefix)
    if p.parent.name:
        return p.parent.name
    return p.name.removesuffix("_text_document")


@dataclass(frozen=True)
class DataFile:
    """One Megatron indexed dataset (a `.bin`/`.idx` pair) known by its prefix."""

    prefix: str
    tokens: int | None = None
    documents: int | None = None


@dataclass(frozen=True)
class Domain:
    name: str
    files: tuple[DataFile, ...]
    group: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def tokens(self) -> int | None:
        counts = [f.tokens for f in self.files]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


@dataclass(frozen=True)
class DomainCatalog:
    """Domains in order, each with its files; `base_dir` is where the prefixes live (if known)."""

    domains: tuple[Domain, ...]
    base_dir: Path | None = None

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for d in self.domains:
            for f in d.files:
                if f.prefix in seen:
                    raise MixtureError(f"file listed twice (in {seen[f.prefix]} and {d.name})", where=f.prefix)
                seen[f.prefix] = d.name

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_files(
        cls,
        files: Iterable[DataFile],
        *,
        groups: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> DomainCatalog:
        """Group files into domains by folder. `groups` maps a prefix or a domain name to its group."""
        by_domain: dict[str, list[DataFile]] = {}
        for f in files:
            by_domain.setdefault(domain_of(f.prefix), []).append(f)
        groups = groups or {}
        domains = []
        for name, members in by_domain.items():
            labels = parse_labels(name)
            group = groups.get(name) or groups.get(members[0].prefix) or labels["source"]
            domains.append(Domain(name=name, files=tuple(members), group=group, labels=labels))
        return cls(domains=tuple(domains), base_dir=base_dir)

    @classmethod
    def from_mixture(cls, mixture: Mixture, *, base_dir: Path | None = None) -> DomainCatalog:
        """A catalog without token counts, from the file prefixes a data_path names."""
        return cls.from_files((DataFile(p) for p in mixture), base_dir=base_dir)

    @classmethod
    def from_tokens_csv(cls, path: Path, *, base_dir: Path | None = None) -> DomainCatalog:
        """Read a token table: a prefix column (`dataset_prefix`, `prefix` or `path`), `tokens`, and
        optionally a group column (`domain_label` or `group`) and `documents`."""
        path = Path(path)
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and not r[0].lstrip().startswith("#")]
        if not rows:
            raise FormatError("token table is empty", where=str(path))
        header = [h.strip() for h in rows[0]]
        col = {h: i for i, h in enumerate(header)}
        prefix_col = next((c for c in ("dataset_prefix", "prefix", "path") if c in col), None)
        if prefix_col is None or "tokens" not in col:
            raise FormatError(
                f"token table needs a prefix column (dataset_prefix|prefix|path) and 'tokens'; header is {header}",
                where=str(path),
            )
        group_col = next((c for c in ("domain_label", "group") if c in col), None)
        files, groups = [], {}
        for lineno, row in enumerate(rows[1:], start=2):
            where = f"{path}:{lineno}"
            prefix = row[col[prefix_col]].strip()
            tokens = _parse_count(row[col["tokens"]], "tokens", where)
            docs = _parse_count(row[col["documents"]], "documents", where) if "documents" in col else None
            files.append(DataFile(prefix, tokens, docs))
            if group_col:
                groups[prefix] = row[col[group_col]].strip()
        return cls.from_files(files, groups=groups, base_dir=base_dir)

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "base_dir": str(self.base_dir) if self.base_dir else None,
            "data_hash": self.data_hash,
            "domains": [
                {
                    "name": d.name,
                    "group": d.group,
                    "labels": dict(d.labels),
                    "files": [{"prefix": f.prefix, "tokens": f.tokens, "documents": f.documents} for f in d.files],
                }
                for d in self.domains
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "catalog") -> DomainCatalog:
        try:
            domains = tuple(
                Domain(
                    name=str(d["name"]),
                    group=str(d.get("group") or parse_labels(d["name"])["source"]),
                    labels=dict(d.get("labels") or parse_labels(d["name"])),
                    files=tuple(DataFile(str(f["prefix"]), f.get("tokens"), f.get("documents")) for f in d["files"]),
                )
                for d in data["domains"]
            )
        except (KeyError, TypeError) as exc:
            raise FormatError(f"malformed catalog: missing or wrong field {exc}", where=where) from None
        base = data.get("base_dir")
        return cls(domains=domains, base_dir=Path(base) if base else None)

    # -- lookups ----------------------------------------------------------------------------------
    @property
    def files(self) -> tuple[DataFile, ...]:
        return tuple(f for d in self.domains for f in d.files)

    @property
    def domain_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.domains)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.group for d in self.domains))

    def domain(self, name: str) -> Domain:
        for d in self.domains:
            if d.name == name:
                return d
        raise MixtureError("unknown domain", where=name)

    def file_domain(self, prefix: str) -> Domain:
        for d in self.domains:
            if any(f.prefix == prefix for f in d.files):
                return d
        raise MixtureError("file is not in the catalog", where=prefix)

    def units(self, level: Level) -> dict[str, list[DataFile]]:
        """Files under each name at `level`, in catalog order."""
        out: dict[str, list[DataFile]] = {}
        for d in self.domains:
            for f in d.files:
                key = {"file": f.prefix, "domain": d.name, "group": d.group}[level]
                out.setdefault(key, []).append(f)
        return out

    def tokens(self, level: Level) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for name, files in self.units(level).items():
            counts = [f.tokens for f in files]
            out[name] = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
        return out

    @property
    def data_hash(self) -> str:
        """Content hash of what a trial trains on: prefixes, token and document counts, in order."""
        payload = [[d.name, [[f.prefix, f.tokens, f.documents] for f in d.files]] for d in self.domains]
        return content_key(payload, sort_keys=False)

    def level_of(self, mixture: Mixture) -> Level:
        """Whether a mixture names files, domains or groups of this catalog; errors name the first stranger."""
        names = set(mixture)
        for level in LEVELS:
            if names <= set(self.units(level)):
                return level
        known = set().union(*(set(self.units(lv)) for lv in LEVELS))
        unknown = [n for n in mixture if n not in known]
        if unknown:
            raise MixtureError(
                f"unknown domain (not a file, domain or group of the catalog; {len(unknown)} unknown in all)",
                where=unknown[0],
            )
        raise MixtureError("mixture mixes files, domains and groups; use names from one level only")

    # -- level changes ----------------------------------------------------------------------------
    def expand(self, mixture: Mixture) -> Mixture:
        """A file-level mixture: each domain/group weight split over its files in proportion to tokens.

        Names at file level pass through unchanged. Units absent from the mixture stay absent (an
        explicit weight of 0 is kept as 0), in catalog order.
        """
        level = self.level_of(mixture)
        if level == "file":
            return mixture
        out: list[tuple[str, float]] = []
        for name, files in self.units(level).items():
            if name not in mixture:
                continue
            weight = mixture[name]
            if len(files) == 1:
                out.append((files[0].prefix, weight))
                continue
            missing = [f.prefix for f in files if f.tokens is None]
            if missing:
                raise MixtureError(
                    f"token count unknown, cannot split the weight of {name!r} by tokens", where=missing[0]
                )
            total = sum(f.tokens or 0 for f in files)
            out.extend((f.prefix, weight * (f.tokens or 0) / total if total else weight / len(files)) for f in files)
        return Mixture(out)

    def collapse(self, mixture: Mixture, level: Level = "domain") -> Mixture:
        """Sum a mixture's weights up to `level` (from any finer level), keeping first-seen order."""
        have = self.level_of(mixture)
        if LEVELS.index(have) > LEVELS.index(level):
            raise MixtureError(f"cannot collapse a {have}-level mixture to the finer level {level!r}")
        files = self.expand(mixture) if have != "file" else mixture
        sums: dict[str, float] = {}
        for d in self.domains:
            for f in d.files:
                if f.prefix in files:
                    key = {"file": f.prefix, "domain": d.name, "group": d.group}[level]
                    sums[key] = sums.get(key, 0.0) + files[f.prefix]
        return Mixture(sums)

    def epochs(self, mixture: Mixture, budget_tokens: float) -> dict[str, float | None]:
        """Passes over each unit's data if a run of `budget_tokens` follows `mixture`."""
        level = self.level_of(mixture)
        tokens = self.tokens(level)
        out: dict[str, float | None] = {}
        for name in mixture:
            t = tokens.get(name)
            out[name] = mixture.share(name) * budget_tokens / t if t else None
        return out

    def restrict(self, names: Sequence[str]) -> DomainCatalog:
        """The catalog with only the named domains, in the given order."""
        return DomainCatalog(domains=tuple(self.domain(n) for n in names), base_dir=self.base_dir)


def _parse_count(raw: str, name: str, where: str) -> int:
    try:
        value = int(float(raw))
    except ValueError:
        raise FormatError(f"{name} {raw!r} is not a number", where=where) from None
    if value < 0:
        raise FormatError(f"{name} {value} is negative", where=where)
    return value


def load_catalog(path: Path | str, *, base_dir: Path | None = None) -> DomainCatalog:
    """A catalog from a token table (.csv) or a catalog file we wrote (.json/.yaml)."""
    path = Path(path)
    if not path.exists():
        raise FormatError("catalog file not found", where=str(path))
    if path.suffix == ".csv":
        return DomainCatalog.from_tokens_csv(path, base_dir=base_dir)
    if path.suffix in (".json", ".yaml", ".yml"):
        try:  # JSON is YAML; one parser for both
            data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except Exception as exc:
            raise FormatError(f"cannot parse catalog: {' '.join(str(exc).split())}", where=str(path)) from None
        if not isinstance(data, Mapping):
            raise FormatError("catalog must be a mapping with 'domains'", where=str(path))
        cat = DomainCatalog.from_dict(data, where=str(path))
        if base_dir is not None:
            return DomainCatalog(cat.domains, base_dir)
        if cat.base_dir is not None and not cat.base_dir.is_absolute():
            return DomainCatalog(cat.domains, (path.parent / cat.base_dir).resolve())
        return cat
    raise FormatError("unknown catalog type (expected .csv, .json or .yaml)", where=str(path))
