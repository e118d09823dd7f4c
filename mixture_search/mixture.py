"""The `Mixture` value: an ordered mapping of domain name -> weight.

Weights are kept exactly as given (so formats round-trip losslessly) and normalised exactly as
Megatron-Core does it (`megatron.core.datasets.utils.normalize`: float64 weight / float64 sum).
Order is part of the value: Megatron's blending breaks ties by position, so two orderings give two
different sample streams.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from mixture_search.errors import MixtureError
from mixture_search.keys import content_key

#: digits of the normalised weights that enter the content key; 1e-9 is far below any weight a
#: sampler or a person would tell apart, and far above float64 noise from renormalising.
KEY_DIGITS = 9


def normalize(weights: Iterable[float]) -> list[float]:
    """Megatron-Core's normalisation, bit for bit: float64 weights divided by their float64 sum."""
    w = np.array(list(weights), dtype=np.float64)
    return (w / np.sum(w)).tolist()


def check_weight(value: Any, where: str) -> float:
    """A weight as a float, or a one-line error naming `where`. Bools and strings are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise MixtureError(f"weight {value!r} is not a number", where=where)
    weight = float(value)
    if math.isnan(weight):
        raise MixtureError("weight is NaN", where=where)
    if math.isinf(weight):
        raise MixtureError(f"weight is {weight} (must be finite)", where=where)
    if weight < 0:
        raise MixtureError(f"weight {weight!r} is negative", where=where)
    return weight


class Mixture(Mapping[str, float]):
    """An immutable, ordered domain -> weight mapping.

    `m[name]` and iteration give the raw weights as given; `normalized` gives weight / sum as Megatron
    uses them. Equality and hashing use the content `key` (names in order + normalised weights rounded
    to `KEY_DIGITS`), so `Mixture({"a": 1, "b": 3}) == Mixture({"a": 0.25, "b": 0.75})`.
    """

    __slots__ = ("_key", "_names", "_normalized", "_weights")

    def __init__(self, weights: Mapping[str, Any] | Iterable[tuple[str, Any]], *, where: str = "") -> None:
        items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
        if not items:
            raise MixtureError("mixture has no domains", where=where or None)
        names: list[str] = []
        values: list[float] = []
        seen: set[str] = set()
        for name, value in items:
            if not isinstance(name, str) or not name.strip():
                raise MixtureError(f"domain name {name!r} must be a non-empty string", where=where or None)
            label = f"{where}[{name}]" if where else name
            if name in seen:
                raise MixtureError("duplicate domain", where=label)
            seen.add(name)
            names.append(name)
            values.append(check_weight(value, label))
        if sum(values) <= 0:
            raise MixtureError(f"all {len(values)} weights are zero", where=where or None)
        self._names: tuple[str, ...] = tuple(names)
        self._weights: tuple[float, ...] = tuple(values)
        self._normalized: tuple[float, ...] = tuple(normalize(values))
        payload = [[n, round(w, KEY_DIGITS) + 0.0] for n, w in zip(self._names, self._normalized)]
        self._key = content_key(payload, sort_keys=False)

    # -- constructors -----------------------------------------------------------------------------
    @classmethod
    def uniform(cls, names: Iterable[str]) -> Mixture:
        return cls({n: 1.0 for n in names})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "") -> Mixture:
        """Inverse of `to_dict`: accepts `{name: weight}` or `{"weights": {name: weight}, ...}`."""
        if "weights" in data and isinstance(data["weights"], Mapping):
            return cls(data["weights"], where=f"{where}.weights" if where else "weights")
        return cls(data, where=where)

    # -- mapping protocol -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> float:
        try:
            return self._weights[self._names.index(name)]
        except ValueError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    # -- value semantics --------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def weights(self) -> tuple[float, ...]:
        """Raw weights, exactly as given."""
        return self._weights

    @property
    def pairs(self) -> tuple[tuple[str, float], ...]:
        """(name, raw weight) in order: compare these to check a lossless round trip."""
        return tuple(zip(self._names, self._weights))

    @property
    def normalized(self) -> tuple[float, ...]:
        """weight / sum in float64, exactly as Megatron-Core normalises a blend."""
        return self._normalized

    @property
    def key(self) -> str:
        """Stable content key for caches and run ids: 16 hex digits of sha256(names, rounded shares)."""
        return self._key

    def share(self, name: str) -> float:
        return self._normalized[self._names.index(name)]

    def as_normalized(self) -> Mixture:
        return Mixture(zip(self._names, self._normalized))

    def to_dict(self) -> dict[str, float]:
        """Raw weights as an ordered plain dict (`Mixture.from_dict(m.to_dict()) == m`, weights exact)."""
        return dict(zip(self._names, self._weights))

    def to_array(self, names: Iterable[str] | None = None) -> np.ndarray:
        """Normalised weights as float64, in `names` order (missing names are 0)."""
        if names is None:
            return np.array(self._normalized)
        return np.array([self.share(n) if n in self._names else 0.0 for n in names])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mixture):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={w:.4g}" for n, w in zip(self._names, self._normalized))
        if len(self._names) > 8:
            head = ", ".join(f"{n}={w:.4g}" for n, w in list(zip(self._names, self._normalized))[:6])
            body = f"{head}, ... ({len(self._names)} domains)"
        return f"Mixture({body})"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray/Prefect boundaries
        return (Mixture, (list(zip(self._names, self._weights)),))
