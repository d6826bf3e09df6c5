"""The cache node inside the workflows users build, through ComfyUI's own nodes: a LoRA loader,
ModelSamplingSD3 / ModelSamplingFlux, TorchCompileModel or a plain clone between the cache node and the
sampler, or before the cache node. The order must not change the output or a single decision, and
cloning a cached MODEL must cost no memory."""
import gc
import os

import pytest
import safetensors.torch
import torch

from harness import tiny_models as tm
from harness.node_calls import METHODS, STEPS, last_stats

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each

LORA = "cachekit_test_lora.safetensors"


def lora_for(model, seed: int = 5) -> str:
    """A LoRA (lora_up/lora_down, rank 2) on every linear weight of the model's transformer blocks, block 0's
    modulation included (what TeaCache's probe reads), written where LoraLoaderModelOnly looks."""
    import comfy.lora
    import folder_paths
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, target in comfy.lora.model_lora_keys_unet(model.model, {}).items():
        if not isinstance(target, str) or "blocks" not in key:
            continue
        w = model.model.state_dict().get(target)
        if w is None or w.ndim != 2:
            continue
        sd[f"{key}.lora_up.weight"] = torch.randn(w.shape[0], 2, generator=g) * 0.2
        sd[f"{key}.lora_down.weight"] = torch.randn(2, w.shape[1], generator=g) * 0.2
    folder = folder_paths.get_folder_paths("loras")[0]
    os.makedirs(folder, exist_ok=True)
    name = f"{type(model.model.diffusion_model).__name__}_{LORA}"
    safetensors.torch.save_file(sd, os.path.join(folder, name))
    return name


def lora_loader(m):
    import nodes
    return nodes.LoraLoaderModelOnly().load_lora_model_only(m, lora_for(m), 0.8)[0]


def model_sampling(m):
    from comfy_extras.nodes_model_advanced import ModelSamplingFlux, ModelSamplingSD3
    if type(m.model.diffusion_model).__name__ == "Flux":
        return ModelSamplingFlux().patch(m, 1.15, 0.5, 32, 32)[0]
    return ModelSamplingSD3().patch(m, 5.0)[0]


def torch_compile(m):
    from comfy_extras.nodes_torch_compile import TorchCompileModel
    return TorchCompileModel.execute(m, "aot_eager").result[0]   # aot_eager: the CPU-friendly backend


MODEL_NODES = {"lora": lora_loader, "model_sampling": model_sampling, "clone": lambda m: m.clone()}


def _streams():
    return last_stats(None)["streams"]


@pytest.fixture
def metrics(monkeypatch):
    """Every decision metric the span engine measures (block-0 residual change, TeaCache's modulated
    input change), in call order: more sensitive to a probe reading stale weights than the decisions."""
    import importlib
    span = importlib.import_module("cachekit.cache_core.span_cache")
    seen, orig = [], span.to_floats

    def spy(values):
        out = orig(values)
        seen.append(out)
        return out
    monkeypatch.setattr(span, "to_floats", spy)
    return seen


@pytest.mark.parametrize("node", MODEL_NODES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", ["wan", "flux"])
def test_model_node_after_the_cache_node_equals_before_it(ck, family, method, node, metrics):
    m, lat, pos, neg = tm.FAMILIES[family]()
    apply, other = METHODS[method][1], MODEL_NODES[node]
    # cache node first: its clones are made while the model holds no LoRA in its weights
    after = tm.sample(other(apply(ck, m)), lat, pos, neg, steps=STEPS, cfg=3.0)
    after_streams, after_metrics = _streams(), list(metrics)
    metrics.clear()
    before = tm.sample(apply(ck, other(m)), lat, pos, neg, steps=STEPS, cfg=3.0)
    before_streams = _streams()
    assert after_streams == before_streams               # same decisions, same component counts
    assert after_metrics == metrics
    assert any(s["reused_calls"] or s["components_reused"] for s in before_streams.values())
    assert torch.equal(after, before)
    if node != "clone":                                  # the node itself took effect
        assert not torch.equal(after, tm.sample(apply(ck, m), lat, pos, neg, steps=STEPS, cfg=3.0))


@pytest.mark.parametrize("method", ["smoothcache", "teacache", "pab"])
def test_torch_compile_model_node_before_or_after_the_cache_node(ck, method):
    torch._dynamo.reset()
    m, lat, pos, neg = tm.wan()
    apply = METHODS[method][1]
    eager = tm.sample(apply(ck, m), lat, pos, neg, steps=STEPS, cfg=3.0)
    eager_streams = _streams()
    for model in (torch_compile(apply(ck, m)), apply(ck, torch_compile(m))):
        out = tm.sample(model, lat, pos, neg, steps=STEPS, cfg=3.0)
        assert _streams() == eager_streams
        torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0


def _tensors() -> dict[int, int]:
    """{id: bytes} of the live tensors, after collecting until nothing more goes (finalizers can free more)."""
    while gc.collect():
        pass
    return {id(o): o.nelement() * o.element_size() for o in gc.get_objects() if torch.is_tensor(o) and not o.is_meta}


@pytest.mark.parametrize("method", METHODS)
def test_cloning_a_cached_model_copies_no_tensor(ck, method):
    m, lat, pos, neg = tm.flux()
    patched = METHODS[method][1](ck, m)
    before = _tensors()
    clones = [patched.clone() for _ in range(20)]
    # no tensor that was not there before (leftovers of earlier tests may be freed meanwhile: count new ones)
    new = {i: b for i, b in _tensors().items() if i not in before}
    assert not new, f"{len(new)} tensors ({sum(new.values())} bytes) appeared while cloning"
    out = tm.sample(clones[-1].clone(), lat, pos, neg, steps=STEPS, cfg=3.0)   # and the clone still caches
    assert torch.isfinite(out).all()
    assert any(s["reused_calls"] or s["components_reused"] for s in _streams().values())


def test_cloning_a_cached_model_costs_no_process_memory(ck):
    """At a real width the cost is visible in the process: a Wan of dim 512 (a block is ~17 MB in fp32)."""
    import psutil
    import comfy.supported_models as sm
    cfg = dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), text_len=16, in_dim=16, dim=512,
               ffn_dim=2048, freq_dim=256, text_dim=32, out_dim=16, num_heads=4, num_layers=2)
    m = tm.patcher(sm.WAN21_T2V, cfg, 0)
    patched = METHODS["teacache"][1](ck, m)
    proc = psutil.Process()
    gc.collect()
    rss = proc.memory_info().rss
    clones = [patched.clone() for _ in range(20)]
    gc.collect()
    grown = proc.memory_info().rss - rss
    assert len(clones) == 20 and grown < 16 * 2**20, f"20 clones grew the process by {grown / 2**20:.0f} MiB"


@pytest.mark.parametrize("order", ["cache_first", "sampling_first"])
def test_schedule_window_follows_the_model_sampling_the_sampler_uses(ck, order):
    """end_percent 0.5 is converted with the ModelSamplingSD3 patch (shift 1: sigma 0.5), not with the
    model's own (Wan: shift 8, sigma 0.89), whichever side of the cache node the patch sits."""
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    from harness.node_calls import fbc
    m, lat, pos, neg = tm.wan()
    shift1 = lambda x: ModelSamplingSD3().patch(x, 1.0)[0]   # noqa: E731
    cache = lambda x: fbc(ck, x, 1.0, end=0.5)              # noqa: E731
    model = shift1(cache(m)) if order == "cache_first" else cache(shift1(m))
    tm.sample(model, lat, pos, neg, steps=STEPS, cfg=3.0)    # sigmas 1, .875, .75, .625, .5, ...
    assert _streams()["cond"]["reused_steps"] == [1, 2, 3]


@pytest.mark.parametrize("first, second", [("dbcache", "teacache"), ("smoothcache", "dbcache"),
                                           ("pab", "magcache"), ("teacache", "fastercache"),
                                           ("fastercache", "smoothcache")])
def test_a_second_cache_node_replaces_the_first_and_says_so(ck, first, second, caplog):
    """Methods do not stack: the later node's method runs alone, exactly as without the earlier node (its
    MLP patches, attention override and CFG hook included), and both the log and the run record say so."""
    import logging
    display = {"dbcache": "Apply DBCache", "smoothcache": "Apply SmoothCache", "teacache": "Apply TeaCache",
               "pab": "Apply Pyramid Attention Broadcast", "fastercache": "Apply FasterCache"}
    m, lat, pos, neg = tm.wan()
    alone = tm.sample(METHODS[second][1](ck, m), lat, pos, neg, steps=STEPS, cfg=3.0)
    alone_streams = _streams()
    earlier = METHODS[first][1](ck, m)
    with caplog.at_level(logging.WARNING, logger="CacheKit"):
        out = tm.sample(METHODS[second][1](ck, earlier), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert torch.equal(out, alone) and _streams() == alone_streams
    assert [r["node"] for r in last_stats(ck)["replaces"]] == [display[first]]
    assert f"replaces {display[first]} (node None) on this MODEL" in caplog.text
    assert f"{display[first]} (node None) did not run" in caplog.text
