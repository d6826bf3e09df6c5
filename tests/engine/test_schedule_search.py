"""LeMiCa (docs/methods.md §1.14) on cache_core alone: the schedule search against every mask of small runs, its
lexicographic order and edge cases; the static policy's schedule and forecast; the calibration's recorded errors."""
import itertools
import math
import random

import pytest
import torch

from harness import pack

pack.load_core()
from cache_core import BlockLayout, CacheRun, LeMiCa, LeMiCaCalibration, calibration_data  # noqa: E402
from cache_core.schedule_search import edge_weights, path_errors, solve, worst_of  # noqa: E402


def brute_force(weights, steps, computed, forced=()):
    """Every mask with `computed` steps, step 0 and the forced ones among them: the one whose edge errors sorted
    largest first are lexicographically least, ties to the lexicographically first steps."""
    rest = [s for s in range(1, steps)]
    best = None
    for chosen in itertools.combinations(rest, computed - 1):
        path = [0, *chosen]
        if not set(forced) <= set(path):
            continue
        nodes = [*path, steps]
        errs = tuple(sorted((weights[a][b] for a, b in zip(nodes, nodes[1:])), reverse=True))
        key = (errs, tuple(path))
        best = key if best is None or key < best else best
    return list(best[1])


def random_errors(rng, steps, kind):
    def value(i, k):
        if kind == "ties":
            return float(rng.randint(0, 2))            # few distinct values: many equal paths
        if kind == "gaps" and rng.random() < 0.15:
            return None                                # a step no call landed in
        return rng.random() * (k - i)
    return [[value(i, k) for k in range(i + 1, steps)] for i in range(steps - 1)]


@pytest.mark.parametrize("kind", ["random", "ties", "gaps"])
@pytest.mark.parametrize("steps", range(1, 9))
def test_solver_equals_brute_force_over_every_mask(kind, steps):
    rng = random.Random(steps * 31 + len(kind))
    for _ in range(6):
        weights = edge_weights(random_errors(rng, steps, kind), steps)
        for computed in range(1, steps + 1):
            for forced in ((), (steps - 1,), tuple(sorted(rng.sample(range(steps), min(2, steps))))):
                if len({0, *forced}) > computed:
                    continue
                got = solve(weights, steps, computed, forced)
                assert got == brute_force(weights, steps, computed, forced), (steps, computed, forced)
                assert len(got) == computed and got[0] == 0 and set(forced) <= set(got)


def test_minimax_first_then_the_next_worst_then_the_steps():
    inf = math.inf
    # 4 steps, 2 computed: [0, j] has edges (0, j) and (j, end=4)
    w = [[inf] * 5 for _ in range(5)]
    w[0][1], w[1][4] = 0.0, 5.0      # errors (5, 0)
    w[0][2], w[2][4] = 5.0, 2.0      # (5, 2)
    w[0][3], w[3][4] = 5.0, 1.0      # (5, 1)
    assert solve(w, 4, 2) == [0, 1]                 # every path's worst is 5: the next worst decides
    w[0][2], w[2][4] = 4.0, 4.0      # (4, 4): the smallest worst wins although its second is the largest
    assert solve(w, 4, 2) == [0, 2]
    w[0][2], w[2][4] = 5.0, 0.0      # (5, 0) twice: the lexicographically first steps
    assert solve(w, 4, 2) == [0, 1]
    assert path_errors(w, [0, 2], 4) == (5.0, 0.0)


def test_edge_weights_add_the_reuse_errors_of_the_skipped_steps():
    errors = [[0.1, 0.2, 0.4], [0.3, None], [0.5]]     # E[i][k], k = i+1..3
    w = edge_weights(errors, 4)
    assert w[0][1] == w[1][2] == w[3][4] == 0.0        # the next step computes: nothing reused
    assert w[0][2] == pytest.approx(0.1) and w[0][3] == pytest.approx(0.3) and w[0][4] == pytest.approx(0.7)
    assert w[1][3] == pytest.approx(0.3) and w[1][4] == math.inf and w[2][4] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one row per step"):
        edge_weights(errors[:2], 4)


def test_edge_cases_and_refusals():
    w = edge_weights([[1.0, 1.0], [1.0]], 3)
    assert solve(w, 3, 3) == [0, 1, 2]       # B = T: every step computes
    assert solve(w, 3, 1) == [0]             # B = 1: step 0 only, the rest reuse it
    assert solve(edge_weights([], 1), 1, 1) == [0]   # T = 1
    for bad, message in [((w, 3, 0), "between 1"), ((w, 3, 4), "and 3, got 4"),
                         ((w, 3, 1, (2,)), "between 2"), ((w, 3, 2, (3,)), "lie in 0..2"),
                         ((w, 0, 1), "steps must be >= 1")]:
        with pytest.raises(ValueError, match=message):
            solve(*bad)


def test_worst_of_takes_each_pairs_larger_error():
    assert worst_of([[[0.1, 0.5], [0.2]], [[0.3, None], [0.1]]]) == [[0.3, None], [0.2]]
    with pytest.raises(ValueError, match="differ in shape"):
        worst_of([[[0.1]], [[0.1], [0.2]]])


# --- the policy and the calibration on the engine --------------------------------------------------------------
LAYOUT = BlockLayout(kinds=("blk",) * 2, stream_keys={"blk": ("img",)})


def run(policy, residuals):
    """One call per step through a 2-block stack whose blocks add half the step's residual; returns the reuse
    flags and the outputs."""
    steps = len(residuals)
    r = CacheRun(policy, LAYOUT, sigmas=[1.0 - i / steps for i in range(steps + 1)])
    flags, outs = [], []
    for i, res in enumerate(residuals):
        x = torch.ones(1, 6)
        call = r.begin_call(x, r.sigmas[i], ["s"], ["cond"])
        h = {"img": x}
        for p in range(2):
            h = {**h, **call.run_block(p, h, lambda a, res=res: {"img": a["img"] + res / 2})}
        r.end_call(call)
        flags.append(call.reusing)
        outs.append(h["img"])
    r.close()
    return flags, outs


def test_lemica_computes_exactly_the_schedule_and_reuses_or_forecasts_elsewhere():
    residuals = [torch.full((1, 6), float(i)) for i in range(6)]      # a residual growing linearly in the step
    flags, outs = run(LeMiCa([0, 1, 4], 6), residuals)
    assert [i for i, f in enumerate(flags) if not f] == [0, 1, 4]
    assert [float(o[0, 0]) - 1 for o in outs] == [0, 1, 1, 1, 4, 4]   # the last computed residual
    flags, outs = run(LeMiCa([0, 1, 4], 6, forecast="taylor"), residuals)
    assert [float(o[0, 0]) - 1 for o in outs] == pytest.approx([0, 1, 2, 3, 4, 5])   # linear: forecast exactly
    flags, outs = run(LeMiCa([0, 1, 4], 6, forecast="foca"), residuals)
    assert [i for i, f in enumerate(flags) if not f] == [0, 1, 4]
    assert [float(o[0, 0]) - 1 for o in outs] == pytest.approx([0, 1, 2, 3, 4, 5])   # a Heun step: exact on a line
    with pytest.raises(ValueError, match="calibration of 6 steps and this run has 5: calibrate"):
        LeMiCa([0, 2], 6).prepare(5)
    for bad in [([1, 2], 6), ([0, 6], 6), ([0], 6, "cubic")]:
        with pytest.raises(ValueError):
            LeMiCa(*bad)


def test_calibration_records_every_pairs_reuse_error():
    gen = torch.Generator().manual_seed(0)
    residuals = [torch.randn(1, 6, generator=gen) for _ in range(5)]
    cal = LeMiCaCalibration()
    flags, _ = run(cal, residuals)
    assert not any(flags)
    out = calibration_data.lemica_errors(cal.result())
    assert out["steps"] == 5 and out["samples"] == 6
    rows = out["errors"]["cond"]
    assert [len(r) for r in rows] == [4, 3, 2, 1]
    for i in range(4):
        for k in range(i + 1, 5):
            expected = float((residuals[k] - residuals[i]).abs().sum() / residuals[i].abs().sum())
            assert rows[i][k - i - 1] == pytest.approx(expected, rel=1e-5)


def test_sampled_errors_estimate_the_whole_residuals():
    """The recorder keeps `samples` random elements (the same each step): on residuals of a real size the sampled
    error stays within a few 1/sqrt(samples) of the whole one."""
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(1, 4096, 64, generator=gen)
    residuals = [base + 0.1 * k * torch.randn(1, 4096, 64, generator=gen) for k in range(4)]
    cal = LeMiCaCalibration(samples=16384)
    for i, res in enumerate(residuals):
        cal.store(cal.streams.get("cond") or cal.new_state("cond"), {"img": res},
                  type("S", (), {"total": 4, "index": i})(), {})
    rows = cal.result()["errors"]["cond"]
    for i in range(3):
        for k in range(i + 1, 4):
            whole = float((residuals[k] - residuals[i]).abs().sum() / residuals[i].abs().sum())
            assert rows[i][k - i - 1] == pytest.approx(whole, rel=4 / 16384 ** 0.5)
    assert cal.result()["samples"] == 16384


def test_the_calibration_check_names_what_is_wrong():
    good = {"format": calibration_data.LEMICA_ERRORS, "version": 1, "steps": 3, "errors": {"cond": [[0.1, 0.2], [0.3]]}}
    assert calibration_data.check_any(good) is good
    for errors, message in [({"cond": [[0.1, 0.2]]}, "a list of 2 rows"), ({"cond": [[0.1], [0.3]]}, r"\[0\] must"),
                            ({"cond": [[0.1, -1.0], [0.3]]}, r"\[0\]\[1\] must be a finite number >= 0")]:
        with pytest.raises(ValueError, match=message):
            calibration_data.lemica_errors(dict(good, errors=errors))
    with pytest.raises(ValueError, match="at most 200"):
        calibration_data.lemica_errors(dict(good, steps=201))
