"""Other packs' patches on the same MODEL as a CacheKit node, in either order: an attention kernel swap (the Sage
nodes, ComfyUI's own Model Attention Backend (tests/comfy/test_current_line.py): they replace whatever override was
there), another node's object patch on the very modules CacheKit patches, and model patches after CacheKit's node
(ModelSamplingSD3, a post-CFG function). The cache still decides and reuses as alone, the other patch still runs,
and at off the output is that of the other patch alone."""
import pytest
import torch

from harness import tiny_models as tm
from harness.node_calls import STEPS, fbc, last_stats, pab, smoothcache

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each


class KernelSwap:
    """Another node's attention kernel, installed as the Sage nodes install theirs (it replaces any override there);
    `chains`: it calls the override it found instead (as capture/inspection nodes do). Counts the kernels it runs."""
    def __init__(self, chains: bool = False):
        self.chains, self.calls, self.found = chains, 0, None

    def __deepcopy__(self, memo):      # ComfyUI 0.3.75's clone deep-copies model_options: a function would stay itself
        return self

    def install(self, model):
        model = model.clone()
        to = model.model_options["transformer_options"]
        self.found = to.get("optimized_attention_override")
        to["optimized_attention_override"] = self
        return model

    def __call__(self, func, *args, **kwargs):
        self.calls += 1
        return self.found(func, *args, **kwargs) if self.chains and self.found else func(*args, **kwargs)


def sample(model, lat, pos, neg):
    return tm.sample(model, lat, pos, neg, steps=STEPS, cfg=3.0)


@pytest.mark.parametrize("chains", [False, True], ids=["replaces", "chains"])
@pytest.mark.parametrize("order", ["other_after", "other_before"])
@pytest.mark.parametrize("family", ["flux", "wan"])
def test_another_attention_override_runs_behind_cachekits_in_either_order(ck, family, order, chains):
    m, lat, pos, neg = tm.FAMILIES[family]()
    alone = sample(pab(ck, m, 2, 3), lat, pos, neg)
    alone_stats = last_stats(ck)["streams"]
    counter = KernelSwap(chains=False)
    sample(counter.install(m), lat, pos, neg)
    every_kernel = counter.calls

    other = KernelSwap(chains)
    cached = other.install(pab(ck, m, 2, 3)) if order == "other_after" else pab(ck, other.install(m), 2, 3)
    out = sample(cached, lat, pos, neg)
    stats = last_stats(ck)
    reused = sum(s["components_reused"] for s in stats["streams"].values())
    assert stats["streams"] == alone_stats and reused > 0            # CacheKit decided and reused as alone
    # the other kernel ran every attention CacheKit computed, once (cond and uncond share a batched call)
    assert other.calls == every_kernel - reused // 2
    assert torch.equal(out, alone)
    # families whose attention modules CacheKit caches whole (Wan) need no kernel override: nothing to put in front
    by_kernel = not ck.nodes.host.families.detect(m, "t").attention_modules
    assert any("replaced CacheKit's" in n for n in stats["notes"]) == (order == "other_after" and by_kernel)

    other_off = KernelSwap(chains)
    off = other_off.install(pab(ck, m, 1, 1)) if order == "other_after" else pab(ck, other_off.install(m), 1, 1)
    assert torch.equal(sample(off, lat, pos, neg), sample(KernelSwap().install(m), lat, pos, neg))
    assert other_off.calls == every_kernel


class LinearPatch:
    """Another node's object patch on a module's forward (a LoRA-style delta, a quantizing op): adds a fixed small
    output and counts its calls."""
    def __init__(self, module):
        self.module, self.calls = module, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return type(self.module).forward(self.module, *args, **kwargs) + 1e-3


# (family, module path, CacheKit node that patches that very path): Flux's q/k/v linear (PAB), Wan's MLP
# (SmoothCache), Lumina 2's block (every span method: the "forward" route)
SAME_PATH = [("flux", "diffusion_model.double_blocks.0.img_attn.qkv", "pab"),
             ("wan", "diffusion_model.blocks.1.ffn", "smoothcache"),
             ("lumina2", "diffusion_model.layers.1", "fbc")]


def _method(ck, name, model, on: bool):
    if name == "pab":
        return pab(ck, model, 2 if on else 1, 3 if on else 1)
    if name == "fbc":
        return fbc(ck, model, 0.5 if on else 0.0)
    return smoothcache(ck, model, [1, 0] * (STEPS // 2) if on else [1] * STEPS)


@pytest.mark.parametrize("family, path, method", SAME_PATH)
def test_another_object_patch_on_the_same_module_keeps_running(ck, family, path, method):
    """Another node's object patch registered before CacheKit's on the same module path: ComfyUI keeps one per path,
    so CacheKit's calls it rather than dropping it. Off is the other patch's own output; on, it runs on every call
    that computes that module, and the cache reuses."""
    import comfy.utils
    m, lat, pos, neg = tm.FAMILIES[family]()
    module = comfy.utils.get_attr(m.model, path)

    def patched_by_other():
        other = m.clone()
        patch = LinearPatch(module)
        other.add_object_patch(f"{path}.forward", patch)
        return other, patch
    other, patch = patched_by_other()
    own = sample(other, lat, pos, neg)
    computed_alone = patch.calls
    assert computed_alone > 0 and not torch.equal(own, sample(m, lat, pos, neg))   # the other patch does something

    other, patch = patched_by_other()
    assert torch.equal(sample(_method(ck, method, other, on=False), lat, pos, neg), own)
    assert patch.calls == computed_alone

    other, patch = patched_by_other()
    out = sample(_method(ck, method, other, on=True), lat, pos, neg)
    streams = last_stats(ck)["streams"]
    assert any(s["reused_steps"] or s.get("components_reused") for s in streams.values())
    assert 0 < patch.calls < computed_alone and torch.isfinite(out).all()


def test_model_patches_after_cachekit_leave_it_deciding(ck):
    """ModelSamplingSD3 (a new model sampling object) and a post-CFG function, added after CacheKit's node: off is
    their own output, and on, the cache reuses with the same decisions as with them before the node."""
    import nodes
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    del nodes
    m, lat, pos, neg = tm.flux()

    def others(model):
        model = ModelSamplingSD3().patch(model, 3.0)[0].clone()
        model.set_model_sampler_post_cfg_function(lambda args: args["denoised"] * 0.999)
        return model
    assert torch.equal(sample(others(fbc(ck, m, 0.0)), lat, pos, neg), sample(others(m), lat, pos, neg))
    out_after = sample(others(fbc(ck, m, 1.0)), lat, pos, neg)
    after = last_stats(ck)["streams"]
    out_before = sample(fbc(ck, others(m), 1.0), lat, pos, neg)
    before = last_stats(ck)["streams"]
    assert after == before and after["cond"]["reused_steps"]
    assert torch.equal(out_after, out_before)


def test_an_object_patch_added_after_cachekits_on_the_same_module_is_not_silent(ck):
    """ComfyUI keeps the last object patch added on a path. After CacheKit's node, another node's patch on a module
    CacheKit caches (Wan's MLP under SmoothCache) makes that module compute on every step, and the run says so;
    on a block CacheKit routes (Lumina 2's blocks) the run is refused, naming the node and the block: that block
    would run on a reused step's stale input."""
    import comfy.utils
    m, lat, pos, neg = tm.wan()
    path = "diffusion_model.blocks.1.ffn"
    patch = LinearPatch(comfy.utils.get_attr(m.model, path))
    after = smoothcache(ck, m, [1, 0] * (STEPS // 2)).clone()
    after.add_object_patch(f"{path}.forward", patch)
    out = sample(after, lat, pos, neg)
    stats = last_stats(ck)
    assert patch.calls == STEPS and torch.isfinite(out).all()          # computed on every (batched) call
    assert stats["streams"]["cond"]["components_reused"] > 0          # the other modules are still reused
    assert any("replaced CacheKit's patch on blocks.1.ffn" in n for n in stats["notes"])

    m, lat, pos, neg = tm.lumina2()
    block = "diffusion_model.layers.1"
    after = fbc(ck, m, 0.5).clone()
    after.add_object_patch(f"{block}.forward", LinearPatch(comfy.utils.get_attr(m.model, block)))
    with pytest.raises(ck.nodes.host.validation.CacheKitInputError) as err:
        sample(after, lat, pos, neg)
    assert "Apply First Block Cache" in str(err.value) and "layers.1" in str(err.value)
