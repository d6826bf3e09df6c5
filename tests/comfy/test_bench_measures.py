"""What the quality benchmark measures with: the block-FLOP counter (scripts/harness/block_flops.py) against torch's
FlopCounterMode, and the reference route (scripts/harness/reference_models.py): ComfyUI weights moved into diffusers'
classes compute what ComfyUI computes, and a diffusers hook run through ComfyUI's sampler keeps cond and uncond
in their own cache contexts. Small untrained digits models (a few blocks), so this stays fast."""
import dataclasses

import pytest
import torch

from harness import block_flops as bf
from harness import digits_models as dm

STEPS = 10   # more than the few-step warning's 8


def small(family):
    """A digits model of the family with 3 blocks and seeded non-zero weights everywhere (the recipe's init
    zeroes the modulations and the head, which would make every output the same)."""
    r = dataclasses.replace(dm.RECIPES[family], blocks=3)
    m = dm.build(r)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in m.model.diffusion_model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return m, r


@pytest.fixture(scope="module", params=["wan", "flux"])
def family_model(request, comfy):
    family = request.param
    m, r = small(family)
    return family, m, r


def sample(m, family, r):
    """dm.sample at this test's step count: the class codes depend on the recipe's seed and text width only,
    which the small recipe keeps."""
    assert (r.seed, r.text_dim) == (dm.RECIPES[family].seed, dm.RECIPES[family].text_dim)
    return dm.sample(m, family, 3, 1, steps=STEPS, cfg=4.0)


def test_block_flops_match_flop_counter_mode(family_model, ck):
    """Uncached and with caches that skip whole blocks (First Block Cache) or attention inside them (PAB,
    FasterCache's attention and uncond halves): the counter agrees with FlopCounterMode to the FLOP."""
    from harness import pack
    family, m, r = family_model
    net = m.model.diffusion_model
    patched = {
        "none": m,
        "fbc": pack.node(ck, "ApplyFirstBlockCache", model=m, residual_diff_threshold=1.0)[0],
        "pab": pack.node(ck, "ApplyPyramidAttentionBroadcast", model=m, self_attention_interval=2,
                         cross_attention_interval=3, start_percent=0.0, end_percent=1.0)[0],
        "fastercache": pack.node(ck, "ApplyFasterCache", model=m, attention_interval=2, uncond_interval=2,
                                 start_percent=0.0, end_percent=1.0)[0],
    }
    counts = {}
    for name, p in patched.items():
        _, ours = bf.block_flops(lambda: sample(p, family, r), net)
        assert ours == bf.reference_count(lambda: sample(p, family, r)), name
        counts[name] = ours
    assert counts["none"] > 0
    assert all(counts[k] < counts["none"] for k in ("fbc", "pab", "fastercache")), counts   # they did skip


def test_block_flops_counts_only_inside_blocks_and_leaves_no_mode_behind_on_error():
    """Ops before and between the blocks are not counted, a repeated op shape counts each time (its formula is
    evaluated once), and a block that raises (an interrupt) leaves neither the dispatch mode nor the hooks."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = torch.nn.Linear(8, 8)
            self.blocks = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
            self.fail = False

        def forward(self, x):
            x = self.pre(x)
            for i, b in enumerate(self.blocks):
                x = b(x) @ torch.eye(8)          # an op between blocks
                if self.fail and i == 1:
                    raise InterruptedError
            return x

    net, x = Net(), torch.randn(4, 8)
    _, flops = bf.block_flops(lambda: net(x), net)
    assert flops == 3 * 2 * 4 * 8 * 8                       # the blocks' three linears, not pre nor the products
    assert flops == bf.reference_count(lambda: net(x))      # FlopCounterMode attributes the same to the blocks
    net.fail = True
    with pytest.raises(InterruptedError):
        bf.block_flops(lambda: net(x), net)
    assert _get_current_dispatch_mode() is None
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in net.modules())


def test_diffusers_model_computes_what_comfy_computes(family_model):
    from harness import reference_models as rm
    family, m, r = family_model
    net = rm.to_diffusers(m, family, r)
    x = torch.randn(2, *dm.empty_latent(family).shape[1:], generator=torch.Generator().manual_seed(0))
    text, pooled = dm.codes(r)
    conds = dict(c_crossattn=text[[3, dm.NULL]])
    if family == "flux":
        conds["y"] = pooled[[3, dm.NULL]]
    sigma = torch.tensor([0.6, 0.6])
    with torch.no_grad():
        ours = m.model.apply_model(x, sigma, transformer_options={"cond_or_uncond": [0, 1]}, **conds)
        routed = rm.route(m, family, net)
        theirs = routed.model.apply_model(x, sigma, **conds, transformer_options={
            "cond_or_uncond": [0, 1], "wrappers": routed.wrappers})
    assert ours.abs().max() > 0.1
    torch.testing.assert_close(theirs, ours, rtol=0, atol=2e-5)
    # and a Flux row of the wrong width is refused with the weights it could not place
    if family == "flux":
        with pytest.raises(ValueError, match="no diffusers place"):
            rm._flux_state({**m.model.diffusion_model.state_dict(), "extra.weight": torch.zeros(1)}, r.width)


def test_reference_hook_keeps_cond_and_uncond_apart(comfy):
    """diffusers' First Block Cache through the route: at threshold 0 the sample equals the uncached diffusers
    sample exactly; at a high threshold it reuses, in both the "cond" and the "uncond" context, each with its
    own state."""
    from harness import reference_models as rm
    from diffusers.hooks import FirstBlockCacheConfig
    m, r = small("flux")
    refs = rm.References(m, "flux", STEPS, recipe=r)
    plain = sample(refs.plain(), "flux", r)
    off = sample(refs.diffusers(FirstBlockCacheConfig(threshold=0.0)), "flux", r)
    assert torch.equal(off, plain)
    seen = {}

    def record(stream):
        from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK
        state = refs.dh.find_hook(refs.net, _FBC_LEADER_BLOCK_HOOK).state_manager.get_state()
        seen.setdefault(stream, []).append(not state.should_compute)
    on = sample(refs.diffusers(FirstBlockCacheConfig(threshold=10.0), after_call=record), "flux", r)
    assert set(seen) == {"cond", "uncond"} and all(len(v) == STEPS for v in seen.values())
    assert all(sum(v) == STEPS - 1 for v in seen.values()), seen        # every call after each stream's first
    assert not torch.equal(on, plain)
    again = sample(refs.diffusers(FirstBlockCacheConfig(threshold=0.0)), "flux", r)
    assert torch.equal(again, plain)                                     # the previous hooks are gone


def test_reference_fastercache_runs_cfg_batched_uncond_first(comfy):
    """diffusers' FasterCache through the route: intervals 1 give the uncached diffusers sample (cfg batched in
    the pipelines' order, uncond rows first, and put back in ComfyUI's); interval 3 skips the uncond half on
    some steps (fewer block FLOPs) and changes the sample."""
    from harness import reference_models as rm
    from diffusers.hooks import FasterCacheConfig
    m, r = small("flux")
    refs = rm.References(m, "flux", STEPS, recipe=r)

    def config(n):
        return FasterCacheConfig(unconditional_batch_skip_range=n, spatial_attention_block_skip_range=n,
                                 unconditional_batch_timestep_skip_range=(-1, 1001), tensor_format="BCHW",
                                 attention_weight_callback=lambda _: 0.5,
                                 current_timestep_callback=lambda: refs.clock["t"])
    plain, full = bf.block_flops(lambda: sample(refs.plain(), "flux", r), refs.net)
    off, off_flops = bf.block_flops(lambda: sample(refs.faster_cache(config(1)), "flux", r), refs.net)
    torch.testing.assert_close(off, plain, rtol=0, atol=1e-5)
    assert off_flops == full
    on, on_flops = bf.block_flops(lambda: sample(refs.faster_cache(config(3)), "flux", r), refs.net)
    assert on_flops < full and (on - plain).abs().max() > 1e-3
    # the half the hook computes on a skipping call is ComfyUI's cond: a new cond label on the second call
    # comes out exact (had the halves been swapped, the cond would be estimated from the first call's)
    text, pooled = dm.codes(r)
    x = torch.randn(2, *dm.empty_latent("flux").shape[1:], generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.95, 0.95])

    def call(patched, label):
        rows = [label, dm.NULL]
        return patched.model.apply_model(x, sigma, c_crossattn=text[rows], y=pooled[rows], transformer_options={
            "cond_or_uncond": [0, 1], "wrappers": patched.wrappers})
    with torch.no_grad():
        exact = call(refs.plain(), 5)
        skipping = refs.faster_cache(config(2))
        call(skipping, 3)
        second = call(skipping, 5)
    torch.testing.assert_close(second[:1], exact[:1], rtol=0, atol=1e-5)
    assert (second[1:] - exact[1:]).abs().max() > 1e-3          # the uncond was estimated
