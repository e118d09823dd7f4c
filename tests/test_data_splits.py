"""The split-tree path of the blending engine (static float weights): within one sample, checked up front."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trainers.data import splits
from trainers.data.engine import EngineConfig, exact_stream, max_drift
from trainers.data.schedule import Targets


def static(weights: list[float]) -> Targets:
    w = np.asarray(weights, dtype=np.float64)
    return Targets.from_segments(np.array([0]), (w / w.sum())[None, :])


def stream(tree: splits.Tree, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    unit = np.full(n, -1, dtype=np.int16)
    count = np.full(n, -1, dtype=np.int64)
    for lo in range(0, n, splits.CHUNK):
        hi = min(n, lo + splits.CHUNK)
        splits.fill(tree, lo, hi, k, unit[lo:hi], count[lo:hi])
    return unit, count


def assert_numbered(unit: np.ndarray, count: np.ndarray, k: int) -> None:
    assert unit.min(initial=0) >= 0 and unit.max(initial=0) < k  # every slot filled
    for i in range(k):
        mine = count[unit == i]
        assert np.array_equal(mine, np.arange(len(mine)))


positive = st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=12)


@settings(max_examples=80, deadline=None)
@given(weights=positive, n=st.integers(1, 3 * (1 << 16) + 7))
def test_split_tree_keeps_every_prefix_within_its_bound(weights: list[float], n: int) -> None:
    w = np.asarray(weights) / sum(weights)
    tree = splits.build_tree(w)
    if tree is None:
        return
    bound = splits.bound(tree, w)
    assert bound < 1.0
    unit, count = stream(tree, n, len(w))
    assert max_drift(unit, static(weights)) <= bound + 1e-9
    assert_numbered(unit, count, len(w))


def test_benchmark_float_weights_take_the_tree_and_match_counts_at() -> None:
    w = np.array([7, 5, 4, 3, 2, 1.5, 1, 0.5]) / 24
    w = w * (1 + 1e-6 * np.random.default_rng(0).standard_normal(8))
    tree = splits.build_tree(w)
    assert tree is not None
    n = 2 * splits.CHUNK + 123
    unit, count = exact_stream(static(list(w)), n)
    assert max_drift(unit, static(list(w))) <= 1.0
    assert_numbered(unit, count, 8)
    expected = np.bincount(unit[:100_000].astype(np.int64), minlength=8)
    assert np.array_equal(splits.counts_at(tree, 100_000, 8), expected)
    # the same stream as the tree itself gives, chunk by chunk
    assert np.array_equal(unit, stream(tree, n, 8)[0])


def test_a_tree_past_the_bound_drifts_and_is_never_chosen() -> None:
    """Why the bound is checked: splitting a heavy domain off last, under the light ones, drifts 1.8 samples."""
    w = np.array([0.9, 0.05, 0.02, 0.01, 0.01, 0.005, 0.005])
    chain: splits.Tree = 0
    for i in range(1, len(w)):
        chain = splits._node(chain, i, w)
    assert splits.bound(chain, w) > 1.0
    unit, _ = stream(chain, 20_000, len(w))
    assert max_drift(unit, static(list(w))) > 1.0
    chosen = splits.build_tree(w)
    assert chosen is not None and splits.bound(chosen, w) < 1.0
    assert max_drift(exact_stream(static(list(w)), 20_000)[0], static(list(w))) <= 1.0


def test_tree_stream_is_a_prefix_of_a_longer_stream() -> None:
    targets = static([0.31, 0.27, 0.42, 0.113])
    short, _ = exact_stream(targets, 70_001)
    long, _ = exact_stream(targets, 140_000)
    assert np.array_equal(short, long[:70_001])


def test_tree_and_lanes_both_hold_the_bound_on_the_same_weights() -> None:
    targets = static(list(np.random.default_rng(3).random(9)))
    for cfg in (EngineConfig(), EngineConfig(split_tree=False)):
        unit, count = exact_stream(targets, 50_000, config=cfg)
        assert max_drift(unit, targets) <= 1.0 + 1e-9
        assert_numbered(unit, count, 9)
