"""The phased search space: one mixture per phase, caps over the whole run, a searched boundary, and
the existing samplers, surrogates and proposal working on it unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from mixture_search import SAMPLERS, SURROGATES, Observation, propose
from mixture_search.errors import MixtureError, SearchError
from mixture_search.phases import PhasedSpace
from mixture_search.recommend import recommend_mixture
from mixture_search.schedule import Schedule, params_from
from mixture_search.space import SearchSpace

DOMAINS = ("web", "code", "math", "books")
TOKENS = [1e9, 2e8, 5e7, 1e8]


def base(**kw: object) -> SearchSpace:
    return SearchSpace(domains=DOMAINS, tokens=TOKENS, target_tokens="1B", max_epochs=2, **kw)  # type: ignore[arg-type]


def two_phase(until: object = 0.8, last: dict | None = None) -> PhasedSpace:
    return PhasedSpace(base=base(), phases=[{"until": until}, {"until": 1.0, "bounds": last or {"math": (0.2, 0.6)}}])


def run_epochs(space: PhasedSpace, X: np.ndarray) -> np.ndarray:
    """Each domain's epochs over the run, from the cells (what the caps limit)."""
    run = X.reshape(len(X), space.n_phases, -1).sum(axis=1)
    return run * 1e9 / np.array(TOKENS)


def test_cube_maps_onto_feasible_schedules_and_back() -> None:
    space = two_phase()
    assert space.size == 8 and space.dim == 6  # 3 free cells per phase
    X = space.sample_uniform(np.random.default_rng(0), 3000)
    assert np.asarray(space.contains(X)).all()
    np.testing.assert_allclose(X.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(X.reshape(-1, 2, 4).sum(axis=2), np.tile([0.8, 0.2], (3000, 1)), atol=1e-12)
    # caps over the whole run: at most 2 epochs of every domain, although a phase may go above its static cap
    assert (run_epochs(space, X) <= 2 + 1e-9).all()
    late_math = X[:, 6] / 0.2
    assert late_math.max() > base().upper[2] + 0.2  # the last phase takes more math than a static mixture may
    assert (late_math >= 0.2 - 1e-9).all() and (late_math <= 0.5 + 1e-9).all()  # its bounds, and the cap
    np.testing.assert_allclose(space.from_unit(space.to_unit(X)), X, atol=1e-12)
    # the whole cap is reachable: some schedules use math's 2 epochs fully
    assert run_epochs(space, X)[:, 2].max() > 1.95


def test_without_caps_each_phase_is_the_plain_stick_breaking() -> None:
    plain = SearchSpace(domains=DOMAINS, bounds={"code": (0.1, 0.5)})
    space = PhasedSpace(base=plain, phases=[{"until": 0.5}, {"until": 1.0}])
    U = np.random.default_rng(1).random((50, space.dim))
    X = space.from_unit(U)
    np.testing.assert_allclose(X[:, :4] / 0.5, plain.from_unit(U[:, :3]), atol=1e-12)
    np.testing.assert_allclose(X[:, 4:] / 0.5, plain.from_unit(U[:, 3:]), atol=1e-12)


def test_searched_boundary_is_a_coordinate_cut_to_what_the_caps_allow() -> None:
    space = PhasedSpace(base=base(), phases=[{"until": [0.5, 0.95]}, {"until": 1.0, "bounds": {"math": (0.3, 0.6)}}])
    # math's run cap 0.1 holds at least 0.3 of the last phase only when it is at most 1/3 of the run
    lo, hi = space.until_ranges[0]
    assert lo == pytest.approx(2 / 3, abs=1e-9) and hi == 0.95
    assert space.dim == 7 and space.searched == (0,)
    X = space.sample_uniform(np.random.default_rng(2), 2000)
    assert np.asarray(space.contains(X)).all()
    ends = X[:, :4].sum(axis=1)
    assert ends.min() >= lo - 1e-9 and ends.max() <= hi + 1e-9 and np.ptp(ends) > 0.2
    np.testing.assert_allclose(space.from_unit(space.to_unit(X)), X, atol=1e-12)
    sched = space.to_schedule(X[0])
    assert sched.untils[0] == pytest.approx(ends[0]) and sched.untils[1] == 1.0
    assert space.param_names()[-1] == "phase.p0.until" and "w.p1.math" in space.param_names()
    params = sched.params()
    assert set(params) == set(space.param_names())
    assert params_from(params, DOMAINS).shares() == pytest.approx(sched.shares())


def test_project_and_dirichlet_give_feasible_schedules() -> None:
    space = PhasedSpace(base=base(), phases=[{"until": [0.6, 0.9]}, {"until": 1.0, "bounds": {"math": (0.2, 0.6)}}])
    rng = np.random.default_rng(3)
    raw = space.dirichlet(rng, np.full(400, 0.5))
    assert raw.shape == (400, 8) and not np.asarray(space.contains(raw)).all()
    P = space.project(raw)
    assert np.asarray(space.contains(P)).all()
    inside = space.sample_uniform(rng, 20)
    np.testing.assert_allclose(space.project(inside), inside, atol=1e-9)  # a feasible point stays put


@pytest.mark.parametrize("name", ["sobol", "lhs", "dirichlet", "local", "adaptive", "tpe"])
def test_samplers_suggest_feasible_schedules(name: str) -> None:
    space = two_phase(until=[0.6, 0.9])
    sampler = SAMPLERS.build(name, space=space, seed=0)
    for _ in range(2):
        batch = sampler.suggest(4)
        assert len(batch) == 4
        X = space.to_array(batch)
        assert np.asarray(space.contains(X)).all()
        sampler.observe([Observation(m, float(x[0] - x[6])) for m, x in zip(batch, X)])
    schedules = [space.to_schedule(m) for m in batch]
    assert all(len(s.phases) == 2 and 0.6 - 1e-9 <= s.untils[0] <= 0.9 + 1e-9 for s in schedules)
    again = SAMPLERS.build(name, space=space, seed=0).restore(sampler.state())
    assert again.suggest(2) == sampler.suggest(2)


def synthetic(X: np.ndarray) -> np.ndarray:
    """Lower is better: web early, math late, code never."""
    C = X.reshape(len(X), 2, 4)
    return (C[:, 0, 0] - 0.55) ** 2 + (C[:, 1, 2] / C[:, 1].sum(axis=1) - 0.4) ** 2 + 0.3 * C[:, :, 1].sum(axis=1)


def test_auto_surrogate_and_proposal_on_a_phased_space() -> None:
    space = two_phase(until=[0.6, 0.9])
    X = space.sample_uniform(np.random.default_rng(4), 16)
    model = SURROGATES.build("auto", candidates=("linear", "mixing_law"), folds=4).fit(X, synthetic(X))
    proposal = propose(model, space, n_samples=1000, top_k=20)
    x = space.to_array(proposal.mixture)
    assert space.contains(x)
    sched = space.to_schedule(proposal.mixture)
    assert 0.6 - 1e-9 <= sched.untils[0] <= 0.9 + 1e-9
    assert synthetic(x[None, :])[0] < np.median(synthetic(X))


def test_recommend_mixture_on_a_phased_space() -> None:
    space = two_phase()
    X = space.sample_uniform(np.random.default_rng(5), 12)
    rec = recommend_mixture(space, X, synthetic(X), surrogate="linear", n_samples=1000)
    x = space.to_array(rec.proposal.mixture)
    assert space.contains(x)
    assert rec.proposal.to_dict()["weights"].keys() == set(space.domains)
    assert space.to_schedule(rec.proposal.mixture).untils == pytest.approx((0.8, 1.0))


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        ([{"until": 0.8}, {"until": 0.7}, {"until": 1.0}], "phases[1].until: 0.7 does not start after the previous phase's end 0.8"),
        ([{"until": 0.5}, {"until": 0.9}], "phases[1].until: the last phase must end at 1.0, not 0.9"),
        ([{"until": [0.5, 0.9]}, {"until": [0.8, 1.0]}], "phases[1].until: [0.8, 1] does not start after"),
        ([{"until": 0.0}, {"until": 1.0}], "phases[0].until: 0 must be a fraction of the run in (0, 1]"),
        ([{"until": 0.5, "bounds": {"web": (0.6, 1.0), "code": (0.5, 1.0)}}, {"until": 1.0}], "phases[0]: search space is empty: the minimum and pinned shares add up to 1.1 > 1"),
        ([{"until": 0.5, "bounds": {"nope": (0, 1)}}, {"until": 1.0}], "phases[0].bounds.nope: unknown domain"),
        ([{"until": 0.5, "size": 3}, {"until": 1.0}], "phases[0]: unknown key 'size'"),
        # math's cap is 0.1 of the run: 0.3 of a half-run last phase is 0.15
        ([{"until": 0.5}, {"until": 1.0, "bounds": {"math": (0.3, 1.0)}}], "phases[1].bounds.math: no schedule meets the caps: the min shares of math take 0.15"),
        # code and math together may take 0.5 of the run; a last phase of 0.6 with only them cannot be filled
        ([{"until": 0.4, "pinned": {"books": 0.0}}, {"until": 1.0, "pinned": {"web": 0.0, "books": 0.0}}], "phases[1].until: no schedule meets the caps and max shares: phases[1] (0.6 of the run) can take at most 0.5"),
        ([{"until": [0.1, 0.3]}, {"until": 1.0, "pinned": {"web": 0.0, "books": 0.0}}], "phases[0].until: no end in [0.1, 0.3] meets the bounds and caps (at 0.2: no schedule meets"),
    ],
)  # fmt: skip
def test_bad_phases_are_one_line_errors(phases: list, message: str) -> None:
    with pytest.raises(SearchError) as err:
        PhasedSpace(base=base(), phases=phases)
    text = str(err.value)
    assert "\n" not in text
    assert message in text, text


def test_groups_are_refused_and_schedules_validate() -> None:
    grouped = SearchSpace(domains=DOMAINS, groups={"a": ["web", "code"], "b": ["math", "books"]})
    with pytest.raises(SearchError, match="groups: hierarchical groups are not supported"):
        PhasedSpace(base=grouped, phases=[{"until": 1.0}])
    with pytest.raises(MixtureError, match=r"phases\[1\].until: 0.5 is not after"):
        Schedule.from_pairs([(0.6, {"a": 1}), (0.5, {"a": 1}), (1.0, {"a": 1})])
    with pytest.raises(MixtureError, match=r"phases\[0\].until: the last phase must end at 1.0"):
        Schedule.from_pairs([(0.6, {"a": 1})])
    sched = Schedule.from_pairs([(0.25, {"a": 1, "b": 3}), (1.0, {"b": 1})])
    assert sched.names == ("a", "b") and sched.phases[1].mixture["a"] == 0.0
    assert Schedule.from_flat(sched.flat()).shares() == pytest.approx(sched.shares())
    assert sched.run_shares() == pytest.approx([0.0625, 0.9375])
    assert sched.boundaries(1000) == [250, 1000]
