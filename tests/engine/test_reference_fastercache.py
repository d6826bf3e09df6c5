"""FasterCache against diffusers 0.39's own hooks, driven with the same outputs step by step:
the CFG cache (which steps skip the uncond branch, and the frequency-corrected estimate, compounding
alphas included) and the attention extrapolation on cond-only steps."""
from types import SimpleNamespace

import torch
from diffusers.hooks.faster_cache import FasterCacheBlockHook, FasterCacheDenoiserHook

from harness import pack

pack.load_core()
from cache_core import BlockLayout, CacheRun, FasterCache, StepInfo  # noqa: E402

STEPS = 23
SIGMAS = [1.0 - (i + 0.5) / STEPS for i in range(STEPS)]   # never on a window edge (t = 1000 sigma)


def outputs(seed, shape=(1, 4, 10, 15)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(STEPS)]


def test_cfg_cache_matches_diffusers_denoiser_hook():
    conds, unconds = outputs(1), outputs(2)
    t = {"now": 0.0}
    ref = FasterCacheDenoiserHook(
        unconditional_batch_skip_range=5, unconditional_batch_timestep_skip_range=(-1, 641), tensor_format="BCHW",
        is_guidance_distilled=False, uncond_cond_input_kwargs_identifiers=["hidden_states"],
        current_timestep_callback=lambda: t["now"],
        low_frequency_weight_callback=lambda _: 1.1 if 99 < t["now"] < 901 else 1.0,
        high_frequency_weight_callback=lambda _: 1.1 if -1 < t["now"] < 301 else 1.0)
    ref.initialize_hook(None)
    step_i = {"i": 0}

    def model(hidden_states):   # diffusers batches [uncond; cond]
        i = step_i["i"]
        return torch.cat([unconds[i], conds[i]]) if hidden_states.shape[0] == 2 else conds[i]
    ref.fn_ref = SimpleNamespace(original_forward=model)
    ours = FasterCache(uncond_interval=5)
    skipped = []
    for i, sigma in enumerate(SIGMAS):
        t["now"], step_i["i"] = 1000 * sigma, i
        ref_out = ref.new_forward(None, hidden_states=torch.zeros(2, 1))
        step = StepInfo(i, STEPS, sigma)
        if ours.skip_uncond(step):
            skipped.append(i)
            torch.testing.assert_close(ours.estimate_uncond(conds[i], step), ref_out[:1], rtol=1e-5, atol=1e-5)
        else:
            ours.observe_cfg(conds[i], unconds[i])
            assert torch.equal(ref_out[:1], unconds[i])      # the reference ran the uncond branch too
    assert skipped and len(skipped) < STEPS - 1


def test_attention_extrapolation_matches_diffusers_block_hook():
    attn_c, attn_u = outputs(3, (1, 6, 8)), outputs(4, (1, 6, 8))
    t = {"now": 0.0}
    ref = FasterCacheBlockHook(block_skip_range=2, timestep_skip_range=(-1, 681), is_guidance_distilled=False,
                               weight_callback=lambda _: 0.5, current_timestep_callback=lambda: t["now"])
    ref.initialize_hook(None)
    step_i = {"i": 0}
    ref.fn_ref = SimpleNamespace(original_forward=lambda x: (
        torch.cat([attn_u[step_i["i"]], attn_c[step_i["i"]]]) if x.shape[0] == 2 else attn_c[step_i["i"]]))

    policy = FasterCache(uncond_interval=5, attention_interval=2, attention_weight=0.5)
    policy.low_delta = policy.high_delta = torch.zeros(1)      # the CFG side is tested above
    layout = BlockLayout(kinds=("blk",), stream_keys={"blk": ("img",)}, attention_kinds={"blk": ("self",)})
    run = CacheRun(policy, layout, sigmas=SIGMAS + [0.0])
    extrapolated = 0
    for i, sigma in enumerate(SIGMAS):
        t["now"], step_i["i"] = 1000 * sigma, i
        cond_only = policy.skip_uncond(run.step_at(sigma))
        ref_out = ref.new_forward(None, torch.zeros(1 if cond_only else 2, 1))
        keys, kinds = (["c"], ["cond"]) if cond_only else (["c", "u"], ["cond", "uncond"])
        call = run.begin_call(torch.zeros(len(keys), 1), sigma, keys, kinds)
        full = attn_c[i] if cond_only else torch.cat([attn_c[i], attn_u[i]])   # ComfyUI batches [cond; uncond]
        out = call.run_block(0, {}, lambda a: {"img": call.attention(lambda: full)})["img"]
        run.end_call(call)
        extrapolated += call.components_reused
        torch.testing.assert_close(out[:1], ref_out[-1:], rtol=1e-6, atol=1e-6)   # the cond part
    assert extrapolated > 0
