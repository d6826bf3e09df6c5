"""FoCaForecaster against cache-dit 1.5.3's own FoCa calibrator state (cache_dit/caching/cache_contexts/calibrators/
foca.py, FoCaState): the same feature sequence, one value per step, computed or forecast as the schedule says. cache-dit
takes every gap as one step; where the gaps are one step the forecasts are equal (within float rounding of its
blend beyond the horizon), including the recursive window and the damping past 3 steps. Where computed steps lie
further apart, CacheKit divides the slopes by the gap: a feature linear in the step is then forecast exactly,
which cache-dit's plain differences overshoot."""
import pytest
import torch
from cache_dit.caching.cache_contexts.calibrators.foca import FoCaState

from harness import pack

pack.load_core()
from cache_core.forecast import FoCaForecaster  # noqa: E402


def drive(computed: set[int], steps: int, seed: int = 0):
    """(cache-dit's forecasts, ours) at the steps not in `computed`."""
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(2, 6, 8, generator=g) for _ in range(steps)]
    ref, ours = FoCaState(), FoCaForecaster(dtype=torch.float32)
    got, want = [], []
    for s in range(steps):
        ref.mark_step_begin()
        if s in computed:
            ref.update(feats[s])
            ours.update({"img": feats[s]}, s)
        else:
            want.append(ref.approximate())
            got.append(ours.predict(s, like={"img": feats[s]})["img"])
    return want, got


@pytest.mark.parametrize("computed, steps", [({0, 1}, 10), ({0, 1, 2}, 5), ({0, 1, 2, 3}, 9), ({0}, 4)])
def test_forecasts_match_cache_dit_on_unit_gaps(computed, steps):
    want, got = drive(computed, steps)
    assert len(got) == steps - len(computed)
    for w, o in zip(want, got):
        torch.testing.assert_close(o, w, rtol=1e-6, atol=1e-6)


def test_anchor_slope_is_per_step():
    """Computed at 0, 1, 4 (gap 3), forecast at 5 and 6: a linear feature comes out exact; cache-dit's unit-gap
    anchor slope (F4 - F1) is three slopes and overshoots."""
    a, b = torch.full((4,), 0.5), torch.full((4,), 2.0)
    line = {s: a + b * s for s in range(8)}
    ref, ours = FoCaState(), FoCaForecaster()
    for s in range(7):
        ref.mark_step_begin()
        if s in (0, 1, 4):
            ref.update(line[s])
            ours.update({"x": line[s]}, s)
        elif s >= 5:
            torch.testing.assert_close(ours.predict(s)["x"], line[s])
            assert (ref.approximate() - line[s]).abs().min() > 1.0
        else:
            ours.predict(s)
            ref.approximate()


def test_damped_beyond_horizon():
    """Past `horizon` steps from the anchor the step shrinks as horizon^2 / (2 e) times the summed slopes."""
    f = FoCaForecaster(horizon=3.0)
    f.update({"x": torch.zeros(3)}, 0.0)
    f.update({"x": torch.ones(3)}, 1.0)
    for s in (2.0, 3.0, 4.0):
        torch.testing.assert_close(f.predict(s)["x"], torch.full((3,), s))    # linear up to the horizon
    torch.testing.assert_close(f.predict(5.0)["x"], torch.full((3,), 1 + 9 / 8 * (1 + 1)))
    # at 6 (e = 5) the window's slope is that of the forecasts at 4 and 5: 3.25 - 4
    torch.testing.assert_close(f.predict(6.0)["x"], torch.full((3,), 1 + 9 / 10 * (1 - 0.75)))


def test_same_position_twice_and_look_back_leave_the_window():
    f = FoCaForecaster()
    for s, v in ((0.0, 0.0), (1.0, 1.0), (2.0, 3.0)):
        f.update({"x": torch.full((2,), v)}, s)
    first = f.predict(3.0)["x"]
    first.add_(100.0)                                       # the caller's copy; the window keeps its own
    again = f.predict(3.0)["x"]
    torch.testing.assert_close(again, torch.full((2,), 3.0 + 0.5 * (2.0 + 2.0)))
    back = f.predict(2.5)["x"]                              # a sampler looking back: evaluated, not recorded
    torch.testing.assert_close(back, torch.full((2,), 3.0 + 0.25 * (2.0 + 2.0)))
    torch.testing.assert_close(f.predict(4.0)["x"], torch.full((2,), 3.0 + 1.0 * (2.0 + 2.0)))


def test_single_computed_step_reuses_and_bad_horizon_is_refused():
    f = FoCaForecaster()
    assert not f.ready
    f.update({"x": torch.ones(2)}, 0.0)
    assert f.ready
    torch.testing.assert_close(f.predict(3.0, like={"x": torch.zeros(2, dtype=torch.float16)})["x"],
                               torch.ones(2, dtype=torch.float16))
    with pytest.raises(ValueError, match="horizon"):
        FoCaForecaster(horizon=0.0)
