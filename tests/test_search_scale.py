"""Scale-aware surrogates (issue 14): a known law across scales, the held-out-largest-scale CV, and
`mixsweep fit|predict|propose --scale/--at` on a tiny ladder, bad input included."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from flows.cli import app
from mixture_search.errors import SearchError
from mixture_search.formats import read_mixture
from mixture_search.surrogates import SURROGATES, load_model
from mixture_search.surrogates.scale import (
    AWARE_MARGIN,
    Scale,
    as_deployed,
    as_scales,
    choose_by_largest_scale,
    holdout_largest_scale,
)

runner = CliRunner()
M = 4
PARAMS = (2e7, 5e7, 1.2e8, 3e8)


class Law:
    """f(r, N) = 1.5 + exp(t0 . r + (tN . r - 0.3) log(N / 1e8)): a power law in N per mixture whose
    exponent depends on the mixture, so the ranking moves with scale."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.t0, self.tN = rng.normal(0.0, 1.0, M), rng.normal(0.0, 0.5, M)

    def __call__(self, X: np.ndarray, N: np.ndarray) -> np.ndarray:
        return 1.5 + np.exp(X @ self.t0 + (X @ self.tN - 0.3) * np.log(N / 1e8))


def ladder(law: Law, per_scale: int = 12, scales: tuple[float, ...] = PARAMS[:3], noise: float = 0.002):
    rng = np.random.default_rng(1)
    mixtures = rng.dirichlet(np.ones(M), per_scale)
    X = np.tile(mixtures, (len(scales), 1))
    N = np.repeat(scales, per_scale)
    S = np.column_stack([N, 20 * N])
    return X, S, law(X, N) + rng.normal(0.0, noise, len(N))


@pytest.fixture(scope="module")
def law() -> Law:
    return Law()


@pytest.fixture(scope="module")
def fitted(law: Law):
    X, S, y = ladder(law)
    return SURROGATES.build("scale_law", restarts=0).fit(X, y, scales=S)


def test_recovers_the_law_and_ranks_a_larger_unseen_scale(law: Law, fitted) -> None:
    rng = np.random.default_rng(7)
    new = rng.dirichlet(np.ones(M), 30)  # mixtures never trained, at a scale never seen
    N = np.full(30, PARAMS[3])
    truth = law(new, N)
    pred, std = fitted.predict(new, scales=np.column_stack([N, 20 * N]))
    assert spearmanr(pred, truth).statistic > 0.97
    # the ranking did move: the largest fitted scale's ranking is clearly worse
    assert spearmanr(law(new, np.full(30, PARAMS[2])), truth).statistic < 0.95
    assert np.abs(pred - truth).max() < 0.05 and (std >= 0).all()
    # the law itself: the mixture-dependent part of the exponent along the ladder (N and D grow
    # together, so one direction, at 45 degrees: t_1 = tN / sqrt(2) up to a common shift)
    d = fitted.describe()
    assert d["directions"] == [pytest.approx({"params": 2**-0.5, "tokens": 2**-0.5})]
    t1 = np.array(list(d["t_1"].values()))
    expected = law.tN / np.sqrt(2)
    assert spearmanr(t1, expected).statistic > 0.7
    # a fixed-scale view for the proposal, and the default scale (the largest fitted)
    view = fitted.at(Scale(PARAMS[3], 20 * PARAMS[3]))
    assert np.allclose(view.predict(new)[0], pred)
    assert fitted.largest == Scale(PARAMS[2], 20 * PARAMS[2])


def test_one_scale_is_a_plain_mixture_model(law: Law) -> None:
    X, S, y = ladder(law, per_scale=8, scales=(PARAMS[0],))
    model = SURROGATES.build("scale_law", restarts=0).fit(X, y, scales=S)
    assert model.describe()["directions"] == []
    plain = SURROGATES.build("scale_law", restarts=0).fit(X, y)  # no scales at all: the same model
    assert np.allclose(plain.predict(X)[0], model.predict(X, scales=S)[0])
    # a prediction elsewhere cannot use a trend nobody saw: the same ranking
    assert np.allclose(model.predict(X, scales=S * 10)[0], model.predict(X, scales=S)[0])


def test_holdout_largest_scale_and_the_choice(law: Law) -> None:
    X, S, y = ladder(law, per_scale=10, scales=PARAMS)
    cv, pred = holdout_largest_scale(SURROGATES.build("scale_law", restarts=0), X, y, S)
    assert cv.folds == 1 and cv.n == 10 and len(pred) == 10
    assert cv.spearman > 0.95
    # a scale-free surrogate is used naively: fitted on the largest fitted scale only
    naive, _ = holdout_largest_scale(SURROGATES.build("mixing_law"), X, y, S)
    assert naive.spearman < cv.spearman
    model, rows, chosen = choose_by_largest_scale(X, y, S, candidates=("mixing_law", "scale_lightgbm", "scale_law"))
    assert [r.surrogate for r in rows] == ["mixing_law", "scale_lightgbm", "scale_law"] and chosen == "scale_law"
    assert model.fitted and model.n_train == len(y)
    with pytest.raises(SearchError, match="2 or more scales"):
        holdout_largest_scale(SURROGATES.build("scale_law"), X[:10], y[:10], S[:10])


def test_a_scale_free_model_is_scored_on_as_few_runs_as_it_is_deployed_on(law: Law) -> None:
    """A sweep's ladder: 12 mixtures at the small scale, 6 of them again at the larger one. Chosen, a
    scale-free model is fitted on the larger scale's 6 runs and ranks mostly mixtures never trained there,
    so held out it is fitted on 6 small-scale runs of the other mixtures, not on all 12."""
    X, S, y = ladder(law, per_scale=12, scales=PARAMS[:2])
    keep = np.r_[np.arange(12), 12 + np.arange(0, 12, 2)]  # scale 1 trains every other mixture
    X, S, y = X[keep], S[keep], y[keep]
    test = np.arange(12, 18)
    rows = as_deployed(X, np.arange(12), test)
    assert rows.tolist() == list(range(1, 12, 2))  # the 6 mixtures scale 1 did not train
    assert as_deployed(X, np.arange(4), test).tolist() == [0, 1, 2, 3]  # fewer than the held-out: all of them
    cv, pred = holdout_largest_scale(SURROGATES.build("linear"), X, y, S)
    alone = SURROGATES.build("linear").fit(X[rows], y[rows]).predict(X[test])[0]
    assert cv.n == 6 and np.allclose(pred, alone)
    # `largest_scale` wrapping it is scored alike
    wrapped, wrapped_pred = holdout_largest_scale(SURROGATES.build("largest_scale", surrogate="linear"), X, y, S)
    assert np.allclose(wrapped_pred, alone) and wrapped.spearman == cv.spearman


def test_a_law_replaces_the_naive_transfer_only_when_it_ranks_better() -> None:
    """A ranking that does not move with scale: the naive transfer ranks the held-out scale perfectly, a
    scale law at best as well; the tie keeps the naive transfer (a scale-free model on the largest scale)."""
    rng = np.random.default_rng(3)
    mixtures = rng.dirichlet(np.ones(M), 10)
    X = np.tile(mixtures, (3, 1))
    N = np.repeat(PARAMS[:3], 10)
    y = 1.5 + X @ np.array([0.4, -0.2, 0.1, 0.3]) + 3.0 * (N / 1e8) ** -0.3
    model, rows, chosen = choose_by_largest_scale(
        X, y, np.column_stack([N, 20 * N]), candidates=("scale_law", "scale_lightgbm", "linear")
    )
    scores = {r.surrogate: r.spearman for r in rows}
    assert scores["linear"] == pytest.approx(1.0) and max(scores.values()) <= scores["linear"] + AWARE_MARGIN
    assert chosen == "linear" and model.name == "largest_scale"


def fidelity_ladder(seed: int) -> tuple[np.ndarray, ...]:
    """A sweep's ladder: 24 mixtures at the small scale, 8 of them at the larger one, where a share-linear
    shift moves a curved landscape's ranking. Returns X, y, S, 30 new mixtures and their truth at each scale."""
    rng = np.random.default_rng(seed)
    a, shift = np.array([0.5, 0.3, 0.2, 0.4]), np.array([0.0, 0.3, -0.1, 0.3])

    def truth(X: np.ndarray, level: np.ndarray | int) -> np.ndarray:
        return 3.0 - 0.4 * level + 0.1 * ((X + 0.05) ** -0.5) @ a + 0.5 * level * (X @ shift)

    small = rng.dirichlet(np.ones(M), 24)
    X = np.vstack([small, small[:8]])
    level = np.r_[np.zeros(24), np.ones(8)]
    S = np.column_stack([np.where(level == 0, 2e7, 8e7), np.where(level == 0, 4e8, 1.6e9)])
    y = truth(X, level) + rng.normal(0, 0.003, len(X))
    new = rng.dirichlet(np.ones(M), 30)
    return X, y, S, new, truth(new, 0), truth(new, 1)


def test_fidelity_corrects_the_small_scale_with_the_few_larger_runs() -> None:
    """Over 6 such ladders, the multi-fidelity model (the small scale's landscape + a correction learnt from
    the 8 larger runs) ranks 30 new mixtures at the larger scale better than the small scale's own ranking
    and than a model of the 8 larger runs alone (`largest_scale`, the naive transfer)."""
    spearman: dict[str, list[float]] = {"fidelity": [], "small": [], "alone": []}
    for seed in range(6):
        X, y, S, new, small, want = fidelity_ladder(seed)
        got = SURROGATES.build("fidelity").fit(X, y, scales=S).at(Scale(8e7, 1.6e9)).predict_mean(new)
        alone = SURROGATES.build("largest_scale").fit(X, y, scales=S).predict_mean(new)
        for name, pred in (("fidelity", got), ("small", small), ("alone", alone)):
            spearman[name].append(spearmanr(pred, want).statistic)
    mean = {k: float(np.mean(v)) for k, v in spearman.items()}
    assert mean["fidelity"] > 0.85, mean
    assert mean["fidelity"] > mean["alone"] + 0.1 and mean["fidelity"] > mean["small"] + 0.2, mean


def test_fidelity_predicts_per_scale_and_is_a_transfer() -> None:
    X, y, S, new, small, want = fidelity_ladder(0)
    model = SURROGATES.build("fidelity").fit(X, y, scales=S)
    got = model.at(Scale(8e7, 1.6e9)).predict_mean(new)
    assert np.abs(got - want).max() < 0.1
    # beyond the largest scale: its ranking, unchanged; at the smallest: the small scale's model
    assert np.allclose(model.at(Scale(1e9, 2e10)).predict_mean(new), got)
    at_small = model.at(Scale(2e7, 4e8)).predict_mean(new)
    assert np.allclose(at_small, SURROGATES.build("gp").fit(X[:24], y[:24]).predict_mean(new))
    assert spearmanr(at_small, small).statistic > 0.9
    mean, std = model.predict(new, scales=np.tile([8e7, 1.6e9], (30, 1)))
    assert np.allclose(mean, got) and (std > 0).all()
    step = model.describe()["steps"][0]
    assert step["discrepancy"] and step["b"] > 0
    # under `auto` it is a transfer: a law must still beat it by the margin, and it wins ties among transfers
    assert not SURROGATES.factory("fidelity").extrapolates and SURROGATES.factory("scale_law").extrapolates
    _, rows, chosen = choose_by_largest_scale(X, y, S, candidates=("gp", "fidelity"))
    assert chosen == "fidelity" or max(r.spearman for r in rows if r.surrogate == "gp") > rows[1].spearman
    with pytest.raises(SearchError, match="option surrogate: 'scale_law' is not a scale-free surrogate"):
        SURROGATES.build("fidelity", surrogate="scale_law")
    with pytest.raises(SearchError, match="smallest scale has 1 run"):
        SURROGATES.build("fidelity").fit(X[23:], y[23:], scales=S[23:])


def test_bad_scales_are_one_line() -> None:
    with pytest.raises(SearchError, match=r"scale tokens: row 1: -5\.0 must be a positive number"):
        as_scales(np.array([[1.0, 2.0], [3.0, -5.0]]), 2)
    with pytest.raises(SearchError, match="scale params"):
        Scale(0.0, 1.0)
    with pytest.raises(SearchError, match="2 scales for 3 runs"):
        as_scales(np.ones((2, 2)), 3)


# -- the CLI ----------------------------------------------------------------------------------------


def write(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, law: Law) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ladder")
    X, S, y = ladder(law, per_scale=8)
    header = ["id", *[f"w_{d}" for d in "abcd"], "N", "D", "loss"]
    rows = [[f"run{i}", *x.round(5), f"{s[0]:g}", f"{s[1]:g}", round(v, 6)] for i, (x, s, v) in enumerate(zip(X, S, y))]
    cands = np.random.default_rng(3).dirichlet(np.ones(M), 5)
    big = PARAMS[3]
    return {
        "runs": write(root / "runs.csv", header, rows),
        "cands": write(
            root / "cands.csv",
            ["a", "b", "c", "d", "N", "D"],
            [[*c.round(5), f"{big:g}", f"{20 * big:g}"] for c in cands],
        ),
        "no_scale": write(root / "no_scale.csv", ["a", "b", "c", "d", "N"], [[*c.round(5), f"{big:g}"] for c in cands]),
        "zero": write(root / "zero.csv", header, [*rows[:-1], [*rows[-1][:5], "0", rows[-1][6], rows[-1][7]]]),
        "root": root,
    }


def invoke(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def fails(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


FAST = ("--surrogate", "scale_law")


def test_cli_fit_predict_propose_with_scale(files: dict[str, Path], law: Law) -> None:
    runs, root = files["runs"], files["root"]
    text = invoke("fit", runs, "-t", "loss", "--scale", "N,D", *FAST, "--json", "--out", root / "m.json")
    doc = json.loads(text[text.index("{") : text.rindex("}") + 1])  # the runner mixes in stderr's note
    assert doc["scales"] == 3 and doc["chosen"] == {"loss": "scale_law"}
    assert doc["cv"]["loss"][0]["folds"] == 1 and doc["cv"]["loss"][0]["n"] == 8
    _, saved = load_model(root / "m.json")  # refits exactly, with the saved scales
    assert len(saved["scales"]) == 24

    out = root / "preds.csv"
    invoke("predict", runs, "-t", "loss", "--scale", "N,D", *FAST, "--candidates", files["cands"], "--out", out)
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    with files["cands"].open() as fh:
        cands = list(csv.DictReader(fh))
    assert [r["a"] for r in rows] == [c["a"] for c in cands]  # candidate order kept
    pred = np.array([float(r["predicted"]) for r in rows])
    W = np.array([[float(c[d]) for d in "abcd"] for c in cands])
    assert spearmanr(pred, law(W, np.full(len(W), PARAMS[3]))).statistic >= 0.9

    best = root / "best.yaml"
    text = invoke(
        "propose", runs, "-t", "loss", "--scale", "N,D", *FAST, "--at", "N=3e8,D=6B", "--samples", "2000",
        "--top-k", "20", "--out", best,
    )  # fmt: skip
    assert "predicted objective" in text
    meta = read_mixture(best).metadata
    assert meta["scale"] == {"params": 3e8, "tokens": 6e9}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (("fit", "{runs}", "-t", "loss", "--scale", "N,tokens"), "runs.csv: --scale column 'tokens' is not in the header"),
        (("fit", "{runs}", "-t", "loss", "--scale", "N"), "--scale: name two columns"),
        (("fit", "{zero}", "-t", "loss", "--scale", "N,D"), "zero.csv:25 N: '0' is not a positive number of params"),
        (
            ("predict", "{runs}", "-t", "loss", "--scale", "N,D", "-c", "{no_scale}", "-o", "{root}/p.csv"),
            "no_scale.csv: --scale column 'D' is not in the header",
        ),
        (("propose", "{runs}", "-t", "loss", "--scale", "N,D", "--at", "N=3e8", "-o", "{root}/b.yaml"), "--at: no value for 'D'"),
        (
            ("propose", "{runs}", "-t", "loss", "--scale", "N,D", "--at", "N=1e8,D=1e12", "-o", "{root}/b.yaml"),
            "--at: params=1e+08 is smaller than the largest run's 1.2e+08",
        ),
        (("propose", "{runs}", "-t", "loss", "--scale", "N,D", "--at", "N=0,D=6B", "-o", "{root}/b.yaml"), "--at N: '0' must be positive"),
        (("propose", "{runs}", "-t", "loss", "--at", "N=3e8,D=6B", "-o", "{root}/b.yaml"), "--at: --at needs --scale"),
    ],
)  # fmt: skip
def test_cli_bad_scale_input_is_one_line(files: dict[str, Path], case: tuple[str, ...], expected: str) -> None:
    paths = {k: str(v) for k, v in files.items()}
    line = fails(*(a.format(**paths) for a in case), *FAST)
    assert expected in line, line
