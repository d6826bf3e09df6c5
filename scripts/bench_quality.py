"""Quality at equal compute, on models that learned something (scripts/harness/digits_models.py: Wan 2.1 and Flux
classes trained on scikit-learn's digits), every CacheKit method beside ComfyUI's built-in EasyCache and
LazyCache, in one run, through ComfyUI's own sampling path (comfy.sample.sample).

For each method and each setting of its main knob: the fraction of the transformer blocks' FLOPs that really
ran (counted op by op inside the block modules, scripts/harness/block_flops.py, the same way for every method: span
methods skip blocks, PAB/SmoothCache/FasterCache skip attention, MLPs or the uncond pass inside them), and
PSNR / SSIM of the output image against the uncached output at the same seed and label, averaged over seeds x
labels x samplers. The reference implementations (diffusers 0.39's hooks, cache-dit 1.5.3's DBCache) run on
the same weights moved into diffusers' classes (scripts/harness/reference_models.py), through the same sampler and
cases. Writes a table (JSON + markdown) and one chart (PSNR against block-FLOP fraction, a curve per method).

    .runtime/comfyui-0.33.0/venv/bin/python scripts/bench_quality.py [--families wan flux] [--out output/bench/quality]
        [--methods M ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from harness import comfy_runtime
from harness.block_flops import block_flops

STEPS, CFG = 30, 4.0
SAMPLERS = ("euler", "dpmpp_2m")
LABELS = (0, 4, 8)
SEEDS = (1,)      # one seed: 6 images per point on every model (two doubled the 16-token models' share of make bench)
UNCACHED_REFERENCE = "diffusers model, no cache"
# The first bench's models (8x8 latent, 16 image tokens) run every sweep beside the reference implementations; the
# larger ones (256 tokens: 16x16, or 4 frames of 8x8) each node's first sweep, AT_SCALE and the working EasyCache:
# they are there for what a real token grid changes, and a sample of theirs takes about four times as long
FULL = ("wan", "flux")
# sweeps past a node's first that the larger models run too: the 2026 forecasters (FoCa also as DBCache's calibrator
# and on LeMiCa's schedule)
AT_SCALE = ("TaylorSeer (HiCache)", "TaylorSeer (FoCa)", "DBCache (F1 B0, FoCa)", "LeMiCa (FoCa)")
WORKING_EASYCACHE = "EasyCache (ComfyUI, copy fix)"


def references(rows: list[dict]) -> dict[str, str]:
    """CacheKit's method -> its reference implementation's, as the rows recorded it (the sweeps that name one)."""
    return {r["method"]: r["reference"] for r in rows if r.get("reference")}


def sweep_of(cls, sweep, calibration, node):
    return lambda m, v: node(cls.__name__, model=m, **sweep.inputs(v, calibration, node))


def methods(ck, cal, main_only: bool = False):
    """method -> (knob name, settings, apply(model, setting), its reference's rows or None): every Apply node's
    EXAMPLES.sweeps, then ComfyUI's built-in caches (main_only: each node's first sweep and the working
    EasyCache, and the AT_SCALE sweeps). Settings go from little to much saving."""
    from harness import pack
    from comfy_extras import nodes_easycache as ec

    def node(name, **inputs):
        return pack.node(ck, name, **inputs)[0]

    def builtin(cls, m, thr):
        return cls.execute(m, reuse_threshold=thr, start_percent=0.15, end_percent=0.95, verbose=False)[0]

    def easycache_fixed(m, thr):
        patched = builtin(ec.EasyCacheNode, m, thr)
        patched.model_options["transformer_options"]["easycache"].__class__ = easycache_copy_fix()
        return patched

    rows = {label: (sweep.knob, sweep.values, sweep_of(cls, sweep, cal.get(key), node), sweep.reference)
            for key, cls in pack.method_nodes().items()
            for i, (label, sweep) in enumerate(cls.EXAMPLES.sweeps.items())
            if not main_only or i == 0 or label in AT_SCALE}
    easy = ("reuse_threshold", (0.02, 0.05, 0.1, 0.2, 0.4), easycache_fixed, None)
    if main_only:
        return {**rows, WORKING_EASYCACHE: easy}
    return {
        **rows,
        "EasyCache (ComfyUI)": ("reuse_threshold", (0.02, 0.05, 0.1, 0.2, 0.4),
                                lambda m, v: builtin(ec.EasyCacheNode, m, v), None),
        WORKING_EASYCACHE: easy,
        "LazyCache (ComfyUI)": ("reuse_threshold", (0.02, 0.05, 0.1, 0.2, 0.4),
                                lambda m, v: builtin(ec.LazyCacheNode, m, v), None),
    }


def easycache_copy_fix():
    """ComfyUI's EasyCache with the smallest fix that makes it work as intended: on a skipped step it adds the
    cached difference to a copy of the model input instead of into it. As shipped, `apply_cache_diff` adds in
    place, and where the diffusion model runs in the latent's own dtype BaseModel hands it the sampler's latent
    itself (calculate_input of a flow model and `.to(dtype)` return the same tensor), so every skipped step
    also rewrites the sampler's current latent (see easycache_evidence)."""
    from comfy_extras import nodes_easycache as ec

    class EasyCacheCopyFix(ec.EasyCacheHolder):
        def apply_cache_diff(self, x, uuids):
            return super().apply_cache_diff(x.clone(), uuids)

        def clone(self):
            out = super().clone()
            out.__class__ = EasyCacheCopyFix
            return out
    return EasyCacheCopyFix


def easycache_evidence(model, family: str) -> dict:
    """Evidence for the EasyCache defect on this model: does the diffusion model get the sampler's own latent
    tensor (same storage), and does EasyCache's skip path write into its input?"""
    import uuid
    import comfy.patcher_extension
    import torch
    from comfy_extras import nodes_easycache as ec
    from harness import digits_models as dm
    seen = {}

    def spy(executor, *args, **kwargs):
        seen["model_input_ptr"] = args[0].data_ptr()
        return executor(*args, **kwargs)
    m = model.clone()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "evidence", spy)
    x = torch.randn(dm.empty_latent(family).shape)
    m.model.apply_model(x, torch.tensor([0.5]), c_crossattn=dm.codes(dm.RECIPES[family])[0][:1],
                        y=dm.codes(dm.RECIPES[family])[1][:1],
                        transformer_options={"wrappers": m.wrappers})
    holder = ec.EasyCacheHolder(0.1, 0.15, 0.95, 8, False, output_channels=16)
    u = uuid.uuid4()
    holder.first_cond_uuid, holder.uuid_cache_diffs[u] = u, torch.ones_like(x)
    before = x.clone()
    out = holder.apply_cache_diff(x, [u])
    return {"sampler_latent_is_model_input": seen.get("model_input_ptr") == x.data_ptr(),
            "skip_returns_its_input": out is x, "skip_changed_its_input": not torch.equal(x, before)}


def psnr(a, b) -> float:
    return min(99.0, quality().psnr(a, b, 1.0))          # identical images count as 99 dB in the means


def ssim(a, b) -> float:
    return quality().ssim(a, b, 1.0, channels_last=False)


def quality():
    """cache_core's measures (the Compare Cache Quality node's; tests/comfy/test_quality.py checks them against
    scikit-image's SSIM and the PSNR formula)."""
    from harness import pack
    return pack.load().cache_core.quality


def calibrations(ck, model, family, steps=STEPS):
    """The calibrate nodes run once on the trained model (euler, the run's steps, cfg, one label)."""
    from harness import pack
    from harness import digits_models as dm
    pos, neg = dm.conditioning(family, 3)
    sampling = dict(seed=0, steps=steps, cfg=CFG, sampler_name="euler", scheduler="simple", positive=pos,
                    negative=neg, latent_image={"samples": dm.empty_latent(family)}, denoise=1.0)
    return {"teacache": pack.node(ck, "CalibrateTeaCache", model=model, **sampling)[0],
            "magcache": pack.node(ck, "CalibrateMagCache", model=model, **sampling)[0],
            "smoothcache": pack.node(ck, "CalibrateSmoothCache", model=model, **sampling, lookahead=3)[0],
            "lemica": pack.node(ck, "CalibrateLeMiCa", model=model, **sampling)[0]}


def run_family(ck, family: str, log, only: list[str] | None = None, steps: int = STEPS,
               samplers: tuple[str, ...] = SAMPLERS) -> list[dict]:
    from harness import digits_models as dm
    from harness import reference_models
    model = dm.load(family, log)
    net = model.model.diffusion_model
    cases = [(s, lab, seed) for s in samplers for lab in LABELS for seed in SEEDS]

    def sample(m, case):
        s, lab, seed = case
        return dm.sample(m, family, lab, seed, steps=steps, cfg=CFG, sampler=s)

    refs, full = {}, None
    for case in cases:
        refs[case], f = block_flops(lambda: sample(model, case), net)
        full = f if full is None else full
        assert f == full, "uncached runs must spend the same block FLOPs"
    rows = []

    def measure(name, knob, v, patched, counted, full, reference=None):
        fracs, ps, ss = [], [], []
        t0 = time.perf_counter()
        for case in cases:
            out, f = block_flops(lambda: sample(patched, case), counted)
            fracs.append(f / full)
            ps.append(psnr(out, refs[case]))
            ss.append(ssim(out, refs[case]))
        row = dict(family=family, method=name, knob=knob, setting=v, steps=steps, block_flops=statistics.mean(fracs),
                   psnr=statistics.mean(ps), psnr_min=min(ps), ssim=statistics.mean(ss), images=len(cases),
                   reference=reference)
        rows.append(row)
        log(f"[{family}] {name:29s} {knob}={v:<6} block FLOPs {row['block_flops']:6.1%}  "
            f"PSNR {row['psnr']:6.2f} dB (min {row['psnr_min']:5.2f})  SSIM {row['ssim']:.4f}  "
            f"({time.perf_counter() - t0:.0f} s)")

    cal = calibrations(ck, model, family, steps)
    log(f"[{family}] EasyCache evidence: {easycache_evidence(model, family)}")
    measured = methods(ck, cal, main_only=family not in FULL)
    for name, (knob, settings, apply, reference) in measured.items():
        if not only or name in only:
            for v in settings:
                measure(name, knob, v, apply(model, v), net, full, reference)
    wanted = [n for n in dict.fromkeys(m[3] for m in measured.values() if m[3]) if not only or n in only]
    wanted = wanted if family in FULL else []
    if family in FULL and (not only or wanted or UNCACHED_REFERENCE in only):
        references = reference_models.References(model, family, steps)
        # the diffusers model without a cache: its own block FLOPs, and how close it computes to ComfyUI's
        plain = references.plain()
        _, ref_full = block_flops(lambda: sample(plain, cases[0]), references.net)
        measure(UNCACHED_REFERENCE, "-", "-", plain, references.net, ref_full)
    if wanted:
        for name, (knob, settings, apply) in references.methods(lambda m: sample(m, ("euler", 3, 0))).items():
            if name in wanted:
                for v in settings:
                    measure(name, knob, v, apply(model, v), references.net, ref_full)
    return rows


def curve(rows, family, method) -> list[tuple[float, float]]:
    """(block-FLOP fraction, mean PSNR) of a method's settings, by fraction."""
    return sorted((r["block_flops"], r["psnr"]) for r in rows if r["family"] == family and r["method"] == method)


def psnr_at(pts, x: float) -> float | None:
    """PSNR at fraction x, linear between the two nearest points (None outside the curve)."""
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def at_half(rows, family, method) -> float | None:
    """PSNR at 50% block FLOPs (None if the curve does not reach across 50%)."""
    return psnr_at(curve(rows, family, method), 0.5)


def rises(rows, family, method) -> list[tuple[dict, dict, bool]]:
    """(setting, next setting, at the same compute) wherever quality rose as the knob asked for more saving; the
    same compute: the two ran within half a point of block FLOPs (the same steps, at other places)."""
    mine = [r for r in rows if r["family"] == family and r["method"] == method]
    return [(a, b, abs(b["block_flops"] - a["block_flops"]) < 0.005)
            for a, b in zip(mine, mine[1:]) if b["psnr"] > a["psnr"]]


def vs_reference(rows, family, method) -> str:
    """CacheKit's PSNR minus its reference's at equal compute: at each of CacheKit's settings whose fraction the
    reference's curve spans, the reference's PSNR interpolated there; the range of the differences."""
    ref = references(rows).get(method)
    ref_pts = curve(rows, family, ref) if ref else []
    deltas = [y - r for x, y in curve(rows, family, method) if (r := psnr_at(ref_pts, x)) is not None]
    if not ref or not ref_pts:
        return ""
    if not deltas:
        return "curves do not overlap"
    lo, hi = min(deltas), max(deltas)
    return f"{lo:+.2f} dB" if len(deltas) == 1 else f"{lo:+.2f} to {hi:+.2f} dB ({len(deltas)} points)"


def chart(rows, families, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [m for m in dict.fromkeys(r["method"] for r in rows) if m != UNCACHED_REFERENCE]
    refs = references(rows)
    own = [m for m in names if m not in refs.values()]
    color = {m: plt.cm.tab20(i % 20) for i, m in enumerate(own)}
    for mine, ref in refs.items():
        color.setdefault(ref, color.get(mine, "black"))     # a reference takes its first CacheKit method's colour
    cols = min(3, len(families))
    rows_n = -(-len(families) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(7.5 * cols, 7.5 * rows_n + 1.5), squeeze=False)
    for ax in axes.flat[len(families):]:
        ax.axis("off")
    for ax, family in zip(axes.flat, families):
        for method in names:
            pts = curve(rows, family, method)
            style = ":" if method in refs.values() else "--" if "ComfyUI" in method else "-"
            ax.plot([p[0] * 100 for p in pts], [p[1] for p in pts], style, marker="o", ms=3, label=method,
                    color=color[method])
        ax.set(title=f"{family} (digits, {tokens(family)} tokens, {STEPS} steps, cfg {CFG}, euler + dpmpp_2m)",
               xlabel="transformer block FLOPs executed (% of uncached)", ylabel="PSNR vs uncached (dB)")
        ax.axvline(50, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    # below the panels: inside one it hid the curves it lay over (Flux's FasterCache)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=4)
    fig.tight_layout(rect=(0, 0.16 / rows_n, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def tokens(family: str) -> str:
    from harness import digits_models as dm
    r = dm.RECIPES[family]
    side = 4 * r.grid
    return f"{r.frames} x {side}x{side}" if r.frames > 1 else f"{side}x{side}"


def markdown(rows, families) -> str:
    out = []
    for family in families:
        n = next((r["images"] for r in rows if r["family"] == family), 0)
        out += [f"#### {family}", "", f"{tokens(family)} image tokens, {n} images per point.", "",
                "| method | knob | setting | block FLOPs run | PSNR dB (mean / min) | SSIM |",
                "|---|---|---|---|---|---|"]
        out += [f"| {r['method']} | {r['knob']} | {r['setting']} | {r['block_flops']:.1%} | "
                f"{r['psnr']:.2f} / {r['psnr_min']:.2f} | {r['ssim']:.4f} |" for r in rows if r["family"] == family]
        out += ["", "At 50% of block FLOPs (PSNR interpolated between the two nearest settings); against the "
                "reference implementation at equal compute (CacheKit's PSNR minus the reference's, at CacheKit's "
                "settings the reference's curve spans); whether quality only falls as the knob asks for more "
                "saving:", "",
                "| method | PSNR at 50% | vs EasyCache (copy fix) | vs its reference | monotone |",
                "|---|---|---|---|---|"]
        easy = at_half(rows, family, WORKING_EASYCACHE)
        for method in dict.fromkeys(r["method"] for r in rows if r["method"] != UNCACHED_REFERENCE):
            v = at_half(rows, family, method)
            up = [f"{a['setting']}->{b['setting']} +{b['psnr'] - a['psnr']:.2f} dB{' (same compute)' if same else ''}"
                  for a, b, same in rises(rows, family, method)]
            delta = "" if v is None or easy is None or "ComfyUI" in method else f"{v - easy:+.2f} dB"
            out.append(f"| {method} | {'-' if v is None else f'{v:.2f} dB'} | {delta} | "
                       f"{vs_reference(rows, family, method)} | {'yes' if not up else 'no: ' + ', '.join(up)} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    from harness.bench_stages import family_args, family_rows
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from harness import digits_models as dm
    family_args(ap, comfy_runtime.REPO / "output" / "bench" / "quality", tuple(dm.RECIPES))   # every model
    ap.add_argument("--methods", nargs="+", help="measure only these methods and replace their rows in the "
                    "existing quality.json (the others stay as measured before)")
    args = ap.parse_args()
    t0 = time.perf_counter()

    def measure(ck, family):
        import logging
        logging.getLogger().setLevel(logging.WARNING)
        return run_family(ck, family, lambda s: print(s, flush=True), args.methods)
    rows = family_rows(args, __file__, measure, ["--methods", *args.methods] if args.methods else [])
    if rows is None:
        return 0
    if args.methods:
        earlier = args.out / "quality.json"
        rows = merged(json.loads(earlier.read_text()) if earlier.exists() else [], rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(rows, indent=1))
    (args.out / "quality.md").write_text(markdown(rows, args.families))
    print("chart:", chart(rows, args.families, args.out / "quality.png"))
    print(markdown(rows, args.families))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


def merged(earlier: list[dict], new: list[dict]) -> list[dict]:
    """`earlier` with each (family, method) that `new` measured replaced where it stood (new ones at the end), so
    a rerun keeps the tables in the order of the full run."""
    key = lambda r: (r["family"], r["method"])   # noqa: E731
    fresh = {}
    for r in new:
        fresh.setdefault(key(r), []).append(r)
    out, placed = [], set()
    for r in earlier:
        k = key(r)
        if k not in fresh:
            out.append(r)
        elif k not in placed:
            out += fresh[k]
            placed.add(k)
    return out + [r for k, rs in fresh.items() if k not in placed for r in rs]


if __name__ == "__main__":
    sys.exit(main())
