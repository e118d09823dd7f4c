"""Surrogates: fit/predict with uncertainty from 8 runs up, cross-validated model choice, multi-target,
and saving a fitted model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixture_search import SURROGATES, Mixture, MultiTarget, SearchSpace
from mixture_search.errors import SearchError
from mixture_search.surrogates import cross_validate, load_model, pairwise_accuracy, pareto_mask, save_model, scores
from mixture_search.surrogates.base import build_surrogate
from mixture_search.surrogates.ensemble import AutoSurrogate
from mixture_search.synthetic import MixingLawProblem

BASE = ["lightgbm", "linear", "mixing_law", "gp", "ensemble"]


def data(n: int, m: int = 4, seed: int = 0) -> tuple[MixingLawProblem, np.ndarray, np.ndarray, np.ndarray]:
    problem = MixingLawProblem.random(m, seed)
    X = problem.space().sample_uniform(np.random.default_rng(seed), n)
    y, losses = problem.run(X, np.random.default_rng(seed + 1))
    return problem, X, y, losses


@pytest.mark.parametrize("name", BASE)
def test_every_surrogate_ranks_unseen_mixtures_from_few_runs(name: str) -> None:
    problem, X, y, _ = data(24)
    test = problem.space().sample_uniform(np.random.default_rng(9), 300)
    model = SURROGATES.build(name, seed=0).fit(X, y)
    mean, std = model.predict(test)
    assert mean.shape == std.shape == (300,) and np.all(std >= 0) and np.all(np.isfinite(mean))
    assert np.ptp(mean) > 0  # never a constant model (LightGBM's default leaf size would give one)
    assert scores(problem.objective(test), mean)["spearman"] > 0.3
    assert np.allclose(model.predict_mean(test), mean)


def test_lightgbm_is_not_constant_below_40_runs_and_uses_regmix_settings() -> None:
    _, X, y, _ = data(8)
    model = SURROGATES.build("lightgbm").fit(X, y)
    assert model._params(8)["min_data_in_leaf"] == 2 and model._params(512)["min_data_in_leaf"] == 20
    assert model._params(512)["learning_rate"] == 0.01 and model.options.num_iterations == 1000
    mean, std = model.predict(X)
    assert np.ptp(mean) > 0 and np.ptp(std) > 0


def test_mixing_law_recovers_the_law_it_assumes() -> None:
    problem, X, _, _ = data(40, m=5)
    loss0 = problem.losses(X)[:, 0]
    law = SURROGATES.build("mixing_law", ridge=0.0).fit(X, loss0).describe()  # no shrinkage: exact
    assert law["c"] == pytest.approx(problem.c[0], abs=1e-4)
    t = np.array(law["t"])
    # t is identified up to a common shift that k absorbs: differences match exactly
    assert np.allclose(t - t[0], problem.t[0] - problem.t[0, 0], atol=1e-3)
    assert np.log(law["k"]) + t[0] == pytest.approx(np.log(problem.k[0]) + problem.t[0, 0], abs=1e-3)
    # a rising score (k < 0) is fitted too
    score = SURROGATES.build("mixing_law").fit(X, 1.0 - loss0 / 10)
    assert score.describe()["k"] < 0
    assert scores(1.0 - loss0 / 10, score.predict(X)[0])["spearman"] > 0.999


def test_mixtures_are_aligned_by_domain_name() -> None:
    _, X, y, _ = data(12)
    names = ("a", "b", "c", "d")
    runs = [Mixture(zip(names, row)) for row in X]
    model = SURROGATES.build("linear").fit(runs, y)
    assert model.domains == names
    shuffled = [Mixture([(n, m[n]) for n in reversed(names)]) for m in runs]
    assert np.allclose(model.predict(shuffled)[0], model.predict(X)[0])
    with pytest.raises(SearchError, match="poetry: run 0: domain not seen"):
        model.predict([Mixture({"a": 1, "poetry": 1})])
    with pytest.raises(SearchError, match="target of run 3 is nan"):
        SURROGATES.build("linear").fit(X, np.where(np.arange(12) == 3, np.nan, y))


def test_cross_validation_scores_and_groups_repeated_mixtures() -> None:
    _, X, y, _ = data(20)
    repeated = np.vstack([X, X[:5]])  # five mixtures run twice (another seed)
    target = np.concatenate([y, y[:5] + 0.001])
    cv = cross_validate(SURROGATES.build("gp"), repeated, target, folds=5)
    assert cv.n == 25 and cv.folds == 5
    assert -1 <= cv.spearman <= 1 and cv.mae > 0 and cv.rmse >= cv.mae and 0 <= cv.pairwise <= 1
    with pytest.raises(SearchError, match="at least 3 distinct mixtures"):
        cross_validate(SURROGATES.build("gp"), X[[0, 0, 1, 1]], y[:4])


def test_pairwise_accuracy_counts_ordered_pairs() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert pairwise_accuracy(y, y) == 1.0
    assert pairwise_accuracy(y, -y) == 0.0
    assert pairwise_accuracy(y, np.array([1.0, 2.0, 4.0, 3.0])) == pytest.approx(5 / 6)
    assert pairwise_accuracy(y, np.zeros(4)) == 0.5  # ties count half


def test_auto_picks_the_best_cross_validated_spearman() -> None:
    _, X, y, _ = data(16)
    auto = SURROGATES.build("auto", folds=4).fit(X, y)
    assert [r.surrogate for r in auto.cv] == BASE
    assert auto.chosen == max(auto.cv, key=lambda r: r.rank_score).surrogate
    assert auto.best_cv.surrogate == auto.chosen and auto.model.name == auto.chosen
    # the ensemble's out-of-fold predictions are the mean of its members'
    members = ("mixing_law", "gp", "lightgbm")
    assert np.allclose(auto.oof["ensemble"], np.mean([auto.oof[m] for m in members], axis=0))
    on_linear = SURROGATES.build("auto", candidates=("linear", "lightgbm")).fit(X, X @ np.array([1.0, 2, 3, 4]))
    assert on_linear.chosen == "linear"


def test_bad_surrogate_names_and_options() -> None:
    with pytest.raises(SearchError, match="unknown surrogate 'xgboost'"):
        SURROGATES.build("xgboost")
    with pytest.raises(SearchError, match="surrogate lightgbm: unknown option 'trees'"):
        SURROGATES.build("lightgbm", trees=10)
    with pytest.raises(SearchError, match="candidates: 'auto' cannot be used here"):
        SURROGATES.build("auto", candidates=("auto", "gp"))
    with pytest.raises(SearchError, match="not fitted yet"):
        SURROGATES.build("gp").predict(np.ones((1, 3)))


def test_multi_target_fits_one_law_per_domain_loss() -> None:
    problem, X, _, losses = data(24, m=4)
    names = [f"loss_{d}" for d in problem.domains]
    multi = MultiTarget(names, surrogate="mixing_law").fit(X, losses)
    test = problem.space().sample_uniform(np.random.default_rng(3), 500)
    means, stds = multi.predict_all(test)
    assert means.shape == stds.shape == (500, 4)
    assert scores(problem.objective(test), multi.predict(test)[0])["spearman"] > 0.99  # objective = mean loss
    # a run with one metric missing still teaches the other metrics' models
    holes = losses.copy()
    holes[0, 1] = np.nan
    partial = MultiTarget(names, surrogate="linear").fit(X, holes)
    assert partial.models[names[0]].n_train == 24 and partial.models[names[1]].n_train == 23
    with pytest.raises(SearchError, match="objective weights"):
        MultiTarget(names, weights=[1, 2])


def test_pareto_mask_keeps_only_undominated_rows() -> None:
    F = np.array([[1, 5], [2, 2], [3, 3], [5, 1], [1, 5], [4, 4]], dtype=float)
    assert pareto_mask(F).tolist() == [True, True, False, True, False, False]


@pytest.mark.parametrize("name", ["auto", "mixing_law"])
def test_a_saved_model_refits_to_the_same_predictions(tmp_path: Path, name: str) -> None:
    _, X, y, _ = data(12)
    model = SURROGATES.build(name, folds=3) if name == "auto" else SURROGATES.build(name)
    model.fit(X, y)
    path = save_model(tmp_path / "m.json", model, X, y[:, None], ("a", "b", "c", "d"), {"target": "loss"})
    loaded, doc = load_model(path)
    assert np.allclose(loaded.predict(X)[0], model.predict(X)[0])
    assert doc["meta"] == {"target": "loss"} and doc["domains"] == ["a", "b", "c", "d"]
    assert doc["spec"]["name"] == (model.chosen if name == "auto" else name)
    broken = json.loads(path.read_text())
    broken["predictions"][0] += 1
    (tmp_path / "bad.json").write_text(json.dumps(broken))
    with pytest.raises(SearchError, match="does not reproduce"):
        load_model(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(SearchError, match=r"junk\.json: not a model file"):
        load_model(tmp_path / "junk.json")


def test_a_space_and_a_model_must_name_the_same_domains() -> None:
    from mixture_search import propose

    _, X, y, _ = data(10)
    model = SURROGATES.build("linear").fit([Mixture(zip("abcd", r)) for r in X], y)
    with pytest.raises(SearchError, match="the model's domains differ"):
        propose(model, SearchSpace(domains=("a", "b", "c", "e")), n_samples=100, top_k=10)


def test_measured_seed_noise_bounds_the_gp_noise_term_and_reaches_it_through_auto_and_ensemble() -> None:
    """A seed noise as large as the spread of the runs: the GP may not read that spread as signal."""
    _, X, y, _ = data(16)
    spread = float(np.std(y))
    free = build_surrogate("gp", seed=0).fit(X, y)
    noisy = build_surrogate("gp", seed=0, noise_std=spread).fit(X, y)
    assert noisy._noise >= 1.0 - 1e-9 > free._noise  # a variance of the standardised objective
    assert np.std(noisy.predict(X)[0]) < np.std(free.predict(X)[0])  # smoother: it fits less of the noise
    auto = build_surrogate("auto", seed=0, noise_std=0.01)
    assert isinstance(auto, AutoSurrogate) and auto.options.noise_std == 0.01
    auto = AutoSurrogate(seed=0, candidates=("gp",), noise_std=0.01).fit(X, y)
    assert auto.model.options.noise_std == 0.01  # type: ignore[attr-defined]
    ensemble = build_surrogate("ensemble", seed=0, noise_std=0.01).fit(X, y)
    assert [getattr(m.options, "noise_std", "none") for m in ensemble._members] == ["none", 0.01, "none"]
    assert build_surrogate("linear", noise_std=0.01).options == SURROGATES.build("linear").options  # no noise term
    with pytest.raises(SearchError, match=r"noise_std=-0\.1 must be a finite"):
        build_surrogate("gp", noise_std=-0.1)
