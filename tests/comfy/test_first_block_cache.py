"""Apply First Block Cache through ComfyUI's own sampling path (comfy.sample.sample / KSampler),
on tiny seeded instances of the real model classes of every supported family."""
import copy

import pytest
import torch

from harness import tiny_models as tm
from harness.node_calls import FAMILIES, STEPS, block_attrs, block_count, block_marker, fbc, last_stats

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_threshold_zero_is_bit_identical(ck, family, cfg):
    m, lat, pos, neg = tm.FAMILIES[family]()
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=cfg)
    out = tm.sample(fbc(ck, m, 0.0), lat, pos, neg, steps=STEPS, cfg=cfg)
    assert torch.equal(base, out)
    stats = last_stats(ck)
    assert all(s["reused_calls"] == 0 for s in stats["streams"].values())
    assert stats["block_evals"] == stats["block_evals_full"]


@pytest.mark.parametrize("family", FAMILIES)
def test_high_threshold_reuses_and_stats_match_counted_blocks(ck, family):
    m, lat, pos, neg = tm.FAMILIES[family]()
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)
    patched = fbc(ck, m, 1.0)
    with tm.BlockCounter(patched, block_attrs(ck, m), marker=block_marker(ck, m)) as counter:
        out = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    stats = last_stats(ck)
    assert stats["status"] == "finished" and stats["total_steps"] == STEPS
    assert set(stats["streams"]) == {"cond", "uncond"}
    for s in stats["streams"].values():
        assert s["steps_seen"] == STEPS
        assert 0 in s["computed_steps"] and s["reused_steps"], s
    assert stats["block_evals"] == counter.count            # stats agree with the blocks that really ran
    assert stats["block_evals"] < stats["block_evals_full"]
    n_blocks = block_count(ck, m)
    calls = stats["block_evals_full"] // n_blocks
    reused_calls = sum(s["reused_calls"] for s in stats["streams"].values()) // 2   # batched cond+uncond
    assert stats["block_evals"] == calls * n_blocks - reused_calls * (n_blocks - 1)
    assert torch.isfinite(out).all()
    assert not torch.equal(out, base)


@pytest.mark.parametrize("family", FAMILIES)
def test_cfg1_and_batch2(ck, family):
    m, lat, pos, neg = tm.FAMILIES[family](batch=2)
    patched = fbc(ck, m, 1.0)
    out = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=1.0)
    stats = last_stats(ck)
    assert list(stats["streams"]) == ["cond"]          # cfg 1: ComfyUI skips uncond, one stream
    assert stats["streams"]["cond"]["reused_steps"]
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    out3 = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    assert torch.isfinite(out3).all() and set(last_stats(ck)["streams"]) == {"cond", "uncond"}


@pytest.mark.parametrize("family", FAMILIES)
def test_repeat_runs_identical_then_other_resolution(ck, family):
    m, lat, pos, neg = tm.FAMILIES[family]()
    patched = fbc(ck, m, 1.0)
    a = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    b = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    assert torch.equal(a, b)                           # nothing leaks from one run into the next
    # the spatial sizes: one for token and audio latents (ACE-Step's 16 rows are fixed by its patch height)
    grown = 1 if family == "ace_step" else min(2, lat.ndim - 2)
    bigger = torch.zeros(*lat.shape[:-grown], *(n + 4 for n in lat.shape[-grown:]))
    if family in tm.FIXED_SIZE:   # one latent size only (TripoSplat): the model itself refuses another, uncached
        with pytest.raises(RuntimeError):
            tm.sample(m, bigger, pos, neg, steps=STEPS, cfg=3.0)
        return
    c = tm.sample(patched, bigger, pos, neg, steps=STEPS, cfg=3.0)
    assert c.shape == bigger.shape and torch.isfinite(c).all()
    assert last_stats(ck)["streams"]["cond"]["reused_steps"]


def _options_snapshot(model):
    to = model.model_options.get("transformer_options", {})
    return (copy.copy(to.get("patches_replace")), sorted(to), copy.deepcopy(
        {k: {kk: len(v) for kk, v in d.items()} for k, d in model.wrappers.items()}))


@pytest.mark.parametrize("family", FAMILIES)
def test_input_model_untouched_and_removing_node_removes_effect(ck, family):
    m, lat, pos, neg = tm.FAMILIES[family]()
    before = _options_snapshot(m)
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)
    patched = fbc(ck, m, 1.0)
    assert patched is not m and _options_snapshot(m) == before
    cached = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    again = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)   # the workflow without the node
    assert not torch.equal(cached, base) and torch.equal(again, base)


@pytest.mark.parametrize("family", ["flux", "wan"])
def test_heun_counts_steps_not_model_calls(ck, family):
    m, lat, pos, neg = tm.FAMILIES[family]()
    patched = fbc(ck, m, 1.0)
    # block 0 runs every call
    with tm.BlockCounter(patched, block_attrs(ck, m), first_only=True, marker=block_marker(ck, m)) as counter:
        tm.sample(patched, lat, pos, neg, steps=5, cfg=1.0, sampler="heun")
    s = last_stats(ck)["streams"]["cond"]
    assert last_stats(ck)["total_steps"] == 5 and s["steps_seen"] == 5
    assert s["computed_calls"] + s["reused_calls"] == 9 == counter.count   # heun: 2 calls/step, last 1


def test_sequential_cond_uncond_decide_separately(ck):
    """Cond texts of very different lengths are not batched: each stream then decides on its own."""
    import importlib
    fb = importlib.import_module("cachekit.cache_core.policies.first_block").FirstBlockCache
    m, lat, pos, _ = tm.wan()
    neg = [[torch.randn(1, 48, 32, generator=torch.Generator().manual_seed(7)), {}]]   # lcm(8,48)/8 > 4
    seen = []
    orig = fb.measure

    def spy(self, state, probe, **at):
        v = orig(self, state, probe, **at)
        seen.append(None if v is None else float(v[0] / v[1]))
        return v
    fb.measure = spy
    try:
        tm.sample(fbc(ck, m, 0.0), lat, pos, neg, steps=STEPS, cfg=3.0)
        # calls alternate per step; step 1 metrics (vs step 0) of the two streams:
        first, second = seen[2], seen[3]
        assert first != second
        thr = (first + second) / 2
        seen.clear()
        tm.sample(fbc(ck, m, thr), lat, pos, neg, steps=STEPS, cfg=3.0)
    finally:
        fb.measure = orig
    streams = last_stats(ck)["streams"]
    step1 = {lab: (1 in s["reused_steps"]) for lab, s in streams.items()}
    assert sorted(step1.values()) == [False, True], streams    # one reused step 1, the other computed it


@pytest.mark.parametrize("kwargs, message", [
    (dict(threshold=-0.1), "residual_diff_threshold must be >= 0.0, got -0.1"),
    (dict(threshold=float("nan")), "residual_diff_threshold must be finite"),
    (dict(start=0.8, end=0.2), "start_percent (0.8) must not be greater than end_percent (0.2)"),
    (dict(max_skips=-2), "max_consecutive_skips must be >= -1, got -2"),
    (dict(warmup=1.5), "warmup_steps must be an integer, got 1.5"),
])
def test_bad_inputs_name_node_and_value(ck, kwargs, message):
    m = tm.wan()[0]
    args = dict(threshold=0.1) | kwargs
    with pytest.raises(ValueError) as err:
        fbc(ck, m, args.pop("threshold"), **args)
    assert str(err.value).startswith("Apply First Block Cache: ") and message in str(err.value)


def test_non_dit_model_is_refused_naming_the_class(ck):
    with pytest.raises(ValueError) as err:
        fbc(ck, tm.sd15_unet(), 0.1)
    msg = str(err.value)
    assert msg.startswith("Apply First Block Cache: model class 'UNetModel'") and "is a UNet" in msg
    with pytest.raises(ValueError, match="input 'model' is not a ComfyUI diffusion MODEL"):
        fbc(ck, object(), 0.1)


def test_a_subclass_is_its_parents_family_only_while_it_keeps_the_forward(ck):
    """A subclass of a supported model class (ComfyUI 0.33 adds several) is that family when it keeps the forward
    the family row was written for: cached exactly like it. One that redefines its forward is refused, naming the
    class, the family and what it redefined, instead of being assumed to work."""
    m, lat, pos, neg = tm.wan()
    wan_class = type(m.model.diffusion_model)
    plain = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)
    same = m.clone()
    same.model.diffusion_model.__class__ = type("MyWanModel", (wan_class,), {"__module__": "custom_pack.model"})
    try:
        assert torch.equal(tm.sample(fbc(ck, same, 0.0), lat, pos, neg, steps=STEPS, cfg=3.0), plain)
        tm.sample(fbc(ck, same, 1.0), lat, pos, neg, steps=STEPS, cfg=3.0)
        assert last_stats(ck)["family"] == "Wan" and last_stats(ck)["streams"]["cond"]["reused_steps"]
        own = {"__module__": "custom_pack.model",
               "forward_orig": lambda self, *a, **k: wan_class.forward_orig(self, *a, **k)}
        same.model.diffusion_model.__class__ = type("OwnForwardWan", (wan_class,), own)
        with pytest.raises(ValueError) as err:
            fbc(ck, same, 0.1)
        assert str(err.value).startswith("Apply First Block Cache: model class 'OwnForwardWan' is a WanModel (Wan) "
                                         "with its own forward_orig")
    finally:
        same.model.diffusion_model.__class__ = wan_class       # the clone shares the module with `m`


def test_ksampler_node_path_matches_comfy_sample(ck):
    """The KSampler node function (what the server runs) goes through the same hooks."""
    import nodes
    m, lat, pos, neg = tm.wan()
    patched = fbc(ck, m, 1.0)
    (out,) = nodes.common_ksampler(patched, 0, STEPS, 3.0, "euler", "simple", pos, neg, {"samples": lat})
    direct = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    assert torch.equal(out["samples"].float(), direct)
    assert last_stats(ck)["streams"]["cond"]["reused_steps"]


# How to read block 0's hidden state in and out, per family (the block's own call convention).
_BLOCK0_IO = {
    "flux": (lambda a, k: k["img"], lambda o: o[0]),
    "chroma": (lambda a, k: k["img"], lambda o: o[0]),
    "hunyuan_video": (lambda a, k: k["img"], lambda o: o[0]),
    "wan": (lambda a, k: a[0], lambda o: o),
    "qwen_image": (lambda a, k: k["hidden_states"], lambda o: o[1]),
    "ltxv": (lambda a, k: a[0], lambda o: o),
}
_BLOCK0_IO |= {"flux2": _BLOCK0_IO["flux"], "chroma_radiance": _BLOCK0_IO["chroma"],
               "hunyuan_video15": _BLOCK0_IO["hunyuan_video"], "lumina2": _BLOCK0_IO["wan"],
               "sd3": (lambda a, k: a[1], lambda o: o[1]),      # JointBlock(context, x) -> (context, x)
               "omnigen2": _BLOCK0_IO["wan"], "cosmos_predict2": _BLOCK0_IO["wan"],
               "auraflow": (lambda a, k: a[1], lambda o: o[1]),   # MMDiTBlock(c, x, ...) -> (c, x)
               "mochi": (lambda a, k: a[0], lambda o: o[0]),      # AsymmetricJointBlock(x, c, y, ...) -> (x, y)
               "hidream": (lambda a, k: k["image_tokens"], lambda o: o[0]),
               "hunyuan3d": _BLOCK0_IO["flux"], "pixart": _BLOCK0_IO["wan"], "hunyuan_dit": _BLOCK0_IO["wan"],
               "stable_audio": _BLOCK0_IO["wan"], "hunyuan3d21": _BLOCK0_IO["wan"],
               "ace_step": (lambda a, k: k["hidden_states"], lambda o: o)} | tm.BLOCK0_IO


@pytest.mark.parametrize("family", FAMILIES)
def test_probe_is_the_first_block_residual_change(ck, family):
    """The decision metric equals relL1 of block 0's residual (out - in) between consecutive computed
    calls, measured independently with module hooks. Catches probes spoiled by in-place block updates."""
    import importlib
    fb = importlib.import_module("cachekit.cache_core.policies.first_block").FirstBlockCache
    m, lat, pos, neg = tm.FAMILIES[family]()
    patched = fbc(ck, m, 0.0)
    block0 = tm.resolve(patched.model.diffusion_model, block_attrs(ck, m)[0])[0]
    # a third entry: the block method the forward calls instead of the module (Wan-Animate-2's forward_gen), which
    # module hooks do not see: it is wrapped on the instance instead
    get_in, get_out, *method = _BLOCK0_IO[family]
    residuals, pending, metrics = [], [], []
    if method:
        bound = getattr(block0, method[0])

        def wrapped(*a, **k):
            pending.append(get_in(a, k).clone())
            out = bound(*a, **k)
            residuals.append(get_out(out) - pending.pop())
            return out
        setattr(block0, method[0], wrapped)
        undo = [lambda: delattr(block0, method[0])]
    else:
        undo = [block0.register_forward_pre_hook(lambda mod, a, k: pending.append(get_in(a, k).clone()),
                                                 with_kwargs=True).remove,
                block0.register_forward_hook(lambda mod, a, k, o: residuals.append(get_out(o) - pending.pop()),
                                             with_kwargs=True).remove]
    orig = fb.measure

    def spy(self, state, probe, **at):
        v = orig(self, state, probe, **at)
        metrics.append(v)
        return v
    fb.measure = spy
    try:
        tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=1.0)
    finally:
        fb.measure = orig
        for u in undo:
            u()
    # a model measuring another modality too (LTX-2's audio) measures it after the image: every k-th is the image's
    metrics = metrics[::1 + len(ck.nodes.host.families.detect(m, "t").decided)]
    assert len(residuals) == STEPS and metrics[0] is None
    expected = [float((r - q).abs().mean() / q.abs().mean()) for q, r in zip(residuals, residuals[1:])]
    got = [float(v[0] / v[1]) for v in metrics[1:]]
    assert min(expected) > 1e-5                      # block 0 really changes (Stable Audio at sigma 500: 3e-5)
    assert got == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_reused_call_on_unchanged_input_reproduces_computed_output(ck, family):
    """A sampler that evaluates the same x at the same sigma twice: the second call's block-0 residual
    is unchanged, so it reuses, and cached block-0 output + tail residual must give the computed output
    back. A residual stored against an anchor that the blocks updated in place would not."""
    import comfy.sample
    import comfy.samplers
    m, lat, pos, neg = tm.FAMILIES[family]()
    outs = []

    def twice(model, x, sigmas, extra_args=None, callback=None, disable=None):
        s = sigmas[0] * x.new_ones([x.shape[0]])
        outs.append(model(x, s, **extra_args))
        outs.append(model(x, s, **extra_args))
        return outs[-1]

    sigmas = torch.tensor([0.8, 0.4, 0.0])
    noise = comfy.sample.prepare_noise(lat, 3)
    comfy.sample.sample_custom(fbc(ck, m, 0.05), noise, 3.0, comfy.samplers.KSAMPLER(twice), sigmas, pos, neg,
                               lat, disable_pbar=True, seed=3)
    streams = last_stats(ck)["streams"]
    assert all(s["computed_calls"] == s["reused_calls"] == 1 for s in streams.values()), streams
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["error", "interrupted"])
def test_error_or_interrupt_ends_the_run_and_the_next_run_starts_clean(ck, kind):
    import comfy.model_management as mm
    from cachekit.nodes.host.install import SPEC_KEY
    m, lat, pos, neg = tm.wan()
    patched = fbc(ck, m, 1.0)
    clean = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    exc = mm.InterruptProcessingException() if kind == "interrupted" else RuntimeError("boom")

    def stop_at_step_3(step, *_):
        if step == 3:
            raise exc
    with pytest.raises(type(exc)):
        tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0, callback=stop_at_step_3)
    stats = last_stats(ck)
    assert stats["status"] == kind and stats["streams"]["cond"]["steps_seen"] == 4
    assert patched.model_options["transformer_options"][SPEC_KEY].live.run is None     # the run is gone
    assert torch.equal(tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0), clean)


def test_stats_report_the_bytes_each_stream_holds(ck):
    """First Block Cache holds, per stream, its span residual and the block-0 residual it compares against:
    two tensors of one stream's hidden state (1 x tokens x dim, fp32)."""
    m, lat, pos, neg = tm.wan()
    tm.sample(fbc(ck, m, 0.3), lat, pos, neg, steps=STEPS, cfg=3.0)
    dm = m.model.diffusion_model
    tokens = lat.shape[-1] // 2 * lat.shape[-2] // 2 * lat.shape[2]
    for stream in ("cond", "uncond"):
        assert last_stats(ck)["streams"][stream]["held_bytes"] == 2 * tokens * dm.dim * 4
