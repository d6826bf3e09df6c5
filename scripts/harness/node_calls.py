"""The CacheKit nodes as the ComfyUI-level tests call them: one short helper per Apply node (through the node
function, as ComfyUI calls it), the method table the family x method tests read (off setting, a setting that
reuses, the blocks that run even on a reused call), and the run stats the tests read back."""
import contextlib
import copy

from harness import pack
from harness import tiny_models as tm

FAMILIES = list(tm.FAMILIES)      # every family row, and the variants that share a row (Flux 2, ...)
STEPS = 8


def fbc(ck, model, threshold, start=0.0, end=1.0, max_skips=-1, warmup=0):
    return pack.node(ck, "ApplyFirstBlockCache", model=model, residual_diff_threshold=threshold, start_percent=start,
                     end_percent=end, max_consecutive_skips=max_skips, warmup_steps=warmup)[0]


def last_stats(ck):
    import importlib
    return importlib.import_module("cachekit.nodes.host.stats_feed").recent()[-1]


def block_attrs(ck, model):
    from cachekit.nodes.host.families import detect
    return [attr for _, attr, _ in detect(model, "test").blocks]


def block_marker(ck, model):
    """What BlockCounter hooks where the attention methods cache whole attention modules (PixArt, HunyuanDiT):
    the MLP's input norm, which the block calls itself and TeaCache's probe does not (ACE-Step 1.5: mlp_norm). A
    block with neither (ERNIE-Image): its first attention module itself, whose hooks fire whether it computes or is
    reused (the object patch replaces its forward, not its call)."""
    from cachekit.nodes.host.families import detect
    row = detect(model, "test")
    if not row.attention_modules:
        return None
    kind, index = row.layout(model.model.diffusion_model)[1][0]
    block = row.block(model.model.diffusion_model, kind, index)
    return next((name for name in ("norm2", "mlp_norm") if hasattr(block, name)), row.attention_modules[kind][0])


def block_count(ck, model):
    """Blocks one model call runs uncached (the family table's layout for this instance)."""
    from cachekit.nodes.host.families import detect
    return len(detect(model, "test").layout(model.model.diffusion_model)[1])


@contextlib.contextmanager
def stack_residuals(ck, model, family):
    """The whole-stack residual of every model call (the last block's output minus the first block's input), measured
    with module hooks apart from CacheKit's engine, on the tiny Wan ("wan": its blocks take the image tokens first)
    or Flux ("flux": its double blocks take text and image, which its single blocks carry concatenated)."""
    import torch
    blocks = [b for a in block_attrs(ck, model) for b in tm.resolve(model.model.diffusion_model, a)]
    ins, residuals = [], []
    get_in = (lambda a, k: a[0]) if family == "wan" else (lambda a, k: torch.cat((k["txt"], k["img"]), 1))
    hooks = (blocks[0].register_forward_pre_hook(lambda mod, a, k: ins.append(get_in(a, k).clone()), with_kwargs=True),
             blocks[-1].register_forward_hook(lambda mod, a, k, o: residuals.append(o - ins[-1]), with_kwargs=True))
    try:
        yield residuals
    finally:
        for h in hooks:
            h.remove()


def teacache(ck, model, thr, coefficients="custom", custom="1.0, 0.0"):
    return pack.node(ck, "ApplyTeaCache", model=model, rel_l1_thresh=thr, coefficients=coefficients,
                     custom_coefficients=custom)[0]


def magcache(ck, model, thr, k=3, r=0.2, ratios="flux_dev", calibration=None, final=None):
    extra = {} if final is None else {"final_steps": final}      # None: the node's default
    return pack.node(ck, "ApplyMagCache", model=model, threshold=thr, max_skips=k, retention_ratio=r, ratios=ratios,
                     calibration=calibration, **extra)[0]


def taylorseer(ck, model, interval, warmup=2, order=1, target="residual", dtype="float32", final=None):
    extra = {} if final is None else {"final_steps": final}      # None: the node's default
    return pack.node(ck, "ApplyTaylorSeerCache", model=model, cache_interval=interval, warmup_steps=warmup,
                     max_order=order, target=target, factors_dtype=dtype, **extra)[0]


def dbcache(ck, model, thr, fn=1, bn=1, warmup=0, interval=1, max_cached=-1, max_cont=-1, max_acc=0.0, order=0):
    return pack.node(ck, "ApplyDBCache", model=model, Fn_compute_blocks=fn, Bn_compute_blocks=bn,
                     residual_diff_threshold=thr, max_warmup_steps=warmup, warmup_interval=interval,
                     max_cached_steps=max_cached, max_continuous_cached_steps=max_cont,
                     max_accumulated_residual_diff=max_acc, taylorseer_order=order)[0]


def pab(ck, model, self_n, cross_n, start=0.0, end=1.0):
    return pack.node(ck, "ApplyPyramidAttentionBroadcast", model=model, self_attention_interval=self_n,
                     cross_attention_interval=cross_n, start_percent=start, end_percent=end)[0]


def smoothcache(ck, model, row):
    return pack.node(ck, "ApplySmoothCache", model=model, schedule=ck.nodes.smoothcache.uniform_schedule(row))[0]


def seacache(ck, model, thr, power=0.0):
    return pack.node(ck, "ApplySeaCache", model=model, threshold=thr, spectral_power=power)[0]


def spectrum(ck, model, base=2.0, growth=0.75, warmup=2, final=1, degree=1):
    return pack.node(ck, "ApplySpectrumCache", model=model, gap_base=base, gap_growth=growth, warmup_steps=warmup,
                     final_steps=final, degree=degree)[0]


def fastercache(ck, model, uncond_n, attn_n, uncond_max=1.0, attn_max=1.0, w=0.5, a_low=1.1, a_high=1.1):
    return pack.node(ck, "ApplyFasterCache", model=model, uncond_interval=uncond_n, uncond_max_sigma=uncond_max,
                     attention_interval=attn_n, attention_weight=w, attention_max_sigma=attn_max,
                     alpha_low=a_low, alpha_high=a_high)[0]


def _applied(name: str, inputs: dict):
    return lambda ck, m: pack.node(ck, name, model=m, **copy.deepcopy(inputs))[0]


# test id -> (off setting, a setting that reuses, blocks that run even on a reused call; None = all): each Apply
# node's EXAMPLES.cases, so a new method's node brings its own (read at collection: the test ids come from them)
METHODS = {key: (_applied(cls.__name__, case.off), _applied(cls.__name__, case.on), case.runs_on_reuse)
           for cls in pack.method_nodes().values() for key, case in cls.EXAMPLES.cases.items()}
COMPONENT_METHODS = [key for key, (_, _, runs) in METHODS.items() if runs is None]
