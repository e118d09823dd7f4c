from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixture_search.errors import MixtureError
from mixture_search.mixture import Mixture, normalize

weights_st = st.lists(
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=30
).filter(lambda ws: sum(ws) > 0)


def test_normalisation_is_megatrons_bit_for_bit() -> None:
    from megatron.core.datasets.utils import normalize as megatron_normalize

    weights = [1.1068, 0.3577, 0.7775, 10.1376, 0.0143, 3.0]
    assert Mixture({f"d{i}": w for i, w in enumerate(weights)}).normalized == tuple(megatron_normalize(weights))
    assert normalize(weights) == megatron_normalize(weights)


def test_value_semantics() -> None:
    a = Mixture({"code": 1, "web": 3})
    b = Mixture({"code": 0.25, "web": 0.75})
    assert a == b and hash(a) == hash(b) and a.key == b.key
    assert a.weights == (1.0, 3.0) and b.weights == (0.25, 0.75)  # raw weights kept
    assert Mixture({"web": 3, "code": 1}) != a  # order is part of the value (Megatron breaks ties by position)
    assert Mixture({"code": 1, "web": 3.0001}) != a
    assert list(a) == ["code", "web"] and a["web"] == 3.0 and len(a) == 2
    with pytest.raises(TypeError):
        a["code"] = 2  # type: ignore[index]
    with pytest.raises(AttributeError):
        a.foo = 1  # type: ignore[attr-defined]


def test_key_is_stable_across_processes_and_versions() -> None:
    # A cache key must never change silently: this literal pins the recipe (sha256 of names + shares at 9 digits).
    assert Mixture({"code": 1, "web": 3}).key == Mixture.from_dict({"code": 0.25, "web": 0.75}).key
    assert Mixture({"code": 1, "web": 3}).key == "50733e83d5196c25"


def test_pickle_and_dict_round_trip() -> None:
    m = Mixture({"a": 0.1, "b": 0.2, "c": 0.7})
    assert pickle.loads(pickle.dumps(m)).pairs == m.pairs
    assert Mixture.from_dict(m.to_dict()).pairs == m.pairs
    assert Mixture.from_dict({"weights": m.to_dict()}) == m


def test_repr_and_helpers() -> None:
    m = Mixture({"a": 1, "b": 1, "c": 2})
    assert repr(m) == "Mixture(a=0.25, b=0.25, c=0.5)"
    assert "(20 domains)" in repr(Mixture.uniform([f"d{i}" for i in range(20)]))
    np.testing.assert_allclose(m.to_array(["c", "x", "a"]), [0.5, 0.0, 0.25])
    assert m.as_normalized().weights == (0.25, 0.25, 0.5)
    assert m.share("c") == 0.5


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a": -1, "b": 1}, "a: weight -1.0 is negative"),
        ({"a": math.nan, "b": 1}, "a: weight is NaN"),
        ({"a": math.inf, "b": 1}, "must be finite"),
        ({"a": 0, "b": 0.0}, "all 2 weights are zero"),
        ({"a": "0.5"}, "a: weight '0.5' is not a number"),
        ({"a": True}, "a: weight True is not a number"),
        ({}, "mixture has no domains"),
        ([("a", 1), ("a", 2)], "a: duplicate domain"),
        ({"": 1}, "must be a non-empty string"),
    ],
)
def test_rejects_bad_weights(weights: object, message: str) -> None:
    with pytest.raises(MixtureError) as info:
        Mixture(weights)  # type: ignore[arg-type]
    assert message in str(info.value)


@given(weights_st)
def test_round_trips_exactly_and_normalises(weights: list[float]) -> None:
    m = Mixture({f"d{i}": w for i, w in enumerate(weights)})
    assert Mixture.from_dict(m.to_dict()).weights == m.weights
    assert math.isclose(sum(m.normalized), 1.0, rel_tol=1e-9)
    assert all(0 <= s <= 1 for s in m.normalized)
    scaled = Mixture({f"d{i}": w * 8.0 for i, w in enumerate(weights)})  # powers of two scale exactly
    assert scaled == m
