"""Sampler invariants: on the simplex, inside bounds and caps, never repeated, deterministic by seed,
and `state`/`restore` continue exactly; plus what each sampler is for."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mixture_search import SAMPLERS, Mixture, Observation, SearchSpace
from mixture_search.errors import SearchError

# small settings so every sampler runs in well under a second per call
FAST: dict[str, dict] = {
    "grid": {"resolution": 20},
    "tpe": {"n_startup_trials": 4},
    "optuna_gp": {"n_startup_trials": 6},  # Optuna fits its GP only for the last round
    "adaptive": {"n_init": 4, "pool": 256},
}


def spaces() -> dict[str, SearchSpace]:
    return {
        "capped": SearchSpace(
            domains=("web", "code", "math", "books", "zh"),
            tokens={"web": 60e9, "code": 8e9, "math": 2e9, "books": 3e9, "zh": 20e9},
            target_tokens="100B",
            max_epochs=4,
            bounds={"web": (0.2, 0.9)},
            pinned={"zh": 0.1},
        ),
        "grouped": SearchSpace(
            domains=("en_hi", "en_lo", "zh", "py", "c"),
            groups={"en": ["en_hi", "en_lo"], "zh": ["zh"], "code": ["py", "c"]},
            group_bounds={"code": (0.1, 0.3)},
            bounds={"en_lo": (0.0, 0.2)},
        ),
    }


def objective(space: SearchSpace, mixtures: list[Mixture]) -> np.ndarray:
    """A smooth bowl with its minimum inside the space."""
    X = space.to_array(mixtures)
    centre = space.project(np.linspace(1, 2, space.size) / np.linspace(1, 2, space.size).sum())
    return ((X - centre) ** 2).sum(axis=1)


def run(name: str, space: SearchSpace, seed: int, rounds: int = 3, batch: int = 4) -> tuple[list[Mixture], object]:
    sampler = SAMPLERS.build(name, space=space, seed=seed, **FAST.get(name, {}))
    out: list[Mixture] = []
    for _ in range(rounds):
        got = sampler.suggest(batch)
        out += got
        sampler.observe([Observation(m, float(v)) for m, v in zip(got, objective(space, got))])
    return out, sampler


# Optuna's GP refits with torch on every ask: seconds per point on two busy cores
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n == "optuna_gp" else n for n in SAMPLERS.names()]


@pytest.mark.parametrize("space_name", ["capped", "grouped"])
@pytest.mark.parametrize("name", NAMES)
def test_candidates_are_feasible_distinct_and_seeded(name: str, space_name: str) -> None:
    space = spaces()[space_name]
    first, _ = run(name, space, seed=3)
    assert len(first) == 12
    X = space.to_array(first)
    assert np.all(space.contains(X)), [space.violation(x) for x in X]
    assert np.allclose([sum(m.normalized) for m in first], 1.0)
    assert all(m.names == space.domains for m in first)
    gaps = [np.abs(X[i] - X[j]).sum() for i in range(len(X)) for j in range(i)]
    assert min(gaps) >= 1e-4  # de-duplicated
    again, _ = run(name, space, seed=3)
    assert again == first  # same seed, same candidates
    other, _ = run(name, space, seed=4)
    assert other != first


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_state_is_json_and_restore_continues_identically(name: str) -> None:
    space = spaces()["capped"]
    _, sampler = run(name, space, seed=1, rounds=2)
    state = json.loads(json.dumps(sampler.state()))  # plain JSON, no numpy types
    restored = SAMPLERS.build(name, space=space, seed=1, **FAST.get(name, {})).restore(state)
    assert restored.suggest(3) == sampler.suggest(3)


def test_restore_refuses_another_space_sampler_or_seed() -> None:
    space = spaces()["capped"]
    state = SAMPLERS.build("sobol", space=space, seed=0).state()
    with pytest.raises(SearchError, match="state has space"):
        SAMPLERS.build("sobol", space=spaces()["grouped"], seed=0).restore(state)
    with pytest.raises(SearchError, match="state has sampler 'sobol'"):
        SAMPLERS.build("lhs", space=space, seed=0).restore(state)
    with pytest.raises(SearchError, match="state has seed 0"):
        SAMPLERS.build("sobol", space=space, seed=9).restore(state)
    with pytest.raises(SearchError, match="malformed sampler state"):
        SAMPLERS.build("sobol", space=space, seed=0).restore({**state, "rng": None, "seen": "x"})


def test_bad_names_and_options_are_one_line_errors() -> None:
    space = spaces()["capped"]
    with pytest.raises(SearchError, match="unknown sampler 'bayes' \\(choose from grid, dirichlet"):
        SAMPLERS.build("bayes", space=space)
    with pytest.raises(SearchError, match="sampler dirichlet: unknown option 'temp' \\(options: temperature"):
        SAMPLERS.build("dirichlet", space=space, temp=0.5)
    with pytest.raises(SearchError, match="option resolution='10' should be int"):
        SAMPLERS.build("grid", space=space, resolution="10")
    with pytest.raises(SearchError, match="option temperature=-1 must be in"):
        SAMPLERS.build("dirichlet", space=space, temperature=-1)
    with pytest.raises(SearchError, match="option surrogate='forest' is not one of"):
        SAMPLERS.build("adaptive", space=space, surrogate="forest")
    with pytest.raises(SearchError, match="positive integer"):
        SAMPLERS.build("sobol", space=space).suggest(0)
    with pytest.raises(SearchError, match="poetry: mixture names a domain"):
        SAMPLERS.build("sobol", space=space).observe([Observation(Mixture({"poetry": 1}), 1.0)])


def test_grid_is_the_lattice_inside_the_bounds_and_runs_out() -> None:
    space = SearchSpace(domains=("a", "b", "c"), bounds={"a": (0.0, 0.5)})
    sampler = SAMPLERS.build("grid", space=space, resolution=4)
    # lattice points k/4 on the 3-simplex: C(6, 2) = 15, of which a <= 0.5 leaves 12
    assert sampler.size == 12
    got = sampler.suggest(100)
    assert len(got) == 12 and sampler.suggest(1) == []
    assert all(math.isclose(4 * m.share(d), round(4 * m.share(d))) for m in got for d in "abc")
    with pytest.raises(SearchError, match="has 10,015,005 points"):
        SAMPLERS.build("grid", space=SearchSpace(domains=tuple("abcdefghij")), resolution=20).suggest(1)


def test_dirichlet_rounds_like_regmix_and_respects_caps() -> None:
    space = spaces()["capped"]
    got = SAMPLERS.build("dirichlet", space=space, seed=0, minimum=0.01).suggest(50)
    X = space.to_array(got)
    assert np.all(space.contains(X))
    free = X[:, :4]
    on_grid = np.isclose(free * 100, np.round(free * 100), atol=1e-9)
    assert on_grid.sum(axis=1).min() >= 3  # all but the share that absorbs the rounding
    assert (free == 0).any()  # low strengths give sparse mixtures; shares under 1% are zeroed
    assert np.all(space.upper + 1e-9 >= X)


def test_dirichlet_projects_when_the_caps_reject_everything() -> None:
    # a prior far outside a tight box: rejection never succeeds, so draws are projected instead
    space = SearchSpace(domains=("a", "b", "c"), bounds={"a": (0.0, 0.01)}, prior={"a": 100, "b": 1, "c": 1})
    sampler = SAMPLERS.build("dirichlet", space=space, seed=0, max_rejections=2, min_strength=50, max_strength=60)
    got = sampler.suggest(5)
    assert len(got) == 5 and np.all(space.contains(space.to_array(got)))
    assert sampler.state()["extra"]["projected"] >= 5


def test_local_search_moves_around_the_best_run() -> None:
    space = SearchSpace(domains=tuple("abcd"))
    for maximize, best in ((False, [0.7, 0.1, 0.1, 0.1]), (True, [0.1, 0.1, 0.1, 0.7])):
        sampler = SAMPLERS.build("local", space=space, seed=0, maximize=maximize, step=0.1)
        sampler.observe(
            [
                Observation(Mixture(dict(zip("abcd", [0.7, 0.1, 0.1, 0.1]))), 1.0),
                Observation(Mixture(dict(zip("abcd", [0.1, 0.1, 0.1, 0.7]))), 2.0),
                Observation(Mixture(dict(zip("abcd", [0.25] * 4))), None),  # a failed run
            ]
        )
        X = space.to_array(sampler.suggest(20))
        assert np.abs(X - np.array(best)).sum(axis=1).max() < 0.5


def test_adaptive_batches_are_diverse_and_follow_the_model() -> None:
    space = SearchSpace(domains=tuple("abcde"))
    sampler = SAMPLERS.build("adaptive", space=space, seed=0, n_init=8, pool=512)
    init = sampler.suggest(8)  # the Sobol design: nothing is known yet
    share_a = space.to_array(init)[:, 0]
    sampler.observe([Observation(m, float(-m.share("a"))) for m in init])  # more of 'a' is better
    batch = space.to_array(sampler.suggest(6))
    assert batch[:, 0].mean() > share_a.mean() + 0.2
    gaps = [np.abs(batch[i] - batch[j]).sum() for i in range(6) for j in range(i)]
    assert min(gaps) > 0.01  # not six copies of the model's favourite
    assert sampler.last_model is not None and sampler.last_model.n_train == 8


@pytest.mark.parametrize("name", ["tpe", "optuna_gp"])
def test_optuna_batches_spread_and_accept_failed_runs(name: str) -> None:
    space = SearchSpace(domains=tuple("abcd"), bounds={"d": (0.0, 0.1)})
    sampler = SAMPLERS.build(name, space=space, seed=0, n_startup_trials=3)
    first = sampler.suggest(4)
    sampler.observe([Observation(m, None if i == 0 else float(m.share("a"))) for i, m in enumerate(first)])
    batch = sampler.suggest(3)
    X = space.to_array(batch)
    assert np.all(space.contains(X)) and len({m.key for m in batch}) == 3


def test_a_single_point_space_gives_that_point_once() -> None:
    space = SearchSpace(domains=("a", "b"), pinned={"a": 0.3})
    for name in ("sobol", "lhs", "grid", "tpe", "local"):
        sampler = SAMPLERS.build(name, space=space)
        assert [m.share("a") for m in sampler.suggest(3)] == [pytest.approx(0.3)]
        assert sampler.suggest(1) == []
