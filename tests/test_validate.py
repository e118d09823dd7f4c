"""`mixsweep validate`: statistics, verdict and report on synthetic numbers; the spec's one-line errors;
the choice of mixtures. Fast (no training); the end-to-end run is in test_validate_e2e.py."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.steps.spec import SpecError
from flows.steps.validate_report import (
    RunRecord,
    Stat,
    lighteval_means,
    paired_difference,
    plot_domain_bpb,
    plot_objective,
    plot_rank_agreement,
    rank_agreement,
    render_html,
    summarize,
    table_rows,
)
from flows.trials.result import TrialResult
from flows.validate import ValidateSpec, choose_mixtures, load_validate_spec, objective
from mixture_search.mixture import Mixture

DOMAINS = ("code", "en", "zh")


# -- statistics -------------------------------------------------------------------------------------------
def test_stat_mean_std_and_t_interval() -> None:
    s = Stat.of([1.0, 2.0, 3.0])
    assert s is not None
    assert s.mean == pytest.approx(2.0) and s.std == pytest.approx(1.0) and s.n == 3
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2)
    assert (s.low, s.high) == pytest.approx((2.0 - half, 2.0 + half))
    one = Stat.of([5.0, float("nan")])
    assert one is not None and one.n == 1 and math.isnan(one.std) and one.text() == "5.0000"
    assert Stat.of([]) is None


def test_paired_difference_uses_common_seeds_only() -> None:
    d = paired_difference({0: 3.0, 1: 3.2, 2: 9.0}, {0: 3.1, 1: 3.4})
    assert d is not None and d.n == 2 and d.mean == pytest.approx(-0.15) and d.std == pytest.approx(math.sqrt(0.005))


def test_rank_agreement_spearman() -> None:
    proxy = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    same = rank_agreement(proxy, {"a": 10.0, "b": 20.0, "c": 25.0, "d": 40.0})
    assert same["spearman"] == pytest.approx(1.0) and same["n"] == 4
    assert same["proxy_rank"] == {"a": 1, "b": 2, "c": 3, "d": 4}
    rev = rank_agreement(proxy, {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0})
    assert rev["spearman"] == pytest.approx(-1.0) and rev["target_rank"]["a"] == 4
    assert math.isnan(rank_agreement({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})["spearman"])  # n < 3
    assert rank_agreement(proxy, {"a": 1.0, "c": 2.0, "x": 3.0})["n"] == 2  # only common mixtures


def test_lighteval_means_over_domains() -> None:
    m = {f"eval.bpb_{d}/bpb": v for d, v in zip(DOMAINS, (1.0, 2.0, 3.0))}
    m.update({f"eval.cloze_{d}/acc": v for d, v in zip(DOMAINS, (0.5, 0.25, 0.75))})
    assert lighteval_means(m, DOMAINS) == {"bpb": pytest.approx(2.0), "cloze": pytest.approx(0.5)}
    del m["eval.cloze_zh/acc"]
    assert "cloze" not in lighteval_means(m, DOMAINS)  # never a mean over fewer domains than asked


def test_objective_is_mean_bpb_over_target_domains() -> None:
    metrics = {"val.bpb.code": 2.0, "val.bpb.en": 4.0, "val.bpb.zh": 9.0}
    assert objective(metrics, ("code", "en")) == pytest.approx(3.0)
    assert objective(metrics, ("code", "de")) is None


# -- summary and verdict on synthetic runs ------------------------------------------------------------------
MIXTURES = [
    {"name": "recommended", "role": "recommended", "weights": {"code": 1.0, "en": 2.0, "zh": 1.0}},
    {"name": "uniform", "role": "baseline", "weights": {"code": 1.0, "en": 1.0, "zh": 1.0}},
    {"name": "natural", "role": "baseline", "weights": {"code": 3.0, "en": 1.0, "zh": 1.0}},
    {"name": "proxy-x", "role": "rank", "weights": {"code": 1.0, "en": 0.1, "zh": 5.0}},
]


def _runs(target: dict[str, list[float]], proxy: dict[str, list[float]]) -> list[RunRecord]:
    out = []
    for scale, table in (("target", target), ("proxy", proxy)):
        for name, values in table.items():
            for seed, v in enumerate(values):
                metrics = {f"val.bpb.{d}": v + i * 0.1 for i, d in enumerate(DOMAINS)}
                metrics.update(
                    {f"eval.bpb_{d}/bpb": v for d in DOMAINS} | {f"eval.cloze_{d}/acc": 0.5 for d in DOMAINS}
                )
                out.append(RunRecord(name, scale, seed, v + 0.1, metrics, trial_key=f"{name}{scale}{seed}"))  # type: ignore[arg-type]
    return out


PROXY = {"recommended": [3.0, 3.02], "uniform": [3.1, 3.12], "natural": [3.2, 3.21], "proxy-x": [3.5, 3.4]}


def test_clear_win_is_reported_with_its_size() -> None:
    target = {"recommended": [2.0, 2.01, 2.02], "uniform": [2.1, 2.11, 2.12], "natural": [2.2, 2.2, 2.23], "proxy-x": [2.5, 2.4, 2.6]}  # fmt: skip
    doc = summarize(_runs(target, PROXY), MIXTURES, DOMAINS)
    outcome = {c["baseline"]: c["outcome"] for c in doc["comparisons"]}
    assert outcome == {"uniform": "wins", "natural": "wins"}
    uniform = next(c for c in doc["comparisons"] if c["baseline"] == "uniform")
    assert uniform["delta"]["mean"] == pytest.approx(-0.1)
    assert doc["rank_agreement"]["spearman"] == pytest.approx(1.0)
    assert "the lowest of the 3 compared mixtures" in doc["verdict"]
    assert "beats uniform by 0.1000" in doc["verdict"] and "Spearman 1.00" in doc["verdict"]
    assert {n: g["met"] for n, g in doc["goals"].items()} == {
        "beats_uniform_beyond_noise": True,
        "beats_natural_beyond_noise": True,
        "proxy_target_spearman": True,
    }
    assert doc["goals"]["beats_uniform_beyond_noise"]["figure"] < 0
    assert doc["verdict"].endswith("proxy-to-target Spearman >= 0.9 (1.00 over 4 mixtures): met.")
    rec = doc["mixtures"][0]
    assert rec["target"]["n"] == 3 and rec["domains"]["en"]["mean"] == pytest.approx(2.11)
    assert rec["lighteval"]["cloze"]["mean"] == pytest.approx(0.5)


def test_a_loss_and_a_lead_within_noise_are_reported_honestly() -> None:
    target = {"recommended": [2.2, 2.3], "uniform": [2.0, 2.1], "natural": [2.1, 2.25], "proxy-x": [2.5, 2.6]}
    doc = summarize(_runs(target, PROXY), MIXTURES, DOMAINS)
    outcome = {c["baseline"]: c["outcome"] for c in doc["comparisons"]}
    assert outcome == {"uniform": "loses", "natural": "behind"}  # 0.2 worse on both seeds; +0.1/+0.05
    assert "place 3 of the 3 compared mixtures" in doc["verdict"]
    assert "loses to uniform by 0.2000" in doc["verdict"] and "within seed noise" in doc["verdict"]
    assert "beats" not in doc["verdict"]
    assert not any(g["met"] for n, g in doc["goals"].items() if n.startswith("beats_"))
    assert "a lead over natural whose 95% interval excludes 0 (interval [" in doc["verdict"]
    assert (
        "excludes 0 (interval [-0.2427, +0.3927]): not met; proxy-to-target Spearman >= 0.9 (0.40 over 4 mixtures): not met."
        in doc["verdict"]
    )
    rows = table_rows(doc)
    assert [r["mixture"] for r in rows] == ["uniform", "natural", "recommended", "proxy-x"]
    assert rows[2]["outcome"] == "" and rows[0]["outcome"] == "loses"


def test_failed_runs_and_missing_recommendation() -> None:
    runs = [r for r in _runs({"uniform": [2.0, 2.1]}, {}) if r.seed == 0]
    runs.append(RunRecord("recommended", "target", 0, None, {}))
    doc = summarize(runs, MIXTURES, DOMAINS)
    assert doc["mixtures"][0]["target"] is None
    assert doc["verdict"].startswith("The recommended mixture has no finished target training")


def test_report_html_is_self_contained(tmp_path: Path) -> None:
    target = {"recommended": [2.0, 2.05], "uniform": [2.1, 2.12], "natural": [2.2, 2.2], "proxy-x": [2.5, 2.4]}
    doc = summarize(_runs(target, PROXY), MIXTURES, DOMAINS)
    doc["name"], doc["setup"] = "synthetic", {"seeds": "0, 1"}
    images = {
        "objective": plot_objective(doc, tmp_path / "o.png"),
        "domains": plot_domain_bpb(doc, DOMAINS, tmp_path / "d.png"),
        "rank": plot_rank_agreement(doc, tmp_path / "r.png"),
    }
    for p in images.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = render_html(doc, images)
    assert page.count("data:image/png;base64,") == 3
    assert not re.search(r"(src|href)=[\"'](?!data:)", page)  # no external images, scripts or styles
    assert "http" not in page and "<script" not in page
    assert doc["verdict"].split(".")[0] in page.replace("&#x27;", "'")


# -- the spec ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"seeds": [0]}, "seeds: give at least 2 seeds"),
        ({"seeds": [1, 1]}, "seeds: seeds must be distinct"),
        ({"budget": {"steps": 10, "seed": 3}}, "budget: set the training seeds with `seeds`"),
        ({"rank_mixtures": 2}, "rank_mixtures: Input should be greater than or equal to 3"),
        ({"baselines": ["uniform", "median"]}, "baselines.1: Input should be 'uniform', 'natural' or 'best'"),
        ({"targte": {}}, "targte: unknown key"),
        ({"target": {"preset": "x", "size": 3}}, "target.size: unknown key"),
        ({"min_scale": 0.5}, "min_scale: Input should be greater than or equal to 1"),
    ],
)
def test_bad_spec_is_one_line_naming_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        load_validate_spec({"name": "v", "sweep": "s.yaml", **data})
    text = str(err.value)
    assert message in text and "\n" not in text


def test_bad_spec_through_the_cli(tmp_path: Path) -> None:
    spec = tmp_path / "v.yaml"
    spec.write_text("name: v\nsweep: s.yaml\nseeds: [0]\n")
    res = CliRunner().invoke(app, ["validate", str(spec), "--dry-run"])
    assert res.exit_code == 2
    assert "seeds: give at least 2 seeds" in res.output and "Traceback" not in res.output
    missing = CliRunner().invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "spec file not found" in missing.output


def test_defaults() -> None:
    spec = ValidateSpec(name="v", sweep="s.yaml")
    assert spec.seeds == [0, 1] and spec.baselines == ["uniform", "natural", "best"]
    assert spec.eval.tasks == ["local"] and spec.mlflow.experiment == "mixsweep-validate"
    assert spec.out_dir == Path("runs/validate/v").resolve()


# -- which mixtures ---------------------------------------------------------------------------------------
def _plan(baselines: list[str], rank_mixtures: int) -> Any:
    space = SimpleNamespace(tokens=[600.0, 300.0, 100.0])
    sweep = SimpleNamespace(domains=DOMAINS, cells=DOMAINS, phased=False, space=space)
    spec = SimpleNamespace(baselines=baselines, rank_mixtures=rank_mixtures)
    return SimpleNamespace(sweep=sweep, spec=spec, compare_spec=None)


def _trial(key: str, objective: float, weights: tuple[float, ...]) -> TrialResult:
    return TrialResult(key, Mixture(list(zip(DOMAINS, weights))), "finished", objective=objective)


def test_choose_mixtures_baselines_and_spread_of_sweep_trials() -> None:
    results = [_trial(f"t{i}", 3.0 + i / 10, (1.0 + i, 1.0, 2.0)) for i in range(6)]
    results.append(TrialResult("tf", Mixture(list(zip(DOMAINS, (1.0, 5.0, 1.0)))), "failed"))
    summary = {
        "best": {"weights": {"code": 0.25, "en": 0.25, "zh": 0.5}},
        "proposal": {"weights": {"code": 0.2, "en": 0.5, "zh": 0.3}},
    }
    chosen = choose_mixtures(_plan(["uniform", "natural", "best"], 6), summary, results)
    assert [(c.name, c.role) for c in chosen[:4]] == [
        ("recommended", "recommended"), ("uniform", "baseline"), ("natural", "baseline"), ("best", "baseline"),
    ]  # fmt: skip
    assert chosen[2].mixture.normalized == pytest.approx((0.6, 0.3, 0.1))
    # the best trial (t0) equals the `best` baseline; the extras start at the worst and spread out
    assert [c.name for c in chosen[4:]] == ["proxy-t5", "proxy-t3"]
    assert all(c.role == "rank" for c in chosen[4:])


def test_choose_mixtures_skips_duplicates() -> None:
    summary = {"best": {"weights": {"code": 1.0, "en": 1.0, "zh": 1.0}}, "proposal": {"weights": {"code": 1.0, "en": 1.0, "zh": 1.0}}}  # fmt: skip
    chosen = choose_mixtures(_plan(["uniform", "best"], 3), summary, [_trial("a", 3.0, (1.0, 1.0, 1.0))])
    assert [c.name for c in chosen] == ["recommended"]  # uniform, best and the one trial all equal it


def test_the_recommendation_is_what_the_sweep_exported() -> None:
    """When the sweep's confirmation found the proposal worse, it exported the best trial: validate that."""
    summary = {
        "best": {"weights": {"code": 0.25, "en": 0.25, "zh": 0.5}},
        "proposal": {"weights": {"code": 0.2, "en": 0.5, "zh": 0.3}},
        "confirm": {"exported": "best_trial"},
    }
    chosen = choose_mixtures(_plan(["uniform"], 3), summary, [])
    assert chosen[0].name == "recommended"
    assert chosen[0].mixture.normalized == pytest.approx((0.25, 0.25, 0.5))


def test_target_preset_is_four_times_the_demo_proxy() -> None:
    from trainers.presets import preset

    proxy = preset("moe_cpu", seq_len=128).resolve_vocab(8192).param_counts()
    target = preset("moe_cpu_16m", seq_len=128).resolve_vocab(8192).param_counts()
    assert target.total >= 4 * proxy.total and target.active > 3 * proxy.active


def test_an_unknown_evaluation_task_is_refused_before_anything_trains(tmp_path: Path) -> None:
    from flows.steps.validate import prepare_validation
    from tests.data_support import build_tiny_corpus

    corpus = build_tiny_corpus(tmp_path / "tiny")
    sweep = {"name": "s", "corpus": str(corpus), "output_dir": str(tmp_path / "sweep")}
    sweep["mlflow"] = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    spec = load_validate_spec(
        {"name": "v", "sweep": sweep, "eval": {"tasks": ["local", "no-such-task"]}, "output_dir": str(tmp_path / "v")}
    )
    with pytest.raises(SpecError, match=r"^eval\.tasks: unknown task 'no-such-task'"):
        prepare_validation(spec)
    assert not (tmp_path / "v" / "trials").exists()


# -- a ladder sweep: its largest proxy and its scale-aware prediction ---------------------------------------
LADDER_MIXTURES = MIXTURES + [
    {"name": f"proxy-{i}", "role": "rank", "weights": {"code": 1.0 + i, "en": 1.0, "zh": 1.0}} for i in range(4)
]


def _ladder_runs(target: dict[str, float], largest: dict[str, float]) -> list[RunRecord]:
    runs = _runs(
        {n: [v, v + 0.01] for n, v in target.items()}, {n: [3.0 + v / 10, 3.0 + v / 10] for n, v in target.items()}
    )
    for name, v in largest.items():
        runs += [RunRecord(name, "largest_proxy", s, v + s / 100, {}, trial_key=f"{name}l{s}") for s in (0, 1)]
    return runs


def test_a_ladders_scale_aware_prediction_is_ranked_against_the_target(tmp_path: Path) -> None:
    from flows.steps.validate_report import plot_scale_aware

    target = {m["name"]: 2.0 + i / 10 for i, m in enumerate(LADDER_MIXTURES)}  # the order of the list
    largest = {n: 3.0 - v for n, v in target.items()}  # the largest proxy has it upside down
    predicted = {n: v + 0.05 for n, v in target.items()}
    aware = {"predicted": predicted, "surrogate": "scale_law", "maximize": False, "text": "scale_law on 12 + 6 runs"}
    doc = summarize(_ladder_runs(target, largest), LADDER_MIXTURES, DOMAINS, aware)
    assert doc["scale_aware"]["rank_agreement"]["spearman"] == pytest.approx(1.0)
    assert doc["scale_aware"]["rank_agreement"]["n"] == 8 and "predicted" not in doc["scale_aware"]
    assert doc["rank_agreement_largest_proxy"]["spearman"] == pytest.approx(-1.0)
    assert doc["goals"]["scale_aware_spearman"] == {
        "figure": pytest.approx(1.0), "goal": 0.9, "n": 8, "min_mixtures": 8, "met": True
    }  # fmt: skip
    assert "The ladder's largest proxy ranks 8 of them with Spearman -1.00" in doc["verdict"]
    assert (
        "The sweep's scale-aware surrogate (scale_law), predicting at the target's size, ranks the 8" in doc["verdict"]
    )
    assert (
        "scale-aware prediction-to-target Spearman >= 0.9 over at least 8 mixtures (1.00 over 8 mixtures): met"
        in (doc["verdict"])
    )
    assert set(doc["train_wall_s"]) == {"proxy", "largest_proxy", "target"}
    row = next(r for r in table_rows(doc) if r["mixture"] == "recommended")
    assert row["scale-aware prediction"] == "2.0500" and row["largest proxy objective (mean ± std)"].startswith("1.0")
    assert plot_scale_aware(doc, tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # fewer than 8 mixtures: the goal is not met however well they rank; a maximised objective ranks reversed
    few = {n: -v for n, v in list(predicted.items())[:4]}
    doc = summarize(
        _ladder_runs(target, largest), LADDER_MIXTURES, DOMAINS, {**aware, "predicted": few, "maximize": True}
    )
    assert doc["scale_aware"]["rank_agreement"]["spearman"] == pytest.approx(1.0)
    assert doc["goals"]["scale_aware_spearman"]["met"] is False and doc["goals"]["scale_aware_spearman"]["n"] == 4

    # without a ladder nothing changes
    plain = summarize(_runs({n: [v, v] for n, v in target.items()}, {}), LADDER_MIXTURES, DOMAINS)
    assert "scale_aware" not in plain and "rank_agreement_largest_proxy" not in plain
    assert set(plain["goals"]) == {"beats_uniform_beyond_noise", "beats_natural_beyond_noise", "proxy_target_spearman"}


def _ladder_sweep(corpus: Path, out: Path) -> dict[str, Any]:
    return {
        "name": "ladder",
        "corpus": str(corpus),
        "output_dir": str(out),
        "mlflow": {"tracking_uri": f"sqlite:///{out / 'mlflow.db'}"},
        "search": {"rounds": 1, "per_round": 6, "surrogate": "auto", "proposal_samples": 1000},
        "proxy": {
            "preset": "tiny_cpu",
            "overrides": {"seq_len": 64},
            "scales": [{}, {"overrides": {"hidden_size": 96}, "budget": {"steps": 16}}],
        },
        "budget": {"steps": 4, "micro_batch": 2, "global_batch": 2},
        "space": {"target_tokens": 4096},
        "target": {"params": "16M"},
    }


def test_a_ladder_sweeps_target_must_outgrow_its_largest_proxy(tmp_path: Path) -> None:
    from flows.steps.validate import prepare_validation
    from tests.data_support import build_tiny_corpus

    corpus = build_tiny_corpus(tmp_path / "tiny")
    validate = {
        "name": "v",
        "sweep": _ladder_sweep(corpus, tmp_path / "sweep"),
        "target": {"preset": "moe_cpu_16m", "overrides": {"seq_len": 64}},
        "budget": {"steps": 8, "micro_batch": 2, "global_batch": 8},  # 4096 tokens: 8x the smallest, 2x the largest
        "output_dir": str(tmp_path / "v"),
    }
    with pytest.raises(SpecError, match=r"the target has 2\.00x the largest proxy's \(scale 1\) tokens") as err:
        prepare_validation(load_validate_spec(validate))
    assert err.value.where == "budget"
    plan = prepare_validation(load_validate_spec({**validate, "budget": {**validate["budget"], "steps": 32}}))
    assert plan.scales == ("proxy", "largest_proxy", "target")
    assert plan.scale["largest_proxy"]["tokens"] == 16 * 2 * 64 and plan.scale["target"]["tokens"] == 32 * 8 * 64


def test_the_scale_aware_prediction_refits_the_sweeps_ladder(tmp_path: Path) -> None:
    """`scale_aware_predictions` takes the sweep's trials (smallest scale) and its larger scale's runs (told
    apart by key), fits the sweep's surrogate and predicts every candidate at the validation target's size.
    On a synthetic ladder where loss falls with scale and the best mixture is code-heavy, it ranks the
    candidates about as the truth does, below what they reach at the largest proxy."""
    from flows.steps.validate import Candidate, prepare_validation, scale_aware_predictions
    from tests.data_support import build_tiny_corpus

    corpus = build_tiny_corpus(tmp_path / "tiny")
    plan = prepare_validation(
        load_validate_spec(
            {
                "name": "v",
                "sweep": _ladder_sweep(corpus, tmp_path / "sweep"),
                "target": {"preset": "moe_cpu_16m", "overrides": {"seq_len": 64}},
                "budget": {"steps": 32, "micro_batch": 2, "global_batch": 8},
                "output_dir": str(tmp_path / "v"),
            }
        )
    )
    sweep = plan.sweep
    domains = sweep.domains
    rng = __import__("numpy").random.default_rng(0)

    def truth(m: Mixture, tokens: float) -> float:
        return (
            2.0
            + 40.0 / tokens**0.5
            + sum((m.share(d) - (0.6 if i == 0 else 0.4 / (len(domains) - 1))) ** 2 for i, d in enumerate(domains))
        )

    def result(m: Mixture, key: str, tokens: float) -> TrialResult:
        return TrialResult(key, m, "finished", objective=truth(m, tokens))

    small, large = plan.scale["proxy"]["tokens"], plan.scale["largest_proxy"]["tokens"]
    mixtures = [Mixture(dict(zip(domains, rng.dirichlet([1.0] * len(domains))))) for _ in range(10)]
    trials = [result(m, sweep.trial_key(m), small) for m in mixtures]
    scale_runs = [result(m, sweep.trial_key(m, scale=1), large) for m in mixtures[:5]]
    scale_runs.append(result(mixtures[5], "not-a-ladder-run", large))  # another stage's run: not counted
    candidates = [Candidate(f"c{i}", "rank", m) for i, m in enumerate(mixtures[6:])]
    candidates.append(
        Candidate("code-heavy", "rank", Mixture({d: (6.0 if i == 0 else 1.0) for i, d in enumerate(domains)}))
    )
    found = scale_aware_predictions(plan, candidates, trials, scale_runs)
    assert found is not None and found["runs_per_scale"] == [10, 5]
    assert set(found["predicted"]) == {c.name for c in candidates}
    assert found["at"] == {"params": plan.scale["target"]["params"], "tokens": plan.scale["target"]["tokens"]}
    true = {c.name: truth(c.mixture, plan.scale["target"]["tokens"]) for c in candidates}
    assert rank_agreement(found["predicted"], true)["spearman"] >= 0.8
    # the ranking does not move with scale here, so no law ranks the held-out scale better than a transfer
    # (fidelity or a naive one): that is what `auto` keeps, predicting the largest scale's losses at the target
    assert found["surrogate"] in ("fidelity", "gp", "mixing_law", "lightgbm", "linear"), found["surrogate"]
    at_largest = [truth(c.mixture, large) for c in candidates]
    assert all(abs(found["predicted"][c.name] - v) < 0.1 for c, v in zip(candidates, at_largest))
    # a scale law, named, knows that loss falls with scale
    search = plan.sweep_spec.search.model_copy(update={"surrogate": "scale_law"})
    named = dataclasses.replace(plan, sweep_spec=plan.sweep_spec.model_copy(update={"search": search}))
    law = scale_aware_predictions(named, candidates, trials, scale_runs)
    assert law is not None and law["surrogate"] == "scale_law"
    assert all(law["predicted"][c.name] < v for c, v in zip(candidates, at_largest))
    # too few runs at the larger scale: said, not fitted
    assert "note" in (scale_aware_predictions(plan, candidates, trials, scale_runs[:2]) or {})
    # a sweep without a ladder: nothing to predict
    assert (
        scale_aware_predictions(
            plan.__class__(**{**plan.__dict__, "sweep": __import__("dataclasses").replace(sweep, ladder=None)}),
            candidates,
            trials,
            [],
        )
        is None
    )
