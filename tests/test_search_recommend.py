"""The recommendation: kept near the evidence (trust region, bounded extrapolation, pessimistic score),
and the objective modelled per part when it is a sum of per-domain metrics."""

from __future__ import annotations

import numpy as np
import pytest

from flows.steps.export import objective_parts
from flows.steps.spec import ObjectiveSpec, SweepSpec
from flows.trials.result import TrialResult
from mixture_search import SearchSpace, propose
from mixture_search.errors import SearchError
from mixture_search.mixture import Mixture
from mixture_search.proposal import TrustRegion
from mixture_search.recommend import recommend_mixture
from mixture_search.synthetic import MixingLawProblem


class Linear:
    """A 'surrogate' that keeps improving toward domain a's vertex: what a scalar model fitted on a
    handful of runs can say, and the case the trust region exists for."""

    name = "linear-toy"
    domains = None

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.atleast_2d(X)
        return 3.0 - X[:, 0], 0.01 + 0.5 * np.abs(X - 0.25).sum(axis=1)


def runs(space: SearchSpace, n: int, seed: int) -> np.ndarray:
    """n mixtures none of which has more than ~45% of domain a."""
    X = space.sample_uniform(np.random.default_rng(seed), 4 * n)
    return X[X[:, 0] < 0.45][:n]


def test_without_a_region_the_proposal_runs_to_the_vertex() -> None:
    space = SearchSpace(domains=("a", "b", "c", "d"))
    p = propose(Linear(), space, n_samples=5000, top_k=20, seed=0)
    assert p.mixture.share("a") > 0.95
    assert p.bound_by == () and p.region is None


def test_extrapolation_is_capped_and_recorded() -> None:
    space = SearchSpace(domains=("a", "b", "c", "d"))
    X = runs(space, 12, 0)
    y = 3.0 - X[:, 0]
    region = TrustRegion.around(space, X, y, radius=None, extrapolate=0.1)
    p = propose(Linear(), space, n_samples=5000, top_k=20, seed=0, region=region)
    assert p.mixture.share("a") <= X[:, 0].max() + 0.1 + 1e-6
    assert p.mixture.share("a") > X[:, 0].max()  # it does go past the best run, by at most the margin
    assert "extrapolate" in p.bound_by
    assert space.contains(p.mixture)


def test_trust_region_keeps_the_proposal_near_the_best_runs() -> None:
    space = SearchSpace(domains=("a", "b", "c", "d"))
    X = runs(space, 12, 1)
    y = 3.0 - X[:, 0]
    region = TrustRegion.around(space, X, y, radius=0.2, extrapolate=None, anchors=3)
    p = propose(Linear(), space, n_samples=5000, top_k=20, seed=0, region=region)
    x = np.atleast_2d(space.to_array(p.mixture))[0]
    best3 = X[np.argsort(y)[:3]]
    assert np.abs(best3 - x).sum(axis=1).min() <= 0.2 + 1e-6
    assert p.nearest_run_l1 is not None and p.nearest_run_l1 <= 0.2 + 1e-6
    assert "trust_region" in p.bound_by
    assert p.to_dict()["trust_region"] == {"radius": 0.2, "extrapolate": None, "anchors": 3}


def test_uncertainty_penalty_prefers_what_the_model_knows() -> None:
    space = SearchSpace(domains=("a", "b", "c", "d"))
    mean_only = propose(Linear(), space, n_samples=5000, top_k=20, seed=0)
    careful = propose(Linear(), space, n_samples=5000, top_k=20, seed=0, uncertainty=2.0)
    # the toy's std grows away from uniform: the pessimistic score stops short of the vertex
    assert careful.mixture.share("a") < mean_only.mixture.share("a") - 0.2
    assert careful.std < mean_only.std
    assert careful.uncertainty == 2.0
    with pytest.raises(SearchError, match="uncertainty"):
        propose(Linear(), space, n_samples=5000, top_k=20, uncertainty=-1.0)


def test_runs_outside_the_space_count_at_their_nearest_feasible_mixture() -> None:
    space = SearchSpace(domains=("a", "b", "c"), bounds={"a": (0.5, 1.0)})
    X = np.array([[0.1, 0.45, 0.45], [0.2, 0.4, 0.4]])  # e.g. runs from before the bound was set
    region = TrustRegion.around(space, X, np.array([1.0, 2.0]), radius=0.3, extrapolate=0.1)
    assert np.all(space.contains(region.anchors))
    assert region.anchors[0, 0] == pytest.approx(0.5)
    assert region.inner.upper[0] == pytest.approx(0.6)  # the projected runs' range, widened by 0.1
    with pytest.raises(SearchError, match="none of the 2 observed runs has an objective"):
        TrustRegion.around(space, X, np.array([np.nan, np.nan]))


def test_per_domain_model_wins_when_the_truth_is_a_sum_of_domain_laws() -> None:
    problem = MixingLawProblem.random(4, 3, run_noise=0.005, domain_noise=0.005)
    space = problem.space()
    rng = np.random.default_rng(0)
    X = space.dirichlet(rng, np.full(16, 1.0))
    y, L = problem.run(X, rng)
    parts = {d: L[:, i] for i, d in enumerate(problem.domains)}
    rec = recommend_mixture(space, X, y, parts=parts, n_samples=5000, seed=0)
    assert "parts:mixing_law" in rec.cv and any(name.startswith("scalar:") for name in rec.cv)
    assert rec.model == "parts:mixing_law"
    assert rec.to_dict()["model"] == "parts:mixing_law"
    _, f_opt = problem.optimum(space)
    f = float(problem.objective(space.to_array(rec.proposal.mixture))[0])
    assert f - f_opt < float(problem.objective(X).min()) - f_opt  # better than the best run, in truth
    assert space.contains(rec.proposal.mixture)


def _result(i: int, metrics: dict[str, float]) -> TrialResult:
    return TrialResult(
        trial_key=f"k{i}", mixture=Mixture([("a", 0.5), ("b", 0.5)]), status="finished", objective=1.0, metrics=metrics
    )


def test_objective_parts_of_a_mean_and_of_weights() -> None:
    results = [
        _result(i, {"val.bpb.a": 1.0 + i, "val.bpb.b": 2.0, "val.bpb.mean": 1.5 + i / 2, "val.loss.a": 3.0})
        for i in range(3)
    ]
    columns, weights = objective_parts(ObjectiveSpec(metric="val.bpb.mean"), results) or ({}, {})
    assert weights == {"val.bpb.a": 0.5, "val.bpb.b": 0.5}
    assert columns["val.bpb.a"].tolist() == [1.0, 2.0, 3.0]
    columns, weights = objective_parts(ObjectiveSpec(weights={"val.bpb.a": 0.7, "val.loss.a": 0.3}), results) or (
        {},
        {},
    )
    assert weights == {"val.bpb.a": 0.7, "val.loss.a": 0.3}
    assert objective_parts(ObjectiveSpec(metric="val.bpb.a"), results) is None


def test_proposal_and_confirmation_settings_keep_the_sweep_key() -> None:
    """Changing only how the end of a sweep proposes or confirms reuses its MLflow runs; the search does not."""
    base = SweepSpec(name="s", corpus="/data/c")
    same = SweepSpec(
        name="s",
        corpus="/data/c",
        confirm={"seeds": 3},
        search={"trust_region": None, "extrapolate": 0.5, "uncertainty": 0.0, "proposal_samples": 5000},
    )
    other = SweepSpec(name="s", corpus="/data/c", search={"per_round": 5})
    assert base.sweep_key("h") == same.sweep_key("h")
    assert base.sweep_key("h") != other.sweep_key("h")


def test_the_order_of_the_runs_does_not_change_the_recommendation() -> None:
    """A resumed sweep reads its trials back from MLflow in another order than it trained them."""
    rng = np.random.default_rng(0)
    space = SearchSpace(domains=tuple("abcde"), tokens=[1.0] * 5)
    X = rng.dirichlet(np.ones(5), size=12)
    losses = 3.0 + X * np.array([0.5, -0.3, 0.2, 0.1, -0.4]) + rng.normal(0, 0.05, (12, 5))
    y = losses.mean(axis=1)
    parts = {f"val.bpb.{d}": losses[:, i] for i, d in enumerate("abcde")}
    first = recommend_mixture(space, X, y, parts=parts, n_samples=2000)
    p = rng.permutation(12)
    again = recommend_mixture(space, X[p], y[p], parts={k: v[p] for k, v in parts.items()}, n_samples=2000)
    assert again.model == first.model and again.proposal.mixture.key == first.proposal.mixture.key
