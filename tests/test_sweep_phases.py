"""A sweep over a phased space (`space.phases`, issue 15): the spec's bad phases are one line naming the
phase and field before anything trains; a static spec keeps its sweep and trial keys; samplers, the
CV, the proposal and the exports work on the schedules' cells through the flow's own steps (training
stubbed); each trial trains its schedule (a step change, or a centred ramp, at each boundary); and one
real two-phase training reads the first phase's mixture before the boundary and the second's after."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from flows.steps.export import export, recommend
from flows.steps.prepare import Prepared, prepare
from flows.steps.report import leaderboard_rows, share_columns
from flows.steps.search import SearchState, cross_validate_cached, sampler_for, suggest_candidates
from flows.steps.spec import SpecError, load_spec
from flows.trials.result import TrialResult
from mixture_search.mixture import Mixture
from mixture_search.schedule import Schedule, cell
from mixture_search.schedule_formats import read_schedule
from tests.conftest import OPENSEEK_TASK
from tests.sweep_helpers import smoke_spec
from trainers.data import Corpus
from trainers.data.schedule import WeightSchedule

REPO = Path(__file__).resolve().parents[1]

#: the keys of a static sweep as the code before phases computed them (HEAD 65f66d9, tiny corpus, its data
#: hash replaced by "fixed-data-hash"): phases must not change a static sweep's trials or MLflow runs
STATIC_TRIAL_KEY = "1d876fca99d76406"
STATIC_SWEEP_KEY = "b6a0f2fa045c4a18"  # of the spec at /data/corpus, /data/out

TWO_PHASES = [{"until": 0.75}, {"until": 1.0, "bounds": {"code": [0.3, 0.8]}}]


@pytest.fixture(autouse=True)
def _no_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _spec(corpus: Path, out: Path, space: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    spec = smoke_spec(corpus, out, "phases", rounds=2, per_round=4, steps=8)
    spec["search"]["proposal_samples"] = 1000
    if space is not None:
        spec["space"] = space
    spec.update(changes)
    return spec


def _prepared(corpus: Path, out: Path, space: dict[str, Any] | None = None, **changes: Any) -> Prepared:
    return prepare(load_spec(_spec(corpus, out, space, **changes)))


# -- bad input: one line naming the phase and field -----------------------------------------------------


@pytest.mark.parametrize(
    ("phases", "where", "words"),
    [
        ([{"until": 0.5}, {"until": 0.4}, {"until": 1.0}], "space.phases[1].until", "increasing order"),
        ([{"until": 0.5}, {"until": 0.9}], "space.phases[1].until", "must end at 1.0"),
        ([{"until": [0.4, 0.7]}, {"until": [0.6, 1.0]}], "space.phases[1].until", "does not start after"),
        ([{"until": 1.5}], "space.phases.0.until", "(0, 1]"),
        ([{"until": 0.5, "bounds": {"code": [0.7, 0.2]}}, {"until": 1.0}], "space.phases.0.bounds", "above max"),
        ([{"until": 0.5, "ramp": 0.1}, {"until": 1.0}], "space.phases.0.ramp", "unknown key"),
    ],
)
def test_bad_phases_are_one_line_before_the_corpus_is_read(
    tmp_path: Path, phases: list[Any], where: str, words: str
) -> None:
    spec = _spec(tmp_path / "no-corpus", tmp_path / "out", {"phases": phases})
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert where in str(err.value) and words in str(err.value) and "\n" not in str(err.value)


def test_a_ramp_needs_phases(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"space\.ramp: a ramp between phases needs space\.phases"):
        load_spec(_spec(tmp_path, tmp_path / "out", {"ramp": 0.1}))


@pytest.mark.parametrize(
    ("space", "where", "words"),
    [
        # the phase's own bounds leave its simplex empty
        (
            {"phases": [{"until": 0.5, "bounds": {"code": [0.6, 1.0], "zh": [0.6, 1.0]}}, {"until": 1.0}]},
            "space.phases[0]",
            "empty",
        ),
        # a domain the sweep does not have
        ({"phases": [{"until": 0.5, "pinned": {"nope": 0.2}}, {"until": 1.0}]}, "space.phases[0].pinned", "'nope'"),
        # caps over the whole run no schedule can meet: code at least 90% of both phases, at most 1.5 epochs
        # in a run as long as the corpus (its natural share is far below 0.9)
        (
            {
                "target_tokens": "CORPUS",
                "max_epochs": 1.5,
                "phases": [
                    {"until": 0.5, "bounds": {"code": [0.9, 1.0]}},
                    {"until": 1.0, "bounds": {"code": [0.9, 1.0]}},
                ],
            },
            "space.phases[0].bounds.code",
            "no schedule meets the caps",
        ),
        # a ramp longer than the shortest phase
        ({"phases": [{"until": 0.9}, {"until": 1.0}], "ramp": 0.2}, "space.ramp", "not shorter than phases[1]"),
    ],
)
def test_impossible_phases_are_one_line_in_the_check_step(
    sweep_corpus: Path, tmp_path: Path, space: dict[str, Any], where: str, words: str
) -> None:
    if space.get("target_tokens") == "CORPUS":
        tokens = Corpus.load(sweep_corpus).catalog.tokens("domain")
        space = {**space, "target_tokens": int(sum(t or 0 for t in tokens.values()))}
    with pytest.raises(SpecError) as err:
        _prepared(sweep_corpus, tmp_path / "out", space)
    text = str(err.value)
    assert text.startswith(where) and words in text and "\n" not in text, text


def test_a_phased_sweep_has_no_anchors_and_refuses_them(sweep_corpus: Path, tmp_path: Path) -> None:
    search: dict[str, Any] = {"per_round": 8, "proposal_samples": 1000}  # a static sweep's default: both
    assert _prepared(sweep_corpus, tmp_path / "out", {"phases": TWO_PHASES}, search=search).anchors == ()
    search["anchors"] = ["uniform"]
    with pytest.raises(SpecError, match=r"^search\.anchors: a phased sweep searches schedules"):
        _prepared(sweep_corpus, tmp_path / "out", {"phases": TWO_PHASES}, search=search)


def test_a_template_without_its_experiment_config_cannot_take_stages(sweep_corpus: Path, tmp_path: Path) -> None:
    lone = REPO / "deploy" / "templates" / "openseek_train_deepseek_v3_1_4b.yaml"
    with pytest.raises(SpecError, match=r"^export\.openseek_template: a schedule is exported as one OpenSeek"):
        _prepared(sweep_corpus, tmp_path / "out", {"phases": TWO_PHASES}, export={"openseek_template": str(lone)})


def test_validate_trains_schedules_and_the_compared_static_sweeps_mixture(sweep_corpus: Path, tmp_path: Path) -> None:
    """A phased sweep validates: its recommendation and best trial are schedules; uniform, natural and the
    `compare` sweep's exported mixture are static, the same mixture in every phase with the
    recommendation's phase ends; every candidate's key carries the ramp, and differs from the sweep's."""
    from flows.steps.validate import ValidateSpec, choose_mixtures, key_of, prepare_validation

    sweep = _spec(sweep_corpus, tmp_path / "out", {"phases": [{"until": [0.6, 0.9]}, {"until": 1.0}], "ramp": 0.05})
    static = _spec(sweep_corpus, tmp_path / "static", name="static")
    spec = ValidateSpec.model_validate(
        {"name": "v", "sweep": sweep, "compare": static, "output_dir": str(tmp_path / "v"), "min_scale": 1.0}
    )
    plan = prepare_validation(spec)
    assert plan.sweep.phased and plan.compare_spec is not None and plan.compare_spec.name == "static"
    rec = Schedule.from_pairs([(0.7, {"prose": 1, "code": 1, "zh": 1, "digits": 1}), (1.0, {"code": 1})])
    best = Schedule.from_pairs([(0.8, {"prose": 1, "code": 3, "zh": 1, "digits": 1}), (1.0, {"zh": 1})])
    weights = {c: 0.0 for c in plan.sweep.cells}
    summary = {
        "best": {"weights": {**weights, **dict(best.flat().pairs)}},
        "proposal": {"weights": {**weights, **dict(rec.flat().pairs)}},
    }
    compare = {"best": {"weights": {}}, "proposal": {"weights": {"prose": 0.1, "code": 0.6, "zh": 0.2, "digits": 0.1}}}
    chosen = {c.name: c for c in choose_mixtures(plan, summary, [], compare)}
    assert list(chosen) == ["recommended", "uniform", "natural", "best", "static"]
    for name, c in chosen.items():  # every candidate trains as a schedule over the sweep's cells
        assert c.mixture.names == plan.sweep.cells, name
    schedules = {name: plan.sweep.schedule(c.mixture) for name, c in chosen.items()}
    assert schedules["recommended"].untils == pytest.approx((0.7, 1.0))
    assert schedules["recommended"].phases[1].mixture.share("code") == pytest.approx(1.0)
    assert schedules["best"].untils == pytest.approx((0.8, 1.0))
    for name in ("uniform", "natural", "static"):  # static: one mixture in both phases
        phases = schedules[name].phases
        assert schedules[name].untils == pytest.approx((0.7, 1.0)), name
        assert phases[0].mixture.normalized == pytest.approx(phases[1].mixture.normalized), name
    assert schedules["static"].phases[0].mixture.share("code") == pytest.approx(0.6)
    assert schedules["uniform"].phases[0].mixture.normalized == pytest.approx((0.25,) * 4)
    ramped = key_of(plan, chosen["recommended"], "target", 0)
    stepped = prepare_validation(spec.model_copy(update={"sweep": {**sweep, "space": {**sweep["space"], "ramp": 0.0}}}))
    assert ramped != key_of(stepped, chosen["recommended"], "target", 0)  # the ramp is in the key


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"space": {"phases": TWO_PHASES}, "name": "other"}, "compare.space.phases", "must be static"),
        ({"name": "phases"}, "compare", "sweep's own folder"),
        ({"space": {"domains": ["prose", "code", "zh"]}, "name": "other"}, "compare.corpus", "same corpus and domains"),
    ],
)
def test_a_compared_sweep_that_cannot_be_compared_is_one_line(
    sweep_corpus: Path, tmp_path: Path, change: dict[str, Any], where: str, words: str
) -> None:
    from flows.steps.validate import ValidateSpec, prepare_validation

    sweep = _spec(sweep_corpus, tmp_path / "out", {"phases": TWO_PHASES})
    other = {**_spec(sweep_corpus, tmp_path / "out"), **change}
    spec = ValidateSpec.model_validate({"name": "v", "sweep": sweep, "compare": other, "output_dir": str(tmp_path)})
    with pytest.raises(SpecError, match=rf"^{re.escape(where)}: .*{words}"):
        prepare_validation(spec)


# -- a static sweep is unchanged ------------------------------------------------------------------------


def test_a_static_sweep_keeps_its_keys(sweep_corpus: Path, tmp_path: Path) -> None:
    spec = load_spec(smoke_spec(sweep_corpus, tmp_path / "out", "keys"))
    prepared = dataclasses.replace(prepare(spec), data_hash="fixed-data-hash")
    assert not prepared.phased and prepared.cells == prepared.domains
    m = Mixture(list(zip(prepared.domains, range(1, len(prepared.domains) + 1))))
    assert prepared.trial_key(m) == STATIC_TRIAL_KEY
    fixed = load_spec(smoke_spec(Path("/data/corpus"), Path("/data/out"), "keys"))  # the corpus path is in the key
    assert fixed.sweep_key("fixed-data-hash") == STATIC_SWEEP_KEY
    assert prepared.weight_params(m) is None  # the tracker logs w.<domain> as always
    assert prepared.trial_context().ramp is None
    assert prepared.trial_context().train_inputs(m, prepared.budget) == (m, None)


def test_the_dry_run_prints_the_phases(sweep_corpus: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    phases = [{"until": [0.6, 0.8]}, {"until": 1.0, "bounds": {"code": [0.3, 0.8]}, "pinned": {"zh": 0.1}}]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(sweep_corpus, tmp_path / "out", {"phases": phases, "ramp": 0.05})))
    result = CliRunner().invoke(app, ["sweep", str(path), "--dry-run"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "p0 until 0.6-0.8 (searched); p1 until 1 (code [0.3, 0.8], zh = 0.1)" in text, text
    assert "a linear ramp over 5% of the run centred on each boundary" in text
    static = tmp_path / "static.yaml"
    static.write_text(yaml.safe_dump(_spec(sweep_corpus, tmp_path / "out")))
    assert "one mixture per phase" not in CliRunner().invoke(app, ["sweep", str(static), "--dry-run"]).output
    assert not (tmp_path / "out").exists()  # nothing trained or written


# -- the rounds on a phased space (training stubbed) -------------------------------------------------------


def _score(prepared: Prepared, m: Mixture) -> float:
    """A stub objective with a phase effect: code helps late, hurts early; zh helps early."""
    s = prepared.schedule(m).shares()
    names = prepared.schedule(m).names
    code, zh = names.index("code"), names.index("zh")
    return float(3.0 + 0.5 * s[0, code] - 0.8 * s[1, code] - 0.3 * s[0, zh])


def test_a_phased_sweep_searches_trains_proposes_and_exports_schedules(sweep_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    template = OPENSEEK_TASK  # an OpenSeek task config beside its experiment config
    prepared = _prepared(
        sweep_corpus,
        out,
        {"phases": TWO_PHASES},
        search={"surrogate": "linear", "proposal_samples": 1000, "rounds": 2, "per_round": 4},
        export={"openseek_template": str(template), "train_samples": 1000},
    )
    assert prepared.phased and prepared.cells == tuple(cell(k, d) for k in (0, 1) for d in prepared.domains)
    state = SearchState.load(out / "search_state.json")
    _, first = suggest_candidates(prepared, state, 0, {})
    results = {
        f"{m.key}-{i}": TrialResult(f"{m.key}-{i}", m, "finished", objective=_score(prepared, m))
        for i, m in enumerate(first)
    }
    name, _ = sampler_for(prepared, state, 1, results)
    assert name == "adaptive" and sorted(state.samplers["adaptive"]["observed"]) == sorted(results)
    _, second = suggest_candidates(prepared, state, 1, results)
    for m in [*first, *second]:  # every candidate is a feasible schedule of the space's cells
        assert m.names == prepared.cells and prepared.space.contains(m)
        schedule = prepared.schedule(m)
        assert schedule.untils == (0.75, 1.0) and 0.3 - 1e-9 <= schedule.phases[1].mixture.share("code") <= 0.8 + 1e-9
    for i, m in enumerate(second):
        results[f"{m.key}-r1-{i}"] = TrialResult(f"{m.key}-r1-{i}", m, "finished", objective=_score(prepared, m))
    trials = list(results.values())
    cv = cross_validate_cached(prepared, trials)
    assert cv is not None and len(cv.oof) == len(trials)

    ranked, proposal, summary = recommend(prepared, trials)
    assert prepared.space.contains(proposal) and summary["phases"] == 2
    phases = summary["proposal"]["schedule"]["phases"]
    assert [p["until"] for p in phases] == [0.75, 1.0]
    # the stub rewards code late and punishes it early: the proposal moves code into the second phase
    assert phases[1]["weights"]["code"] > phases[0]["weights"]["code"]
    assert _score(prepared, proposal) < np.mean([r.objective for r in trials])

    params = prepared.weight_params(proposal)
    assert params is not None and set(params) == {*(f"w.{c}" for c in prepared.cells), "phase.p0.until"}
    assert float(params["phase.p0.until"]) == 0.75
    rows = leaderboard_rows(ranked, prepared.domains)
    assert rows[0]["until@p0"] == 0.75 and {f"code@p{k}" for k in (0, 1)} <= set(rows[0])
    assert rows[0]["code@p1"] == round(ranked[0].mixture.share("p1.code") / 0.25, 4)

    written = export(prepared, proposal, out / "recommended")
    names = {p.name for p in written}
    assert {"schedule.yaml", "megatron_stages.sh", "easydel_schedule.yaml"} <= names
    assert any(p.parent.name == "train" and p.name.endswith("_stage1.yaml") for p in written)
    wanted = prepared.schedule(proposal)
    for path in (out / "recommended" / "schedule.yaml", out / "recommended" / "easydel_schedule.yaml"):
        back = read_schedule(path)
        assert back.untils == wanted.untils
        assert np.allclose(back.shares(), wanted.shares(), atol=2e-6)
    script = (out / "recommended" / "megatron_stages.sh").read_text()
    assert "--train-samples 750 " in script and "--train-samples 1000 " in script
    assert read_schedule(out / "recommended" / "megatron_stages.sh").untils == (0.75, 1.0)

    # `mixsweep results` on what the flow writes: one column per domain, its phases side by side in a cell,
    # so the leaderboard of 2 x 4 domains fits an 80-column terminal
    from typer.testing import CliRunner

    from flows.cli import app
    from mixture_search.files import atomic_write_json

    atomic_write_json(out / "results.json", [r.to_dict() for r in trials], default=str)
    atomic_write_json(out / "summary.json", summary, default=str)
    shown = CliRunner().invoke(app, ["results", str(out), "--top", "3"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    assert max(len(line) for line in shown.output.splitlines()) <= 80 and "…" not in shown.output, shown.output
    best = share_columns(ranked[0].mixture, list(prepared.domains))
    wide = CliRunner().invoke(app, ["results", str(out), "--top", "3"], env={"COLUMNS": "200"}).output
    assert f"{best['code@p0']:.3f} →{best['code@p1']:.3f}" in wide, wide  # one line where there is room
    assert "each cell: phase 0 → phase 1" in shown.output


# -- what a trial trains ----------------------------------------------------------------------------------


def test_a_phased_trial_trains_its_schedule_with_a_step_or_a_centred_ramp(sweep_corpus: Path, tmp_path: Path) -> None:
    prepared = _prepared(sweep_corpus, tmp_path / "out", {"phases": TWO_PHASES})
    schedule = Schedule.from_pairs(
        [(0.75, {d: 1.0 for d in prepared.domains}), (1.0, {d: 3.0 if d == "code" else 1.0 for d in prepared.domains})]
    )
    flat = schedule.flat()
    ctx = prepared.trial_context()
    budget = dataclasses.replace(prepared.budget, steps=40)
    start, ws = ctx.train_inputs(flat, budget)
    assert start.key == schedule.phases[0].mixture.key
    assert isinstance(ws, WeightSchedule) and ws.interpolation == "step"
    assert [s for s, _ in ws.points] == [0, 30]
    assert ws.get_weights(29)["code"] == pytest.approx(1 / len(prepared.domains))
    assert ws.get_weights(30)["code"] == pytest.approx(3 / (len(prepared.domains) + 2))

    ramped = WeightSchedule.from_phases([(p.until, p.mixture) for p in schedule.phases], 40, 2, ramp=0.1)
    assert ramped.interpolation == "linear" and [s for s, _ in ramped.points] == [0, 28, 31]
    assert (
        0
        < ramped.get_weights(29)["code"] - ws.get_weights(29)["code"]
        < ws.get_weights(30)["code"] - ws.get_weights(29)["code"]
    )
    # centred: every domain draws the same samples over the run as with the step change (the engine's
    # targets: weights per optimizer step)
    n = 40 * 2
    assert np.allclose(ramped.targets().at(np.array([n])), ws.targets().at(np.array([n])))
    assert not np.allclose(ramped.targets().at(np.array([60])), ws.targets().at(np.array([60])))
    # a ramp is cut to fit the phases it joins, or left out where they are too short
    cut = WeightSchedule.from_phases([(p.until, p.mixture) for p in schedule.phases], 16, 2, ramp=0.45)
    assert [s for s, _ in cut.points] == [0, 10, 13]
    short = WeightSchedule.from_phases([(p.until, p.mixture) for p in schedule.phases], 8, 2, ramp=0.45)
    assert short.interpolation == "step" and [s for s, _ in short.points] == [0, 6]


# -- the spec and deployment a user starts ----------------------------------------------------------------


def test_every_deployment_names_a_spec_that_loads_and_two_phase_is_one() -> None:
    deployments = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())["deployments"]
    names = [d["name"] for d in deployments]
    assert "two-phase" in names and len(names) == len(set(names))
    for d in deployments:
        if d["entrypoint"] != "flows/sweep.py:sweep":
            continue  # validate's spec is a ValidateSpec
        spec = load_spec(REPO / d["parameters"]["spec"])
        if d["name"] == "two-phase":
            assert spec.space.phases is not None and len(spec.space.phases) == 2
            assert spec.budget.schedule == "wsd"
            # the last phase starts where the LR decay starts
            steps = spec.budget.total_steps(128)
            decay_start = steps - round(steps * spec.budget.decay_fraction)
            assert round(float(spec.space.phases[0].until) * steps) == decay_start  # type: ignore[arg-type]


# -- one real two-phase training --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_two_phase_trial_reads_the_first_mixture_then_the_second(sweep_corpus: Path, tmp_path: Path) -> None:
    """The boundary of a real training (Megatron-Core, tiny proxy): stopped at the boundary step, the run
    has read only phase 0's domain; resumed to the end, everything after the boundary is phase 1's."""
    from trainers.train import train  # torch and megatron: this test trains

    prepared = _prepared(sweep_corpus, tmp_path / "out", {"phases": TWO_PHASES})
    others = [d for d in prepared.domains if d not in ("prose", "code", "zh")]
    schedule = Schedule.from_pairs(
        [
            (0.5, {"prose": 1.0, "code": 0.0, "zh": 0.0, **dict.fromkeys(others, 0.0)}),
            (1.0, {"prose": 0.0, "code": 1.0, "zh": 1.0, **dict.fromkeys(others, 0.0)}),
        ]
    )
    budget = dataclasses.replace(prepared.budget, steps=8, micro_batch=2, global_batch=2, eval_interval=4)
    ctx = prepared.trial_context()
    start, ws = ctx.train_inputs(schedule.flat(), budget)
    assert [s for s, _ in ws.points] == [0, 4]
    seq = prepared.proxy.seq_len
    args = (start, prepared.corpus_dir, prepared.proxy, budget, "megatron", tmp_path / "train")
    before = train(*args, schedule=ws, stop_at_step=4)
    assert before.status == "interrupted" and before.steps == 4
    assert before.tokens_per_domain["prose"] == 4 * 2 * seq
    assert sum(v for d, v in before.tokens_per_domain.items() if d != "prose") == 0
    done = train(*args, schedule=ws)
    assert done.status == "completed" and done.steps == 8
    after = {d: done.tokens_per_domain[d] - before.tokens_per_domain[d] for d in done.tokens_per_domain}
    assert after["prose"] == 0 and after["code"] == after["zh"] == 2 * 2 * seq
