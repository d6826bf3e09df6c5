"""Every method on quantized weights, as most users load the main families: GGUF files (Q8_0 and the K-quant Q4_K)
through ComfyUI-GGUF's own Unet Loader (GGUF), fp8 weights through ComfyUI's Load Diffusion Model `weight_dtype`,
and checkpoints stored quantized (fp8 scaled per layer; int8 per layer on the current line) through the same loader
(harness/quantized_models.py); and with a LoRA loaded as Load LoRA loads one, on float32 weights and on a GGUF file
("+lora"). Against the same model uncached: off is bit-identical, reuse happens and matches the stats and the
blocks that really ran, the loader's patcher class and its quantized weights survive the clone, and nothing is
copied."""
import pytest
import torch

from harness import quantized_models as qm
from harness.comfy_runtime import CURRENT, VERSION
from harness import tiny_models as tm
from harness.node_calls import METHODS, STEPS, block_attrs, block_count, block_marker, last_stats


# the families most users run quantized, each with its own block layout (double+single, one stream, joint, NextDiT:
# Lumina 2's class, which Z-Image's GGUF files load into too)
FAMILIES = {"flux": tm.flux, "wan": tm.wan, "qwen_image": tm.qwen_image, "lumina2": tm.lumina2,
            "hunyuan_video": tm.hunyuan_video}
# every method on every family in Q8_0 and fp8 e4m3fn, the two commonest; the K-quant Q4_K (its dequantizing is the
# slowest), e5m2 and the checkpoints stored quantized on Flux and Wan: fp8 scaled per layer, and int8 per layer where
# the line reads it (the current one). Flux and Wan (the two layouts) run on every line (make test's oldest line too)
STORED = ("fp8_scaled", "int8") if VERSION == CURRENT else ("fp8_scaled",)
LORA = "+lora"
WEIGHTS = [(w, f) for w in ("Q8_0", "fp8_e4m3fn") for f in FAMILIES] + \
          [(w, f) for w in ("Q4_K", "fp8_e5m2", *STORED, "float32" + LORA, "Q8_0" + LORA) for f in ("flux", "wan")]
CASES = [pytest.param(m, w, f, marks=[pytest.mark.every_runtime] if f in ("flux", "wan") else [])
         for w, f in WEIGHTS for m in METHODS]     # grouped by weights and family: each loaded once


_LOADED: dict = {}   # (family, weights) -> the loaded model, its inputs and its uncached output, for every method


@pytest.fixture(scope="module", autouse=True)
def _drop_loaded():
    yield
    _LOADED.clear()      # before ComfyUI's modules go at exit (a ModelPatcher's finalizer reads them)


def quantized(family: str, weights: str):
    """The family's tiny model loaded as `weights`, its inputs and its uncached output: loaded once for all methods
    (each test asserts the MODEL is left as it was)."""
    if (family, weights) not in _LOADED:
        m, lat, pos, neg = FAMILIES[family]()
        kind = weights.removesuffix(LORA)
        if kind in qm.GGUF_TYPES:
            loaded = qm.load_gguf(m, kind)[0]
        elif kind == "float32":
            loaded = m
        else:
            loaded = qm.load_stored(m, kind) if kind in qm.STORED_TYPES else qm.load_fp8(m, kind)
        if weights.endswith(LORA):
            loaded = with_lora(loaded)
        _LOADED.clear()   # one at a time: the tests run grouped by weights and family
        _LOADED[(family, weights)] = (loaded, lat, pos, neg, tm.sample(loaded, lat, pos, neg, steps=STEPS, cfg=3.0))
    return _LOADED[(family, weights)]


def with_lora(model):
    """`model` with a seeded rank-4 LoRA on every block Linear, loaded as Load LoRA loads one
    (comfy.sd.load_lora_for_models: weight patches on a clone of the loader's patcher)."""
    names = [name for name, lin in model.model.diffusion_model.named_modules()
             if hasattr(lin, "in_features") and "blocks." in name]
    loaded = tm.lora_on(model, names, seed=5, scale=0.05)
    assert type(loaded) is type(model) and len(loaded.patches) == len(names)
    return loaded


def held_quantized(weights: str, stored: dict) -> bool:
    """Whether every block matrix is held as the loader quantized it: ComfyUI-GGUF's tensors, fp8 parameters, or
    the current line's QuantizedTensor (its per-layer formats; 0.3.75 holds an fp8-scaled file's weights in fp8);
    float32 ones as float32 parameters (a LoRA is held as patches beside the weights, not in them)."""
    kinds = {(t.__name__, d) for t, d, _ in stored.values()}
    weights = weights.removesuffix(LORA)
    if weights == "float32":
        return {d for _, d in kinds} == {torch.float32}
    if weights in qm.GGUF_TYPES:
        return {t for t, _ in kinds} == {"GGMLTensor"}
    if weights in qm.FP8_TYPES:
        return {d for _, d in kinds} == {getattr(torch, weights.replace("fp8", "float8"))}
    return all(t == "QuantizedTensor" or d == torch.float8_e4m3fn for t, d in kinds)


def stored_weights(ck, model) -> dict:
    """Each block matrix's storage (its tensor class, dtype and data pointer; with a LoRA, whose patches ComfyUI
    merges into fresh weights each time it loads the model, its patches instead of the pointer)."""
    blocks = tuple(f"{attr}." for attr in block_attrs(ck, model))
    return {k: (type(v), v.dtype, tuple(map(id, model.patches.get(f"diffusion_model.{k}", ()))) if model.patches
                else v.data_ptr()) for k, v in model.model.diffusion_model.named_parameters()
            if k.startswith(blocks) and v.ndim == 2}


@pytest.mark.parametrize("method, weights, family", CASES)
def test_every_method_on_quantized_weights(ck, method, weights, family):
    q, lat, pos, neg, base = quantized(family, weights)
    weights_before, options_before = stored_weights(ck, q), repr(q.model_options)
    assert weights_before and held_quantized(weights, weights_before)

    off = METHODS[method][0](ck, q)
    assert torch.equal(tm.sample(off, lat, pos, neg, steps=STEPS, cfg=3.0), base)

    patched = METHODS[method][1](ck, q)
    # the loader's patcher class (ComfyUI-GGUF's own clone) survives, on the same model: nothing copied
    assert type(patched) is type(q) and patched.model is q.model
    with tm.BlockCounter(patched, block_attrs(ck, q), marker=block_marker(ck, q)) as counter:
        out = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    stats = last_stats(ck)
    n_blocks = block_count(ck, q)
    cond = stats["streams"]["cond"]
    assert cond["reused_steps"] and 0 in cond["computed_steps"]
    always = n_blocks if METHODS[method][2] is None else METHODS[method][2]
    expected = len(cond["computed_steps"]) * n_blocks + len(cond["reused_steps"]) * always
    assert stats["block_evals"] == counter.count == expected
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    # the input MODEL and its quantized weights are as they were: the cache neither dequantized nor copied them
    assert stored_weights(ck, q) == weights_before and repr(q.model_options) == options_before
