"""The sampler protocol: `suggest(n)`, `observe(results)`, `state()` / `restore(state)`.

Every sampler is seeded (one `numpy.random.Generator`, saved in its state), proposes only points of
its search space, and never proposes the same mixture twice (nor one already observed): two mixtures
closer than `min_distance` in L1 count as the same. When a finite design runs out (a grid, a space
that is a single point) `suggest` returns fewer than asked rather than repeating itself.

`state()` is plain JSON (rng state, every suggested and observed point, the sampler's own counters);
`SAMPLERS.build(same name, same space, same seed, same options).restore(state)` continues exactly
where the first one stopped.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.mixture import Mixture
from mixture_search.observation import Observation
from mixture_search.registry import Registry, make_options
from mixture_search.space import SearchSpace

STATE_VERSION = 1


@runtime_checkable
class Sampler(Protocol):
    name: str
    space: SearchSpace

    def suggest(self, n: int) -> list[Mixture]: ...

    def observe(self, results: Iterable[Observation]) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: Mapping[str, Any]) -> Sampler: ...


SAMPLERS: Registry[Sampler] = Registry("sampler")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    pass


class BaseSampler:
    """Seeding, de-duplication, observations and state; subclasses say how to make candidates."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    #: L1 distance under which two mixtures are the same candidate (RegMix de-duplicates at 1e-5)
    min_distance: ClassVar[float] = 1e-4
    #: rounds of candidate generation per `suggest` before giving up on finding new points
    max_rounds: ClassVar[int] = 50

    def __init__(self, space: SearchSpace, *, seed: int = 0, maximize: bool = False, **options: Any) -> None:
        owner = f"sampler {self.name}"
        if not isinstance(space, SearchSpace):
            raise SearchError(f"space must be a SearchSpace, not {type(space).__name__}", where=owner)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise SearchError(f"seed {seed!r} is not an integer", where=owner)
        if not isinstance(maximize, bool):
            raise SearchError(f"maximize {maximize!r} is not true/false", where=owner)
        self.space = space
        self.seed = int(seed)
        self.maximize = maximize
        self.options: Any = make_options(self.Options, options, owner)
        self.rng = np.random.default_rng(self.seed)
        self._seen = np.zeros((0, space.size))
        self._obs_x: list[np.ndarray] = []
        self._obs_y: list[float | None] = []
        self._obs_metrics: list[dict[str, float]] = []
        self.n_suggested = 0
        self._setup()

    # -- protocol ----------------------------------------------------------------------------------
    def suggest(self, n: int) -> list[Mixture]:
        """Up to n new feasible mixtures (fewer only when the sampler has nothing new left)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise SearchError(
                f"number of candidates must be a positive integer, got {n!r}", where=f"sampler {self.name}"
            )
        picked: list[np.ndarray] = []
        for _ in range(self.max_rounds):
            if len(picked) >= n:
                break
            candidates = self._candidates(int(n) - len(picked))
            if len(candidates) == 0 and self.exhausted:
                break
            for x in np.atleast_2d(candidates):
                if self._take(x):
                    picked.append(x)
                    if len(picked) >= n:
                        break
        self.n_suggested += len(picked)
        return [self.space.to_mixture(x) for x in picked]

    def observe(self, results: Iterable[Observation]) -> None:
        """Record finished runs (any mixture of the space's domains, suggested here or not)."""
        new = []
        for obs in results:
            if not isinstance(obs, Observation):
                raise SearchError(f"observe() takes Observation values, not {type(obs).__name__}")
            x = self.space.to_array(obs.mixture)
            y = float(obs.objective) if obs.ok else None  # type: ignore[arg-type]
            self._obs_x.append(x)
            self._obs_y.append(y)
            self._obs_metrics.append({str(k): float(v) for k, v in obs.metrics.items()})
            self._remember(x)
            new.append((x, y))
        if new:
            self._after_observe(new)

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "sampler": self.name,
            "space": self.space.fingerprint,
            "seed": self.seed,
            "maximize": self.maximize,
            "options": _jsonable(dataclasses.asdict(self.options)),
            "rng": self.rng.bit_generator.state,
            "n_suggested": self.n_suggested,
            "seen": self._seen.tolist(),
            "observations": [
                {"x": x.tolist(), "objective": y, "metrics": m}
                for x, y, m in zip(self._obs_x, self._obs_y, self._obs_metrics)
            ],
            "extra": _jsonable(self._extra_state()),
        }

    def restore(self, state: Mapping[str, Any]) -> Self:
        """Continue from `state()` of a sampler built with the same name, space, seed and options."""
        owner = f"sampler {self.name}"
        try:
            if state.get("version") != STATE_VERSION:
                raise SearchError(f"state version {state.get('version')!r} is not {STATE_VERSION}", where=owner)
            checks = {
                "sampler": self.name,
                "space": self.space.fingerprint,
                "seed": self.seed,
                "maximize": self.maximize,
                "options": _jsonable(dataclasses.asdict(self.options)),
            }
            for key, mine in checks.items():
                if _jsonable(state[key]) != mine:
                    raise SearchError(f"state has {key} {state[key]!r}, this sampler has {mine!r}", where=owner)
            self.rng.bit_generator.state = state["rng"]
            self.n_suggested = int(state["n_suggested"])
            self._seen = np.asarray(state["seen"], dtype=np.float64).reshape(-1, self.space.size)
            self._obs_x = [np.asarray(o["x"], dtype=np.float64) for o in state["observations"]]
            self._obs_y = [None if o["objective"] is None else float(o["objective"]) for o in state["observations"]]
            self._obs_metrics = [dict(o.get("metrics") or {}) for o in state["observations"]]
            self._restore_extra(state.get("extra") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise SearchError(f"malformed sampler state ({type(exc).__name__}: {exc})", where=owner) from None
        return self

    # -- helpers for subclasses --------------------------------------------------------------------
    @property
    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of the successful runs observed so far."""
        ok = [i for i, y in enumerate(self._obs_y) if y is not None]
        X = np.array([self._obs_x[i] for i in ok]).reshape(-1, self.space.size)
        return X, np.array([self._obs_y[i] for i in ok], dtype=np.float64)

    def loss(self, y: np.ndarray | float) -> Any:
        """Objective turned into 'lower is better'."""
        return -np.asarray(y) if self.maximize else np.asarray(y)

    def best(self) -> tuple[np.ndarray, float] | None:
        X, y = self.observations
        if not len(y):
            return None
        i = int(np.argmin(self.loss(y)))
        return X[i], float(y[i])

    @property
    def exhausted(self) -> bool:
        """True when a finite design has nothing left to give."""
        return False

    def is_new(self, x: np.ndarray) -> bool:
        return not len(self._seen) or float(np.abs(self._seen - x).sum(axis=1).min()) >= self.min_distance

    def _take(self, x: np.ndarray) -> bool:
        if not self.space.contains(x, tol=1e-8):  # an internal invariant, not user input
            raise AssertionError(f"sampler {self.name} made a point outside the space: {self.space.violation(x)}")
        if not self.is_new(x):
            return False
        self._remember(x)
        return True

    def _remember(self, x: np.ndarray) -> None:
        self._seen = np.vstack([self._seen, x[None, :]])

    def _setup(self) -> None:
        """Build whatever the sampler needs from its options and space (called by __init__)."""

    def _candidates(self, k: int) -> np.ndarray:
        """About k feasible points (more is fine: the base takes what it needs; none: try again)."""
        raise NotImplementedError

    def _after_observe(self, new: list[tuple[np.ndarray, float | None]]) -> None:
        """Hook: react to newly observed runs (step sizes, ...)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _restore_extra(self, extra: Mapping[str, Any]) -> None:
        pass


def _jsonable(value: Any) -> Any:
    """Tuples to lists, numpy scalars to Python, NaN/inf to None: what JSON can carry."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
