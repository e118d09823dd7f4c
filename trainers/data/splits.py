"""Static weights as a tree of two-way splits: a blend stream in a few numpy passes, within one sample.

Why. The general (lane) path of `engine.py` runs an earliest-deadline-first loop, one numpy step per slot, and
was slower than Megatron's compiled greedy on weights that are arbitrary floats. No sort of per-domain event times
(`(k - theta) / w`) can do it: with four or more domains one of them heavier than `1 / (K - 2)`, every such merge
drifts past one sample at some prefix. A tree of two-way splits can, and its bound is checked from the weights
alone, before any sample is drawn.

How. Every internal node of a binary tree over the domains splits the slots it receives between its two children:
its i-th slot goes to the left child when `floor(r * i + 1/2)` steps up, `r` being the left child's share of the
node's weight. A child then holds the rounding of `r x` (parent count), so its error at every prefix is at most
`1/2 + r * (parent's error)`, and a leaf `d` at depth L is off by at most `1/2 * (1 + w_d * sum(1 / W))` over its
ancestors below the root. `build_tree` looks for a tree where that is below one for every domain (exhaustive over
splits for up to `EXHAUSTIVE` domains, a weight-balanced tree otherwise); `exact_stream` uses the lanes when none
exists. The tree depends on the weights only, so a longer stream extends a shorter one.

Work is O(samples x mean leaf depth) in chunks of `chunk` slots; the counts at a chunk's start are closed forms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: exhaustive tree search (3^K split pairs) up to this many domains; a weight-balanced tree past it
EXHAUSTIVE = 10
#: split shares are exact fractions m / 2**BITS; with chunks of at most CHUNK slots every product fits in int64
BITS = 46
ONE = 1 << BITS
HALF = 1 << (BITS - 1)
LOW = ONE - 1
CHUNK = 1 << 16
#: a leaf's bound `1/2 (1 + w_d * sum 1/W)` must stay this far below one: it also absorbs the rounding of each
#: share to BITS bits (at most depth * 2**-47 of the stream length, under 1e-3 up to MAX_SAMPLES)
MARGIN = 2e-3
MAX_SAMPLES = 1 << 33
MAX_DEPTH = 16


@dataclass(frozen=True, eq=False)
class Node:
    """A split: `left` takes share `m / 2**BITS` of this node's slots. Leaves are domain ids (ints)."""

    left: Node | int
    right: Node | int
    m: int

    @property
    def ratio(self) -> float:
        return self.m / ONE


Tree = Node | int


def bound(tree: Tree, weights: np.ndarray) -> float:
    """Largest guaranteed |count - target| over domains, in samples (`1/2 (1 + w_d sum 1/W)` per leaf)."""

    def walk(t: Tree, inv_sum: float, below_root: bool) -> float:
        if isinstance(t, int):
            return 0.5 * (1.0 + float(weights[t]) * inv_sum)
        w = _weight(t, weights)
        inner = inv_sum + (1.0 / w if below_root else 0.0)
        return max(walk(t.left, inner, True), walk(t.right, inner, True))

    if isinstance(tree, int):
        return 0.0
    return walk(tree, 0.0, False)


def depth(t: Tree) -> int:
    return 0 if isinstance(t, int) else 1 + max(depth(t.left), depth(t.right))


def _weight(t: Tree, weights: np.ndarray) -> float:
    if isinstance(t, int):
        return float(weights[t])
    return _weight(t.left, weights) + _weight(t.right, weights)


def _node(left: Tree, right: Tree, weights: np.ndarray) -> Node:
    wl, wr = _weight(left, weights), _weight(right, weights)
    return Node(left, right, min(max(round(wl / (wl + wr) * ONE), 1), ONE - 1))


def _exhaustive(weights: np.ndarray) -> Tree:
    """The tree that maximises the smallest slack: g(S) = max over splits of min(g(A), g(B)) - 1/W(S)."""
    k = len(weights)
    full = (1 << k) - 1
    wsum = np.zeros(1 << k)
    for m in range(1, 1 << k):
        low = m & -m
        wsum[m] = wsum[m ^ low] + weights[low.bit_length() - 1]
    g = np.full(1 << k, -math.inf)
    split = np.zeros(1 << k, dtype=np.int64)
    for i in range(k):
        g[1 << i] = (1.0 - MARGIN) / float(weights[i])
    for m in range(1, full + 1):
        if m & (m - 1) == 0:
            continue
        best, arg = -math.inf, 0
        sub = (m - 1) & m
        while sub:
            other = m ^ sub
            if sub < other:
                v = min(g[sub], g[other])
                if v > best:
                    best, arg = v, sub
            sub = (sub - 1) & m
        split[m] = arg
        g[m] = best - (1.0 / wsum[m] if m != full else 0.0)

    def make(m: int) -> Tree:
        if m & (m - 1) == 0:
            return m.bit_length() - 1
        a = int(split[m])
        return _node(make(a), make(m ^ a), weights)

    return make(full)


def _balanced(ids: list[int], weights: np.ndarray) -> Tree:
    """Heaviest domains first, each split as close to half the weight as a greedy fill gets."""
    if len(ids) == 1:
        return ids[0]
    order = sorted(ids, key=lambda i: -float(weights[i]))
    half = sum(float(weights[i]) for i in order) / 2.0
    left: list[int] = []
    right: list[int] = []
    wl = wr = 0.0
    for i in order:
        if wl <= wr and (wl + float(weights[i]) <= half or not left):
            left.append(i)
            wl += float(weights[i])
        else:
            right.append(i)
            wr += float(weights[i])
    if not right:
        right.append(left.pop())
    return _node(_balanced(left, weights), _balanced(right, weights), weights)


def build_tree(weights: np.ndarray) -> Tree | None:
    """A split tree whose bound is below one for every domain, or None. All weights must be positive."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    k = len(w)
    if k == 1:
        return 0
    candidates: list[Tree] = []
    if k <= EXHAUSTIVE:
        candidates.append(_exhaustive(w))
    candidates.append(_balanced(list(range(k)), w))
    for tree in candidates:
        if depth(tree) <= MAX_DEPTH and bound(tree, w) <= 1.0 - MARGIN / 2:
            return tree
    return None


def counts_at(tree: Tree, n: int, k: int) -> np.ndarray:
    """Each domain's count after the first n slots (closed form, O(depth), exact integers)."""
    out = np.zeros(k, dtype=np.int64)

    def walk(t: Tree, c: int) -> None:
        if isinstance(t, int):
            out[t] = c
            return
        left = (t.m * c + HALF) >> BITS
        walk(t.left, left)
        walk(t.right, c - left)

    walk(tree, int(n))
    return out


def _paths(tree: Tree) -> list[tuple[int, list[tuple[Node, bool]]]]:
    """(domain, [(ancestor, is_left child), ...] from the root down) for every leaf."""
    out: list[tuple[int, list[tuple[Node, bool]]]] = []

    def walk(t: Tree, path: list[tuple[Node, bool]]) -> None:
        if isinstance(t, int):
            out.append((t, path))
            return
        walk(t.left, [*path, (t, True)])
        walk(t.right, [*path, (t, False)])

    walk(tree, [])
    return out


def fill(tree: Tree, lo: int, hi: int, k: int, unit: np.ndarray, count: np.ndarray) -> None:
    """Write slots [lo, hi) of the stream into unit[: hi - lo] and count[: hi - lo] (hi - lo <= CHUNK)."""
    size = hi - lo
    if size > CHUNK:
        raise ValueError(f"at most {CHUNK} slots per call")
    if isinstance(tree, int):
        unit[:size] = tree
        count[:size] = np.arange(lo, hi, dtype=np.int64)
        return
    # each node's count before and after the chunk, from the root down
    before: dict[int, int] = {}
    after: dict[int, int] = {}

    def walk(t: Tree, c0: int, c1: int) -> None:
        before[id(t)], after[id(t)] = c0, c1
        if isinstance(t, Node):
            l0, l1 = (t.m * c0 + HALF) >> BITS, (t.m * c1 + HALF) >> BITS
            walk(t.left, l0, l1)
            walk(t.right, c0 - l0, c1 - l1)

    walk(tree, lo, hi)
    for leaf, path in _paths(tree):
        got = after[id(leaf)] - before[id(leaf)]
        if got == 0:
            continue
        # j: 1-based index of each new sample within the node below; mapped up one split at a time into the
        # 1-based index within its parent, closed form: the left child's j-th slot after the chunk's start is the
        # least t with (rho + m t) >> BITS >= j, the right child's the least t with t - ((rho + m t) >> BITS) >= j
        j = np.arange(1, got + 1, dtype=np.int64)
        for node, is_left in reversed(path):
            rho = (node.m * before[id(node)] + HALF) & LOW
            if is_left:
                j <<= BITS
                j += node.m - 1 - rho
                j //= node.m
            else:
                j -= 1
                j <<= BITS
                j += rho
                j //= ONE - node.m
                j += 1
        j -= 1
        unit[j] = leaf
        count[j] = np.arange(before[id(leaf)], after[id(leaf)], dtype=np.int64)
