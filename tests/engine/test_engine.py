"""cache_core on its own: no ComfyUI, a hand-built block stack whose numbers are known."""

import pytest
import torch

from harness import pack

pack.load_core()
from cache_core import BlockLayout, CacheRun, FirstBlockCache, ReuseLimits, StepInfo, rel_l1  # noqa: E402


def test_rel_l1_uses_previous_as_denominator_and_fp32():
    prev = torch.tensor([1.0, -2.0, 3.0, -4.0])
    cur = prev + torch.tensor([0.5, 0.5, -0.5, 0.5])
    assert rel_l1(cur, prev).item() == pytest.approx(0.5 / 2.5)
    half = rel_l1(cur.half(), prev.half())
    assert half.dtype == torch.float32 and half.item() == pytest.approx(0.2)


def test_limits_window_warmup_and_consecutive_cap():
    lim = ReuseLimits(start_sigma=0.9, end_sigma=0.2, warmup_steps=2, max_consecutive=2)
    step = lambda i, s: StepInfo(i, 10, s)  # noqa: E731
    assert not lim.allow(step(1, 0.5), 0)          # warmup
    assert not lim.allow(step(3, 0.95), 0)         # before start
    assert not lim.allow(step(3, 0.2), 0)          # at/after end
    assert lim.allow(step(3, 0.5), 1)
    assert not lim.allow(step(3, 0.5), 2)          # cap reached
    assert ReuseLimits().allow(step(0, 1.0), 10_000)


class Stack:
    """Three 'blocks' on one stream key: block p adds (p + 1) * scale * x_in_dependent term."""
    def __init__(self):
        self.calls = 0

    def block(self, p):
        def run(args):
            self.calls += 1
            return {"img": args["img"] * 1.01 + (p + 1) * args["scale"]}
        return run


LAYOUT = BlockLayout(kinds=("blk",) * 3, stream_keys={"blk": ("img",)})


def call(run, stack, x, scale, keys=("a",), kinds=("cond",), step=0):
    c = run.begin_call(x, run.sigmas[step], keys, kinds)   # a call at step i's sigma belongs to step i
    h = {"img": x, "scale": scale}
    for p in range(3):
        out = c.run_block(p, h, stack.block(p))
        h = {**h, **out}
    run.end_call(c)
    return h["img"], c


def test_first_block_cache_decisions_residual_applied_once():
    run = CacheRun(FirstBlockCache(0.1), LAYOUT, sigmas=[1.0, 0.5, 0.2, 0.0])
    stack = Stack()
    x = torch.ones(1, 4)
    full0, c0 = call(run, stack, x, torch.tensor(1.0))
    assert not c0.reusing and stack.calls == 3
    # block-0 residual: 0.01*x + 1*scale. scale 1.0 -> 1.02: relL1 vs 1.01 = 0.0099 < 0.1 -> reuse
    out1, c1 = call(run, stack, x, torch.tensor(1.02), step=1)
    assert c1.reusing and stack.calls == 4 and c1.blocks_run == 1
    # expected: block0 output of this call + tail residual of the computed call (added once)
    b0 = x * 1.01 + 1.02
    h = x * 1.01 + 1.0
    tail = (h * 1.01 + 2.0) * 1.01 + 3.0 - h
    assert torch.allclose(out1, b0 + tail)
    # reference residual is from the last *computed* call (1.0): scale 1.3 is 30% away -> compute
    _, c2 = call(run, stack, x, torch.tensor(1.3), step=2)
    assert not c2.reusing
    s = run.close().to_dict()["streams"]["cond"]
    assert s["computed_steps"] == [0, 2] and s["reused_steps"] == [1]
    assert run.stats.block_evals == 7 and run.stats.block_evals_full == 9


def test_threshold_zero_never_reuses_and_is_exact():
    run = CacheRun(FirstBlockCache(0.0), LAYOUT, sigmas=[1.0, 0.5, 0.0])
    x = torch.randn(2, 4)
    for step in range(2):
        out, c = call(run, Stack(), x, torch.tensor(1.0), step=step)
        ref, _ = call(CacheRun(FirstBlockCache(0.0), LAYOUT, [1.0, 0.0]), Stack(), x, torch.tensor(1.0))
        assert not c.reusing and torch.equal(out, ref)


def test_streams_keep_separate_state_and_decisions():
    run = CacheRun(FirstBlockCache(0.1), LAYOUT, sigmas=[1.0, 0.5, 0.2, 0.0])
    x = torch.ones(1, 4)
    call(run, Stack(), x, torch.tensor(1.0), keys=("c",), kinds=("cond",))
    call(run, Stack(), x, torch.tensor(5.0), keys=("u",), kinds=("uncond",))
    # cond barely moves, uncond moves a lot: separate calls decide separately
    _, cc = call(run, Stack(), x, torch.tensor(1.01), keys=("c",), kinds=("cond",), step=1)
    _, cu = call(run, Stack(), x, torch.tensor(9.0), keys=("u",), kinds=("uncond",), step=1)
    assert cc.reusing and not cu.reusing
    # batched together, one stream needing compute makes the whole call compute
    xb = torch.ones(2, 4)
    scale = torch.tensor([[1.0], [20.0]])
    _, cb = call(run, Stack(), xb, scale, keys=("c", "u"), kinds=("cond", "uncond"), step=2)
    assert not cb.reusing
    st = run.stats.to_dict()["streams"]
    assert st["cond"]["reused_steps"] == [1] and st["uncond"]["reused_steps"] == []


def test_shape_change_resets_stream_and_never_reuses_stale_residual():
    run = CacheRun(FirstBlockCache(10.0), LAYOUT, sigmas=[1.0, 0.5, 0.2, 0.0])
    call(run, Stack(), torch.ones(1, 4), torch.tensor(1.0))
    _, c = call(run, Stack(), torch.ones(1, 8), torch.tensor(1.0), step=1)
    assert not c.reusing
    assert run.stats.streams["cond"].resets == 1
    _, c = call(run, Stack(), torch.ones(1, 8), torch.tensor(1.0), step=2)
    assert c.reusing


def test_close_drops_all_tensors():
    run = CacheRun(FirstBlockCache(1.0), LAYOUT, sigmas=[1.0, 0.0])
    call(run, Stack(), torch.ones(1, 4), torch.tensor(1.0))
    assert run.streams
    stats = run.close("interrupted")
    assert run.streams == {} and stats.status == "interrupted"
    with pytest.raises(RuntimeError):
        run.begin_call(torch.ones(1, 4), 0.5, ["a"], ["cond"])


def test_negative_threshold_rejected():
    with pytest.raises(ValueError, match="threshold"):
        FirstBlockCache(-0.1)


def test_two_threads_calling_one_run_keep_their_own_call_and_streams():
    """Model copies on two GPUs call the run from their own threads (a CFG split over devices): interleaved
    block by block, each thread's blocks act on its own call, and each stream gets the outputs it would get
    alone."""
    import threading

    def alone(key):
        run = CacheRun(FirstBlockCache(0.1), LAYOUT, sigmas=[1.0, 0.5, 0.0])
        return [call(run, Stack(), torch.full((1, 4), float(key)), torch.tensor(s), keys=(key,), step=i)[0]
                for i, s in enumerate((1.0, 1.02))]

    run = CacheRun(FirstBlockCache(0.1), LAYOUT, sigmas=[1.0, 0.5, 0.0])
    turn = threading.Barrier(2)
    got, errors = {}, []

    def worker(key):
        try:
            outs = []
            for i, s in enumerate((1.0, 1.02)):
                x = torch.full((1, 4), float(key))
                c = run.begin_call(x, run.sigmas[i], (key,), ("cond" if key == 1 else "uncond",))
                h = {"img": x, "scale": torch.tensor(s)}
                for p in range(3):
                    turn.wait(timeout=5)              # the other thread runs its block p in between
                    # the host's hooks find the call through the run, as nodes/host/live.py does
                    h = {**h, **run.current.run_block(p, h, Stack().block(p))}
                run.end_call(c)
                outs.append(h["img"])
            got[key] = outs
        except Exception as e:   # noqa: BLE001 (reported below)
            errors.append(e)
            turn.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    for key in (1, 2):
        for a, b in zip(got[key], alone(key)):
            assert torch.equal(a, b)
    s = run.close().to_dict()["streams"]
    assert s["cond"]["reused_steps"] == s["uncond"]["reused_steps"] == [1]


class TwoModalities:
    """Three blocks on video and audio tokens: block p adds (p + 1) * scale to the video and (p + 1) * audio_scale
    to the audio, each modality on its own."""
    def __init__(self):
        self.calls = 0

    def block(self, p):
        def run(args):
            self.calls += 1
            return {"img": args["img"] * 1.01 + (p + 1) * args["scale"],
                    "audio": args["audio"] * 1.01 + (p + 1) * args["audio_scale"]}
        return run


AV = BlockLayout(kinds=("blk",) * 3, stream_keys={"blk": ("img", "audio")}, decided=("audio",))


def av_call(run, stack, scale, audio_scale, step):
    x, a = torch.ones(1, 4), torch.ones(1, 2)
    c = run.begin_call(x, run.sigmas[step], ("a",), ("cond",))
    h = {"img": x, "audio": a, "scale": scale, "audio_scale": audio_scale}
    for p in range(3):
        h = {**h, **c.run_block(p, h, stack.block(p))}
    run.end_call(c)
    return h, c


def test_each_measured_modality_must_agree_and_gets_its_own_residual():
    """The video barely changes while the audio changes by 30%: the call computes (one decision on the video alone
    would reuse); where both barely change it reuses, each modality adding its own cached residual."""
    run = CacheRun(FirstBlockCache(0.1), AV, sigmas=[1.0, 0.8, 0.6, 0.4, 0.0])
    stack = TwoModalities()
    av_call(run, stack, torch.tensor(1.0), torch.tensor(1.0), 0)
    _, c1 = av_call(run, stack, torch.tensor(1.01), torch.tensor(1.3), 1)
    assert not c1.reusing
    h, c2 = av_call(run, stack, torch.tensor(1.02), torch.tensor(1.31), 2)
    assert c2.reusing and c2.blocks_run == 1
    head = lambda s: torch.ones(1, 1) * 1.01 + s   # noqa: E731  (block 0's output)
    tail = lambda s: (head(s) * 1.01 + 2 * s) * 1.01 + 3 * s - head(s)   # noqa: E731  (the span's residual)
    assert torch.allclose(h["img"], head(1.02) + tail(1.01))
    assert torch.allclose(h["audio"], head(1.31) + tail(1.3))
    (stream,) = run.streams.values()
    assert set(stream.side_states) == {"audio"} and stream.side_states["audio"] is not stream.policy_state
    assert AV.measured == ("img", "audio") and LAYOUT.measured == ("img",)
