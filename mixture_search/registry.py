"""Named registries (samplers, surrogates) with typed, validated options.

One narrow protocol per registry; the CLI and the sweep pick an entry by name and pass options as
keywords. Each entry's options are a frozen dataclass, so an unknown or ill-typed option fails at
construction with a one-line `SearchError` naming it, never deep inside a run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from mixture_search.errors import SearchError

T = TypeVar("T")
OptionsT = TypeVar("OptionsT")


class Registry(Generic[T]):
    """name -> factory, with a one-line description of each for `--help`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[Callable[..., T], str]] = {}

    def register(self, name: str, *, help: str) -> Callable[[Any], Any]:
        def decorate(factory: Any) -> Any:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = (factory, help)
            return factory

        return decorate

    def build(self, name: str, /, **kwargs: Any) -> T:
        if name not in self._entries:
            raise SearchError(f"unknown {self.kind} {name!r} (choose from {', '.join(self._entries)})")
        return self._entries[name][0](**kwargs)

    def factory(self, name: str, /) -> Callable[..., T]:
        """The registered factory (for surrogates, the class: its `Options` say what it accepts)."""
        if name not in self._entries:
            raise SearchError(f"unknown {self.kind} {name!r} (choose from {', '.join(self._entries)})")
        return self._entries[name][0]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def describe(self) -> dict[str, str]:
        return {name: help for name, (_, help) in self._entries.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def make_options(cls: type[OptionsT], values: Mapping[str, Any], owner: str) -> OptionsT:
    """`cls(**values)` with one-line errors for unknown names and wrong types (ints pass for floats)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise SearchError(f"unknown option {key!r} (options: {known})", where=owner)
        if not _type_ok(value, hints[key]):
            raise SearchError(f"option {key}={value!r} should be {_type_name(hints[key])}", where=owner)
    return cls(**values)


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        return isinstance(value, (tuple, list))
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def check_range(value: float, name: str, owner: str, *, low: float | None = None, high: float | None = None) -> None:
    """One-line error unless low <= value <= high (either end optional)."""
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise SearchError(f"option {name}={value!r} must be in {span}", where=owner)
