"""LeMiCa's schedule search (Gao et al., "LeMiCa: Lexicographic Minimax Path Caching for Efficient Diffusion-Based
Video Generation", NeurIPS 2025, arXiv 2511.00090; github:UnicomAI/LeMiCa; docs/methods.md §1.14). Pure Python.

The steps of a T-step run are the nodes 0..T-1 of a DAG, plus an end node T. An edge i -> j (i < j <= T) says: step
i computes, steps i+1..j-1 reuse its residual, step j computes next (j = T: the run ends). A schedule that computes B
steps is a path 0 -> ... -> T of exactly B edges (step 0 always computes: nothing is cached before it). Each edge
carries the error of the reuse it stands for (`edge_weights`). LeMiCa picks the path whose largest edge error is
smallest, then the second largest, and so on: the lexicographic minimum of the path's edge errors sorted from the
largest down. Ties (equal sorted errors) go to the path whose computed steps are lexicographically first.

The solver is exact: comparing two equally long error lists by their sorted order is the same as finding the largest
value the two hold a different number of times (the list holding it more often is the worse), and adding the same
errors to both lists changes neither that value nor which holds it more. So the best path to a node with c edges
extends to the best path to the end through it (the principle of optimality holds), and a dynamic program over
(node, edges so far) keeping one best (sorted errors, steps) per state finds the optimum: O(B * T^2) extensions of
O(B) each. tests/engine/test_schedule_search.py checks it against every mask of small runs.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

__all__ = ["edge_weights", "solve", "path_errors", "worst_of"]


def worst_of(matrices: Iterable[Sequence[Sequence[float | None]]]) -> list[list[float | None]]:
    """The element-wise largest of several streams' error rows (cond and uncond batched in one call compute
    together, so one schedule serves both: it is held to the worse stream). None (not recorded) wins."""
    rows: list[list[float | None]] | None = None
    for m in matrices:
        m = [list(r) for r in m]
        if rows is None:
            rows = m
            continue
        if [len(r) for r in m] != [len(r) for r in rows]:
            raise ValueError("the streams' error rows differ in shape")
        rows = [[None if a is None or b is None else max(a, b) for a, b in zip(r, s)] for r, s in zip(rows, m)]
    if rows is None:
        raise ValueError("no stream's errors to search a schedule from")
    return rows


def edge_weights(errors: Sequence[Sequence[float | None]], steps: int) -> list[list[float]]:
    """W[i][j] (0 <= i < j <= steps) from errors[i][k - i - 1] = the error of reusing step i's residual at step k:
    the sum of those errors over the reused steps i+1..j-1 (a reuse error carries into every later step, so a
    segment costs what it adds up to; an edge to the next step costs 0). An error not recorded (None) makes every
    edge over it infinitely bad: usable only where nothing else fits."""
    if len(errors) != max(steps - 1, 0) or any(len(r) != steps - 1 - i for i, r in enumerate(errors)):
        raise ValueError(f"errors must hold one row per step but the last, row i with {steps} - 1 - i values")
    w = [[math.inf] * (steps + 1) for _ in range(steps + 1)]
    for i in range(steps):
        total = 0.0
        w[i][i + 1] = 0.0
        for j in range(i + 2, steps + 1):
            e = errors[i][j - i - 2]
            total += math.inf if e is None else float(e)
            w[i][j] = total
    return w


def path_errors(weights: Sequence[Sequence[float]], computed: Sequence[int], steps: int) -> tuple[float, ...]:
    """A schedule's edge errors, largest first (what LeMiCa minimizes lexicographically)."""
    nodes = [*computed, steps]
    return tuple(sorted((weights[a][b] for a, b in zip(nodes, nodes[1:])), reverse=True))


def solve(weights: Sequence[Sequence[float]], steps: int, computed: int, forced: Iterable[int] = ()) -> list[int]:
    """The steps to compute: exactly `computed` of the `steps`, step 0 and every `forced` step among them, along the
    lexicographic minimax path (module docstring)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    must = sorted({0, *forced})
    if any(not 0 <= f < steps for f in must):
        raise ValueError(f"forced steps must lie in 0..{steps - 1}, got {sorted(set(forced))}")
    if not len(must) <= computed <= steps:
        raise ValueError(f"computed steps must be between {len(must)} (step 0 and the forced ones) and {steps}, "
                         f"got {computed}")
    # next_forced[i]: the first forced step after i (an edge may not jump over it)
    next_forced = [min((f for f in must if f > i), default=steps + 1) for i in range(steps + 1)]
    # best[j]: (errors largest first, steps) of the best path 0 -> j with the current number of edges
    best: dict[int, tuple[tuple[float, ...], tuple[int, ...]]] = {0: ((), (0,))}
    for c in range(1, computed + 1):
        left = computed - c            # edges still to take after this one; each moves at least one step on
        nxt: dict[int, tuple[tuple[float, ...], tuple[int, ...]]] = {}
        for i, (errs, path) in best.items():
            for j in range(i + 1, min(next_forced[i], steps) + 1):
                if (j == steps) != (left == 0) or steps - j < left:
                    continue
                key = (tuple(sorted((*errs, weights[i][j]), reverse=True)), path + (j,) if j < steps else path)
                if j not in nxt or key < nxt[j]:
                    nxt[j] = key
        best = nxt
    return list(best[steps][1])
