"""The blending engine: every prefix within one sample of the target, for static weights and schedules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixture_search.mixture import Mixture
from trainers.data.engine import EngineConfig, exact_stream, max_drift, megatron_stream
from trainers.data.schedule import Targets, WeightSchedule

BENCH_WEIGHTS = [7, 5, 4, 3, 2, 1.5, 1, 0.5]


def static(weights: list[float]) -> Targets:
    w = np.asarray(weights, dtype=np.float64)
    return Targets.from_segments(np.array([0]), (w / w.sum())[None, :])


def check_counts(unit: np.ndarray, count: np.ndarray, k: int) -> None:
    """Each domain's samples are numbered 0, 1, 2, ... in stream order."""
    for i in range(k):
        mine = count[unit == i]
        assert np.array_equal(mine, np.arange(len(mine)))


weights_st = st.lists(
    st.one_of(st.floats(1e-4, 1.0), st.just(0.0), st.integers(1, 20).map(float)), min_size=1, max_size=12
).filter(lambda w: sum(w) > 0)
engine_st = st.builds(EngineConfig, block=st.integers(2, 300), chunk_blocks=st.integers(1, 12))


@settings(max_examples=120)
@given(weights=weights_st, n=st.integers(0, 4000), cfg=engine_st)
def test_static_weights_stay_within_one_sample(weights: list[float], n: int, cfg: EngineConfig) -> None:
    targets = static(weights)
    unit, count = exact_stream(targets, n, config=cfg)
    assert len(unit) == n
    assert max_drift(unit, targets) <= 1.0 + 1e-9
    check_counts(unit, count, len(weights))
    assert not np.any(np.asarray(weights)[unit] == 0)  # a zero weight is never drawn


@st.composite
def schedules(draw: st.DrawFn) -> WeightSchedule:
    k = draw(st.integers(1, 8))
    points = []
    step = 0
    for _ in range(draw(st.integers(1, 4))):
        w = draw(
            st.lists(st.one_of(st.floats(1e-5, 1.0), st.just(0.0)), min_size=k, max_size=k).filter(lambda w: sum(w) > 0)
        )
        points.append((step, Mixture({f"d{i}": x for i, x in enumerate(w)})))
        step += draw(st.integers(1, 60))
    interp = draw(st.sampled_from(["step", "linear", "cosine"]))
    return WeightSchedule(tuple(points), interp, draw(st.integers(1, 64)))


@settings(max_examples=120)
@given(schedule=schedules(), n=st.integers(1, 5000), cfg=engine_st)
def test_schedules_track_the_integral_within_one_sample(schedule: WeightSchedule, n: int, cfg: EngineConfig) -> None:
    targets = schedule.targets(n)
    unit, count = exact_stream(targets, n, config=cfg)
    assert max_drift(unit, targets) <= 1.0 + 1e-9
    check_counts(unit, count, len(schedule.names))


def test_easydel_get_weights_semantics() -> None:
    s = WeightSchedule(((0, Mixture({"a": 0.2, "b": 0.8})), (10000, Mixture({"a": 0.5, "b": 0.5}))), "linear")
    assert s.get_weights(5000) == pytest.approx({"a": 0.35, "b": 0.65})
    assert s.get_weights(0) == pytest.approx({"a": 0.2, "b": 0.8})
    assert s.get_weights(20000) == pytest.approx({"a": 0.5, "b": 0.5})
    cos = WeightSchedule(s.points, "cosine")
    assert cos.get_weights(5000) == pytest.approx({"a": 0.35, "b": 0.65})
    assert cos.get_weights(2500)["a"] == pytest.approx(0.2 + 0.3 * (1 - np.cos(np.pi / 4)) / 2)
    step = WeightSchedule(s.points, "step")
    assert step.get_weights(9999) == pytest.approx({"a": 0.2, "b": 0.8})
    assert step.get_weights(10000) == pytest.approx({"a": 0.5, "b": 0.5})


def test_schedule_points_are_in_optimizer_steps() -> None:
    s = WeightSchedule(((0, Mixture({"a": 0.0, "b": 1.0})), (10, Mixture({"a": 1.0, "b": 0.0}))), "step", 32)
    targets = s.targets(640)
    unit, _ = exact_stream(targets, 640)
    assert not np.any(unit[: 10 * 32] == 0)  # steps 0..9 are all b
    assert np.all(unit[10 * 32 :] == 0)


def test_benchmark_weights_match_megatron_accuracy() -> None:
    """Rational weights repeat one period that starts and ends on target: drift 0.75 vs Megatron's 0.708."""
    targets = static(BENCH_WEIGHTS)
    unit, count = exact_stream(targets, 200_000)
    ours = max_drift(unit, targets)
    theirs = max_drift(megatron_stream(np.array(BENCH_WEIGHTS), 200_000)[0], targets)
    assert ours <= 0.75 + 1e-9
    assert theirs == pytest.approx(0.7083, abs=1e-3)
    check_counts(unit, count, len(BENCH_WEIGHTS))


def test_irrational_weights_use_lanes_and_stay_within_one_sample() -> None:
    w = np.random.default_rng(5).random(8)
    targets = static(list(w))
    unit, count = exact_stream(targets, 300_000, config=EngineConfig(split_tree=False))
    assert max_drift(unit, targets) <= 1.0 + 1e-9
    check_counts(unit, count, 8)


def test_megatron_greedy_can_drift_past_one_sample() -> None:
    """Why the exact mode exists: megatron-core's greedy goes past one sample on skewed weights (ours never)."""
    w = [0.9, 0.05, 0.02, 0.01, 0.01, 0.005, 0.005]
    targets = static(w)
    theirs = max_drift(megatron_stream(np.array(w), 20_000)[0], targets)
    ours = max_drift(exact_stream(targets, 20_000)[0], targets)
    assert theirs > 1.0
    assert ours <= 1.0 + 1e-9


def test_stream_is_a_prefix_of_a_longer_stream() -> None:
    """The same spec with more samples extends the stream: N is not part of any earlier choice."""
    targets = static([0.31, 0.27, 0.42])
    short, _ = exact_stream(targets, 5_000, config=EngineConfig(block=128))
    long, _ = exact_stream(targets, 9_000, config=EngineConfig(block=128))
    assert np.array_equal(short, long[:5_000])
