"""TeaCache and MagCache (+ Calibrate MagCache) through ComfyUI's own sampling path, on tiny seeded
instances of every supported family: off is exact, reuse happens and matches the stats and the
blocks that really ran, cond/uncond keep their own state, runs repeat exactly, bad input is refused."""
import functools
import types

import pytest
import torch

from harness import pack
from harness import tiny_models as tm
from harness.node_calls import (COMPONENT_METHODS, FAMILIES, METHODS, STEPS, block_attrs, block_count, block_marker,
                                dbcache, fastercache, fbc, last_stats, magcache, pab, smoothcache, stack_residuals,
                                taylorseer, teacache)

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each


SPAN_METHODS = [m for m in METHODS if m not in COMPONENT_METHODS]
# every method on every family; families that add into the hidden state between blocks on every call (Wan VACE,
# Cosmos 1) take the component methods only, and refuse the span ones (test_span_methods_refused_where_blocks_get_hints)
# Hunyuan3D 2.1 swaps the text of a batch's two halves: a call without the uncond half (FasterCache's) cannot run
CFG_REFUSED = [("fastercache", f) for f in sorted(tm.CFG_PAIRS)]
MATRIX = ([(m, f) for f in FAMILIES for m in METHODS if (m, f) not in CFG_REFUSED]
          + [(m, f) for f in tm.COMPONENT_ONLY for m in COMPONENT_METHODS])
BUILD = {**tm.FAMILIES, **tm.COMPONENT_ONLY}


@functools.cache
def uncached(family: str) -> torch.Tensor:
    """The family's output without a node, sampled once per process from its own build (the seeded builds are
    alike): every method's off run on a fresh build must give it bit for bit."""
    m, lat, pos, neg = BUILD[family]()
    return tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)


@pytest.mark.parametrize("method, family", MATRIX)
def test_off_is_bit_identical(ck, method, family):
    m, lat, pos, neg = BUILD[family]()
    base = uncached(family)
    out = tm.sample(METHODS[method][0](ck, m), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert torch.equal(base, out)
    assert all(s["reused_calls"] == 0 for s in last_stats(ck)["streams"].values())


@pytest.mark.parametrize("method, family", MATRIX)
def test_reuse_matches_stats_and_counted_blocks_and_repeats(ck, method, family):
    m, lat, pos, neg = BUILD[family]()
    base = uncached(family)
    patched = METHODS[method][1](ck, m)
    with tm.BlockCounter(patched, block_attrs(ck, m), marker=block_marker(ck, m)) as counter:
        out = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    stats = last_stats(ck)
    n_blocks = block_count(ck, m)
    assert stats["block_evals_full"] == STEPS * n_blocks            # cond+uncond batched: one call a step
    cond = stats["streams"]["cond"]
    # FasterCache reuses self attention on cond; ACE-Step computes its self attention its own way (a run note says
    # so): there only the uncond pass is estimated
    kinds = {k for ks in ck.nodes.host.families.detect(m, "t").attention_kinds.values() for k in ks}
    if method == "fastercache" and "self" not in kinds:
        assert stats["streams"]["uncond"]["reused_steps"] and any("no self attention call" in n for n in stats["notes"])
    else:
        assert cond["reused_steps"]
    assert 0 in cond["computed_steps"]
    always = n_blocks if METHODS[method][2] is None else METHODS[method][2]
    expected = len(cond["computed_steps"]) * n_blocks + len(cond["reused_steps"]) * always
    assert stats["block_evals"] == counter.count == expected
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    assert torch.equal(tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0), out)
    assert last_stats(ck)["streams"] == stats["streams"]


REFUSED = [(m, f) for f in tm.COMPONENT_ONLY for m in ["fbc", *SPAN_METHODS]]


@pytest.mark.parametrize("method, family", REFUSED)
def test_span_methods_refused_where_blocks_get_hints(ck, method, family):
    """What the coverage table lists as not applicable, with the family row's reason."""
    family_row = ck.nodes.host.families.detect(BUILD[family]()[0], "t")
    apply = (lambda ck_, m: fbc(ck_, m, 0.5)) if method == "fbc" else METHODS[method][1]
    with pytest.raises(ValueError) as err:
        apply(ck, BUILD[family]()[0])
    assert family_row.injects and family_row.injects in str(err.value)


@pytest.mark.parametrize("method, family", CFG_REFUSED)
def test_cfg_cache_refused_where_the_model_pairs_the_halves(ck, method, family):
    """What the coverage table lists as not applicable for the CFG cache, with the family row's reason."""
    model = BUILD[family]()[0]
    row = ck.nodes.host.families.detect(model, "t")
    with pytest.raises(ValueError) as err:
        METHODS[method][1](ck, model)
    assert row.cfg_pairs and row.cfg_pairs in str(err.value) and "Apply FasterCache" in str(err.value)


def test_coverage_table_claims_only_what_the_tests_run():
    """docs/coverage.md (scripts/coverage_table.py) marks a cell only where a test of it exists here."""
    from pathlib import Path
    import coverage_table
    labels = {label: key for key, label in tm.LABELS.items()}
    text = (Path(__file__).resolve().parents[2] / "docs" / "coverage.md").read_text()
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ") and "`" in line]
    columns = coverage_table.columns()
    header = next(line for line in text.splitlines() if line.startswith("| family |"))
    assert [c.strip() for c in header.split("|")[3:-1]] == list(columns)     # the doc's columns are the methods'
    # every family of every line: those this line lacks are checked on the line that has them
    assert {labels[r[0].strip()] for r in rows} == set(BUILD) | tm.UNAVAILABLE
    for r in rows:
        family = labels[r[0].strip()]
        if family in tm.UNAVAILABLE:
            continue
        for column, cell in zip(columns, r[2:]):
            for key in columns[column]:
                if cell.strip() == "works":
                    assert (key, family) in MATRIX or (key == "fbc" and family in FAMILIES), (column, family)
                elif cell.strip().startswith("n/a"):
                    assert ((key if key in ("fbc", *SPAN_METHODS) else None, family) in REFUSED
                            or (key, family) in CFG_REFUSED), (column, family)


def count_attention(ck, m, calls: list):
    """Record every attention that really computes: an attention override installed before the method sees
    each kernel call; where a family's attention gets no transformer_options (PixArt, HunyuanDiT), a hook on
    each attention module's first Linear, which runs only when the module computes. Returns (model, hooks)."""
    family = ck.nodes.host.families.detect(m, "t")
    if not family.attention_modules:
        m = m.clone()
        m.model_options["transformer_options"]["optimized_attention_override"] = \
            lambda func, *a, **k: calls.append(1) or func(*a, **k)
        return m, []
    paths = family.module_paths(family.layout(m.model.diffusion_model)[1], family.attention_modules)
    firsts = [next(x for x in _get(m.model, path).modules() if isinstance(x, torch.nn.Linear)) for _, path, _ in paths]
    return m, [lin.register_forward_hook(lambda *a: calls.append(1)) for lin in firsts]


@pytest.mark.parametrize("family", FAMILIES)
def test_pab_reuses_attention_outputs_and_counts_kernel_calls(ck, family):
    """The attention calls that really ran (count_attention) are exactly those PAB did not reuse."""
    m, lat, pos, neg = tm.FAMILIES[family]()
    kernel_calls = []
    m, hooks = count_attention(ck, m, kernel_calls)
    try:
        base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)
        total = len(kernel_calls)
        kernel_calls.clear()
        out = tm.sample(pab(ck, m, 2, 3), lat, pos, neg, steps=STEPS, cfg=3.0)
    finally:
        for h in hooks:
            h.remove()
    s = last_stats(ck)["streams"]["cond"]
    assert s["components_run"] == len(kernel_calls) and s["components_run"] + s["components_reused"] == total
    assert s["components_reused"] > 0 and torch.isfinite(out).all() and not torch.equal(out, base)
    # self every 2nd step, cross every 3rd: a step reuses where any attention kind the model calls is not due
    # (joint-attention families call only self, ACE-Step's kernel only cross); 0 and 6 compute everything
    kinds = {k for ks in ck.nodes.host.families.detect(m, "t").attention_kinds.values() for k in ks}
    due = {"self": 2, "cross": 3}
    assert s["reused_steps"] == [i for i in range(STEPS) if any(i % due[k] for k in kinds)]


@pytest.mark.parametrize("family", ["flux", "flux2", "chroma", "chroma_radiance", "hunyuan_video",
                                    "hunyuan_video15", "hunyuan3d"])
def test_reused_attention_skips_the_projections_computing_its_qkv(ck, family, monkeypatch):
    """Flux-style blocks compute q, k, v inline ahead of the kernel: where PAB reuses an attention, the linears
    feeding it skip those outputs (single blocks' linear1 still computes its MLP part). The images equal those
    of reusing the kernel alone, for fewer FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode
    m, lat, pos, neg = tm.FAMILIES[family]()

    def run():
        with FlopCounterMode(display=False) as counter:
            out = tm.sample(pab(ck, m, 2, 3), lat, pos, neg, steps=STEPS, cfg=3.0)
        return out, counter.get_total_flops()
    out, flops = run()
    assert last_stats(ck)["streams"]["cond"]["components_reused"] > 0
    monkeypatch.setattr(ck.nodes.host.patches, "attention_inputs", lambda *a: None)      # the kernel alone
    kernel_only, kernel_flops = run()
    torch.testing.assert_close(out, kernel_only, rtol=0, atol=1e-6)
    assert flops < kernel_flops


def test_qkv_projections_compute_when_another_override_takes_the_kernels(ck, monkeypatch):
    """Another node's attention override installed after CacheKit's, here handing the kernels to CacheKit's only
    for the first calls: q/k/v skipped on a later call would reach a kernel that computes on zeros. The run puts
    CacheKit's override in front of it (patches.put_in_front), so every kernel passes CacheKit's first and the
    sample equals that of reusing the kernel alone under the same override."""
    m, lat, pos, neg = tm.flux()

    class Foreign:
        def __init__(self, previous):
            self.previous, self.calls = previous, 0

        def __call__(self, func, *args, **kwargs):
            self.calls += 1
            return self.previous(func, *args, **kwargs) if self.calls <= 12 else func(*args, **kwargs)

    def run():
        patched = pab(ck, m, 2, 3).clone()
        to = patched.model_options["transformer_options"]
        to["optimized_attention_override"] = Foreign(to["optimized_attention_override"])
        return tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    out = run()
    monkeypatch.setattr(ck.nodes.host.patches, "attention_inputs", lambda *a: None)      # the kernel alone
    assert torch.equal(out, run())


def _get(module, path):
    """The submodule at a dotted path, or None (SD3's last block has no text MLP)."""
    for part in path.split("."):
        module = getattr(module, part, None)
    return module


@pytest.mark.parametrize("family", FAMILIES)
def test_smoothcache_calibrate_schedule_apply_chain(ck, family):
    """Calibration samples exactly like KSampler; its schedule applied reuses attention and MLP outputs on
    the scheduled steps, and the counts equal the kernel calls and MLP forwards that really ran."""
    N = ck.NODE_CLASS_MAPPINGS
    m, lat, pos, neg = tm.FAMILIES[family]()
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)
    out = N["CalibrateSmoothCache"]().calibrate(
        model=m, lookahead=3, seed=0, steps=STEPS, cfg=3.0, sampler_name="euler", scheduler="simple",
        positive=pos, negative=neg, latent_image={"samples": lat}, denoise=1.0)
    cal, latent = out["result"]
    assert out["ui"]["cachekit_chart"][0]["series"]["mlp"] == [e or 0.0 for e in cal["errors"]["mlp"]["1"]]
    assert torch.equal(tm.packed(latent["samples"]), base)
    kinds = {k for ks in ck.nodes.host.families.detect(m, "t").attention_kinds.values() for k in ks}
    assert kinds | {"mlp"} <= set(cal["errors"]) and len(cal["errors"]["mlp"]["1"]) == STEPS - 1
    schedule, text = N["SmoothCacheSchedule"]().build(calibration=cal, alpha=10.0)   # generous alpha: max gaps
    assert all(row == [1, 0, 0, 0, 1, 0, 0, 1] for row in schedule["schedule"].values()), text
    family = ck.nodes.host.families.detect(m, "t")
    paths = [path for _, path, _ in family.mlp_paths(family.layout(m.model.diffusion_model)[1])]
    mlps = [mod for mod in (_get(m.model, path) for path in paths) if mod is not None]
    forwards = []   # an MLP's first linear (or conv: ACE-Step's) runs only when the MLP is really computed
    weighted = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
    first_linear = [next(x for x in mod.modules() if isinstance(x, weighted)) for mod in mlps]
    hooks = [lin.register_forward_hook(lambda *a: forwards.append(1)) for lin, mod in zip(first_linear, mlps)
             if lin is not mod]
    # an MLP that is itself one linear (CogVideoX's ff_out): hooks on it fire around the object patch, reused or
    # not, so the class forward that the patch calls when it computes is counted instead (the patch binds it when
    # ApplySmoothCache installs it)
    alone = {id(mod) for lin, mod in zip(first_linear, mlps) if lin is mod}
    classes = {type(mod): vars(type(mod)).get("forward") for mod in mlps if id(mod) in alone}

    def counted(forward):
        def count(self, *args, **kwargs):
            if id(self) in alone:
                forwards.append(1)
            return forward(self, *args, **kwargs)
        return count
    for cls in classes:
        cls.forward = counted(cls.forward)
    try:
        out = tm.sample(pack.node(ck, "ApplySmoothCache", model=m, schedule=schedule)[0], lat, pos, neg, steps=STEPS,
                        cfg=3.0)
    finally:
        for h in hooks:
            h.remove()
        for cls, own in classes.items():
            if own is None:
                del cls.forward
            else:
                cls.forward = own
    s = last_stats(ck)["streams"]["cond"]
    assert s["reused_steps"] == [1, 2, 3, 5, 6] and s["computed_steps"] == [0, 4, 7]
    assert len(forwards) == 3 * len(mlps)               # MLPs ran on the 3 computed steps only
    assert torch.isfinite(out).all() and not torch.equal(out, base)


def test_methods_say_when_a_setting_had_nothing_to_act_on(ck):
    """PAB's cross interval on a model whose text and image attend jointly (Flux), FasterCache's CFG cache on a
    run with no uncond pass (cfg 1): the run's notes say so (shown on the node and logged); where they act, not."""
    def notes(build, apply, cfg):
        m, lat, pos, neg = build()
        tm.sample(apply(m), lat, pos, neg, steps=STEPS, cfg=cfg)
        return last_stats(ck)["notes"]
    idle_cross = "no cross attention call through ComfyUI's attention (text and image attend jointly, or it " \
                 "computes that attention its own way): cross_attention_interval 3 had nothing to act on"
    assert any(idle_cross in n for n in notes(tm.flux, lambda m: pab(ck, m, 2, 3), 3.0))
    assert not any("attention call" in n for n in notes(tm.wan, lambda m: pab(ck, m, 2, 3), 3.0))
    no_uncond = "no model call of this run had an uncond pass"
    assert any(no_uncond in n for n in notes(tm.wan, lambda m: fastercache(ck, m, 5, 2), 1.0))
    assert not any(no_uncond in n for n in notes(tm.wan, lambda m: fastercache(ck, m, 5, 2), 3.0))


def test_smoothcache_step_count_mismatch_is_a_clear_error(ck):
    m, lat, pos, neg = tm.wan()
    patched = smoothcache(ck, m, [1, 0, 1, 0, 1, 1])
    with pytest.raises(ValueError, match="Apply SmoothCache: the schedule is for 6 steps but this run has 8"):
        tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)


def test_fastercache_skips_the_uncond_call(ck):
    """Steps 1-4, 6, 7 run cond alone (uncond estimated, no model call for it); the model really sees
    half the batch there. cfg 1 has no uncond: nothing to skip."""
    m, lat, pos, neg = tm.wan()
    batches = []
    dm = m.model.diffusion_model
    hook = dm.blocks[0].register_forward_pre_hook(lambda mod, a: batches.append(a[0].shape[0]))
    try:
        tm.sample(fastercache(ck, m, 5, 2), lat, pos, neg, steps=STEPS, cfg=3.0)
    finally:
        hook.remove()
    streams = last_stats(ck)["streams"]
    assert streams["uncond"]["reused_steps"] == [1, 2, 3, 4, 6, 7]
    assert streams["uncond"]["timeline"] == "CEEEECEE"          # what the node's timeline row shows
    assert batches == [2, 1, 1, 1, 1, 2, 1, 1]
    assert streams["cond"]["components_reused"] > 0
    tm.sample(fastercache(ck, m, 5, 2), lat, pos, neg, steps=STEPS, cfg=1.0)
    assert last_stats(ck)["streams"]["cond"]["reused_calls"] == 0
    assert last_stats(ck)["streams"]["cond"]["held_bytes"] == 0      # nothing it could reuse is kept


def test_teacache_first_and_last_step_always_compute(ck):
    m, lat, pos, neg = tm.flux()
    tm.sample(teacache(ck, m, 10.0), lat, pos, neg, steps=STEPS, cfg=1.0)
    s = last_stats(ck)["streams"]["cond"]
    assert s["computed_steps"] == [0, STEPS - 1] and s["reused_steps"] == list(range(1, STEPS - 1))


def test_magcache_cond_and_uncond_decide_on_their_own_ratios(ck):
    """Conds of very different text lengths run as separate calls: each stream follows its own ratios."""
    m, lat, pos, _ = tm.wan()
    neg = [[torch.randn(1, 48, 32, generator=torch.Generator().manual_seed(7)), {}]]   # not batchable with pos
    cal = {"format": "cachekit.magcache_ratios", "version": 1, "steps": STEPS,
           "ratios": {"cond": [1.0] * STEPS, "uncond": [1.0] + [0.5] * (STEPS - 1)}}
    tm.sample(magcache(ck, m, 0.1, k=10, r=0.0, calibration=cal, final=0), lat, pos, neg, steps=STEPS, cfg=3.0)
    streams = last_stats(ck)["streams"]
    assert streams["cond"]["reused_steps"] == list(range(1, STEPS))
    assert streams["uncond"]["reused_steps"] == []
    # the node's default computes the last two steps
    tm.sample(magcache(ck, m, 0.1, k=10, r=0.0, calibration=cal), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert last_stats(ck)["streams"]["cond"]["computed_steps"] == [0, STEPS - 2, STEPS - 1]
    # batched together (same text length) the call reuses only when both streams agree: never here
    m, lat, pos, neg = tm.wan()
    tm.sample(magcache(ck, m, 0.1, k=10, r=0.0, calibration=cal), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert all(s["reused_steps"] == [] for s in last_stats(ck)["streams"].values())


@pytest.mark.parametrize("family", ["wan", "flux"])
def test_calibrate_magcache_records_residual_norm_ratios(ck, family):
    """gamma_t from the node equals mean_tokens(|r_t| / |r_t-1|) of the whole-stack residual measured
    independently with module hooks on the first and last blocks (cfg 1: one stream)."""
    m, lat, pos, neg = tm.FAMILIES[family]()
    with stack_residuals(ck, m, family) as residuals:
        cal, latent = pack.node(ck, "CalibrateMagCache", model=m, seed=0, steps=STEPS, cfg=1.0, sampler_name="euler",
                                scheduler="simple", positive=pos, negative=neg, latent_image={"samples": lat})
    expected = [1.0] + [float((r.norm(dim=-1) / (q.norm(dim=-1) + 1e-8)).mean())
                        for q, r in zip(residuals, residuals[1:])]
    assert cal["steps"] == STEPS and list(cal["ratios"]) == ["cond"]
    assert cal["ratios"]["cond"] == pytest.approx(expected, rel=1e-4)
    assert torch.equal(latent["samples"], tm.sample(m, lat, pos, neg, steps=STEPS, cfg=1.0))   # no reuse
    # and the calibration drives Apply MagCache
    out = tm.sample(magcache(ck, m, 0.5, calibration=cal), lat, pos, neg, steps=STEPS, cfg=1.0)
    assert torch.isfinite(out).all() and last_stats(ck)["streams"]["cond"]["reused_steps"]
    # the benchmark's sweep keeps the MagCache repository's recipe of the calibrated family: Flux 10%, Wan 20%
    node = ck.nodes.magcache.ApplyMagCache
    sweep = node.EXAMPLES.sweeps["MagCache (calibrated)"]
    assert sweep.inputs(0.1, cal, None)["retention_ratio"] == {"flux": 0.1, "wan": 0.2}[family]
    assert sweep.inputs(0.1, cal, None)["retention_ratio"] == node.EXAMPLES.template(
        {"flux": "flux_dev", "wan": "wan21_t2v_1.3B"}[family]).inputs["retention_ratio"]


def test_auto_presets_follow_the_detected_variant(ck):
    fams = {f.name: f for f in ck.nodes.host.families.FAMILIES}
    wan = fams["Wan"]
    dm = lambda dim, mt="t2v": types.SimpleNamespace(dim=dim, model_type=mt)   # noqa: E731
    assert wan.preset("teacache", dm(1536)) == "wan2.1_t2v_1.3B"
    assert wan.preset("magcache", dm(5120)) == "wan2.1_t2v_14B"
    assert wan.preset("magcache", dm(5120, "i2v")) == "wan2.1_i2v_14B_480p"
    assert wan.preset("magcache", dm(3072)) == "wan2.2_ti2v_5B_t2v" and wan.preset("teacache", dm(3072)) is None
    dm_of = lambda build: build()[0].model.diffusion_model   # noqa: E731
    assert fams["Flux"].preset("teacache", dm_of(tm.flux)) == "flux" and fams["Chroma"].preset("teacache", None) is None
    assert fams["Flux"].preset("magcache", dm_of(tm.flux2)) is None          # Flux 2 shares the class, not the curve
    assert fams["HunyuanVideo"].preset("teacache", dm_of(tm.hunyuan_video)) == "hunyuan_video"
    assert fams["HunyuanVideo"].preset("magcache", dm_of(tm.hunyuan_video15)) is None
    assert fams["Qwen-Image"].preset("magcache", None) == "qwen_image"
    assert fams["Mochi"].preset("teacache", dm_of(tm.mochi)) == "mochi"
    assert fams["OmniGen2"].preset("magcache", dm_of(tm.omnigen2)) == "omnigen2_t2i"
    assert fams["Lumina2 / Z-Image"].preset("teacache", dm_of(tm.lumina2)) is None   # published values disagree
    assert fams["HunyuanVideo"].preset("teacache", dm_of(tm.hunyuan_video15)) is None   # 1.5: t2v/i2v, 480/720p
    assert fams["Kandinsky 5"].preset("magcache", None) is None                     # its presets: by name
    for name in ck.nodes.teacache.PRESETS:   # degree 4 (TeaCache's) or 5 (LightX2V's HunyuanVideo 1.5 T2V)
        c = ck.cache_core.presets.teacache(name)["coefficients"]
        assert len(c) in (5, 6) and ck.cache_core.presets.family("teacache", name) in fams
    for name in ck.nodes.magcache.PRESETS:
        p = ck.cache_core.presets.magcache(name)
        assert len(p["ratios"]) == p["steps"] * (2 if p["interleaved"] else 1)
        assert p["family"] in fams


def test_taylorseer_schedule_and_forecast_in_comfy(ck):
    """interval 3, warmup 2 over 8 steps: computed 0,1,3,6 (diffusers' rule, final_steps 0); the node's default
    also computes the last 2 steps; the order changes the forecast."""
    m, lat, pos, neg = tm.wan()
    tm.sample(taylorseer(ck, m, 3, final=0), lat, pos, neg, steps=STEPS, cfg=3.0)
    s = last_stats(ck)["streams"]["uncond"]
    assert s["computed_steps"] == [0, 1, 3, 6] and s["reused_steps"] == [2, 4, 5, 7]
    tm.sample(taylorseer(ck, m, 3), lat, pos, neg, steps=STEPS, cfg=3.0)
    s = last_stats(ck)["streams"]["uncond"]
    assert s["computed_steps"] == [0, 1, 3, 6, 7] and s["reused_steps"] == [2, 4, 5]
    first = tm.sample(taylorseer(ck, m, 3, order=1), lat, pos, neg, steps=STEPS, cfg=3.0)
    zeroth = tm.sample(taylorseer(ck, m, 3, order=0), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert not torch.equal(first, zeroth) and torch.isfinite(first).all()


@pytest.mark.parametrize("call, message", [
    (lambda ck, m: teacache(ck, m, -2.0), "Apply TeaCache: rel_l1_thresh must be >= -1.0, got -2.0"),
    (lambda ck, m: teacache(ck, m, 0.2, custom="a, b"), "Apply TeaCache: custom_coefficients must be numbers"),
    (lambda ck, m: teacache(ck, m, -1.0), "Apply TeaCache: rel_l1_thresh -1 picks a preset's published value"),
    (lambda ck, m: teacache(ck, tm.chroma()[0], 0.2, coefficients="auto"),
     "Apply TeaCache: no published preset for this Chroma model and no saved calibration made on it"),
    (lambda ck, m: magcache(ck, m, -0.1), "Apply MagCache: threshold must be >= 0.0, got -0.1"),
    (lambda ck, m: magcache(ck, m, 0.1, k=-1), "Apply MagCache: max_skips must be >= 0, got -1"),
    (lambda ck, m: magcache(ck, m, 0.1, ratios="auto"),
     "Apply MagCache: no published preset for this Wan model and no saved calibration made on it"),
    (lambda ck, m: magcache(ck, m, 0.1, calibration={"ratios": "x"}), "Apply MagCache: calibration is not a MagCache"),
    (lambda ck, m: magcache(ck, tm.sd15_unet(), 0.1), "Apply MagCache: model class 'UNetModel' is a UNet"),
    (lambda ck, m: taylorseer(ck, m, 0), "Apply TaylorSeer Cache: cache_interval must be >= 1, got 0"),
    (lambda ck, m: taylorseer(ck, m, 3, final=-1), "Apply TaylorSeer Cache: final_steps must be >= 0, got -1"),
    (lambda ck, m: dbcache(ck, m, 0.1, fn=3, bn=1),
     "Apply DBCache: 3 front + 1 back blocks always computed leave nothing to cache in this Wan model (4 blocks)"),
    (lambda ck, m: dbcache(ck, m, -0.1), "Apply DBCache: residual_diff_threshold must be >= 0.0, got -0.1"),
    (lambda ck, m: pab(ck, m, 0, 2), "Apply Pyramid Attention Broadcast: self_attention_interval must be >= 1, got 0"),
    (lambda ck, m: fastercache(ck, m, 0, 2), "Apply FasterCache: uncond_interval must be >= 1, got 0"),
    (lambda ck, m: fastercache(ck, m, 5, 2, w=-1.0), "Apply FasterCache: attention_weight must be >= 0.0, got -1.0"),
    (lambda ck, m: pack.node(ck, "ApplySmoothCache", model=m, schedule={"schedule": []}),
     "Apply SmoothCache: schedule is not a SmoothCache schedule"),
    (lambda ck, m: pack.node(ck, "SmoothCacheSchedule", alpha=-1.0, calibration={
        "format": "cachekit.smoothcache_errors", "steps": 4, "lookahead": 1, "errors": {"mlp": {"1": [0.1]}}}),
     "SmoothCache Schedule: alpha must be >= 0.0, got -1.0"),
    (lambda ck, m: pab(ck, m, 2, 2, start=0.9, end=0.2), "start_percent (0.9) must not be greater than end_percent"),
    (lambda ck, m: dbcache(ck, m, 0.1, fn=0), "Apply DBCache: Fn_compute_blocks must be >= 1, got 0"),
    (lambda ck, m: taylorseer(ck, m, 3, order=7), "Apply TaylorSeer Cache: max_order must be <= 4, got 7"),
    (lambda ck, m: taylorseer(ck, m, 3, target="blocks"), "Apply TaylorSeer Cache: target must be one of"),
    (lambda ck, m: taylorseer(ck, m, 3, dtype="int8"), "Apply TaylorSeer Cache: factors_dtype must be one of"),
])
def test_bad_inputs_are_refused_clearly(ck, call, message):
    with pytest.raises(ValueError) as err:
        call(ck, tm.wan()[0])
    assert message in str(err.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_teacache_indicator_is_what_block0_consumes(ck, family):
    """The probe each family row computes equals the modulated input block 0 really feeds its attention
    (captured with a module hook), call for call."""
    import importlib
    pol = importlib.import_module("cachekit.cache_core.policies.teacache").TeaCache
    m, lat, pos, neg = tm.FAMILIES[family]()
    patched = teacache(ck, m, 0.0)
    block0 = tm.resolve(patched.model.diffusion_model, block_attrs(ck, m)[0])[0]
    module, get = tm.MODULATED_SITE[family]
    seen, probes = [], []
    hook = module(block0).register_forward_pre_hook(lambda mod, a, k: seen.append(get(a, k).clone()),
                                                    with_kwargs=True)
    orig = pol.measure

    def spy(self, state, probe, **at):
        probes.append(probe.clone())
        return orig(self, state, probe, **at)
    pol.measure = spy
    try:
        tm.sample(patched, lat, pos, neg, steps=4, cfg=1.0)
    finally:
        pol.measure = orig
        hook.remove()
    probes = probes[::1 + len(ck.nodes.host.families.detect(m, "t").decided)]   # the image's (LTX-2: audio next)
    assert len(probes) == len(seen) == 4
    for p, s in zip(probes, seen):
        torch.testing.assert_close(p, s, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family, method, preset", [
    ("hunyuan_video15", "magcache", "hunyuan_video1.5_20steps"),
    ("hunyuan_video15", "teacache", "hunyuan_video1.5_t2v_720p"),     # six coefficients (LightX2V's degree 5)
    ("qwen_image", "magcache", "qwen_image_40steps"),
    ("kandinsky5", "magcache", "kandinsky5_lite_t2v_5s"),
])
def test_a_preset_picked_by_name_runs_on_its_family(ck, family, method, preset):
    """The newer models' presets (no auto pick: a class serves several variants) apply by name and reuse."""
    if family not in tm.FAMILIES:     # Kandinsky 5: a class of the current line only
        assert family in tm.UNAVAILABLE
        return
    m, lat, pos, neg = tm.FAMILIES[family]()
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)
    patched = (magcache(ck, m, 1.0, k=4, r=0.0, ratios=preset) if method == "magcache"
               else teacache(ck, m, 5.0, coefficients=preset))
    out = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    assert last_stats(ck)["streams"]["cond"]["reused_steps"] and not torch.equal(out, base)
