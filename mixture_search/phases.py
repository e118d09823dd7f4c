"""A phased search space: one mixture per phase of the run, with token caps taken over the whole run.

`PhasedSpace(base=space, phases=[{"until": 0.8}, {"until": 1.0, "bounds": {...}}])` searches
schedules (`mixture_search.schedule.Schedule`). Each phase is a constrained simplex over the base
space's domains with its own bounds and pins (the base's, overridden per phase); a boundary can be
searched (`"until": [0.7, 0.9]`).

**Points.** A point is the schedule's flat form: one share per cell `p<k>.<domain>`, the fraction of
the run's tokens that phase k draws from that domain (the phase's share times its length). The cells
add up to 1, each phase's cells to its length, and each domain's cells to its share of the whole
run. So a `PhasedSpace` *is* a `SearchSpace` over the cells, with more constraints, and everything
that works on a space works on it unchanged: samplers (`Mixture` values over the cells, which
`Schedule.from_flat` turns back into phases), surrogates (features: the phases' shares side by side,
weighted by the phase lengths, which also carry a searched boundary; rows still add up to 1) and the
proposal (the feasible set is a convex polytope in the cells, so an average of feasible schedules is
feasible).

**Caps over the run.** With `max_epochs`, domain d's cells must add up to at most
`cap_d = max_epochs * tokens_d / target_tokens`: a small, good domain may take a large share of a
short last phase as long as the run as a whole does not repeat it too often. This couples the
phases. For fixed phase lengths the cells are a flow from phases (supplies: the lengths) to domains
(capacities: the caps) with a box on each edge; by Gale's theorem a completion exists iff for every
set S of phases, the tokens S still needs are at most `sum_d min(room_d, what S can still take
from d)`. `from_unit` fills the cells in order (phase by phase, domain by domain), each inside the
exact interval these conditions leave (closed form: each condition is piecewise linear in the cell
with one kink), with the stick-breaking quantile of `simplex.fill`; without caps it *is* `fill` per
phase. So every cube point lands inside, and `to_unit` is its exact inverse on feasible points.

The feasible boundaries form an interval (the projection of a polytope); with one searched
boundary it is found once, when the space is built, and the first cube coordinate spans it. Several
searched boundaries need caps that every combination of them meets (checked at the corners).

Not supported with phases: hierarchical groups (a one-line error).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.keys import content_key
from mixture_search.mixture import Mixture
from mixture_search.schedule import Schedule, cell
from mixture_search.space import TOL, SearchSpace
from mixture_search.units import format_count

#: rounds of alternating projections between the phases and the caps (then each cell is clipped into
#: its interval, so the result is feasible however far the rounds got)
DYKSTRA_ROUNDS = 15


@dataclass(frozen=True)
class PhaseSpec:
    """One phase as the user gives it: where it ends (a number, or [min, max] to search) and its own
    bounds and pins (domains not named keep the base space's)."""

    until: float | tuple[float, float]
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    pinned: Mapping[str, float] = field(default_factory=dict)

    @property
    def searched(self) -> bool:
        return isinstance(self.until, tuple)

    @property
    def range(self) -> tuple[float, float]:
        return self.until if isinstance(self.until, tuple) else (self.until, self.until)

    @classmethod
    def parse(cls, raw: Any, k: int) -> PhaseSpec:
        where = f"phases[{k}]"
        if isinstance(raw, PhaseSpec):
            return raw
        if not isinstance(raw, Mapping):
            raise SearchError("a phase must be a mapping with 'until' (and optional bounds, pinned)", where=where)
        unknown = sorted(set(raw) - {"until", "bounds", "pinned"})
        if unknown:
            raise SearchError(f"unknown key {unknown[0]!r} (expected until, bounds, pinned)", where=where)
        if "until" not in raw:
            raise SearchError("missing (the fraction of the run where this phase ends)", where=f"{where}.until")
        until = raw["until"]
        value: float | tuple[float, float]
        if isinstance(until, (list, tuple)):
            if len(until) != 2:
                raise SearchError(f"expected a number or [min, max], got {until!r}", where=f"{where}.until")
            a, b = (_fraction(x, f"{where}.until") for x in until)
            if not a < b:
                raise SearchError(f"searched range [{a:g}, {b:g}] must have min < max", where=f"{where}.until")
            value = (a, b)
        else:
            value = _fraction(until, f"{where}.until")
        for key in ("bounds", "pinned"):
            if raw.get(key) is not None and not isinstance(raw[key], Mapping):
                raise SearchError("must map domain names to values", where=f"{where}.{key}")
        bounds = {str(d): tuple(v) if isinstance(v, (list, tuple)) else v for d, v in (raw.get("bounds") or {}).items()}
        return cls(value, bounds, dict(raw.get("pinned") or {}))


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SearchError(f"{value!r} is not a number", where=where)
    v = float(value)
    if not math.isfinite(v) or not 0 < v <= 1:
        raise SearchError(f"{v:g} must be a fraction of the run in (0, 1]", where=where)
    return v


@dataclass(frozen=True)
class PhasedSpace(SearchSpace):
    """A `SearchSpace` over the cells `p<k>.<domain>` of a run in phases (see the module docstring).

    Build it from a base space and the phases: `PhasedSpace(base=space, phases=[...])`. The base
    gives the domains, token counts, prior, caps (`max_epochs`, `target_tokens`) and default bounds
    and pins. The inherited `bounds` are extra bounds on cells (what a trust region narrows); leave
    the other inherited fields unset.
    """

    domains: tuple[str, ...] = ()
    base: SearchSpace | None = None
    phases: tuple[PhaseSpec, ...] | Sequence[Any] = ()

    _spaces: tuple[SearchSpace, ...] = field(init=False, repr=False, compare=False)
    _plo: np.ndarray = field(init=False, repr=False, compare=False)  # (K, m) share bounds per phase
    _phi: np.ndarray = field(init=False, repr=False, compare=False)
    _pfree: np.ndarray = field(init=False, repr=False, compare=False)  # (K, m) cells that are coordinates
    _runcap: np.ndarray = field(init=False, repr=False, compare=False)  # (m,) run-share cap, inf if none
    _ranges: np.ndarray = field(init=False, repr=False, compare=False)  # (K, 2) feasible until per phase
    _subsets: np.ndarray = field(init=False, repr=False, compare=False)  # (2^K, K) every set of phases

    def __post_init__(self) -> None:
        base = self.base
        if not isinstance(base, SearchSpace) or isinstance(base, PhasedSpace):
            raise SearchError("a phased space needs a plain SearchSpace as its base", where="base")
        if base.hierarchical:
            raise SearchError("hierarchical groups are not supported in a phased space yet", where="groups")
        phases = self.phases
        if isinstance(phases, (str, bytes, Mapping)) or not isinstance(phases, Sequence) or not phases:
            raise SearchError("must be a non-empty list of phases ({until, bounds, pinned})", where="phases")
        specs = tuple(PhaseSpec.parse(p, k) for k, p in enumerate(phases))
        flat = tuple(cell(k, d) for k in range(len(specs)) for d in base.domains)
        if self.domains and tuple(self.domains) != flat:
            raise SearchError("the cells of a phased space follow from its base and phases", where="domains")
        for name in ("tokens", "target_tokens", "max_epochs", "prior", "groups"):
            if getattr(self, name) is not None:
                raise SearchError("set it on the base space of a phased space", where=name)
        if self.pinned or self.group_bounds:
            raise SearchError("pin shares per phase (phases[k].pinned) or on the base space", where="pinned")
        set_ = object.__setattr__
        set_(self, "phases", specs)
        set_(self, "domains", flat)
        super().__post_init__()  # the cells as one simplex, with the cell bounds
        self._build_phases(base, specs)

    # -- construction ------------------------------------------------------------------------------
    def _build_phases(self, base: SearchSpace, specs: tuple[PhaseSpec, ...]) -> None:
        set_ = object.__setattr__
        K, m = len(specs), base.size
        prev_hi = 0.0
        for k, spec in enumerate(specs):
            a, b = spec.range
            where = f"phases[{k}].until"
            if a <= prev_hi:
                raise SearchError(
                    f"{_range_words(spec)} does not start after the previous phase's end {prev_hi:g} "
                    "(phases must end in increasing order)",
                    where=where,
                )
            prev_hi = b
        last = specs[-1]
        if last.searched or abs(last.range[0] - 1.0) > 1e-12:
            raise SearchError(
                f"the last phase must end at 1.0, not {_range_words(last)}", where=f"phases[{K - 1}].until"
            )
        spaces = []
        for k, spec in enumerate(specs):
            bounds = {d: v for d, v in dict(base.bounds).items() if d not in spec.pinned}
            bounds.update(spec.bounds)
            pinned = {d: v for d, v in dict(base.pinned).items() if d not in spec.bounds}
            pinned.update(spec.pinned)
            try:
                spaces.append(
                    SearchSpace(
                        domains=base.domains,
                        bounds=bounds,
                        pinned=pinned,
                        prior=base.prior_shares.tolist(),
                    )
                )
            except SearchError as exc:
                raise SearchError(_strip(exc), where=f"phases[{k}]" + (f".{exc.where}" if exc.where else "")) from None
        set_(self, "_spaces", tuple(spaces))
        plo = np.stack([s.lower for s in spaces])
        phi = np.stack([s.upper for s in spaces])
        set_(self, "_plo", plo)
        set_(self, "_phi", phi)
        cap = np.array([np.inf if c is None else c for c in base.caps.values()])
        set_(self, "_runcap", cap)
        flo, fhi = self._lo.reshape(K, m), self._hi.reshape(K, m)
        set_(self, "_pfree", (phi - plo > TOL) & (fhi - flo > TOL))
        set_(self, "_subsets", np.array([[(s >> k) & 1 for k in range(K)] for s in range(1 << K)], dtype=np.float64))
        ranges = np.array([spec.range for spec in specs], dtype=np.float64)
        set_(self, "_ranges", ranges)
        searched = [k for k, s in enumerate(specs) if s.searched]
        if not searched:
            self._check_feasible(self._lengths_of(ranges[:, 0][None, :]), raise_error=True)
        elif len(searched) == 1:
            k = searched[0]
            ranges[k] = self._feasible_range(k)
        else:
            corners = np.array(np.meshgrid(*[ranges[k] for k in searched])).reshape(len(searched), -1).T
            untils = np.tile(ranges[:, 0], (len(corners), 1))
            untils[:, searched] = corners
            ok = self._check_feasible(self._lengths_of(untils))
            if not ok.all():
                bad = corners[int(np.argmin(ok))]
                raise SearchError(
                    f"with caps, several searched boundaries need every combination to be feasible; the phase ends "
                    f"{', '.join(f'{u:g}' for u in bad)} are not (narrow the ranges or search one boundary)",
                    where=f"phases[{searched[0]}].until",
                )

    def _feasible_range(self, k: int) -> np.ndarray:
        """The part of phase k's searched end that the caps and bounds allow (an interval: the feasible
        (lengths, cells) form a polytope, so its shadow on one boundary is convex)."""
        a, b = self._ranges[k]
        grid = np.linspace(a, b, 1025)
        untils = np.tile(self._ranges[:, 0], (len(grid), 1))
        untils[:, k] = grid
        ok = self._check_feasible(self._lengths_of(untils))
        if not ok.any():
            mid = len(grid) // 2
            why = ""
            try:
                self._check_feasible(self._lengths_of(untils[mid : mid + 1]), raise_error=True)
            except SearchError as exc:
                why = f" (at {grid[mid]:g}: {_strip(exc)})"
            raise SearchError(f"no end in [{a:g}, {b:g}] meets the bounds and caps{why}", where=f"phases[{k}].until")
        idx = np.flatnonzero(ok)
        lo_i, hi_i = int(idx[0]), int(idx[-1])

        def edge(inside: float, outside: float) -> float:
            for _ in range(60):
                mid = 0.5 * (inside + outside)
                u = self._ranges[:, 0].copy()
                u[k] = mid
                if self._check_feasible(self._lengths_of(u[None, :]))[0]:
                    inside = mid
                else:
                    outside = mid
            return inside

        lo = grid[lo_i] if lo_i == 0 else edge(grid[lo_i], grid[lo_i - 1])
        hi = grid[hi_i] if hi_i == len(grid) - 1 else edge(grid[hi_i], grid[hi_i + 1])
        return np.array([lo, hi])

    def _lengths_of(self, untils: np.ndarray) -> np.ndarray:
        return np.diff(np.concatenate([np.zeros((len(untils), 1)), untils], axis=1), axis=1)

    def _boxes(self, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row (n, K, m) lower and upper bounds of the cells for phase lengths L (n, K)."""
        K, m = L.shape[1], self._plo.shape[1]
        flo, fhi = self._lo.reshape(K, m), self._hi.reshape(K, m)
        lo = np.maximum(L[:, :, None] * self._plo[None], flo[None])
        hi = np.minimum(L[:, :, None] * self._phi[None], fhi[None])
        return lo, hi

    def _check_feasible(self, L: np.ndarray, *, raise_error: bool = False) -> np.ndarray:
        """Whether some schedule with phase lengths L (rows) meets every bound and cap (Gale's conditions)."""
        lo, hi = self._boxes(L)
        slack = 1e-12
        u = hi - lo
        need = L - lo.sum(axis=2)  # (n, K): what each phase needs above its minimums
        room = self._runcap[None, :] - lo.sum(axis=1)  # (n, m): what each cap leaves above the minimums
        ok = (u >= -slack).all(axis=(1, 2)) & (need >= -slack).all(axis=1) & (room >= -slack).all(axis=1)
        worst = np.zeros(len(L))
        for S in self._subsets[1:]:
            take = np.einsum("k,nkm->nm", S, np.maximum(u, 0))
            gap = np.minimum(np.maximum(room, 0), take).sum(axis=1) - need @ S
            ok &= gap >= -1e-10
            worst = np.minimum(worst, gap)
        if raise_error and not ok.all():
            self._explain(L[int(np.argmin(ok))])
        return ok

    def _explain(self, L: np.ndarray) -> None:
        """Raise the one-line error that says which phase and field make the space empty."""
        lo, hi = self._boxes(L[None, :])
        lo, hi = lo[0], hi[0]
        K = len(L)
        for k in range(K):
            if (hi[k] < lo[k] - 1e-12).any():
                d = self.base_domains[int(np.argmax(hi[k] < lo[k] - 1e-12))]
                raise SearchError("the cell bounds and the phase's share bounds do not meet", where=f"phases[{k}].{d}")
        used = lo.sum(axis=0)
        over = np.flatnonzero(used > self._runcap + 1e-12)
        if len(over):
            i = int(over[0])
            k = int(np.argmax(lo[:, i]))
            raise SearchError(
                f"no schedule meets the caps: the min shares of {self.base_domains[i]} take {used[i]:.4g} of the run's "
                f"tokens, above its cap {self._cap_words(i)}",
                where=f"phases[{k}].bounds.{self.base_domains[i]}",
            )
        need = L - lo.sum(axis=1)
        room = self._runcap - used
        for S in self._subsets[1:]:
            take = (S[:, None] * (hi - lo)).sum(axis=0)
            can = float(np.minimum(room, take).sum())
            if need @ S > can + 1e-10:
                ks = [k for k in range(K) if S[k]]
                names = ", ".join(f"phases[{k}]" for k in ks)
                words = "caps and max shares" if np.isfinite(self._runcap).any() else "max shares"
                raise SearchError(
                    f"no schedule meets the {words}: {names} ({float(L[ks].sum()):.4g} of the run) can take at most "
                    f"{float(lo[ks].sum()) + can:.4g} of the run's tokens"
                    + (
                        f" (max_epochs {self.base.max_epochs:g} in a {format_count(float(self.base.target_tokens or 0))}-token "
                        "run: raise max_epochs, lower target_tokens, or loosen the phase's bounds)"
                        if self.base is not None and self.base.max_epochs is not None
                        else ""
                    ),
                    where=f"phases[{ks[-1]}].until" if np.isfinite(self._runcap).any() else f"phases[{ks[-1]}].bounds",
                )

    def _cap_words(self, i: int) -> str:
        b = self.base
        assert b is not None
        return (
            f"{self._runcap[i]:.4g} ({b.max_epochs:g} epochs of {format_count(float(b.token_counts[i]))} tokens "  # type: ignore[index]
            f"in a {format_count(float(b.target_tokens or 0))}-token run)"
        )

    # -- what the space is -------------------------------------------------------------------------
    @property
    def base_domains(self) -> tuple[str, ...]:
        assert self.base is not None
        return self.base.domains

    @property
    def n_phases(self) -> int:
        return len(self._plo)

    @property
    def searched(self) -> tuple[int, ...]:
        """Phases whose end is searched (their `phase.p<k>.until` is a coordinate)."""
        return tuple(k for k, s in enumerate(self.phases) if isinstance(s, PhaseSpec) and s.searched)

    @property
    def until_ranges(self) -> np.ndarray:
        """(K, 2): the feasible end of each phase (min = max where it is fixed)."""
        return self._ranges.copy()

    @property
    def phase_spaces(self) -> tuple[SearchSpace, ...]:
        """Each phase's own space (its bounds and pins; no caps: those hold over the run)."""
        return self._spaces

    @property
    def run_caps(self) -> dict[str, float | None]:
        """Each domain's cap on its share of the whole run."""
        return {d: (float(c) if np.isfinite(c) and c < 1 else None) for d, c in zip(self.base_domains, self._runcap)}

    @property
    def caps(self) -> dict[str, float | None]:
        return self.run_caps

    @property
    def length_range(self) -> np.ndarray:
        """(K, 2): the shortest and longest fraction of the run each phase can be."""
        return self._length_range()

    def _length_range(self) -> np.ndarray:
        """(K, 2): the shortest and longest each phase can be."""
        r, K = self._ranges, self.n_phases
        prev = np.vstack([np.zeros((1, 2)), r[:-1]])
        return np.column_stack([np.maximum(r[:, 0] - prev[:, 1], 0.0), r[:, 1] - prev[:, 0]])[:K]

    @property
    def lower(self) -> np.ndarray:
        """A lower bound of each cell: the shortest phase length times the min share, or the cell bound."""
        K = self.n_phases
        shortest = self._length_range()[:, 0]
        return np.maximum(shortest[:, None] * self._plo, self._lo.reshape(K, -1)).reshape(-1)

    @property
    def upper(self) -> np.ndarray:
        """An upper bound of each cell: the longest phase length times the max share, the run cap, the cell bound."""
        K = self.n_phases
        longest = self._length_range()[:, 1]
        hi = np.minimum(longest[:, None] * self._phi, self._hi.reshape(K, -1))
        return np.minimum(hi, np.minimum(self._runcap, 1.0)[None, :]).reshape(-1)

    @property
    def prior_shares(self) -> np.ndarray:
        """The base prior in every phase, weighted by the phase lengths at the middle of their ranges."""
        L = self._lengths_of(self._ranges.mean(axis=1)[None, :])[0]
        return np.concatenate([length * s.prior_shares for length, s in zip(L, self._spaces)])

    @property
    def token_counts(self) -> np.ndarray | None:
        assert self.base is not None
        return self.base.token_counts

    @property
    def dim(self) -> int:
        return len(self.searched) + int(sum(max(0, int(f.sum()) - 1) for f in self._pfree))

    @property
    def fingerprint(self) -> str:
        assert self.base is not None
        payload = [
            self.base.fingerprint,
            np.round(self._plo, 12).tolist(),
            np.round(self._phi, 12).tolist(),
            np.round(self._ranges, 12).tolist(),
            np.round(self._lo, 12).tolist(),
            np.round(self._hi, 12).tolist(),
            [None if not np.isfinite(c) else round(float(c), 12) for c in self._runcap],
        ]
        return content_key(payload, sort_keys=False)

    def describe(self) -> list[dict[str, Any]]:
        """One row per cell: phase, domain, min and max share within the phase, pinned, run cap."""
        rows = []
        caps = self.run_caps
        for k, spec in enumerate(self.phases):
            assert isinstance(spec, PhaseSpec)
            for i, d in enumerate(self.base_domains):
                rows.append(
                    {
                        "cell": cell(k, d),
                        "phase": k,
                        "until": list(self._ranges[k]) if spec.searched else float(self._ranges[k, 0]),
                        "domain": d,
                        "min": float(self._plo[k, i]),
                        "max": float(self._phi[k, i]),
                        "pinned": bool(self._phi[k, i] - self._plo[k, i] <= TOL),
                        "run_cap": caps[d],
                    }
                )
        return rows

    def param_names(self) -> list[str]:
        """Tracker parameter names: `w.p<k>.<domain>` for every cell, then `phase.p<k>.until` for each
        phase but the last (the last always ends at 1.0)."""
        return [f"w.{c}" for c in self.domains] + [f"phase.p{k}.until" for k in range(self.n_phases - 1)]

    # -- points ------------------------------------------------------------------------------------
    def to_schedule(self, x: Sequence[float] | np.ndarray | Mixture) -> Schedule:
        mix = x if isinstance(x, Mixture) else self.to_mixture(x)
        return Schedule.from_flat(mix)

    def from_schedule(self, schedule: Schedule) -> np.ndarray:
        """The cells of a schedule over the base domains (its phases must match this space's count)."""
        if len(schedule.phases) != self.n_phases:
            raise SearchError(f"schedule has {len(schedule.phases)} phases, the space {self.n_phases}", where="phases")
        return np.asarray(self.to_array(schedule.flat()))

    def _split(self, X: np.ndarray) -> np.ndarray:
        return X.reshape(len(X), self.n_phases, -1)

    def _untils_of(self, X: np.ndarray) -> np.ndarray:
        """Phase ends of cell rows (cumulative phase sums over the row's total)."""
        sums = self._split(X).sum(axis=2)
        total = np.maximum(sums.sum(axis=1, keepdims=True), 1e-300)
        return np.cumsum(sums / total, axis=1)

    def contains(self, x: np.ndarray | Mixture, *, tol: float = TOL) -> np.ndarray | bool:
        arr = self.to_array(x) if isinstance(x, Mixture) else np.asarray(x, dtype=np.float64)
        X = np.atleast_2d(arr)
        C = self._split(X)
        L = C.sum(axis=2)
        untils = np.cumsum(L, axis=1)
        lo, hi = self._boxes(L)
        ok = np.abs(X.sum(axis=1) - 1.0) <= tol * max(1, X.shape[1])
        ok &= np.all(untils >= self._ranges[:, 0] - tol * 10, axis=1) & np.all(
            untils <= self._ranges[:, 1] + tol * 10, axis=1
        )
        ok &= np.all(lo - tol <= C, axis=(1, 2)) & np.all(hi + tol >= C, axis=(1, 2))
        ok &= np.all(C.sum(axis=1) <= self._runcap + tol, axis=1)
        return bool(ok[0]) if arr.ndim == 1 else ok

    def violation(self, x: np.ndarray | Mixture) -> str | None:
        v = self.to_array(x) if isinstance(x, Mixture) else np.asarray(x, dtype=np.float64)
        if abs(v.sum() - 1) > TOL * len(v):
            return f"cells add up to {v.sum():.9g}, not 1"
        C = self._split(v[None, :])[0]
        L = C.sum(axis=1)
        untils = np.cumsum(L)
        for k in range(self.n_phases):
            a, b = self._ranges[k]
            if not a - 10 * TOL <= untils[k] <= b + 10 * TOL:
                return f"phases[{k}] ends at {untils[k]:.6g}, outside [{a:.6g}, {b:.6g}]"
        for k in range(self.n_phases):
            share = C[k] / L[k] if L[k] > 0 else C[k]
            for i, d in enumerate(self.base_domains):
                if share[i] < self._plo[k, i] - TOL:
                    return f"phases[{k}] {d}: share {share[i]:.6g} is below the min {self._plo[k, i]:.6g}"
                if share[i] > self._phi[k, i] + TOL:
                    return f"phases[{k}] {d}: share {share[i]:.6g} is above the max {self._phi[k, i]:.6g}"
        run = C.sum(axis=0)
        for i, d in enumerate(self.base_domains):
            if run[i] > self._runcap[i] + TOL:
                return f"{d}: {run[i]:.6g} of the run's tokens is above the cap {self._cap_words(i)}"
        lo, hi = self._boxes(L[None, :])
        bad = np.flatnonzero(((lo[0] - TOL > C) | (hi[0] + TOL < C)).reshape(-1))
        if len(bad):
            return f"{self.domains[int(bad[0])]}: {v[int(bad[0])]:.6g} is outside the cell's bounds"
        return None

    # -- maps --------------------------------------------------------------------------------------
    def _lengths_from_unit(self, cube: np.ndarray) -> np.ndarray:
        untils = np.tile(self._ranges[:, 0], (len(cube), 1))
        for j, k in enumerate(self.searched):
            a, b = self._ranges[k]
            untils[:, k] = a + np.clip(cube[:, j], 0.0, 1.0) * (b - a)
        return self._lengths_of(untils)

    def _walk(self, L: np.ndarray, cube: np.ndarray | None, X: np.ndarray | None) -> np.ndarray:
        """The cell-by-cell stick-breaking: from cube coordinates (`cube` given) to cells, or from cells
        (`X` given, clipped into each cell's interval) to cube coordinates. See the module docstring."""
        n, K = L.shape
        m = self._plo.shape[1]
        lo, hi = self._boxes(L)
        u = np.maximum(hi - lo, 0.0)
        need = L - lo.sum(axis=2)
        room = self._runcap[None, :] - lo.sum(axis=1)
        subsets = self._subsets
        in_k = subsets.astype(bool)
        open_ = self._pfree.copy()  # cells still to fill (fixed cells sit at their minimum)
        T = np.stack(
            [np.minimum(room, np.einsum("k,nkm->nm", S * 1.0, u * open_[None])).sum(axis=1) for S in subsets], 1
        )
        cells = lo.copy()
        coords = np.zeros((n, int(sum(max(0, int(f.sum()) - 1) for f in self._pfree))))
        col = 0
        for k in range(K):
            free = np.flatnonzero(self._pfree[k])
            r = len(free)
            for i, d in enumerate(free):
                ucol = u[:, :, d] * open_[:, d][None, :]  # (n, K)
                US = ucol @ subsets.T  # (n, 2^K)
                Rd = room[:, d]
                min_now = np.minimum(Rd[:, None], US)
                other = T - min_now
                needS = need @ subsets.T
                ukd = u[:, k, d]
                with np.errstate(invalid="ignore"):
                    ub = np.where(in_k[:, k][None, :], np.inf, Rd[:, None] - (needS - other))
                    lb = np.where(in_k[:, k][None, :], needS - other - (US - ukd[:, None]), -np.inf)
                upper = np.minimum(np.minimum(ukd, need[:, k]), ub.min(axis=1))
                lower = np.maximum(0.0, lb.max(axis=1))
                upper = np.maximum(upper, lower)
                if i == r - 1:
                    g = np.clip(need[:, k], lower, upper)
                else:
                    power = r - 1 - i
                    if cube is not None:
                        frac = 1.0 - (1.0 - np.clip(cube[:, col], 0.0, 1.0)) ** (1.0 / power)
                        g = lower + frac * (upper - lower)
                    else:
                        assert X is not None
                        g = np.clip(X[:, k, d] - lo[:, k, d], lower, upper)
                        width = upper - lower
                        frac = np.where(width > 1e-15, (g - lower) / np.where(width > 1e-15, width, 1.0), 0.5)
                        coords[:, col] = 1.0 - (1.0 - np.clip(frac, 0.0, 1.0)) ** power
                    col += 1
                cells[:, k, d] += g
                new_R = Rd - g
                open_[k, d] = False
                new_US = US - in_k[:, k][None, :] * ukd[:, None]
                T = T + np.minimum(new_R[:, None], new_US) - min_now
                room[:, d] = new_R
                need[:, k] -= g
        return cells.reshape(n, K * m) if cube is not None else coords

    def from_unit(self, U: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Cube points (n, dim) onto feasible cells (n, K*m): searched boundaries first, then the cells."""
        cube = np.asarray(U, dtype=np.float64)
        if cube.ndim == 1:
            cube = cube[None, :] if self.dim else cube.reshape(-1, 0)
        if cube.shape[1] != self.dim:
            raise SearchError(f"unit points have {cube.shape[1]} coordinates, the space has {self.dim}")
        b = len(self.searched)
        L = self._lengths_from_unit(cube[:, :b])
        return self._walk(L, cube[:, b:], None)

    def _unit_raw(self, X: np.ndarray) -> np.ndarray:
        """Cube coordinates of cell rows, each cell clipped into its interval (exact for feasible rows)."""
        untils = self._untils_of(X)
        head = np.zeros((len(X), len(self.searched)))
        for j, k in enumerate(self.searched):
            a, b = self._ranges[k]
            head[:, j] = np.clip((untils[:, k] - a) / (b - a), 0.0, 1.0)
        L = self._lengths_from_unit(head)
        return np.hstack([head, self._walk(L, None, self._split(X))])

    def to_unit(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        outside = ~np.asarray(self.contains(X), dtype=bool)
        if outside.any():
            X = X.copy()
            X[outside] = self.project(X[outside])
        return self._unit_raw(X)

    def project(self, Y: np.ndarray) -> np.ndarray:
        """A feasible point near each row of Y: the phase ends from Y's phase sums (over Y's total), each
        phase projected onto its box-simplex, a few rounds of Dykstra's alternating projections with the
        caps where a row breaks them, then each cell clipped into its interval (exact where Y is feasible)."""
        Y = np.asarray(Y, dtype=np.float64)
        single = Y.ndim == 1
        Y = np.atleast_2d(Y)
        total = Y.sum(axis=1, keepdims=True)
        Yn = np.where(total > 0, Y / np.where(total > 0, total, 1.0), 1.0 / Y.shape[1])
        untils = self._untils_of(Yn)
        head = np.zeros((len(Y), len(self.searched)))
        for j, k in enumerate(self.searched):
            a, b = self._ranges[k]
            head[:, j] = np.clip((untils[:, k] - a) / (b - a), 0.0, 1.0)
        L = self._lengths_from_unit(head)
        lo, hi = self._boxes(L)
        C = self._split(Yn).copy()

        def phases_step(Z: np.ndarray) -> np.ndarray:
            out = np.empty_like(Z)
            for k in range(Z.shape[1]):
                out[:, k] = _project_rows(Z[:, k], lo[:, k], hi[:, k], L[:, k])
            return out

        C = phases_step(C)
        over = np.flatnonzero((C.sum(axis=1) > self._runcap + TOL).any(axis=1))
        if len(over):
            C[over] = self._dykstra(C[over], lo[over], hi[over], L[over])
        X = self._walk(L, self._walk(L, None, C), None)
        return X[0] if single else X

    def _dykstra(self, Z: np.ndarray, lo: np.ndarray, hi: np.ndarray, L: np.ndarray) -> np.ndarray:
        """Dykstra's alternating projections between the phases' box-simplices and the caps, each row
        until it stops moving (or `DYKSTRA_ROUNDS`); returns the last point on the phases' side."""
        K = Z.shape[1]
        x, p, q = Z.copy(), np.zeros_like(Z), np.zeros_like(Z)
        y = Z.copy()
        active = np.arange(len(Z))
        for _ in range(DYKSTRA_ROUNDS):
            xa, pa, qa = x[active], p[active], q[active]
            ya = np.empty_like(xa)
            for k in range(K):
                ya[:, k] = _project_rows(xa[:, k] + pa[:, k], lo[active, k], hi[active, k], L[active, k])
            excess = np.maximum((ya + qa).sum(axis=1) - self._runcap, 0.0)
            x_new = ya + qa - excess[:, None, :] / K
            p[active], q[active], y[active] = xa + pa - ya, ya + qa - x_new, ya
            moved = np.abs(x_new - xa).max(axis=(1, 2)) > 1e-7
            x[active] = x_new
            active = active[moved]
            if not len(active):
                break
        return y

    def dirichlet(
        self,
        rng: np.random.Generator,
        strengths: np.ndarray,
        *,
        temperature: float = 1.0,
        prior: np.ndarray | None = None,
    ) -> np.ndarray:
        """RegMix's draws per phase (each phase's own pins; the same strength in every phase of a row),
        times phase lengths drawn uniformly in the searched ranges. NOT yet constrained (caps)."""
        strengths = np.asarray(strengths, dtype=np.float64)
        n, K = len(strengths), self.n_phases
        head = rng.random((n, len(self.searched)))
        L = self._lengths_from_unit(head)
        parts = []
        for k, space in enumerate(self._spaces):
            p = None
            if prior is not None:
                block = np.asarray(prior, dtype=np.float64).reshape(K, -1)[k]
                p = block / block.sum() if block.sum() > 0 else None
            parts.append(L[:, k : k + 1] * space.dirichlet(rng, strengths, temperature=temperature, prior=p))
        return np.hstack(parts)


def _project_rows(Y: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: np.ndarray) -> np.ndarray:
    """`simplex.project_box` with bounds per row and 45 bisection steps (plenty before the last
    rounding is spread): the inner step of the alternating projections, run many times."""
    t_lo = (Y - hi).min(axis=1) - 1.0
    t_hi = (Y - lo).max(axis=1) + 1.0
    for _ in range(45):
        mid = 0.5 * (t_lo + t_hi)
        above = np.minimum(np.maximum(Y - mid[:, None], lo), hi).sum(axis=1) > total
        t_lo = np.where(above, mid, t_lo)
        t_hi = np.where(above, t_hi, mid)
    X = np.minimum(np.maximum(Y - (0.5 * (t_lo + t_hi))[:, None], lo), hi)
    resid = total - X.sum(axis=1)
    room = np.where(resid[:, None] > 0, hi - X, X - lo)
    share = room / np.maximum(room.sum(axis=1, keepdims=True), 1e-300)
    return np.minimum(np.maximum(X + resid[:, None] * share, lo), hi)


def _range_words(spec: PhaseSpec) -> str:
    a, b = spec.range
    return f"[{a:g}, {b:g}]" if spec.searched else f"{a:g}"


def _strip(exc: SearchError) -> str:
    text = str(exc)
    return text[len(exc.where) + 2 :] if exc.where and text.startswith(exc.where + ": ") else text


def phased_space(base: SearchSpace, phases: Sequence[Mapping[str, Any] | PhaseSpec]) -> PhasedSpace:
    """`PhasedSpace(base=base, phases=phases)`."""
    return PhasedSpace(base=base, phases=tuple(phases))


__all__ = ["PhaseSpec", "PhasedSpace", "phased_space"]
