"""Model-free designs: simplex grid, RegMix's Dirichlet, Sobol and Latin hypercube, local perturbation."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.registry import check_range
from mixture_search.samplers.base import SAMPLERS, BaseSampler
from mixture_search.space import TOL

# -- simplex grid ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridOptions:
    #: shares are multiples of 1/resolution (of the mass left after pinned domains)
    resolution: int = 10
    max_points: int = 200_000

    def __post_init__(self) -> None:
        check_range(self.resolution, "resolution", "sampler grid", low=1, high=10_000)
        check_range(self.max_points, "max_points", "sampler grid", low=1)


@SAMPLERS.register("grid", help="every point of a simplex lattice (shares in steps of 1/resolution), seeded order")
class GridSampler(BaseSampler):
    """The lattice {k/resolution} on the simplex, filtered by the bounds, in a seeded random order.
    For few domains only: the lattice has C(resolution + m - 1, m - 1) points."""

    name = "grid"
    Options = GridOptions
    options: GridOptions

    def _setup(self) -> None:
        self._points: np.ndarray | None = None
        self._next = 0

    def _grid(self) -> np.ndarray:
        if self._points is None:
            space, r = self.space, self.options.resolution
            lo, hi = space.lower, space.upper
            free = np.flatnonzero(hi - lo > TOL)
            k = len(free)
            count = math.comb(r + k - 1, k - 1) if k else 1
            if count > self.options.max_points:
                raise SearchError(
                    f"the grid at resolution {r} over {k} free domains has {count:,} points "
                    f"(max_points {self.options.max_points:,}); lower the resolution or use another sampler",
                    where="sampler grid",
                )
            base = np.where(hi - lo > TOL, 0.0, lo)
            if k:
                bars = np.array(list(itertools.combinations(range(r + k - 1), k - 1)), dtype=np.int64)
                bars = bars.reshape(count, k - 1)
                edges = np.hstack([np.full((count, 1), -1), bars, np.full((count, 1), r + k - 1)])
                parts = np.diff(edges, axis=1) - 1
                points = np.tile(base, (count, 1))
                points[:, free] = (1.0 - base.sum()) * parts / r
            else:
                points = base[None, :]
            points = points[np.asarray(space.contains(points), dtype=bool)]
            if not len(points):
                raise SearchError(
                    f"no grid point at resolution {r} lies inside the bounds; raise the resolution",
                    where="sampler grid",
                )
            order = np.random.default_rng(self.seed).permutation(len(points))
            self._points = points[order]
        return self._points

    def _candidates(self, k: int) -> np.ndarray:
        points = self._grid()
        out = points[self._next : self._next + k]
        self._next += len(out)
        return out

    @property
    def size(self) -> int:
        return len(self._grid())

    @property
    def exhausted(self) -> bool:
        return self._next >= self.size

    def _extra_state(self) -> dict[str, Any]:
        return {"next": self._next}

    def _restore_extra(self, extra: Mapping[str, Any]) -> None:
        self._next = int(extra["next"])


# -- RegMix's Dirichlet ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DirichletOptions:
    #: prior = token shares ** temperature (RegMix flattens a skewed token prior with 0.5)
    temperature: float = 0.5
    #: Dirichlet strengths on a log-spaced ladder: low = sparse, corner-like mixtures; high = near the prior
    min_strength: float = 0.1
    max_strength: float = 5.0
    ladder: int = 15
    #: shares below this become 0 and shares are rounded to multiples of it (RegMix: 2e-4); 0 turns both off
    minimum: float = 2e-4
    #: rejection rounds in a row with nothing inside the caps before falling back to projection
    max_rejections: int = 20

    def __post_init__(self) -> None:
        owner = "sampler dirichlet"
        check_range(self.temperature, "temperature", owner, low=0.0, high=10.0)
        check_range(self.min_strength, "min_strength", owner, low=1e-6)
        check_range(self.max_strength, "max_strength", owner, low=self.min_strength)
        check_range(self.ladder, "ladder", owner, low=1, high=1000)
        check_range(self.minimum, "minimum", owner, low=0.0, high=0.1)
        check_range(self.max_rejections, "max_rejections", owner, low=1)


@SAMPLERS.register(
    "dirichlet", help="RegMix: Dirichlet around the token prior, strength ladder, caps by rejection, rounding"
)
class DirichletSampler(BaseSampler):
    """RegMix's recipe. Each draw picks a strength from a log-spaced ladder and samples
    Dir(strength * prior), so the design holds both sparse, extreme mixtures and ones near the token
    prior. Draws outside the caps and bounds are rejected (as RegMix does); shares below `minimum` are
    zeroed and the rest rounded to multiples of it, the largest share absorbing the rounding so every
    candidate adds up to one. If the caps reject everything `max_rejections` times in a row, draws are
    projected onto the space instead (counted in the state as `projected`)."""

    name = "dirichlet"
    Options = DirichletOptions
    options: DirichletOptions

    def _setup(self) -> None:
        o = self.options
        self._ladder = np.logspace(np.log10(o.min_strength), np.log10(o.max_strength), o.ladder)
        self._misses = 0
        self.projected = 0

    def draw(self, k: int) -> np.ndarray:
        """k raw draws from the ladder (unconstrained; used by other samplers as a prior pool too)."""
        strengths = self.rng.choice(self._ladder, k)
        return self.space.dirichlet(self.rng, strengths, temperature=self.options.temperature)

    def _candidates(self, k: int) -> np.ndarray:
        raw = self.draw(max(64, 8 * k))
        inside = raw[np.asarray(self.space.contains(raw), dtype=bool)]
        if self.options.minimum > 0 and len(inside):
            inside = self._round(inside)
            inside = inside[np.asarray(self.space.contains(inside), dtype=bool)]
        if len(inside):
            self._misses = 0
            return inside
        self._misses += 1
        if self._misses < self.options.max_rejections:
            return raw[:0]  # nothing this round; the base asks again
        self.projected += k
        return self.space.project(raw[:k])

    def _round(self, X: np.ndarray) -> np.ndarray:
        unit = self.options.minimum
        lo, hi = self.space.lower, self.space.upper
        free = hi - lo > TOL
        out = X.copy()
        part = out[:, free]
        part = np.where((part < unit) & (lo[free] <= 0), 0.0, part)
        part = np.round(part / unit) * unit
        target = 1.0 - lo[~free].sum()
        rows = np.arange(len(part))
        top = np.argmax(part, axis=1)
        part[rows, top] += target - part.sum(axis=1)
        out[:, free] = np.maximum(part, 0.0)
        return out

    def _extra_state(self) -> dict[str, Any]:
        return {"misses": self._misses, "projected": self.projected}

    def _restore_extra(self, extra: Mapping[str, Any]) -> None:
        self._misses, self.projected = int(extra["misses"]), int(extra["projected"])


# -- quasi-random designs in the unit cube ---------------------------------------------------------


@dataclass(frozen=True)
class SobolOptions:
    scramble: bool = True


@SAMPLERS.register("sobol", help="scrambled Sobol sequence mapped onto the constrained simplex (stick-breaking)")
class SobolSampler(BaseSampler):
    """One Sobol sequence across calls (so points stay low-discrepancy), through `space.from_unit`."""

    name = "sobol"
    Options = SobolOptions
    options: SobolOptions

    def _setup(self) -> None:
        self._drawn = 0
        self._engine = self._new_engine()

    def _new_engine(self) -> Any:
        # lazy: scipy.stats costs ~1 s to import and the CLI imports this module for every command
        from scipy.stats import qmc

        return qmc.Sobol(self.space.dim, scramble=self.options.scramble, rng=self.seed) if self.space.dim else None

    def _candidates(self, k: int) -> np.ndarray:
        if self._engine is None:
            return self.space.from_unit(np.zeros((1, 0)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # balance is best at powers of two; any n is valid
            U = self._engine.random(k)
        self._drawn += k
        return self.space.from_unit(U)

    def _extra_state(self) -> dict[str, Any]:
        return {"drawn": self._drawn}

    def _restore_extra(self, extra: Mapping[str, Any]) -> None:
        self._drawn = int(extra["drawn"])
        self._engine = self._new_engine()
        if self._engine is not None and self._drawn:
            self._engine.fast_forward(self._drawn)


@dataclass(frozen=True)
class LHSOptions:
    optimization: Literal["random-cd"] | None = None


@SAMPLERS.register("lhs", help="Latin hypercube per batch mapped onto the constrained simplex")
class LHSSampler(BaseSampler):
    """Each batch is its own Latin hypercube (seeded from the sampler's generator)."""

    name = "lhs"
    Options = LHSOptions
    options: LHSOptions

    def _candidates(self, k: int) -> np.ndarray:
        # lazy: scipy.stats costs ~1 s to import and the CLI imports this module for every command
        from scipy.stats import qmc

        if not self.space.dim:
            return self.space.from_unit(np.zeros((1, 0)))
        engine = qmc.LatinHypercube(self.space.dim, optimization=self.options.optimization, rng=self._child_seed())
        return self.space.from_unit(engine.random(k))

    def _child_seed(self) -> int:
        return int(self.rng.integers(2**62))


# -- local perturbation around the best ------------------------------------------------------------


@dataclass(frozen=True)
class LocalOptions:
    #: std of the Gaussian step on log shares
    step: float = 0.3
    min_step: float = 0.02
    max_step: float = 2.0
    #: step multipliers after a batch that improved on the best / did not
    grow: float = 1.5
    shrink: float = 0.7

    def __post_init__(self) -> None:
        owner = "sampler local"
        check_range(self.min_step, "min_step", owner, low=1e-6)
        check_range(self.max_step, "max_step", owner, low=self.min_step)
        check_range(self.step, "step", owner, low=self.min_step, high=self.max_step)
        check_range(self.grow, "grow", owner, low=1.0)
        check_range(self.shrink, "shrink", owner, low=1e-3, high=1.0)


def perturb(space: Any, centre: np.ndarray, step: float, rng: np.random.Generator, k: int) -> np.ndarray:
    """k points around `centre`: a Gaussian step on log shares (relative moves, so small domains move
    a little and large ones a lot), then projected onto the space."""
    eps = 1e-3 / space.size
    z = np.log(centre + eps)[None, :] + step * rng.standard_normal((k, space.size))
    z -= z.max(axis=1, keepdims=True)
    y = np.exp(z)
    return np.asarray(space.project(y / y.sum(axis=1, keepdims=True)))


@SAMPLERS.register("local", help="perturbations around the best run so far (the prior before any), adaptive step")
class LocalSampler(BaseSampler):
    """Local search: Gaussian steps on log shares around the best observed mixture (the token prior
    until something is observed). The step grows after a batch that beats the best and shrinks after
    one that does not (a (1+lambda) evolution strategy's success rule)."""

    name = "local"
    Options = LocalOptions
    options: LocalOptions

    def _setup(self) -> None:
        self.step = self.options.step
        self._best: float | None = None

    def centre(self) -> np.ndarray:
        best = self.best()
        return best[0] if best is not None else np.asarray(self.space.project(self.space.prior_shares))

    def _candidates(self, k: int) -> np.ndarray:
        return perturb(self.space, self.centre(), self.step, self.rng, k)

    def _after_observe(self, new: list[tuple[np.ndarray, float | None]]) -> None:
        best = self.best()
        if best is None:
            return
        value = float(self.loss(best[1]))
        if self._best is not None:
            o = self.options
            self.step = float(np.clip(self.step * (o.grow if value < self._best else o.shrink), o.min_step, o.max_step))
        self._best = value

    def _extra_state(self) -> dict[str, Any]:
        return {"step": self.step, "best": self._best}

    def _restore_extra(self, extra: Mapping[str, Any]) -> None:
        self.step = float(extra["step"])
        self._best = None if extra["best"] is None else float(extra["best"])
