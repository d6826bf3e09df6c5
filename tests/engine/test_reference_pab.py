"""Pyramid Attention Broadcast against diffusers 0.39's PyramidAttentionBroadcastHook, driven with the
same attention outputs step by step: the same compute/broadcast decisions and the same outputs, for
several intervals, with t = 1000 sigma and the window 100 < t < 800 as ComfyUI start/end sigmas. The
schedule avoids sigmas exactly on the window's edges, where ComfyUI's convention (start inclusive)
and diffusers' (exclusive) differ by design."""
from types import SimpleNamespace

import pytest
import torch
from diffusers.hooks.pyramid_attention_broadcast import PyramidAttentionBroadcastHook

from harness import pack

pack.load_core()
from cache_core import BlockLayout, CacheRun, PyramidAttentionBroadcast, ReuseLimits  # noqa: E402

STEPS = 19
SIGMAS = [1.0 - i / STEPS for i in range(STEPS)]


@pytest.mark.parametrize("interval", [2, 3, 6])
def test_pab_matches_diffusers_hook(interval):
    assert not {0.8, 0.1} & {round(x, 6) for x in SIGMAS}
    g = torch.Generator().manual_seed(interval)
    attn = [torch.randn(1, 5, 8, generator=g) for _ in range(STEPS)]
    t = {"now": 0.0, "i": 0}
    ref = PyramidAttentionBroadcastHook((100, 800), interval, lambda: t["now"])
    ref.initialize_hook(None)
    ref.fn_ref = SimpleNamespace(original_forward=lambda: attn[t["i"]])
    layout = BlockLayout(kinds=("blk",), stream_keys={"blk": ("img",)}, attention_kinds={"blk": ("self",)})
    run = CacheRun(PyramidAttentionBroadcast({"self": interval}), layout, SIGMAS + [0.0],
                   ReuseLimits(start_sigma=0.8, end_sigma=0.1))
    ours_reused, ref_reused = [], []
    for i, sigma in enumerate(SIGMAS):
        t["now"], t["i"] = 1000 * sigma, i
        expected = ref.new_forward(None)
        ref_reused.append(expected is not attn[i])
        call = run.begin_call(torch.zeros(1, 1), sigma, ["c"], ["cond"])
        got = call.run_block(0, {}, lambda a: {"img": call.attention(lambda: attn[i])})["img"]
        run.end_call(call)
        ours_reused.append(call.reusing)
        assert torch.equal(got, expected)
    assert ours_reused == ref_reused and any(ours_reused) and not all(ours_reused)
