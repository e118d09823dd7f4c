"""Mixture weights that change over training, and the per-sample targets the blending engine follows.

A `WeightSchedule` holds points `(optimizer step, Mixture)` and an interpolation (`step`, `linear`, `cosine`), with
the semantics of EasyDeL's `WeightScheduler.get_weights(step)`: before the first point its weights hold, after the
last point the last weights hold, and in between

* `step`   keeps the weights of the point at or before `step`,
* `linear` moves on a straight line (0.2/0.8 at step 0 and 0.5/0.5 at 10000 give 0.35/0.65 at 5000),
* `cosine` moves on a half cosine, `w0 + (w1 - w0) * (1 - cos(pi * t)) / 2`.

Points are in optimizer steps, not examples: `samples_per_step` (the global batch size) turns them into positions
in the sample stream. Within one optimizer step the weights are constant, so the cumulative target of every domain
is a piecewise-linear function of the sample index; `Targets` holds it in closed form (segment starts, weights and
cumulative sums), which is all the blending engine needs to keep every prefix within one sample of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mixture_search.errors import MixtureError
from mixture_search.keys import content_key
from mixture_search.mixture import Mixture
from trainers.data.errors import DataError

Interpolation = Literal["step", "linear", "cosine"]
INTERPOLATIONS: tuple[Interpolation, ...] = ("step", "linear", "cosine")
#: above this many optimizer steps the per-step weights are averaged over groups of steps (exact at group ends)
MAX_SEGMENTS = 1 << 20


@dataclass(frozen=True)
class WeightSchedule:
    """Points `(step, Mixture)` in strictly increasing steps, all naming the same domains."""

    points: tuple[tuple[int, Mixture], ...]
    interpolation: Interpolation = "linear"
    samples_per_step: int = 1

    def __post_init__(self) -> None:
        if not self.points:
            raise MixtureError("schedule has no points", where="schedule.points")
        if self.interpolation not in INTERPOLATIONS:
            raise MixtureError(
                f"unknown interpolation {self.interpolation!r} (use one of {', '.join(INTERPOLATIONS)})",
                where="schedule.interpolation",
            )
        if isinstance(self.samples_per_step, bool) or not isinstance(self.samples_per_step, int):
            raise MixtureError(
                "must be an integer (the global batch size in samples)", where="schedule.samples_per_step"
            )
        if self.samples_per_step < 1:
            raise MixtureError(f"{self.samples_per_step} must be >= 1", where="schedule.samples_per_step")
        first = self.points[0][1]
        prev = -1
        for i, (step, mix) in enumerate(self.points):
            where = f"schedule.points[{i}]"
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise MixtureError(f"step {step!r} must be a non-negative integer", where=f"{where}.step")
            if step <= prev:
                raise MixtureError(
                    f"step {step} is not after the previous point's step {prev} (points must be in increasing steps)",
                    where=f"{where}.step",
                )
            prev = int(step)
            if not isinstance(mix, Mixture):
                raise MixtureError("weights must be a Mixture", where=f"{where}.weights")
            if set(mix.names) != set(first.names):
                extra = sorted(set(mix.names) - set(first.names))
                missing = sorted(set(first.names) - set(mix.names))
                raise MixtureError(
                    f"names other domains than points[0] (extra {extra}, missing {missing})", where=f"{where}.weights"
                )

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def constant(cls, mixture: Mixture, samples_per_step: int = 1) -> WeightSchedule:
        return cls(((0, mixture),), "step", samples_per_step)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "schedule") -> WeightSchedule:
        """`{interpolation, samples_per_step, points: [{step, weights: {domain: w}}]}` as written by `to_dict`."""
        if not isinstance(data, Mapping):
            raise MixtureError("schedule must be a mapping with 'points'", where=where)
        unknown = set(data) - {"interpolation", "samples_per_step", "points", "name"}
        if unknown:
            raise MixtureError(f"unknown keys {sorted(unknown)}", where=where)
        raw = data.get("points")
        if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not raw:
            raise MixtureError("'points' must be a non-empty list of {step, weights}", where=f"{where}.points")
        points = []
        for i, p in enumerate(raw):
            pw = f"{where}.points[{i}]"
            if not isinstance(p, Mapping) or "step" not in p or "weights" not in p:
                raise MixtureError("each point needs 'step' and 'weights'", where=pw)
            if not isinstance(p["weights"], Mapping):
                raise MixtureError("weights must map domain -> weight", where=f"{pw}.weights")
            points.append((p["step"], Mixture(p["weights"], where=f"{pw}.weights")))
        order = [n for n in points[0][1].names]
        points = [(s, Mixture((n, m[n]) for n in order) if set(m.names) == set(order) else m) for s, m in points]
        return cls(
            tuple(points),
            data.get("interpolation", "linear"),
            data.get("samples_per_step", 1),
        )

    @classmethod
    def from_phases(
        cls, phases: Sequence[tuple[float, Mixture]], total_steps: int, samples_per_step: int, *, ramp: float = 0.0
    ) -> WeightSchedule:
        """A run in phases (`(until, mixture)`, the last until 1.0, as `mixture_search.Schedule` holds
        them) over `total_steps` steps: a step change at each boundary (`round(until * total_steps)`), or
        with `ramp` (a fraction of the run) a linear ramp over about that many steps (an odd number)
        centred on it. Centred, so every domain draws the same samples over the run as with the step
        change (the ramp's two halves trade equal amounts); it is cut to fit the phases it joins, and left
        out (a step change) where a phase is too short for one."""
        if not phases:
            raise MixtureError("no phases", where="schedule.phases")
        ends = [round(float(u) * total_steps) for u, _ in phases[:-1]]
        starts = [0, *ends, total_steps]
        lengths = np.diff(starts)
        if (lengths <= 0).any():
            raise MixtureError(
                f"phase ends {[float(u) for u, _ in phases]} leave a phase without a step of a {total_steps}-step run",
                where="schedule.phases",
            )
        # the ramp runs over the 2h + 1 steps b - h - 1 .. b + h - 1 (weights are per step, at its start):
        # the next phase's share of those steps is h, as with the step change at b
        half = min((round(ramp * total_steps) - 1) // 2, (int(lengths.min()) - 2) // 2) if ramp > 0 else 0
        if half <= 0:
            return cls(tuple((s, m) for s, (_, m) in zip(starts, phases)), "step", samples_per_step)
        points: list[tuple[int, Mixture]] = [(0, phases[0][1])]
        for b, (_, before), (_, after) in zip(ends, phases, phases[1:]):
            points += [(b - half - 1, before), (b + half, after)]
        return cls(tuple(points), "linear", samples_per_step)

    def to_dict(self) -> dict[str, Any]:
        return {
            "interpolation": self.interpolation,
            "samples_per_step": self.samples_per_step,
            "points": [{"step": int(s), "weights": m.to_dict()} for s, m in self.points],
        }

    # -- values -----------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self.points[0][1].names

    @property
    def is_constant(self) -> bool:
        shares = {m.as_normalized().key for _, m in self.points}
        return len(shares) == 1

    @property
    def key(self) -> str:
        payload = [
            self.interpolation,
            self.samples_per_step,
            [[int(s), list(m.to_array(self.names))] for s, m in self.points],
        ]
        return content_key(payload, sort_keys=False)

    def weights_at(self, steps: np.ndarray | Sequence[float]) -> np.ndarray:
        """Normalised weights at each step, shape (len(steps), domains); rows sum to 1."""
        s = np.asarray(steps, dtype=np.float64)
        xs = np.array([p[0] for p in self.points], dtype=np.float64)
        ys = np.stack([m.to_array(self.names) for _, m in self.points])
        if len(xs) == 1:
            return np.broadcast_to(ys[0], (len(s), len(self.names))).copy()
        seg = np.clip(np.searchsorted(xs, s, side="right") - 1, 0, len(xs) - 2)
        t = np.clip((s - xs[seg]) / (xs[seg + 1] - xs[seg]), 0.0, 1.0)
        if self.interpolation == "step":
            t = np.where(s >= xs[seg + 1], 1.0, 0.0)
        elif self.interpolation == "cosine":
            t = (1.0 - np.cos(math.pi * t)) / 2.0
        out = ys[seg] + t[:, None] * (ys[seg + 1] - ys[seg])
        out = np.clip(out, 0.0, None)
        return out / out.sum(axis=1, keepdims=True)

    def get_weights(self, step: int) -> dict[str, float]:
        """EasyDeL's `get_weights(step)`: domain -> normalised weight at an optimizer step."""
        return dict(zip(self.names, self.weights_at([step])[0].tolist()))

    def targets(self, num_samples: int | None = None) -> Targets:
        """Cumulative per-domain targets of the sample stream (valid for any length; the last segment runs on).

        Weights are constant within an optimizer step, so segments start at the steps where they change: the
        points for `step` interpolation, every step between the first and last point otherwise (groups of steps,
        averaged, past `MAX_SEGMENTS`: the target is then exact at every group end). `num_samples` is unused and
        kept for call sites that know the length.
        """
        del num_samples
        g = self.samples_per_step
        if self.is_constant:
            w = self.points[0][1].to_array(self.names)[None, :]
            return Targets.from_segments(np.array([0], dtype=np.int64), w)
        first, last = int(self.points[0][0]), int(self.points[-1][0])
        if self.interpolation == "step":
            steps = np.array(sorted({0, *(int(p[0]) for p in self.points)}), dtype=np.int64)
            return Targets.from_segments(steps * g, self.weights_at(steps))
        span = last - first
        group = max(1, -(-span // MAX_SEGMENTS))
        inner = np.arange(first, last, group, dtype=np.int64)
        if group == 1:
            w_inner = self.weights_at(inner)
        else:  # mean of each group's per-step weights: the cumulative target is exact at every group end
            w_inner = np.stack(
                [self.weights_at(np.arange(int(s), min(int(s) + group, last))).mean(axis=0) for s in inner]
            )
            w_inner /= w_inner.sum(axis=1, keepdims=True)
        starts = [np.array([0], dtype=np.int64)] if first > 0 else []
        weights = [self.weights_at([0])] if first > 0 else []
        starts += [inner, np.array([last], dtype=np.int64)]
        weights += [w_inner, self.weights_at([last])]
        return Targets.from_segments(np.concatenate(starts) * g, np.vstack(weights))


@dataclass(frozen=True)
class Targets:
    """Piecewise-linear cumulative targets: segment j covers samples [starts[j], starts[j+1]) at weights[j].

    `cum[j]` is the target count of every domain after `starts[j]` samples. The last segment runs forever.
    """

    starts: np.ndarray  # int64 (S,), starts[0] == 0
    weights: np.ndarray  # float64 (S, K), rows sum to 1
    cum: np.ndarray  # float64 (S, K)

    @classmethod
    def from_segments(cls, starts: np.ndarray, weights: np.ndarray) -> Targets:
        starts = np.asarray(starts, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float64)
        if len(starts) == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0):
            raise ValueError("segment starts must begin at 0 and increase")
        cum = np.zeros_like(weights)
        if len(starts) > 1:
            np.cumsum(np.diff(starts)[:, None] * weights[:-1], axis=0, out=cum[1:])
        return cls(starts, weights, cum)

    @property
    def domains(self) -> int:
        return int(self.weights.shape[1])

    @property
    def is_static(self) -> bool:
        return len(self.starts) == 1

    def at(self, n: np.ndarray) -> np.ndarray:
        """Targets after n samples, shape (len(n), K)."""
        n = np.asarray(n, dtype=np.int64)
        seg = np.searchsorted(self.starts, n, side="right") - 1
        return self.cum[seg] + (n - self.starts[seg])[:, None] * self.weights[seg]

    def first_reaching(self, domain: int, y: np.ndarray, *, strict: bool = False) -> np.ndarray:
        """Smallest n with target(n) >= y (or > y when strict), as float64 (inf where never).

        Used for release times and deadlines of the blending engine and for exhaustion and epoch caps.
        """
        y = np.asarray(y, dtype=np.float64)
        w = self.weights[:, domain]
        c = self.cum[:, domain]
        # segment whose cumulative start is below y (at or below it when strict)
        j = np.searchsorted(c, y, side="right" if strict else "left") - 1
        j = np.maximum(j, 0)
        out = np.empty_like(y)
        wj = w[j]
        base = c[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            need = (y - base) / wj
        n = np.maximum(np.floor(need) + 1.0 if strict else np.ceil(need), 0.0)
        seg_end = np.append(self.starts[1:], np.iinfo(np.int64).max).astype(np.float64)[j]
        n = self.starts[j] + n
        ok = (wj > 0) & (n <= seg_end)
        out[:] = np.where(ok, n, np.inf)
        # y at or below the start of the stream
        out[y <= 0 if not strict else y < 0] = 0.0
        # a segment that cannot reach y (zero weight or overshoot by float noise) hands over to the next one
        bad = ~ok & ~(y <= 0 if not strict else y < 0)
        if np.any(bad):
            for idx in np.flatnonzero(bad):
                out[idx] = self._scan(domain, float(y[idx]), strict, int(j[idx]))
        return out

    def first_reaching_run(self, domain: int, y0: float, count: int, *, strict: bool = False) -> np.ndarray:
        """`first_reaching` for y = y0, y0 + 1, ..., y0 + count - 1 in O(count + segments): the segment of each y
        comes from where the run crosses each segment's cumulative start, not from a search per y."""
        w = self.weights[:, domain]
        c = self.cum[:, domain]
        i = np.arange(count, dtype=np.float64)
        y = y0 + i
        # first index i whose y passes c_j (y > c_j for >=, y >= c_j for >)
        cross = np.floor(c - y0) + 1.0 if not strict else np.ceil(c - y0)
        cross = np.clip(cross, 0, count).astype(np.int64)
        j = np.cumsum(np.bincount(cross, minlength=count + 1))[:count] - 1
        j = np.maximum(j, 0)
        wj = w[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            need = (y - c[j]) / wj
        n = np.maximum(np.floor(need) + 1.0 if strict else np.ceil(need), 0.0) + self.starts[j]
        ends = np.append(self.starts[1:], np.iinfo(np.int64).max).astype(np.float64)
        n = np.minimum(n, ends[j])  # float noise past a segment end: the end itself reaches y
        n = np.where(wj > 0, n, np.inf)
        n[y <= 0 if not strict else y < 0] = 0.0
        return n

    def _scan(self, domain: int, y: float, strict: bool, j: int) -> float:
        w = self.weights[:, domain]
        c = self.cum[:, domain]
        for k in range(j, len(self.starts)):
            if w[k] <= 0:
                continue
            need = (y - c[k]) / w[k]
            n = math.floor(need) + 1.0 if strict else math.ceil(need)
            n = max(n, 0.0)
            end = self.starts[k + 1] if k + 1 < len(self.starts) else math.inf
            if self.starts[k] + n <= end:
                return float(self.starts[k] + n)
        return math.inf

    def check(self, where: str = "weights") -> None:
        if not np.all(np.isfinite(self.weights)) or np.any(self.weights < 0):
            raise DataError("weights must be finite and >= 0", where=where)
