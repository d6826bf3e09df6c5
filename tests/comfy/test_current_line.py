"""What ComfyUI added around CacheKit's hooks after 0.3.75, each working through ComfyUI's own code (the current
line only: 0.3.75 has none of it; docs/comfyui-versions.md lists every change and what became of it).

- its own multi-GPU split (model_options["multigpu_clones"], samplers._calc_cond_batch_multigpu): the cond chunks
  of a step run on per-device model clones, each device from its own thread;
- ModelPatcher.clone() onto another instance of the model (dynamic VRAM's non-dynamic delegate, TorchCompileModel,
  the multi-GPU deep clones): object patches are copied by path;
- attention output patches that rewrite the kernel's output in place (Normalized Attention Guidance);
- set_model_optimized_attention (Model Attention Backend), which replaces an earlier attention override.
"""
import threading

import pytest
import torch

from harness import tiny_models as tm
from harness.node_calls import METHODS, STEPS, fbc, last_stats, pab

CPU0, CPU1 = torch.device("cpu"), torch.device("cpu", 1)


# --- multi-GPU -----------------------------------------------------------------------------------------------
def _split_over_two_devices(model):
    """model with a second device's copy, as MultiGPU CFG Split sets it up on real GPUs: a clone of the patched
    model onto its own instance of the weights (deepclone_multigpu), and the thread pool outer_sample makes. Two
    CPU "devices" (torch.device keys cpu and cpu:1) stand in for the GPUs: ComfyUI's code path, CPU tensors."""
    import comfy.multigpu
    other = model.clone(model_override=tm.wan()[0].get_clone_model_override())
    other.model.current_patcher = other
    other.patch_model()                         # what loading it onto its device does: its object patches applied
    m = model.clone()
    m.model_options["multigpu_clones"] = {CPU0: m, CPU1: other}
    m.model_options["multigpu_thread_pool"] = comfy.multigpu.MultiGPUThreadPool([CPU0, CPU1])  # outer_sample ends it
    return m, other


def _sample_split(ck, model, monkeypatch, lat, pos, neg):
    """Sample split over two devices under inference mode, as ComfyUI's executor runs a prompt (the device threads
    run under no_grad only); returns the latent and, per stream kind, the threads its model calls began on."""
    run_cls = ck.cache_core.run.CacheRun
    begun, original = [], run_cls.begin_call

    def spy(self, x, sigma, keys, kinds, must_compute=None):
        begun.extend((kind, threading.get_ident()) for kind in kinds)
        return original(self, x, sigma, keys, kinds, must_compute)
    monkeypatch.setattr(run_cls, "begin_call", spy)
    split, other = _split_over_two_devices(model)
    try:
        with torch.inference_mode():
            out = tm.sample(split, lat, pos, neg, steps=STEPS, cfg=3.0)
    finally:
        other.unpatch_model()
        monkeypatch.setattr(run_cls, "begin_call", original)
    threads = {}
    for kind, ident in begun:
        threads.setdefault(kind, []).append(ident)
    return out, threads


@pytest.mark.parametrize("method", ["fbc", "pab"])
def test_native_multigpu_split_keeps_each_stream_on_its_own_device_thread(ck, monkeypatch, method):
    """Off: the split's own uncached sample, bit for bit. Caching: each stream is decided once a step, always on
    the same device's thread, cond and uncond on different ones; both reuse. PAB runs through object patches on
    Wan's attention modules, which the second device's clone gets bound to its own modules."""
    off_on = {"fbc": (lambda m: fbc(ck, m, 0.0), lambda m: fbc(ck, m, 0.3)),
              "pab": (lambda m: pab(ck, m, 1, 1), lambda m: pab(ck, m, 2, 3))}[method]
    m, lat, pos, neg = tm.wan()
    base, _ = _sample_split(ck, m, monkeypatch, lat, pos, neg)
    off, threads = _sample_split(ck, off_on[0](m), monkeypatch, lat, pos, neg)
    assert torch.equal(off, base)
    assert set(threads) == {"cond", "uncond"} and all(len(t) == STEPS for t in threads.values())
    assert len(set(threads["cond"])) == len(set(threads["uncond"])) == 1
    assert set(threads["cond"]) != set(threads["uncond"])

    out, threads = _sample_split(ck, off_on[1](m), monkeypatch, lat, pos, neg)
    streams = last_stats(ck)["streams"]
    assert set(streams) == {"cond", "uncond"} and set(threads["cond"]) != set(threads["uncond"])
    for s in streams.values():
        assert s["computed_calls"] + s["reused_calls"] == STEPS and s["reused_steps"] and 0 in s["computed_steps"]
    assert torch.isfinite(out).all() and not torch.equal(out, base)


# --- a clone onto another instance of the model ----------------------------------------------------------------
# families x methods whose hooks include object patches: the forward route (Lumina 2), attention modules (Wan),
# the q/k/v linears (Flux), MLPs (SmoothCache)
MOVED = [("lumina2", "teacache"), ("wan", "pab"), ("flux", "pab"), ("flux", "smoothcache"), ("pixart", "fastercache")]


@pytest.mark.parametrize("family, method", MOVED)
def test_clone_onto_another_model_instance_runs_that_instance(ck, family, method):
    """clone(model_override=...) keeps the object patches by path: CacheKit's must call the new instance's
    modules (other weights here), off and caching alike, exactly as the node applied to that instance does."""
    off, on, _ = METHODS[method]
    m, lat, pos, neg = tm.FAMILIES[family]()
    other = tm.FAMILIES[family](seed=1)[0]

    def moved(apply):
        return apply(ck, m).clone(model_override=other.get_clone_model_override())
    assert torch.equal(tm.sample(moved(off), lat, pos, neg, steps=STEPS, cfg=3.0),
                       tm.sample(other, lat, pos, neg, steps=STEPS, cfg=3.0))
    cached = tm.sample(moved(on), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert last_stats(ck)["streams"]["cond"]["reused_steps"]
    assert torch.equal(cached, tm.sample(on(ck, other), lat, pos, neg, steps=STEPS, cfg=3.0))


# --- attention output patches --------------------------------------------------------------------------------------
def test_reused_attention_is_the_kernel_output_whatever_patches_do_to_it_after(ck):
    """Normalized Attention Guidance rewrites each attention output in place (an attn1_output_patch on Flux-style
    blocks). PAB must keep what the kernel returned: a reused attention is the kernel output of the step it was
    computed on, and NAG then guides it once, as on a computed step."""
    import comfy_extras.nodes_nag as nag
    m, lat, pos, neg = tm.flux()
    m = nag.NAGuidance.execute(m, nag_scale=5.0, nag_alpha=0.5, nag_tau=1.5).result[0]
    kernel_outs, returned = [], []
    recorder = m.clone()   # an override before CacheKit's: it sees every kernel CacheKit lets compute

    def record(func, *args, **kwargs):
        out = func(*args, **kwargs)
        kernel_outs.append(out.clone())
        return out
    recorder.model_options["transformer_options"]["optimized_attention_override"] = record
    patched = pab(ck, recorder, 2, 3)
    call_cls = ck.cache_core.component_cache.ComponentCall
    original = call_cls.attention

    def spy(self, compute):
        out = original(self, compute)
        returned.append(out.clone())
        return out
    call_cls.attention = spy
    try:
        tm.sample(patched, lat, pos, neg, steps=4, cfg=3.0)
    finally:
        call_cls.attention = original
    per_call = len(returned) // 4                       # attention calls a model call makes (cfg batched)
    assert last_stats(ck)["streams"]["cond"]["reused_steps"] == [1, 3] and len(kernel_outs) == 2 * per_call
    for step, computed in ((1, 0), (3, 2)):             # self interval 2: step 1 reuses step 0's, 3 reuses 2's
        for i in range(per_call):
            kernel = kernel_outs[computed // 2 * per_call + i]
            assert torch.equal(returned[step * per_call + i], kernel)


# --- Flux KV Cache: reference tokens dropped after the first call --------------------------------------------------
@pytest.mark.parametrize("method", ["fbc", "pab", "smoothcache", "teacache"])
def test_flux_kv_cache_drops_reference_tokens_after_the_first_call(ck, method):
    """Flux KV Cache (a core node: an attn1_patch keeping the reference images' k/v, a post_input patch dropping
    their tokens once kept, the timestep-zero reference method) shortens the image stream after the first call.
    What a stream cached for the longer stream must not be reused on the shorter one: off is the node's own
    sample, and a caching setting reuses on a finite sample."""
    import comfy_extras.nodes_flux as nodes_flux
    off, on = {"fbc": (lambda c, m: fbc(c, m, 0.0), lambda c, m: fbc(c, m, 1.0)),
               **{k: METHODS[k][:2] for k in ("pab", "smoothcache", "teacache")}}[method]
    m, lat, pos, neg = tm.with_references(lambda: tm.flux2(guidance_embed=False))
    m = nodes_flux.FluxKVCache.execute(m).result[0]
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)
    assert torch.equal(tm.sample(off(ck, m), lat, pos, neg, steps=STEPS, cfg=3.0), base)
    out = tm.sample(on(ck, m), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert last_stats(ck)["streams"]["cond"]["reused_steps"]
    assert torch.isfinite(out).all() and not torch.equal(out, base)


# --- an attention override installed after CacheKit's ---------------------------------------------------------------
def test_an_attention_backend_set_after_the_node_runs_behind_it(ck):
    """Model Attention Backend (set_model_optimized_attention) replaces any override before it. After PAB, the run
    puts PAB's override in front of it and says so, and PAB reuses as without it; before PAB, PAB chains to it."""
    from comfy.ldm.modules.attention import optimized_attention
    m, lat, pos, neg = tm.flux()

    def backend(model):
        out = model.clone()
        out.set_model_optimized_attention(optimized_attention)
        return out
    alone = tm.sample(pab(ck, m, 2, 3), lat, pos, neg, steps=STEPS, cfg=3.0)
    reused = last_stats(ck)["streams"]["cond"]["components_reused"]
    assert reused > 0
    for model, after in ((backend(pab(ck, m, 2, 3)), True), (pab(ck, backend(m), 2, 3), False)):
        out = tm.sample(model, lat, pos, neg, steps=STEPS, cfg=3.0)
        stats = last_stats(ck)
        assert stats["streams"]["cond"]["components_reused"] == reused
        assert any("replaced CacheKit's" in n for n in stats["notes"]) == after
        assert not any("took the attention kernels" in n for n in stats["notes"])
        torch.testing.assert_close(out, alone, rtol=0, atol=1e-5)


# --- q, k, v in AttentionTensorContainers ------------------------------------------------------------------------
def test_attention_tensor_containers_reach_the_override_as_tensors_and_a_reuse_frees_them(ck):
    """A model may hand its attention kernel q, k, v in AttentionTensorContainers (MiniMax H3 does), so a backend
    that knows them can free each as it goes. CacheKit's override has no container_function: ComfyUI takes the
    tensors out of the containers and calls it as for any kernel. A computed call equals the kernel's own output;
    a reused call returns the cached one and drops q, k, v without computing."""
    import weakref
    from comfy.ldm.modules.attention import AttentionTensorContainer, optimized_attention
    from cachekit.nodes.host.install import SPEC_KEY
    m = pab(ck, tm.flux()[0], 2, 3)                     # PAB reaches Flux's kernels through the override
    to = m.model_options["transformer_options"]
    spec = to[SPEC_KEY]
    run = spec.new_run(m, torch.tensor([1.0, 0.5, 0.0]))
    spec.live.push(run)
    g = torch.Generator().manual_seed(0)
    outs, alive = [], []
    try:
        for sigma in (1.0, 0.5):                        # step 0 computes, step 1 reuses (self interval 2)
            q, k, v = (torch.randn(1, 8, 32, generator=g) for _ in range(3))
            expected = optimized_attention(q, k, v, 2)
            alive = [weakref.ref(t) for t in (q, k, v)]
            containers = [AttentionTensorContainer(t) for t in (q, k, v)]
            del q, k, v
            call = run.begin_call(torch.zeros(1, 4), torch.tensor(sigma), ["c"], ["cond"])
            hidden = {"img": torch.zeros(1, 8, 32), "txt": torch.zeros(1, 8, 32)}
            call.run_block(0, hidden, lambda _: outs.append(optimized_attention(*containers, 2,  # noqa: F821 (del'd after)
                                                                                transformer_options=to)))
            run.end_call(call)
            assert all(c.tensor is None for c in containers)        # ComfyUI took the tensors out for the override
            del containers
            if sigma == 1.0:
                assert torch.equal(outs[0], expected)
    finally:
        spec.live.pop(run)
        run.close()
    assert torch.equal(outs[1], outs[0]) and not torch.equal(outs[1], expected)
    assert all(ref() is None for ref in alive)                      # the reused call's q, k, v are gone
