"""The `Schedule` value: a run in phases, one mixture per phase.

Phase k covers the fraction `[until_{k-1}, until_k)` of the run's tokens (`until_{-1} = 0`, the last
phase ends at 1.0) and draws from the domains with its own `Mixture`. Every phase names the same
domains (a domain a phase does not use has weight 0), in the order of the first phase.

A schedule is also a point of a `PhasedSpace`: its *flat* form is one `Mixture` over the cells
`p<k>.<domain>` whose weights are the run's token shares, `(until_k - until_{k-1}) * share_k(domain)`.
They add up to 1, so every sampler, surrogate and the proposal work on it as on a static mixture, and
the phase lengths (a searched boundary) are the sums of each phase's cells.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixture_search.errors import MixtureError
from mixture_search.keys import content_key
from mixture_search.mixture import Mixture

#: slack on `until` values: a boundary read back from a file of whole steps is compared at this precision
UNTIL_TOL = 1e-9


def cell(phase: int, domain: str) -> str:
    """The flat name of a domain in a phase: `p0.code`. Domain names may hold dots; the prefix never does."""
    return f"p{phase}.{domain}"


def split_cell(name: str) -> tuple[int, str]:
    """Inverse of `cell`: `p1.code-high/part_3` -> (1, 'code-high/part_3')."""
    head, sep, domain = name.partition(".")
    if not sep or not head.startswith("p") or not head[1:].isdigit() or not domain:
        raise MixtureError("not a phase cell name (expected p<phase>.<domain>)", where=name)
    return int(head[1:]), domain


@dataclass(frozen=True)
class Phase:
    until: float
    mixture: Mixture


@dataclass(frozen=True)
class Schedule:
    """Phases in increasing `until`, the last ending at 1.0, all over the same domains."""

    phases: tuple[Phase, ...]
    name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        phases = tuple(self.phases)
        object.__setattr__(self, "phases", phases)
        if not phases:
            raise MixtureError("a schedule needs at least one phase", where="phases")
        prev = 0.0
        names = set(phases[0].mixture.names)
        for k, ph in enumerate(phases):
            u = ph.until
            if isinstance(u, bool) or not isinstance(u, (int, float)) or not math.isfinite(u):
                raise MixtureError(f"{u!r} is not a number", where=f"phases[{k}].until")
            if not prev < u <= 1.0 + UNTIL_TOL:
                raise MixtureError(
                    f"{u:g} is not after the previous phase's end {prev:g} and at most 1.0 (phases must end in "
                    "increasing order)",
                    where=f"phases[{k}].until",
                )
            if set(ph.mixture.names) != names:
                other = sorted(set(ph.mixture.names) ^ names)
                raise MixtureError(
                    f"names other domains than phases[0] ({other[0]!r} is in one but not the other)",
                    where=f"phases[{k}].weights",
                )
            prev = float(u)
        if abs(prev - 1.0) > UNTIL_TOL:
            raise MixtureError(
                f"the last phase must end at 1.0, not {prev:g}", where=f"phases[{len(phases) - 1}].until"
            )
        if prev != 1.0:
            last = phases[-1]
            object.__setattr__(self, "phases", (*phases[:-1], Phase(1.0, last.mixture)))

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[float, Mixture | Mapping[str, float]]], **kw: Any) -> Schedule:
        """`[(0.8, {code: 1, web: 3}), (1.0, mixture)]`; missing domains of a phase get weight 0."""
        items = [
            (float(u), m if isinstance(m, Mixture) else Mixture(m, where=f"phases[{k}].weights"))
            for k, (u, m) in enumerate(pairs)
        ]
        order: list[str] = []
        for _, m in items:
            order += [n for n in m.names if n not in order]
        phases = [
            Phase(u, m if m.names == tuple(order) else Mixture((n, m.get(n, 0.0)) for n in order)) for u, m in items
        ]
        return cls(tuple(phases), **kw)

    @classmethod
    def constant(cls, mixture: Mixture, **kw: Any) -> Schedule:
        return cls((Phase(1.0, mixture),), **kw)

    @classmethod
    def from_flat(
        cls, flat: Mixture, *, name: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> Schedule:
        """Inverse of `flat`: phase lengths are the sums of each phase's cells."""
        cells: dict[int, list[tuple[str, float]]] = {}
        for n, w in zip(flat.names, flat.normalized):
            k, domain = split_cell(n)
            cells.setdefault(k, []).append((domain, w))
        if sorted(cells) != list(range(len(cells))):
            raise MixtureError(f"phase cells {sorted(cells)} are not p0..p{len(cells) - 1}", where="flat mixture")
        lengths = [sum(w for _, w in cells[k]) for k in range(len(cells))]
        if any(length <= 0 for length in lengths):
            k = next(i for i, length in enumerate(lengths) if length <= 0)
            raise MixtureError("a phase has no tokens", where=f"phases[{k}]")
        untils = np.cumsum(lengths) / sum(lengths)
        untils[-1] = 1.0
        return cls(
            # 12 decimals: a phase end of 0.75 comes back as 0.75, not as its cells' sum 0.7500000000000001
            tuple(Phase(round(float(u), 12), Mixture(cells[k])) for k, u in enumerate(untils)),
            name=name,
            metadata=dict(metadata or {}),
        )

    # -- values ------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self.phases[0].mixture.names

    @property
    def untils(self) -> tuple[float, ...]:
        return tuple(p.until for p in self.phases)

    @property
    def starts(self) -> tuple[float, ...]:
        return (0.0, *self.untils[:-1])

    @property
    def lengths(self) -> np.ndarray:
        """Each phase's fraction of the run."""
        return np.diff(np.concatenate([[0.0], self.untils]))

    def shares(self) -> np.ndarray:
        """(phases, domains): normalised shares of each phase, in `names` order."""
        return np.stack([p.mixture.to_array(self.names) for p in self.phases])

    def run_shares(self) -> np.ndarray:
        """Each domain's share of the whole run's tokens (the phases' shares weighted by their lengths)."""
        return self.lengths @ self.shares()

    def flat(self) -> Mixture:
        """The schedule as one `Mixture` over `p<k>.<domain>` cells (weights: the run's token shares)."""
        cells = self.lengths[:, None] * self.shares()
        return Mixture(
            (cell(k, n), float(cells[k, i])) for k in range(len(self.phases)) for i, n in enumerate(self.names)
        )

    @property
    def key(self) -> str:
        return content_key(
            [
                [round(u, 12), [[n, round(w, 9) + 0.0] for n, w in zip(p.mixture.names, p.mixture.normalized)]]
                for p, u in zip(self.phases, self.untils)
            ],
            sort_keys=False,
        )

    def params(self) -> dict[str, float]:
        """Tracker parameters: `w.p<k>.<domain>` (the phase's share) and `phase.p<k>.until` (all but the last)."""
        out: dict[str, float] = {}
        for k, p in enumerate(self.phases):
            out.update({f"w.{cell(k, n)}": w for n, w in zip(p.mixture.names, p.mixture.normalized)})
        for k, u in enumerate(self.untils[:-1]):
            out[f"phase.p{k}.until"] = u
        return out

    def boundaries(self, total: int) -> list[int]:
        """Each phase's end in whole units (steps, samples) of a run of `total`: rounded, strictly
        increasing, the last equal to `total`."""
        if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < len(self.phases):
            raise MixtureError(
                f"{total!r} must be an integer >= the number of phases ({len(self.phases)})", where="total"
            )
        ends = [round(u * total) for u in self.untils]
        ends[-1] = int(total)
        for k in range(len(ends)):
            low = ends[k - 1] + 1 if k else 1
            if ends[k] < low:
                raise MixtureError(
                    f"phase {k} is shorter than one unit of a {total}-unit run (until {self.untils[k]:g})",
                    where=f"phases[{k}].until",
                )
        return ends

    def tokens(self, total_tokens: float) -> np.ndarray:
        """(phases, domains): tokens each phase draws from each domain in a run of `total_tokens`."""
        return total_tokens * self.lengths[:, None] * self.shares()

    def epochs(self, domain_tokens: Mapping[str, float | None], total_tokens: float) -> dict[str, float | None]:
        """Each domain's epochs over the whole run (None where its size is unknown or zero)."""
        run = self.run_shares() * total_tokens
        out: dict[str, float | None] = {}
        for i, n in enumerate(self.names):
            size = domain_tokens.get(n)
            out[n] = float(run[i] / size) if size else None
        return out

    def __repr__(self) -> str:
        return "Schedule(" + ", ".join(f"until {p.until:g}: {p.mixture!r}" for p in self.phases) + ")"


def params_from(params: Mapping[str, float], domains: Sequence[str]) -> Schedule:
    """Inverse of `Schedule.params` (e.g. from a tracker's run)."""
    ks = sorted({int(k.split(".")[1][1:]) for k in params if k.startswith("w.p")})
    untils = [float(params[f"phase.p{k}.until"]) for k in ks[:-1]] + [1.0]
    return Schedule(
        tuple(Phase(u, Mixture((d, float(params[f"w.{cell(k, d)}"])) for d in domains)) for k, u in zip(ks, untils))
    )


__all__ = ["Phase", "Schedule", "cell", "params_from", "split_cell"]
