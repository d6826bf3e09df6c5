"""What caching costs on quantized weights, on the trained digits models (scripts/harness/digits_models.py): fp8
e4m3fn weights (the core loader's weight_dtype) and GGUF Q8_0 / Q4_K files (ComfyUI-GGUF's loader), loaded as
scripts/harness/quantized_models.py does, beside the float32 model, in one run.

The settings and calibrations are those made on the float32 model, as a user who switches to a quantized file keeps
them. For each method, weights and setting: the block-FLOP fraction that ran, the PSNR of the cached output against
the same weights uncached (what caching costs) and against float32 uncached (what quantizing and caching cost
together). Summary: PSNR at 50% and 30% of block FLOPs, and the fraction the float32 model's 50% setting runs on
each weight type (whether a threshold must change).

    .runtime/comfyui-0.33.0/venv/bin/python scripts/bench_quantized.py [--families wan flux] [--methods M ...]
        [--out output/bench/quantized] [--add]

--add keeps the rows of an earlier run's other methods (output quantized.json) and replaces those measured now.
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

WEIGHTS = ("float32", "fp8_e4m3fn", "Q8_0", "Q4_K")
# the adaptive methods (their decisions read the model's own statistics, which quantizing moves) and TaylorSeer
METHODS = ("First Block Cache", "TeaCache (calibrated)", "MagCache (calibrated)", "DBCache (F1 B0)", "SeaCache",
           "TaylorSeer (order 1)", "SpeCa", "LeMiCa (calibrated)")
SAMPLERS, LABELS, SEED = ("euler", "dpmpp_2m"), (0, 4, 8), 1
FAMILY_ORDER = {"wan": 0, "flux": 1}


def loaded(model, weights: str):
    from harness import quantized_models as qm
    if weights == "float32":
        return model
    return qm.load_gguf(model, weights)[0] if weights in qm.GGUF_TYPES else qm.load_fp8(model, weights)


def block_runs(run, net) -> tuple[object, dict]:
    """(run()'s result, {block name: times it ran}). ComfyUI-GGUF's tensors cannot run under the dispatch mode that
    counts FLOPs op by op (block_flops), so the quantized runs count block executions, each weighted by what that
    block costs uncached in float32 (the same shapes): exact for these methods, which skip whole blocks."""
    from harness.block_flops import BLOCK
    counts: dict = {}
    blocks = [(name, m) for name, m in net.named_modules() if BLOCK.search(name)]
    handles = [m.register_forward_pre_hook(lambda *_, n=name: counts.__setitem__(n, counts.get(n, 0) + 1))
               for name, m in blocks]
    try:
        return run(), counts
    finally:
        for h in handles:
            h.remove()


def block_costs(run, net) -> dict:
    """{block name: FLOPs of one of its runs}, from one uncached float32 run (every call has the same shapes)."""
    by_block: dict = {}
    _, counts = block_runs(lambda: block_flops(run, net, by_block), net)
    return {name: by_block.get(name, 0) / n for name, n in counts.items()}


def fraction(counts: dict, full: dict, costs: dict) -> float:
    return sum(n * costs[b] for b, n in counts.items()) / sum(n * costs[b] for b, n in full.items())


def run_family(ck, family: str, methods: list[str], log) -> list[dict]:
    import bench_quality as bq
    from harness import digits_models as dm
    base = dm.load(family, log)
    cal = bq.calibrations(ck, base, family)
    every = bq.methods(ck, cal, main_only=True)
    unknown = [m for m in methods if m not in every]
    if unknown:
        raise SystemExit(f"bench_quantized: no sweep named {unknown}; the sweeps: {list(every)}")
    sweeps = {name: s for name, s in every.items() if name in methods}
    cases = [(s, lab) for s in SAMPLERS for lab in LABELS]
    rows, float_refs = [], None
    costs = block_costs(lambda: dm.sample(base, family, LABELS[0], SEED, steps=bq.STEPS, cfg=bq.CFG),
                        base.model.diffusion_model)
    for weights in WEIGHTS:
        model = loaded(base, weights)
        net = model.model.diffusion_model

        def sample(m, case):
            return dm.sample(m, family, case[1], SEED, steps=bq.STEPS, cfg=bq.CFG, sampler=case[0])
        refs, full = {}, {}
        for case in cases:
            refs[case], full[case] = block_runs(lambda: sample(model, case), net)
        float_refs = float_refs or refs
        own = statistics.mean(bq.psnr(refs[c], float_refs[c]) for c in cases) if weights != "float32" else None
        log(f"[{family}] {weights}: uncached vs float32 uncached {own if own is None else round(own, 2)} dB")
        for name, (knob, settings, apply, _) in sweeps.items():
            for v in settings:
                t0 = time.perf_counter()
                patched = apply(model, v)
                fracs, ps, pf = [], [], []
                for case in cases:
                    out, counts = block_runs(lambda: sample(patched, case), net)
                    fracs.append(fraction(counts, full[case], costs))
                    ps.append(bq.psnr(out, refs[case]))
                    pf.append(bq.psnr(out, float_refs[case]))
                row = dict(family=family, weights=weights, method=name, knob=knob, setting=v,
                           block_flops=statistics.mean(fracs), psnr=statistics.mean(ps),
                           psnr_vs_float32=statistics.mean(pf), uncached_vs_float32=own)
                rows.append(row)
                log(f"[{family}] {weights:10s} {name:18s} {knob}={v:<6} block FLOPs {row['block_flops']:6.1%}  "
                    f"PSNR {row['psnr']:6.2f} dB, vs float32 {row['psnr_vs_float32']:6.2f} dB "
                    f"({time.perf_counter() - t0:.0f} s)")
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per family, method and weights: PSNR at 50% and 30% of block FLOPs (interpolated on the sweep), and the
    fraction run by the setting whose float32 fraction is nearest 50%."""
    import bench_quality as bq
    out = []
    for family, method in sorted(dict.fromkeys((r["family"], r["method"]) for r in rows),
                                 key=lambda fm: (FAMILY_ORDER.get(fm[0], 9), METHODS.index(fm[1])
                                                 if fm[1] in METHODS else 99)):
        mine = [r for r in rows if r["family"] == family and r["method"] == method]
        f32 = [r for r in mine if r["weights"] == "float32"]
        half = min(f32, key=lambda r: abs(r["block_flops"] - 0.5))["setting"]
        for weights in WEIGHTS:
            w = [r for r in mine if r["weights"] == weights]
            pts = sorted((r["block_flops"], r["psnr"]) for r in w)
            vs_float = sorted((r["block_flops"], r["psnr_vs_float32"]) for r in w)
            out.append(dict(family=family, method=method, weights=weights, at_50=bq.psnr_at(pts, 0.5),
                            at_30=bq.psnr_at(pts, 0.3), at_50_vs_float32=bq.psnr_at(vs_float, 0.5),
                            half_setting=half,
                            half_fraction=next(r["block_flops"] for r in w if r["setting"] == half)))
    return out


RETUNE = 0.05     # a float32 setting running this far from its float32 fraction on a weight type needs retuning


def verdict(s: list[dict]) -> str:
    """Whether the float32 settings need changing for quantized weights, from the summary's rows: how far the
    setting nearest 50% moves, and what PSNR at 50% does, per weight type."""
    f32 = {(r["family"], r["method"]): r for r in s if r["weights"] == "float32"}
    parts, worst = [], 0.0
    for weights in WEIGHTS[1:]:
        mine = [(r, f32[(r["family"], r["method"])]) for r in s if r["weights"] == weights]
        if not mine:
            continue
        moved = max(abs(r["half_fraction"] - b["half_fraction"]) for r, b in mine)
        dbs = [r["at_50"] - b["at_50"] for r, b in mine if r["at_50"] is not None and b["at_50"] is not None]
        worst = max(worst, moved)
        parts.append(f"{weights} within {100 * moved:.1f} points" + (
            f" (PSNR at 50% {min(dbs):+.1f} to {max(dbs):+.1f} dB)" if dbs else ""))
    answer = ("thresholds, presets and calibrations made on float32 need no change for these weights"
              if worst <= RETUNE else f"a setting moves by more than {100 * RETUNE:.0f} points: retune (or use "
              f"target_compute with a tuning made on the quantized model) for these weights")
    return (f"The float32 setting nearest 50% runs on {'; '.join(parts)} of its float32 block-FLOP fraction: "
            f"{answer}.")


def markdown(rows: list[dict], families: list[str]) -> str:
    def db(x):
        return "-" if x is None else f"{x:.1f}"
    s = summary(rows)
    own = {(r["family"], r["weights"]): r["uncached_vs_float32"] for r in rows}
    lines = ["Uncached, against the float32 model uncached (what quantizing alone costs): " + "; ".join(
        f"{f} {w} {db(own[(f, w)])} dB" for f in families for w in WEIGHTS[1:] if (f, w) in own) + ".", "",
        verdict(s), "",
        "| model | method | weights | PSNR at 50% | PSNR at 30% | at 50%, vs float32 uncached | the float32 50% "
        "setting runs |", "|---|---|---|---|---|---|---|"]
    for r in s:
        lines.append(f"| {r['family']} | {r['method']} | {r['weights']} | {db(r['at_50'])} | {db(r['at_30'])} | "
                     f"{db(r['at_50_vs_float32'])} | {r['half_fraction']:.1%} ({r['half_setting']}) |")
    return "\n".join(lines)


def page(rows: list[dict], families: list[str], seconds: float | None) -> str:
    """docs/bench/quantized.md: the table, what it measured and the command."""
    took = f", {seconds:.0f} s on one thread" if seconds else ""
    return (f"# Caching on quantized weights\n\nWritten by `scripts/bench_quantized.py` ({time.strftime('%Y-%m-%d')}"
            f"{took}). The trained digits models ({', '.join(families)}; 30 steps, cfg 4, euler and dpmpp_2m, labels "
            f"{', '.join(map(str, LABELS))}, seed {SEED}) loaded as float32, fp8 e4m3fn (the core loader's "
            f"weight_dtype) and GGUF Q8_0 / Q4_K (ComfyUI-GGUF's loader). Each method's settings and calibrations are "
            f"those made on the float32 model. PSNR at a block-FLOP fraction is interpolated along the method's "
            f"sweep, against the same weights uncached; one column compares with the float32 model uncached; the "
            f"last gives the block-FLOP fraction that the float32 model's setting nearest 50% runs on each weight "
            f"type.\n\n{markdown(rows, families)}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["wan", "flux"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--out", type=Path, default=comfy_runtime.REPO / "output" / "bench" / "quantized")
    ap.add_argument("--add", action="store_true")
    ap.add_argument("--doc-only", action="store_true", help="rewrite docs/bench/quantized.md from the last run")
    args = ap.parse_args()
    doc = comfy_runtime.REPO / "docs" / "bench" / "quantized.md"
    if args.doc_only:
        rows = json.loads((args.out / "quantized.json").read_text())
        doc.write_text(page(rows, list(dict.fromkeys(r["family"] for r in rows)), None))
        return 0
    comfy_runtime.load()
    import torch
    torch.set_num_threads(1)
    from harness import pack
    ck = pack.load()
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = open(args.out / "log.txt", "a" if args.add else "w")

    def log(msg):
        print(msg, flush=True)
        log_file.write(msg + "\n")
    t0 = time.perf_counter()
    rows = [r for f in args.families for r in run_family(ck, f, args.methods, log)]
    if args.add and (args.out / "quantized.json").exists():
        earlier = json.loads((args.out / "quantized.json").read_text())
        rows = [r for r in earlier if r["method"] not in args.methods] + rows
    (args.out / "quantized.json").write_text(json.dumps(rows, indent=1))
    seconds = time.perf_counter() - t0
    doc.write_text(page(rows, args.families, None if args.add else seconds))
    log(markdown(rows, args.families))
    log(f"{seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
