"""`mixsweep fit|predict|suggest|propose` on CSVs with domain names, counts and scales nobody chose for us."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from mixture_search.catalog import load_catalog
from mixture_search.formats import read_mixture
from mixture_search.surrogates import load_model
from mixture_search.synthetic import MixingLawProblem
from tests.conftest import OPENSEEK_TASK, OPENSEEK_TOKENS

runner = CliRunner()
NAMES = ["Pile-CC", "Wikipedia (en)", "GitHub", "中文 web", "DM Mathematics"]


def write(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 runs: weights in percent under a 'mix:' prefix, an id column, per-domain losses, one failed run."""
    problem = MixingLawProblem.random(5, 11)
    rng = np.random.default_rng(0)
    X = problem.space().dirichlet(rng, rng.choice([0.3, 1.0, 3.0], 24))
    y, losses = problem.run(X, rng)
    rows = []
    for i, (x, v, loss) in enumerate(zip(X, y, losses)):
        rows.append([f"run-{i}", *[f"{100 * a:.4f}%" for a in x], "" if i == 3 else f"{v:.5f}", *loss.round(5)])
    header = ["id", *[f"mix:{n}" for n in NAMES], "val loss", *[f"loss {n}" for n in NAMES]]
    return write(tmp_path_factory.mktemp("runs") / "runs.csv", header, rows)


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


def test_fit_prints_the_cross_validation_and_saves_the_model(runs: Path, tmp_path: Path) -> None:
    out = invoke("fit", runs, "-t", "val loss", "-p", "mix:", "--json", "--folds", "4", "--out", tmp_path / "m.json")
    doc = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert doc["runs"] == 23 and doc["dropped"] == 1 and doc["domains"] == NAMES
    rows = doc["cv"]["val loss"]
    assert [r["surrogate"] for r in rows] == ["lightgbm", "linear", "mixing_law", "gp", "ensemble"]
    chosen = doc["chosen"]["val loss"]
    assert max(rows, key=lambda r: r["spearman"] or -2)["surrogate"] == chosen
    assert {"spearman", "pearson", "mae", "rmse", "pairwise"} <= set(rows[0])
    _, saved = load_model(tmp_path / "m.json")
    assert saved["domains"] == NAMES and saved["spec"]["name"] == chosen
    table = invoke("fit", runs, "-t", "val loss", "-s", "linear")
    assert "cross-validation: val loss" in table and "linear" in table and "23 runs" in table


def test_predict_adds_columns_to_the_candidates(runs: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    cands = write(
        tmp_path / "cands.csv",
        ["name", *NAMES[::-1]],  # bare domain names, another order
        [[f"c{i}", *rng.dirichlet(np.ones(5))] for i in range(7)],
    )
    invoke("predict", runs, "-t", "val loss", "-c", cands, "-o", tmp_path / "preds.csv", "-s", "gp")
    with (tmp_path / "preds.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 7 and rows[0]["name"] == "c0"
    assert all(float(r["predicted_std"]) >= 0 and 1 < float(r["predicted"]) < 6 for r in rows)


def test_suggest_generates_new_runs_inside_the_bounds(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "next.csv"
    bounds = ["--max", "GitHub=10%", "--pin", "中文 web=0.05"]
    invoke("suggest", runs, "-t", "val loss", "-n", "3", "-o", out, "-s", "gp", *bounds)
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and list(rows[0])[:5] == [f"mix:{n}" for n in NAMES]
    W = np.array([[float(r[f"mix:{n}"]) for n in NAMES] for r in rows])
    assert np.allclose(W.sum(axis=1), 1) and np.all(W[:, 2] <= 0.1 + 1e-9) and np.allclose(W[:, 3], 0.05)
    tpe = tmp_path / "tpe.csv"
    invoke("suggest", runs, "-t", "val loss", "-n", "2", "-o", tpe, "-s", "linear", "--sampler", "tpe")
    assert len(tpe.read_text().splitlines()) == 3


def test_suggest_from_a_pool_picks_distinct_new_rows(runs: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pool = write(
        tmp_path / "pool.csv",
        ["pid", *[f"mix:{n}" for n in NAMES]],
        [[i, *rng.dirichlet(np.ones(5))] for i in range(40)],
    )
    out = tmp_path / "picked.csv"
    invoke("suggest", runs, "-t", "val loss", "-n", "4", "--pool", pool, "-o", out, "-s", "gp")
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len({r["pid"] for r in rows}) == 4
    assert all(float(r["expected_improvement"]) >= 0 for r in rows)


def test_propose_writes_our_format_with_prediction_and_caps(runs: Path, tmp_path: Path) -> None:
    tokens = write(
        tmp_path / "tokens.csv", ["domain", "tokens"], [[n, t] for n, t in zip(NAMES, [4e10, 5e9, 2e10, 1e10, 1e9])]
    )
    out = tmp_path / "best.yaml"
    text = invoke(
        "propose", runs, "-t", "val loss", "-o", out, "-s", "gp", "--prior", tokens,
        "--target-tokens", "50B", "--max-epochs", "4", "--samples", "5000",
    )  # fmt: skip
    assert "predicted objective" in text and "interval" in text
    doc = read_mixture(out)
    assert list(doc.mixture) == NAMES
    assert doc.mixture.share("DM Mathematics") <= 4 * 1e9 / 50e9 + 1e-9  # the 4-epoch cap
    lo, hi = doc.metadata["interval"]
    assert lo < doc.metadata["predicted"] < hi and doc.metadata["surrogate"] == "gp"


def test_propose_several_targets_with_a_pareto_front(runs: Path, tmp_path: Path) -> None:
    targets = ",".join(f"loss {n}" for n in NAMES[:3])
    invoke(
        "propose", runs, "-t", targets, "-o", tmp_path / "m.json", "-s", "linear",
        "--samples", "3000", "--pareto", tmp_path / "front.csv",
    )  # fmt: skip
    meta = json.loads((tmp_path / "m.json").read_text())["metadata"]
    assert meta["objective"] == "+".join(f"loss {n}" for n in NAMES[:3])
    with (tmp_path / "front.csv").open() as fh:
        front = list(csv.DictReader(fh))
    assert len(front) >= 2 and "predicted.loss GitHub" in front[0]


def test_propose_group_weights_as_an_openseek_config(tmp_path: Path) -> None:
    groups = list(load_catalog(OPENSEEK_TOKENS).group_names)
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.full(len(groups), 0.7), 20)
    score = 0.4 + 0.05 * np.tanh(X @ rng.normal(size=len(groups)))
    runs = write(tmp_path / "groups.csv", [*groups, "acc"], [[*x, s] for x, s in zip(X, score)])
    invoke(
        "propose", runs, "-t", "acc", "--maximize", "-w", f"{groups[0]}..{groups[-1]}", "-s", "linear",
        "--prior", OPENSEEK_TOKENS, "--target-tokens", "100B", "--max-epochs", "4", "--samples", "3000",
        "--to", "openseek", "--template", OPENSEEK_TASK, "-o", tmp_path / "os",
    )  # fmt: skip
    written = read_mixture(tmp_path / "os" / "train" / OPENSEEK_TASK.name)
    assert len(written.mixture) == 84  # split over the baseline's files by tokens
    catalog = load_catalog(OPENSEEK_TOKENS)
    by_group = catalog.collapse(written.mixture, "group")
    tokens = catalog.tokens("group")
    assert all(by_group.share(g) <= 4 * tokens[g] / 100e9 + 1e-6 for g in by_group)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "{runs}", "-t", "bleu"], "no column 'bleu'"),
        (["fit", "{runs}", "-t", "val loss", "-p", "weight_"], "no column starts with the weight prefix 'weight_'"),
        (["fit", "{runs}", "-t", "val loss", "-w", "mix:GitHub,nope"], "--weights column 'nope' is not in the header"),
        (["fit", "{runs}", "-t", "val loss", "-s", "forest"], "unknown surrogate 'forest'"),
        (["fit", "{runs}", "-t", "id", "-p", "mix:"], "'run-0' is not a number"),
        (["fit", "{missing}", "-t", "val loss"], "missing.csv: file not found"),
        (["propose", "{runs}", "-t", "val loss", "-o", "{tmp}/x.yaml", "-s", "linear", "--min", "GitHub=0.7", "--min", "Pile-CC=60%"], "minimum and pinned shares add up to 1.3 > 1"),
        (["propose", "{runs}", "-t", "val loss", "-o", "{tmp}/x.yaml", "-s", "linear", "--pin", "Books=0.1"], "pinned.Books: unknown domain"),
        (["propose", "{runs}", "-t", "val loss", "-o", "{tmp}/x.yaml", "-s", "linear", "--max-epochs", "4"], "need token counts"),
        (["suggest", "{runs}", "-t", "val loss", "-n", "2", "-o", "{tmp}/n.csv", "-s", "linear", "--sampler", "bo"], "unknown sampler 'bo'"),
        (["suggest", "{runs}", "-t", "val loss", "-n", "2", "-o", "{tmp}/n.csv", "-s", "linear", "--option", "pool=3"], "option pool=3 must be in"),
        (["fit", "{runs}", "-t", "val loss", "-s", "linear", "-w", "mix:Pile-CC..mix:DM Mathematics"], None),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(runs: Path, tmp_path: Path, args: list[str], message: str | None) -> None:
    filled = [a.format(runs=runs, tmp=tmp_path, missing=tmp_path / "missing.csv") for a in args]
    if message is None:  # a valid call, for contrast: a FIRST..LAST range of weight columns
        invoke(*filled)
        return
    assert message in fails(*filled)


def test_bad_rows_name_the_file_line_and_column(tmp_path: Path) -> None:
    header = ["w_a", "w_b", "loss"]
    negative = write(tmp_path / "neg.csv", header, [[0.5, 0.5, 1.0], [0.2, -0.1, 1.1], [1, 0, 2]])
    assert f"{negative}:3 w_b: weight -0.1 is negative" in fails("fit", negative, "-t", "loss")
    zero = write(tmp_path / "zero.csv", header, [[0.5, 0.5, 1.0], [0, 0, 1.1], [1, 0, 2]])
    assert f"{zero}:3: all weights are zero" in fails("fit", zero, "-t", "loss")
    few = write(tmp_path / "few.csv", header, [[0.5, 0.5, 1.0], [0.2, 0.8, ""], [1, 0, 2]])
    assert "only 2 runs have a value for loss; need at least 3" in fails("fit", few, "-t", "loss")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("w_a,w_b,loss\n0.5,0.5,1,9\n")
    assert f"{ragged}:2: 4 cells for 3 columns" in fails("fit", ragged, "-t", "loss")
    cands = write(tmp_path / "cands.csv", ["w_a"], [[1.0]])
    ok = write(tmp_path / "ok.csv", header, [[0.5, 0.5, 1.0], [0.2, 0.8, 1.1], [1, 0, 2], [0, 1, 3]])
    assert "no weight column for domain 'b'" in fails(
        "predict", ok, "-t", "loss", "-c", cands, "-o", tmp_path / "p.csv", "-s", "linear"
    )
