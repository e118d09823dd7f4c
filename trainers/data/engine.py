"""The blending engine: which domain each sample of the stream comes from, within one sample of the target.

Goal: at every prefix of the stream, each domain's count is within one sample of its cumulative target (weight x
prefix length for static weights, the integral of the scheduled weights otherwise). Megatron's
`build_blending_indices` gets there with a compiled greedy loop over samples; this module gets there in numpy.

Three paths, chosen from the targets alone (never from the stream length, so a longer stream extends a shorter
one): static weights that are ratios of small integers repeat one exact period (`_periodic`); other static weights
use a tree of two-way splits whose bound is checked up front (`splits.py`, the fastest general path); schedules,
and the rare static weights no split tree can bound, run the lanes below.

How. The k-th sample of a domain is a unit job with a *window* of slots in which taking it keeps the domain within
`delta` of its target: not before the target reaches k - delta (release), not after it passes k - 1 + delta
(deadline). With delta = 1 the windows always admit a schedule, and earliest-deadline-first (EDF) finds one.

EDF is sequential, so the stream is cut into blocks of `block` slots that run side by side as vectorised *lanes*
(one numpy step advances every block by one slot):

1. the state (per-domain counts) at each block boundary is the state an EDF run reaches there after a warm-up of
   `warmup` slots started from a rounding of the targets; an EDF state is one from which the rest of the stream
   can still be scheduled, and after a warm-up longer than two periods of the rarest domain it is also reachable
   from the state one block earlier;
2. each block then runs EDF from its start state to its end state (jobs past the block's quota are not offered,
   deadlines are clipped to the block's end);
3. a first pass uses tighter windows (`tight_delta`, as accurate as Megatron's greedy on typical weights) and
   redoes with delta = 1 the lanes where those admit no schedule. A boundary that cannot be joined to the previous
   one (rare, with tiny or zero weights) is recomputed as the plain EDF continuation of the previous block.

Work is O(domains x samples) in a few array passes per slot, with `block + warmup` Python steps per chunk.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from trainers.data import splits
from trainers.data.schedule import Targets

SHIFT = 15  # key = (relative deadline << SHIFT) | domain, in int32
MASK = (1 << SHIFT) - 1
MAX_REL = (1 << SHIFT) - 1  # relative deadlines are clipped to [-2**14, MAX_REL]
PEN = np.int32(1 << 30)  # added to the key of a job not yet released
BIG = np.int32(np.iinfo(np.int32).max)  # key of a domain whose block quota is used up
HUGE = np.int64(1) << 55  # "never" as a slot number
MAX_DOMAINS = 32767  # int16 domain ids, as Megatron's dataset_index
MAX_BLOCK = 1 << 14


@dataclass(frozen=True)
class EngineConfig:
    block: int = 256
    chunk_blocks: int = 1 << 15
    tight_delta: float = 0.75
    max_period: int = 1 << 14
    #: static weights use a tree of two-way splits (`splits.py`) when its bound allows; False forces the lanes
    split_tree: bool = True


class _Clock:
    """Release and deadline slots (1-based) of job k of domain d, for windows of half-width `delta`."""

    def __init__(self, targets: Targets, delta: float, lo: np.ndarray, hi: np.ndarray) -> None:
        self.delta = delta
        self.static = targets.is_static
        if self.static:
            self.inv = 1.0 / targets.weights[0]
            return
        # tables for jobs lo[d] .. hi[d] of each domain (piecewise targets: one search per job)
        k = targets.domains
        sizes = (hi - lo + 1).astype(np.int64)
        self.offsets = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.offsets[1:])
        self.lo = lo.astype(np.int64)
        self.rel_tab = np.empty(self.offsets[-1], dtype=np.int64)
        self.dl_tab = np.empty(self.offsets[-1], dtype=np.int64)
        for i in range(k):
            m = int(hi[i] - lo[i] + 1)
            if delta >= 1.0:
                r = targets.first_reaching_run(i, float(lo[i]) - 1.0, m, strict=True)
            else:
                r = targets.first_reaching_run(i, float(lo[i]) - delta, m)
            d = targets.first_reaching_run(i, float(lo[i]) - 1.0 + delta, m, strict=True)
            s = slice(self.offsets[i], self.offsets[i + 1])
            self.rel_tab[s] = np.minimum(r, float(HUGE)).astype(np.int64)
            self.dl_tab[s] = np.minimum(d, float(HUGE)).astype(np.int64)

    def slots(self, d: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.static:  # every weight is positive here (zero-weight domains are taken out before)
            inv = self.inv[d]
            kf = k.astype(np.float64)
            kf -= 1.0
            if self.delta >= 1.0:
                r = np.floor(kf * inv)
                r += 1.0
            else:
                r = np.ceil((kf + (1.0 - self.delta)) * inv)
            kf += self.delta
            kf *= inv
            dl = np.floor(kf, out=kf)
            dl += 1.0
            return r.astype(np.int64), dl.astype(np.int64)
        j = self.offsets[d] + (k - self.lo[d])
        return self.rel_tab[j], self.dl_tab[j]


def _keys(dl: np.ndarray, cap: np.ndarray, a1: np.ndarray, d: np.ndarray) -> np.ndarray:
    rel = np.minimum(dl, cap)
    rel -= a1
    np.clip(rel, -(1 << 14), MAX_REL, out=rel)
    key = rel.astype(np.int32)
    key <<= SHIFT
    key |= d.astype(np.int32)
    return key


@dataclass
class _Ctx:
    """Job tables shared by every lane run of one chunk."""

    clocks: dict[float, _Clock]
    job_range: tuple[np.ndarray, np.ndarray]

    def kw(self) -> dict[str, Any]:
        return {"clocks": self.clocks, "job_range": self.job_range}


def _run_lanes(
    targets: Targets,
    starts: np.ndarray,
    length: int,
    c0: np.ndarray,
    c1: np.ndarray | None,
    delta: float,
    out_unit: np.ndarray | None = None,
    out_count: np.ndarray | None = None,
    check: bool = True,
    clocks: dict[float, _Clock] | None = None,
    job_range: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """EDF over lanes [starts[l], starts[l] + length) from states c0 (L, K), to states c1 when given.

    Writes domain ids / within-domain indices into out_unit / out_count of shape (length, L) when given. Returns
    (fail, final states): fail marks lanes whose windows admitted no schedule (their path is still complete).
    """
    if length > MAX_BLOCK:
        raise ValueError(f"lane length {length} > {MAX_BLOCK}")
    lanes, k = c0.shape
    ar = np.arange(lanes)
    a = starts.astype(np.int64)
    a1 = a + 1
    b = a + length
    # deadlines are clipped to the lane's end when a quota forces completion there; a free run keeps true order
    cap = b if c1 is not None else a1 + MAX_REL
    lo = c0.min(axis=0) + 1
    if c1 is not None:
        hi = c1.max(axis=0) + 1
    else:
        hi = np.ceil(targets.at(np.array([int(b.max())]))[0] + 2.0).astype(np.int64)
        hi = np.maximum(hi, lo)
    if clocks is not None and delta in clocks:
        clock = clocks[delta]
    else:
        if job_range is not None:  # one table for every lane of the chunk (piecewise targets)
            lo, hi = np.minimum(lo, job_range[0]), np.maximum(hi, job_range[1])
        clock = _Clock(targets, delta, lo, hi)
        if clocks is not None:
            clocks[delta] = clock
    c = np.ascontiguousarray(c0.T).astype(np.int64)  # (K, L)
    dom = np.broadcast_to(np.arange(k, dtype=np.int64)[:, None], c.shape)
    r0, d0 = clock.slots(dom.ravel(), (c + 1).ravel())
    rrel = np.clip(r0.reshape(c.shape) - a1[None, :], -1, 1 << 30).astype(np.int32)
    key = _keys(d0.reshape(c.shape), cap[None, :], a1[None, :], dom)
    cend = np.ascontiguousarray(c1.T).astype(np.int64) if c1 is not None else None
    if cend is not None:
        key[c >= cend] = BIG
    cf, rrelf, keyf = c.ravel(), rrel.ravel(), key.ravel()
    cendf = cend.ravel() if cend is not None else None
    fail = np.zeros(lanes, dtype=bool)
    m = np.empty_like(key)
    v = np.empty(lanes, dtype=np.int32)
    fast = clock.static and delta >= 1.0 and c1 is not None
    if fast:
        inv = clock.inv
        a0 = a.astype(np.float64)  # deadline slot floor(k / w) + 1, relative: floor(k / w) - a
        capf = (cap - a1).astype(np.float64)
    for t in range(length):
        # m = key, plus PEN where the job is not released yet (t - rrel < 0): sign bit spread, masked to PEN
        np.subtract(t, rrel, out=m)
        m >>= 31
        m &= PEN
        m |= key
        m.min(axis=0, out=v)
        if check:
            fail |= (v >= PEN) | ((v >> SHIFT) < t)
        d = (v & MASK).astype(np.intp)
        flat = d * lanes + ar
        cc = cf[flat]
        if out_unit is not None:
            out_unit[t] = d
        if out_count is not None:
            out_count[t] = cc
        cc += 1
        cf[flat] = cc
        if fast:
            # static weights, delta = 1: job k+1 is released exactly when job k falls due (both when the target
            # passes k), so the new release is the chosen key's deadline; only the next deadline is computed
            rrelf[flat] = v >> SHIFT
            dl = np.floor((cc + 1) * inv[d])
            dl -= a0
            np.minimum(dl, capf, out=dl)
            kk = dl.astype(np.int32)
            kk <<= SHIFT
            kk |= d.astype(np.int32)
        else:
            r, dl = clock.slots(d, cc + 1)
            r -= a1
            np.clip(r, -1, 1 << 30, out=r)
            rrelf[flat] = r
            kk = _keys(dl, cap, a1, d)
        if cendf is not None:
            kk[cc >= cendf[flat]] = BIG
        keyf[flat] = kk
    # a job due by the lane's last slot and still not done: the end state is outside the windows
    fail |= (key.min(axis=0) >> SHIFT) < length
    return fail, np.ascontiguousarray(c.T)


def _rounded(targets: Targets, ns: np.ndarray) -> np.ndarray:
    """Integer states near the targets at `ns`: floors, plus one for the domains whose next sample is due soonest
    (never for a domain with zero weight there or an integral target). Used only to start warm-up runs."""
    t = targets.at(ns)
    floor = np.floor(t)
    base = floor.astype(np.int64)
    frac = t - floor
    seg = np.searchsorted(targets.starts, ns, side="right") - 1
    rate = targets.weights[seg]
    with np.errstate(divide="ignore", invalid="ignore"):
        due = np.where((rate > 0) & (frac > 1e-12), (1.0 - frac) / rate, np.inf)
    order = np.argsort(due, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(t.shape[1]), order.shape), axis=1)
    extra = ns - base.sum(axis=1)
    return base + (ranks < extra[:, None])


def _warmup(targets: Targets, block: int) -> int:
    w = targets.weights
    pos = w[w > 0]
    rare = float(pos.min()) if len(pos) else 1.0
    return int(min(block, max(32, math.ceil(2.0 / rare) + 2)))


def _period(targets: Targets, limit: int) -> tuple[int, np.ndarray] | None:
    """(Q, p) when static weights are exactly p / Q with Q <= limit (weights like 7:5:4 or 0.35/0.65)."""
    if not targets.is_static:
        return None
    fracs = []
    for x in targets.weights[0].tolist():
        f = Fraction(x).limit_denominator(limit)
        if abs(float(f) - x) > 2 * math.ulp(x):
            return None
        fracs.append(f)
    q = 1
    for f in fracs:
        q = q * f.denominator // math.gcd(q, f.denominator)
        if q > limit:
            return None
    p = np.array([int(f * q) for f in fracs], dtype=np.int64)
    if int(p.sum()) != q:
        return None
    return q, p


def _periodic(targets: Targets, q: int, p: np.ndarray, unit: np.ndarray, count: np.ndarray, tight: float) -> None:
    """Static weights p / Q: one period of Q slots from zero counts to exactly p (EDF with the tightest windows
    that admit a schedule), repeated. Every period starts with zero error, so the bound holds on every prefix."""
    k = len(p)
    pu = np.empty((q, 1), dtype=np.int16)
    pc = np.empty((q, 1), dtype=np.int64)
    zero = np.zeros((1, k), dtype=np.int64)
    for delta in sorted({0.5, 0.625, tight, 0.875, 1.0}):
        if delta > 1.0 or delta < 0.5:
            continue
        fail, _ = _run_lanes(targets, np.array([0]), q, zero, p[None, :], delta, pu, pc)
        if not fail[0]:
            break
    n = len(unit)
    full = n // q
    per = p[pu[:, 0]]  # each slot's domain total per period
    if full:
        unit[: full * q].reshape(full, q)[:] = pu[:, 0]
        c2 = count[: full * q].reshape(full, q)
        np.multiply(np.arange(full, dtype=np.int64)[:, None], per[None, :], out=c2)
        c2 += pc[:, 0]
    rest = n - full * q
    if rest:
        unit[full * q :] = pu[:rest, 0]
        count[full * q :] = full * per[:rest] + pc[:rest, 0]


def exact_stream(
    targets: Targets,
    num_samples: int,
    *,
    config: EngineConfig | None = None,
    out_unit: np.ndarray | None = None,
    out_count: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Domain id (int16) and index within that domain (int64: 0, 1, 2, ... per domain) of every sample.

    Every prefix keeps each domain within one sample of `targets` (see the module docstring). Output arrays may
    be given (e.g. memory-mapped files); they are filled chunk by chunk.
    """
    cfg = config or EngineConfig()
    k = targets.domains
    if k > MAX_DOMAINS:
        raise ValueError(f"at most {MAX_DOMAINS} domains")
    n = int(num_samples)
    unit = out_unit if out_unit is not None else np.empty(n, dtype=np.int16)
    count = out_count if out_count is not None else np.empty(n, dtype=np.int64)
    if n == 0:
        return unit, count
    if targets.is_static and np.any(targets.weights[0] <= 0):
        # domains without weight never appear: blend the others and map their ids back
        live = np.flatnonzero(targets.weights[0] > 0)
        sub = Targets.from_segments(targets.starts, targets.weights[:, live])
        exact_stream(sub, n, config=cfg, out_unit=unit, out_count=count, progress=progress)
        unit[:] = live.astype(np.int16)[unit]
        return unit, count
    tight = cfg.tight_delta
    period = _period(targets, cfg.max_period) if cfg.max_period > 0 else None
    if period is not None:
        _periodic(targets, period[0], period[1], unit, count, tight)
        if progress is not None:
            progress(n)
        return unit, count
    tree = splits.build_tree(targets.weights[0]) if cfg.split_tree and targets.is_static else None
    if tree is not None and n <= splits.MAX_SAMPLES:
        for lo in range(0, n, splits.CHUNK):
            hi = min(n, lo + splits.CHUNK)
            splits.fill(tree, lo, hi, k, unit[lo:hi], count[lo:hi])
            if progress is not None and (hi == n or hi % (1 << 22) == 0):
                progress(hi)
        return unit, count
    block = max(2, min(cfg.block, MAX_BLOCK))  # never depends on n: a longer stream extends a shorter one
    warm = min(_warmup(targets, block), block)
    if tight < 1.0:
        # probe the tight windows on fixed boundaries (independent of n); weights that need the full window
        # skip the tight pass altogether instead of paying for it twice
        probe = block * np.arange(1, 129, dtype=np.int64)
        pf, _ = _run_lanes(targets, probe - warm, warm, _rounded(targets, probe - warm), None, tight)
        if pf.mean() > 0.2:
            tight = 1.0
    nblocks = -(-n // block)
    state = np.zeros(k, dtype=np.int64)
    done = 0  # blocks done
    while done < nblocks:
        nb = min(max(1, cfg.chunk_blocks), nblocks - done)
        pos = done * block
        ends = pos + block * np.arange(1, nb + 1, dtype=np.int64)
        # 1. boundary states from warm-up runs (tight windows first, delta = 1 where those fail)
        wstart = ends - warm
        h = _rounded(targets, wstart)
        top = np.ceil(targets.at(np.array([int(ends[-1])]))[0]).astype(np.int64) + 3
        clocks: dict[float, _Clock] = {}
        ctx = _Ctx(clocks, (np.minimum(state, h.min(axis=0)) + 1, top))
        fail, ends_state = _run_lanes(targets, wstart, warm, h, None, tight, **ctx.kw())
        if fail.any():
            redo = np.flatnonzero(fail)
            fail2, st = _run_lanes(targets, wstart[redo], warm, h[redo], None, 1.0, **ctx.kw())
            ends_state[redo] = st
            fail[redo] = fail2
        # 2. a boundary that failed, or that a count would have to decrease to reach, is replaced by the plain EDF
        #    continuation of the block before it (in order; rare)
        sequential = np.zeros(nb, dtype=bool)
        seq_out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        starts_state = np.vstack([state[None, :], ends_state[:-1]])
        todo = set(np.flatnonzero(fail | np.any(ends_state < starts_state, axis=1)).tolist())
        while todo:
            j = min(todo)
            todo.discard(j)
            if not (fail[j] or np.any(ends_state[j] < starts_state[j])):
                continue
            uu = np.empty((block, 1), dtype=np.int16)
            cc = np.empty((block, 1), dtype=np.int64)
            _, st = _run_lanes(
                targets, ends[j : j + 1] - block, block, starts_state[j][None, :], None, 1.0, uu, cc, **ctx.kw()
            )
            seq_out[j] = (uu[:, 0], cc[:, 0])
            ends_state[j] = st[0]
            sequential[j] = True
            if j + 1 < nb:
                starts_state[j + 1] = st[0]
                todo.add(j + 1)
        lanes = np.flatnonzero(~sequential)
        ou = np.empty((block, len(lanes)), dtype=np.int16)
        oc = np.empty((block, len(lanes)), dtype=np.int64)
        if len(lanes):
            lane_starts = ends[lanes] - block
            f, _ = _run_lanes(
                targets,
                lane_starts,
                block,
                starts_state[lanes],
                ends_state[lanes],
                tight,
                ou,
                oc,
                check=tight < 1.0,
                **ctx.kw(),
            )
            if f.any():
                redo = np.flatnonzero(f)
                ru = np.empty((block, len(redo)), dtype=np.int16)
                rc = np.empty((block, len(redo)), dtype=np.int64)
                _run_lanes(
                    targets,
                    lane_starts[redo],
                    block,
                    starts_state[lanes][redo],
                    ends_state[lanes][redo],
                    1.0,
                    ru,
                    rc,
                    check=False,
                    **ctx.kw(),
                )
                ou[:, redo] = ru
                oc[:, redo] = rc
        stop = min(n, pos + nb * block)
        if len(lanes) == nb and stop == pos + nb * block:
            np.copyto(unit[pos:stop].reshape(nb, block), ou.T)
            np.copyto(count[pos:stop].reshape(nb, block), oc.T)
        else:
            u_chunk = np.empty((nb, block), dtype=np.int16)
            c_chunk = np.empty((nb, block), dtype=np.int64)
            u_chunk[lanes] = ou.T
            c_chunk[lanes] = oc.T
            for j, (uu, cc) in seq_out.items():
                u_chunk[j] = uu
                c_chunk[j] = cc
            unit[pos:stop] = u_chunk.reshape(-1)[: stop - pos]
            count[pos:stop] = c_chunk.reshape(-1)[: stop - pos]
        if progress is not None:
            progress(stop)
        state = ends_state[-1]
        done += nb
    return unit, count


def megatron_stream(weights: np.ndarray, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """megatron-core's own `build_blending_indices` (compiled), on weights normalised as Megatron does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # lazy: megatron-core imports torch; the engine itself needs only numpy
        from megatron.core.datasets import helpers_cpp

    w = np.asarray(weights, dtype=np.float64)
    w = w / np.sum(w)
    unit = np.zeros(num_samples, dtype=np.int16)
    count = np.zeros(num_samples, dtype=np.int64)
    helpers_cpp.build_blending_indices(unit, count, w, len(w), num_samples, False)
    return unit, count


def max_drift(unit: np.ndarray, targets: Targets, *, chunk: int = 1 << 20) -> float:
    """Largest |count - target| over every prefix and domain (streams of any length, chunked)."""
    k = targets.domains
    counts = np.zeros(k, dtype=np.int64)
    worst = 0.0
    for lo in range(0, len(unit), chunk):
        u = np.asarray(unit[lo : lo + chunk])
        n = np.arange(lo + 1, lo + len(u) + 1, dtype=np.int64)
        t = targets.at(n)
        for i in range(k):
            c = counts[i] + np.cumsum(u == i)
            worst = max(worst, float(np.max(np.abs(c - t[:, i]))))
            counts[i] = c[-1]
    return worst
