"""The search space: which mixtures a sweep may try, and maps between it and the unit cube.

A space is an ordered list of domains (or groups) with optional token counts. Its constraints are on
normalised shares:

- per-domain `bounds` (min, max) and `pinned` shares (min = max);
- caps from the target run: no domain may be repeated more than `max_epochs` times in a run of
  `target_tokens`, so its share is at most `max_epochs * tokens / target_tokens` (RegMix caps every
  domain at 15 epochs of its tokens);
- hierarchical `groups`: a mixture is a group weight times a within-group weight, and
  `group_bounds` bound the group totals.

The feasible set is a convex polytope. It is checked when the space is built: an empty space raises
a one-line `SearchError` that says which constraint empties it. Samplers never renormalise a box:

- `from_unit` maps the unit cube [0, 1]^dim onto the *whole* feasible set (stick-breaking, each stick
  drawn inside the interval that keeps the rest feasible; on the plain simplex this is exactly the
  uniform distribution), and `to_unit` maps back. Sobol, LHS and Optuna work in that cube.
- `project` returns the nearest feasible point (exact Euclidean projection without groups; with
  groups, group totals first, then within each group).
- `dirichlet` draws RegMix-style around a prior, hierarchically when groups are given.
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
from mixture_search.simplex import dirichlet_rows, fill, project_box, unfill
from mixture_search.units import format_count, parse_count

#: slack allowed when checking a point against the constraints (float64 noise of the maps)
TOL = 1e-9
#: the reference mixtures `SearchSpace.anchor` knows, in the order a sweep trains them
ANCHORS = ("natural", "uniform")


@dataclass(frozen=True)
class SearchSpace:
    """Domains with token counts and the constraints on their shares; validated on construction.

    `tokens`, `prior`: a mapping domain -> value or a sequence in domain order. `bounds`: domain ->
    (min, max) share. `pinned`: domain -> fixed share. `groups`: group -> its domains (every domain in
    exactly one group). `group_bounds`: group -> (min, max) of the group's total share.
    """

    domains: tuple[str, ...]
    tokens: Mapping[str, float] | Sequence[float] | None = None
    target_tokens: float | str | None = None
    max_epochs: float | None = None
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    pinned: Mapping[str, float] = field(default_factory=dict)
    groups: Mapping[str, Sequence[str]] | None = None
    group_bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    prior: Mapping[str, float] | Sequence[float] | None = None

    _lo: np.ndarray = field(init=False, repr=False, compare=False)
    _hi: np.ndarray = field(init=False, repr=False, compare=False)
    _cap: np.ndarray = field(init=False, repr=False, compare=False)
    _tok: np.ndarray | None = field(init=False, repr=False, compare=False)
    _prior: np.ndarray = field(init=False, repr=False, compare=False)
    _group_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _gidx: tuple[np.ndarray, ...] = field(init=False, repr=False, compare=False)
    _glo: np.ndarray = field(init=False, repr=False, compare=False)
    _ghi: np.ndarray = field(init=False, repr=False, compare=False)

    # -- construction and validation ---------------------------------------------------------------
    def __post_init__(self) -> None:
        domains = tuple(self.domains)
        if not domains:
            raise SearchError("search space has no domains")
        seen: set[str] = set()
        for name in domains:
            if not isinstance(name, str) or not name.strip():
                raise SearchError(f"domain name {name!r} must be a non-empty string", where="domains")
            if name in seen:
                raise SearchError("domain listed twice", where=f"domains.{name}")
            seen.add(name)
        set_ = object.__setattr__
        set_(self, "domains", domains)
        m = len(domains)
        target = None
        if self.target_tokens is not None:
            target = float(parse_count(self.target_tokens, field="target_tokens"))
            set_(self, "target_tokens", target)
        tok = self._per_domain(self.tokens, "tokens", allow_missing=True)
        set_(self, "_tok", tok)

        lo, hi = np.zeros(m), np.ones(m)
        for name, pair in dict(self.bounds).items():
            i = self._index(name, "bounds")
            lo[i], hi[i] = _share_pair(pair, f"bounds.{name}")
        cap = np.ones(m)
        if self.max_epochs is not None:
            epochs = _positive(self.max_epochs, "max_epochs")
            if target is None:
                raise SearchError("max_epochs needs target_tokens (the token budget of the target run)")
            if tok is None or np.isnan(tok).any():
                missing = domains[int(np.argmax(np.isnan(tok)))] if tok is not None else domains[0]
                raise SearchError("max_epochs needs the token count of every domain", where=f"tokens.{missing}")
            cap = np.minimum(1.0, epochs * tok / target)
        set_(self, "_cap", cap)
        for i, name in enumerate(domains):
            if cap[i] < hi[i]:
                hi[i] = cap[i]
            if lo[i] > hi[i] + TOL:
                raise SearchError(f"min share {lo[i]:.6g} is above {self._max_words(i, hi[i])}", where=name)
        for name, value in dict(self.pinned).items():
            i = self._index(name, "pinned")
            share = _share(value, f"pinned.{name}")
            if share < lo[i] - TOL or share > hi[i] + TOL:
                raise SearchError(
                    f"pinned share {share:.6g} is outside [{lo[i]:.6g}, {hi[i]:.6g}]"
                    + (f" ({self._max_words(i, hi[i])})" if share > hi[i] else ""),
                    where=f"pinned.{name}",
                )
            lo[i] = hi[i] = share
        hi = np.maximum(hi, lo)
        if lo.sum() > 1 + TOL:
            raise SearchError(f"search space is empty: the minimum and pinned shares add up to {lo.sum():.6g} > 1")
        if hi.sum() < 1 - TOL:
            why = " (raise max_epochs, lower target_tokens or add domains)" if self.max_epochs is not None else ""
            raise SearchError(f"search space is empty: the maximum shares and caps add up to {hi.sum():.6g} < 1{why}")
        set_(self, "_lo", lo)
        set_(self, "_hi", hi)
        self._build_groups()
        prior = self._per_domain(self.prior, "prior", allow_missing=False)
        if prior is None:
            prior = tok if tok is not None and not np.isnan(tok).any() and tok.sum() > 0 else np.ones(m)
        if prior.sum() <= 0:
            raise SearchError("prior weights are all zero", where="prior")
        set_(self, "_prior", prior / prior.sum())

    def _build_groups(self) -> None:
        set_ = object.__setattr__
        m = len(self.domains)
        if self.groups is None:
            if self.group_bounds:
                raise SearchError("group_bounds given without groups", where="group_bounds")
            names: tuple[str, ...] = ("*",)
            gidx: tuple[np.ndarray, ...] = (np.arange(m),)
        else:
            owner: dict[int, str] = {}
            names_l, gidx_l = [], []
            for group, members in dict(self.groups).items():
                if isinstance(members, str) or not members:
                    raise SearchError("a group needs a non-empty list of domains", where=f"groups.{group}")
                idx = []
                for name in members:
                    i = self._index(name, f"groups.{group}")
                    if i in owner:
                        raise SearchError(f"domain is in two groups ({owner[i]} and {group})", where=name)
                    owner[i] = str(group)
                    idx.append(i)
                names_l.append(str(group))
                gidx_l.append(np.array(sorted(idx)))
            orphans = [self.domains[i] for i in range(m) if i not in owner]
            if orphans:
                raise SearchError(f"domain is in no group ({len(orphans)} such in all)", where=orphans[0])
            names, gidx = tuple(names_l), tuple(gidx_l)
        glo = np.array([self._lo[g].sum() for g in gidx])
        ghi = np.array([min(1.0, self._hi[g].sum()) for g in gidx])
        for group, pair in dict(self.group_bounds).items():
            if group not in names:
                raise SearchError("unknown group", where=f"group_bounds.{group}")
            k = names.index(group)
            a, b = _share_pair(pair, f"group_bounds.{group}")
            if a > ghi[k] + TOL or b < glo[k] - TOL:
                raise SearchError(
                    f"group bounds [{a:.6g}, {b:.6g}] miss what its domains allow [{glo[k]:.6g}, {ghi[k]:.6g}]",
                    where=f"group_bounds.{group}",
                )
            glo[k], ghi[k] = max(glo[k], a), min(ghi[k], b)
        if len(names) > 1:
            if glo.sum() > 1 + TOL:
                raise SearchError(f"search space is empty: the group minimums add up to {glo.sum():.6g} > 1")
            if ghi.sum() < 1 - TOL:
                raise SearchError(f"search space is empty: the group maximums add up to {ghi.sum():.6g} < 1")
        else:
            glo, ghi = np.ones(1), np.ones(1)
        set_(self, "_group_names", names)
        set_(self, "_gidx", gidx)
        set_(self, "_glo", glo)
        set_(self, "_ghi", np.maximum(ghi, glo))

    def _index(self, name: str, where: str) -> int:
        try:
            return self.domains.index(name)
        except ValueError:
            raise SearchError("unknown domain", where=f"{where}.{name}") from None

    def _per_domain(self, values: Any, label: str, *, allow_missing: bool) -> np.ndarray | None:
        """A float array in domain order (NaN where a mapping leaves a domain out and that is allowed)."""
        if values is None:
            return None
        m = len(self.domains)
        out = np.full(m, np.nan)
        if isinstance(values, Mapping):
            for name, v in values.items():
                if v is not None:
                    out[self._index(name, label)] = _non_negative(v, f"{label}.{name}")
            if not allow_missing and np.isnan(out).any():
                raise SearchError("no value given", where=f"{label}.{self.domains[int(np.argmax(np.isnan(out)))]}")
        else:
            seq = list(values)
            if len(seq) != m:
                raise SearchError(f"{len(seq)} values for {m} domains", where=label)
            for i, v in enumerate(seq):
                out[i] = np.nan if v is None and allow_missing else _non_negative(v, f"{label}.{self.domains[i]}")
        return out

    def _max_words(self, i: int, value: float) -> str:
        if self._cap[i] <= value + TOL and self._cap[i] < 1 and self._tok is not None:
            return (
                f"the cap {value:.6g} ({self.max_epochs:g} epochs of {format_count(self._tok[i])} tokens "
                f"in a {format_count(float(self.target_tokens or 0))}-token run)"
            )
        return f"the max share {value:.6g}"

    @classmethod
    def from_catalog(
        cls,
        catalog: Any,
        *,
        level: str = "domain",
        target_tokens: float | str | None = None,
        max_epochs: float | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        pinned: Mapping[str, float] | None = None,
        groups: Mapping[str, Sequence[str]] | str | None = None,
        group_bounds: Mapping[str, tuple[float, float]] | None = None,
        prior: Mapping[str, float] | None = None,
    ) -> SearchSpace:
        """A space over the files, domains or groups of a `DomainCatalog`, with its token counts.

        `groups="catalog"` makes the space hierarchical with the catalog's group labels.
        """
        if level not in ("file", "domain", "group"):
            raise SearchError(f"level {level!r} is not file, domain or group", where="level")
        tokens = catalog.tokens(level)
        if groups == "catalog":
            if level == "group":
                raise SearchError("groups='catalog' needs level file or domain", where="groups")
            grouped: dict[str, list[str]] = {}
            for d in catalog.domains:
                names = [f.prefix for f in d.files] if level == "file" else [d.name]
                grouped.setdefault(d.group, []).extend(names)
            groups = grouped
        elif isinstance(groups, str):
            raise SearchError(f"groups must be a mapping or 'catalog', not {groups!r}", where="groups")
        return cls(
            domains=tuple(tokens),
            tokens={k: v for k, v in tokens.items() if v is not None},
            target_tokens=target_tokens,
            max_epochs=max_epochs,
            bounds=dict(bounds or {}),
            pinned=dict(pinned or {}),
            groups=groups,
            group_bounds=dict(group_bounds or {}),
            prior=prior,
        )

    # -- what the space is -------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self.domains

    @property
    def size(self) -> int:
        return len(self.domains)

    @property
    def lower(self) -> np.ndarray:
        """Effective minimum share per domain (bounds and pins)."""
        return self._lo.copy()

    @property
    def upper(self) -> np.ndarray:
        """Effective maximum share per domain (bounds, pins and epoch caps)."""
        return self._hi.copy()

    @property
    def caps(self) -> dict[str, float | None]:
        """The epoch cap of each domain, or None where there is none."""
        return {n: (float(c) if c < 1 else None) for n, c in zip(self.domains, self._cap)}

    @property
    def prior_shares(self) -> np.ndarray:
        """The prior the Dirichlet samplers centre on: `prior`, else token shares, else uniform."""
        return self._prior.copy()

    @property
    def token_counts(self) -> np.ndarray | None:
        return None if self._tok is None else self._tok.copy()

    @property
    def group_names(self) -> tuple[str, ...]:
        return self._group_names

    @property
    def hierarchical(self) -> bool:
        return self.groups is not None

    @property
    def dim(self) -> int:
        """Coordinates of the unit cube `from_unit` maps onto the space (0: a single point)."""
        free_groups = int(np.sum(self._ghi - self._glo > TOL))
        return max(0, free_groups - 1) + sum(max(0, len(self._free(g)) - 1) for g in self._gidx)

    @property
    def fingerprint(self) -> str:
        """Stable hash of the feasible set, so a saved sampler state is never restored into another space."""
        payload = [
            list(self.domains),
            np.round(self._lo, 12).tolist(),
            np.round(self._hi, 12).tolist(),
            list(self._group_names),
            [g.tolist() for g in self._gidx],
            np.round(self._glo, 12).tolist(),
            np.round(self._ghi, 12).tolist(),
        ]
        return content_key(payload, sort_keys=False)

    def describe(self) -> list[dict[str, Any]]:
        """One row per domain: tokens, prior share, min, max, cap, pinned and group."""
        group_of = {int(i): g for g, idx in zip(self._group_names, self._gidx) for i in idx}
        rows = []
        for i, name in enumerate(self.domains):
            rows.append(
                {
                    "domain": name,
                    "group": group_of[i] if self.hierarchical else None,
                    "tokens": None if self._tok is None or np.isnan(self._tok[i]) else float(self._tok[i]),
                    "prior": float(self._prior[i]),
                    "min": float(self._lo[i]),
                    "max": float(self._hi[i]),
                    "cap": float(self._cap[i]) if self._cap[i] < 1 else None,
                    "pinned": name in self.pinned,
                }
            )
        return rows

    # -- points ------------------------------------------------------------------------------------
    def to_mixture(self, x: Sequence[float] | np.ndarray) -> Mixture:
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, None)
        return Mixture(zip(self.domains, x.tolist()))

    def to_array(self, mixtures: Mixture | Sequence[Mixture]) -> np.ndarray:
        """Normalised shares in domain order, shape (m,) or (n, m). Names must match the space's."""
        single = isinstance(mixtures, Mixture)
        items: Sequence[Mixture] = [mixtures] if isinstance(mixtures, Mixture) else mixtures
        out = np.empty((len(items), len(self.domains)))
        known = set(self.domains)
        for r, mix in enumerate(items):
            unknown = [n for n in mix if n not in known]
            if unknown:
                raise SearchError("mixture names a domain the search space does not have", where=unknown[0])
            missing = [n for n in self.domains if n not in mix]
            if missing:
                raise SearchError("mixture has no weight for a domain of the search space", where=missing[0])
            out[r] = mix.to_array(self.domains)
        return out[0] if single else out

    def contains(self, x: np.ndarray | Mixture, *, tol: float = TOL) -> np.ndarray | bool:
        """Whether each point (row) is on the simplex and within every bound, cap and group bound."""
        arr = self.to_array(x) if isinstance(x, Mixture) else np.asarray(x, dtype=np.float64)
        X = np.atleast_2d(arr)
        ok = (
            np.all(self._lo - tol <= X, axis=1)
            & np.all(self._hi + tol >= X, axis=1)
            & (np.abs(X.sum(axis=1) - 1.0) <= tol * max(1, X.shape[1]))
        )
        if len(self._gidx) > 1:
            S = self._group_sums(X)
            ok &= np.all(self._glo - tol <= S, axis=1) & np.all(self._ghi + tol >= S, axis=1)
        return bool(ok[0]) if arr.ndim == 1 else ok

    def violation(self, x: np.ndarray | Mixture) -> str | None:
        """The first constraint a point breaks, in words (None if it is inside)."""
        v = self.to_array(x) if isinstance(x, Mixture) else np.asarray(x, dtype=np.float64)
        if abs(v.sum() - 1) > TOL * len(v):
            return f"shares add up to {v.sum():.9g}, not 1"
        for i, name in enumerate(self.domains):
            if v[i] < self._lo[i] - TOL:
                return f"{name}: share {v[i]:.6g} is below the min {self._lo[i]:.6g}"
            if v[i] > self._hi[i] + TOL:
                return f"{name}: share {v[i]:.6g} is above {self._max_words(i, self._hi[i])}"
        if len(self._gidx) > 1:
            for k, total in enumerate(self._group_sums(v[None, :])[0]):
                if not self._glo[k] - TOL <= total <= self._ghi[k] + TOL:
                    return (
                        f"group {self._group_names[k]}: total {total:.6g} is outside "
                        f"[{self._glo[k]:.6g}, {self._ghi[k]:.6g}]"
                    )
        return None

    # -- maps --------------------------------------------------------------------------------------
    def _free(self, idx: np.ndarray) -> np.ndarray:
        return idx[self._hi[idx] - self._lo[idx] > TOL]

    def _fixed(self, idx: np.ndarray) -> np.ndarray:
        return idx[self._hi[idx] - self._lo[idx] <= TOL]

    def _group_sums(self, X: np.ndarray) -> np.ndarray:
        return np.stack([X[:, g].sum(axis=1) for g in self._gidx], axis=1)

    def _group_plan(self) -> tuple[np.ndarray, np.ndarray]:
        free = np.flatnonzero(self._ghi - self._glo > TOL)
        fixed = np.flatnonzero(self._ghi - self._glo <= TOL)
        return free, fixed

    def from_unit(self, U: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Points of the unit cube, shape (n, dim), onto the feasible set, shape (n, m).

        Stick-breaking where stick i is drawn inside the interval that keeps the remaining sticks
        feasible, through the Beta(1, k-1-i) quantile: uniform on an unconstrained simplex, and every
        cube point lands inside the constraints (no rejection, no renormalised box).
        """
        cube = np.asarray(U, dtype=np.float64)
        if cube.ndim == 1:
            cube = cube[None, :] if self.dim else cube.reshape(-1, 0)
        if cube.shape[1] != self.dim:
            raise SearchError(f"unit points have {cube.shape[1]} coordinates, the space has {self.dim}")
        n = cube.shape[0]
        cube = np.clip(cube, 0.0, 1.0)
        X = np.zeros((n, len(self.domains)))
        T = np.tile(self._glo, (n, 1))
        free_g, fixed_g = self._group_plan()
        col = 0
        if len(free_g):
            rest = np.full(n, 1.0 - self._glo[fixed_g].sum())
            T[:, free_g] = fill(cube[:, col : col + len(free_g) - 1], self._glo[free_g], self._ghi[free_g], rest)
            col += len(free_g) - 1
        for k, idx in enumerate(self._gidx):
            free, fixed = self._free(idx), self._fixed(idx)
            X[:, fixed] = self._lo[fixed]
            if len(free):
                rest = T[:, k] - self._lo[fixed].sum()
                X[:, free] = fill(cube[:, col : col + len(free) - 1], self._lo[free], self._hi[free], rest)
                col += len(free) - 1
        return X

    def to_unit(self, X: np.ndarray) -> np.ndarray:
        """Inverse of `from_unit` for feasible points (points outside are projected first)."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        outside = ~np.asarray(self.contains(X), dtype=bool)
        if outside.any():
            X = X.copy()
            X[outside] = self.project(X[outside])
        n = X.shape[0]
        U = np.zeros((n, self.dim))
        S = self._group_sums(X)
        free_g, fixed_g = self._group_plan()
        col = 0
        if len(free_g):
            rest = np.full(n, 1.0 - self._glo[fixed_g].sum())
            U[:, col : col + len(free_g) - 1] = unfill(S[:, free_g], self._glo[free_g], self._ghi[free_g], rest)
            col += len(free_g) - 1
        for k, idx in enumerate(self._gidx):
            free, fixed = self._free(idx), self._fixed(idx)
            if len(free):
                rest = S[:, k] - self._lo[fixed].sum()
                U[:, col : col + len(free) - 1] = unfill(X[:, free], self._lo[free], self._hi[free], rest)
                col += len(free) - 1
        return U

    def project(self, Y: np.ndarray) -> np.ndarray:
        """The feasible point nearest each row of Y (Euclidean; with groups: totals first, then within)."""
        Y = np.asarray(Y, dtype=np.float64)
        single = Y.ndim == 1
        Y = np.atleast_2d(Y)
        n = Y.shape[0]
        if len(self._gidx) == 1:
            X = project_box(Y, self._lo, self._hi, np.ones(n))
        else:
            T = project_box(self._group_sums(Y), self._glo, self._ghi, np.ones(n))
            X = np.empty_like(Y)
            for k, idx in enumerate(self._gidx):
                X[:, idx] = project_box(Y[:, idx], self._lo[idx], self._hi[idx], T[:, k])
        return X[0] if single else X

    def anchor(self, name: str) -> np.ndarray:
        """A reference mixture inside the space (`ANCHORS`): `natural`, the corpus' token shares (the
        prior when the token counts are unknown), or `uniform`, equal shares; each projected onto the
        space's bounds, pins, groups and epoch caps. A sweep trains them in its first round."""
        if name == "natural":
            shares = self.prior_shares if self._tok is None else self._tok / self._tok.sum()
        elif name == "uniform":
            shares = np.full(self.size, 1.0 / self.size)
        else:
            raise SearchError(f"unknown anchor {name!r} (known: {', '.join(ANCHORS)})", where="anchors")
        return np.asarray(self.project(shares))

    def sample_uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n feasible points, uniform on the plain simplex (the cube map of uniform draws)."""
        return self.from_unit(rng.random((n, self.dim)))

    def dirichlet(
        self,
        rng: np.random.Generator,
        strengths: np.ndarray,
        *,
        temperature: float = 1.0,
        prior: np.ndarray | None = None,
    ) -> np.ndarray:
        """One Dirichlet draw per strength, centred on the prior (RegMix's recipe), NOT yet constrained.

        alpha = strength * prior**temperature (normalised); temperature < 1 flattens a skewed token
        prior. Fixed (pinned) domains keep their share and the rest is scaled to the remaining mass.
        With groups the draw is hierarchical: group totals ~ Dir(strength * group prior), then each
        group's split ~ Dir(strength * within-group prior). Callers reject or project the draws.
        """
        strengths = np.asarray(strengths, dtype=np.float64)
        n, m = len(strengths), len(self.domains)
        base = self._prior if prior is None else np.asarray(prior, dtype=np.float64)
        p = np.maximum(base, 1e-12) ** temperature
        fixed = self._hi - self._lo <= TOL
        p[fixed] = 0.0
        X = np.zeros((n, m))
        X[:, fixed] = self._lo[fixed]
        free_mass = 1.0 - self._lo[fixed].sum()
        if not (~fixed).any():
            return X
        groups = [g[~fixed[g]] for g in self._gidx]
        groups = [g for g in groups if len(g)]
        gp = np.array([p[g].sum() for g in groups])
        G = dirichlet_rows(rng, strengths[:, None] * (gp / gp.sum())[None, :]) if len(groups) > 1 else np.ones((n, 1))
        for k, g in enumerate(groups):
            within = dirichlet_rows(rng, strengths[:, None] * (p[g] / p[g].sum())[None, :])
            X[:, g] = free_mass * G[:, k : k + 1] * within
        return X


# -- validation helpers ------------------------------------------------------------------------------


def _share(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SearchError(f"{value!r} is not a number", where=where)
    v = float(value)
    if not math.isfinite(v) or v < 0 or v > 1:
        raise SearchError(f"share {v!r} must be in [0, 1]", where=where)
    return v


def _share_pair(pair: Any, where: str) -> tuple[float, float]:
    if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise SearchError(f"expected (min, max), got {pair!r}", where=where)
    a = 0.0 if pair[0] is None else _share(pair[0], f"{where}.min")
    b = 1.0 if pair[1] is None else _share(pair[1], f"{where}.max")
    if a > b:
        raise SearchError(f"min {a:.6g} is above max {b:.6g}", where=where)
    return a, b


def _non_negative(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SearchError(f"{value!r} is not a number", where=where)
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise SearchError(f"{v!r} must be finite and >= 0", where=where)
    return v


def _positive(value: Any, where: str) -> float:
    v = _non_negative(value, where)
    if v <= 0:
        raise SearchError("must be > 0", where=where)
    return v
