"""The proposal: optimise a surrogate over the constrained simplex (RegMix's top-k average, refined)."""

from __future__ import annotations

import numpy as np
import pytest

from mixture_search import SURROGATES, MultiTarget, SearchSpace, pareto_front, propose
from mixture_search.errors import SearchError
from mixture_search.surrogates import pareto_mask
from mixture_search.synthetic import MixingLawProblem


class Exact:
    """A 'surrogate' that knows the true objective, to test the optimiser alone."""

    name = "exact"
    domains = None

    def __init__(self, problem: MixingLawProblem, sign: float = 1.0) -> None:
        self.problem, self.sign = problem, sign

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.sign * self.problem.objective(X), np.full(len(X), 0.01)


def capped_space(problem: MixingLawProblem) -> SearchSpace:
    tokens = np.geomspace(1e9, 3e10, problem.m)
    return problem.space(tokens=tokens.tolist(), target_tokens=float(tokens.sum()), max_epochs=3.0)


def test_proposal_finds_the_optimum_of_an_exact_model_inside_the_caps() -> None:
    problem = MixingLawProblem.random(6, 2)
    space = capped_space(problem)
    _, f_opt = problem.optimum(space)
    median = float(np.median(problem.objective(space.sample_uniform(np.random.default_rng(0), 10_000))))
    p = propose(Exact(problem), space, n_samples=20_000, top_k=50, seed=0)
    assert space.contains(p.mixture)
    f = float(problem.objective(space.to_array(p.mixture))[0])
    assert p.predicted == pytest.approx(f)
    assert (f - f_opt) / (median - f_opt) < 0.02  # within 2% of the way from the median to the optimum
    assert p.predicted <= p.averaged_predicted  # refinement never makes it worse
    assert p.refine_steps > 0
    lo, hi = p.interval
    assert lo < p.predicted < hi and hi - lo == pytest.approx(2 * 1.959964 * 0.01, rel=1e-4)
    assert set(p.to_dict()["weights"]) == set(space.domains)


def test_maximize_finds_the_same_mixture_for_the_negated_objective() -> None:
    problem = MixingLawProblem.random(4, 1)
    space = problem.space()
    low = propose(Exact(problem), space, n_samples=5000, top_k=20, seed=3)
    high = propose(Exact(problem, -1.0), space, n_samples=5000, top_k=20, seed=3, maximize=True)
    assert high.predicted == pytest.approx(-low.predicted)
    assert np.allclose(space.to_array(high.mixture), space.to_array(low.mixture))


def test_proposal_from_noisy_runs_beats_them() -> None:
    problem = MixingLawProblem.random(5, 4)
    space = capped_space(problem)
    X = space.sample_uniform(np.random.default_rng(1), 40)
    y, _ = problem.run(X, np.random.default_rng(2))
    auto = SURROGATES.build("auto", candidates=("linear", "gp"), folds=4).fit(X, y)
    p = propose(auto, space, n_samples=10_000, top_k=50)
    assert space.contains(p.mixture)
    assert float(problem.objective(space.to_array(p.mixture))[0]) < np.median(problem.objective(X))
    assert p.noise_std == pytest.approx(auto.best_cv.rmse)  # a run's interval includes the CV error


def test_proposal_arguments_are_checked() -> None:
    problem = MixingLawProblem.random(3, 0)
    with pytest.raises(SearchError, match="top_k"):
        propose(Exact(problem), problem.space(), n_samples=10, top_k=20)
    with pytest.raises(SearchError, match="interval level"):
        propose(Exact(problem), problem.space(), n_samples=10, top_k=2, level=1.5)


def test_pareto_front_trades_the_metrics_off() -> None:
    problem = MixingLawProblem.random(4, 0)
    space = problem.space()
    X = space.sample_uniform(np.random.default_rng(0), 30)
    losses = problem.losses(X)[:, :2]
    multi = MultiTarget(["l0", "l1"], surrogate="linear").fit(X, losses)
    front = pareto_front(multi, space, n_samples=4000, max_points=20)
    assert 2 <= len(front) <= 20
    F = np.array([[p.predicted["l0"], p.predicted["l1"]] for p in front])
    assert pareto_mask(F).all()  # no point of the front dominates another
    objectives = [p.objective for p in front]
    assert objectives == sorted(objectives)
    with pytest.raises(SearchError, match="needs a multi-target model"):
        pareto_front(SURROGATES.build("linear").fit(X, losses[:, 0]), space)  # type: ignore[arg-type]
