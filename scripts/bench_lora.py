"""LoRAs against settings made without them (issue 24): each adaptive method's thresholds, calibrations and
target_compute tunings made on a trained digits model (scripts/bench_quality.py's sweeps and calibrations,
scripts/bench_tuning.py's tunings), run on the same model with a LoRA loaded (scripts/harness/digits_lora.py:
label l draws l + 1), beside the same settings on the model without it. Per setting: the block-FLOP fraction run
and PSNR against that model's own uncached output (the LoRA's against the LoRA's). Flags every setting the LoRA
moves by more than 10 points of block FLOPs or to about no reuse, and every target_compute the run misses by more
than 10 points.

    CACHEKIT_COMFY=0.33.0 OMP_NUM_THREADS=1 .runtime/comfyui-0.33.0/venv/bin/python scripts/bench_lora.py
        [--families wan flux]

One process, one torch thread, the families in turn. Writes output/bench/lora.json and docs/bench/lora.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

import bench_quality as bq
import bench_tuning
from harness import comfy_runtime
from harness.block_flops import block_flops

# the adaptive methods: their main sweep in bench_quality (TaylorSeer's fixed interval as the control)
METHODS = ("First Block Cache", "TeaCache (calibrated)", "MagCache (calibrated)", "DBCache (F1 B0)", "SeaCache",
           "TaylorSeer (order 1)", "SpeCa", "LeMiCa (calibrated)")
SEED = 1
MOVED = 0.10          # a fraction moved, or a target missed, by more than this is flagged
NO_REUSE = 0.98       # block FLOPs at or above this fraction: about nothing reused
MODELS = ("base", "lora")
# the columns: the model without the LoRA, with it, and (the control) without it asked for the label the LoRA draws,
# which tells a change the LoRA's weights make to caching from one the other digits make
COLUMNS = {"base": ("base", False), "lora": ("lora", False), "next": ("base", True)}


def sample(model, family, case, shifted=False):
    from harness import digits_lora as dl
    from harness import digits_models as dm
    sampler, lab = case
    return dm.sample(model, family, dl.shifted(lab) if shifted else lab, SEED, steps=bq.STEPS, cfg=bq.CFG,
                     sampler=sampler)


def lora_check(refs) -> dict:
    """What the LoRA changed: its uncached images against the base's for the same label (low PSNR: it draws
    something else) and for label + 1 (what it was trained to draw: the base asked for the next label from the
    same seed is the ideal LoRA's output)."""
    same = [bq.psnr(refs["lora"][c], refs["base"][c]) for c in refs["lora"]]
    target = [bq.psnr(refs["lora"][c], refs["next"][c]) for c in refs["lora"]]
    return {"psnr_vs_base_same_label": statistics.mean(same), "psnr_vs_base_next_label": statistics.mean(target),
            "images": len(same)}


def flags(row) -> list[str]:
    base, lora = row["base"]["block_flops"], row["lora"]["block_flops"]
    out = []
    if abs(lora - base) > MOVED:
        out.append(f"moved {100 * (lora - base):+.0f} points")
    if lora >= NO_REUSE > base:
        out.append("~0% reuse")
    return out


def run_family(ck, family: str, log) -> dict:
    from harness import digits_lora as dl
    from harness import digits_models as dm
    from harness import pack
    import importlib
    stats_feed = importlib.import_module("cachekit.nodes.host.stats_feed")
    t0 = time.perf_counter()
    base, lora = dl.load(family, log)
    models = {"base": base, "lora": lora}
    net = base.model.diffusion_model            # one module: the LoRA's clone patches its weights on load
    cases = [(s, lab) for s in bq.SAMPLERS for lab in bq.LABELS]
    refs, full = {k: {} for k in COLUMNS}, set()
    for k, (m, shift) in COLUMNS.items():
        for c in cases:
            refs[k][c], f = block_flops(lambda: sample(models[m], family, c, shift), net)
            full.add(f)
    assert len(full) == 1, "uncached runs must spend the same block FLOPs"
    full = full.pop()
    check = lora_check(refs)
    log(f"[{family}] LoRA uncached vs base uncached, same label: {check['psnr_vs_base_same_label']:.2f} dB; vs base "
        f"for label + 1: {check['psnr_vs_base_next_label']:.2f} dB")

    def measure(k, patched, target=None) -> dict:
        """Block FLOPs and PSNR over the cases; with a target, the computed fraction, the worst run's miss and the
        threshold the run picked."""
        fracs, ps, ev = [], [], []
        for c in cases:
            out, f = block_flops(lambda: sample(patched, family, c, COLUMNS[k][1]), net)
            fracs.append(f / full)
            ps.append(bq.psnr(out, refs[k][c]))
            if target is not None:
                s = stats_feed.recent()[-1]
                ev.append(s["block_evals"] / s["block_evals_full"])
                picked = next((n.split("threshold ")[1].split(" ")[0] for n in s["notes"] if n.startswith("target")),
                              None)
        got = dict(block_flops=statistics.mean(fracs), psnr=statistics.mean(ps), psnr_min=min(ps))
        return got | ({"computed": statistics.mean(ev), "worst_miss": max(abs(e - target) for e in ev),
                       "picked": picked} if target is not None else {})

    cal = bq.calibrations(ck, base, family)                 # made without the LoRA
    rows = []
    for name, (knob, settings, apply, _) in bq.methods(ck, cal, main_only=True).items():
        if name not in METHODS:
            continue
        for v in settings:
            row = dict(family=family, method=name, knob=knob, setting=v,
                       **{k: measure(k, apply(models[m], v)) for k, (m, _) in COLUMNS.items()})
            row["flags"] = flags(row)
            rows.append(row)
            log(f"[{family}] {name:22s} {knob}={v:<6} " + " | ".join(
                f"{k} {row[k]['block_flops']:6.1%} {row[k]['psnr']:5.2f} dB" for k in COLUMNS) + "  " +
                " ".join(row["flags"]))

    pos, neg = dm.conditioning(family, 3)
    sampling = dict(seed=0, steps=bq.STEPS, cfg=bq.CFG, sampler_name="euler", scheduler="simple", positive=pos,
                    negative=neg, latent_image={"samples": dm.empty_latent(family)}, denoise=1.0)
    targets = []
    classes = {cls.__name__: cls for cls in pack.method_nodes().values()}
    for name, (node, settings, needs_tuning) in bench_tuning.methods(ck, cal, base).items():
        # the tuning is recorded on the model without the LoRA (as bench_tuning: euler, label 3, seed 0)
        extra = {"tuning": pack.node(ck, "TuneCacheThreshold", model=pack.node(ck, node, model=base, **settings)[0],
                                     **sampling)[0]} if needs_tuning else {}
        for target in bench_tuning.TARGETS:
            row = dict(family=family, method=name, target=target)
            for k in MODELS:
                row[k] = measure(k, pack.node(ck, node, model=models[k], target_compute=target, **settings,
                                              **extra)[0], target)
            if needs_tuning:   # the threshold the tuning picks, set by hand: target_compute before it kept to the plan
                knob = classes[node].THRESHOLD     # (a target it cannot reach picks past the input's range: its max)
                top = classes[node].INPUT_TYPES()["required"][knob][1]["max"]
                fixed = settings | {knob: min(float(row["lora"]["picked"]), top)}
                row["lora_fixed"] = measure("lora", pack.node(ck, node, model=lora, **fixed)[0], target)
            row["flags"] = [f"{k} misses by {100 * (row[k]['computed'] - target):+.0f} points" for k in MODELS
                            if abs(row[k]["computed"] - target) > MOVED]
            targets.append(row)
            log(f"[{family}] {name:22s} target {target:.0%}: computed " + " | ".join(
                f"{k} {row[k]['computed']:6.1%} {row[k]['psnr']:5.2f} dB" for k in (*MODELS, "lora_fixed")
                if k in row) + "  " +
                " ".join(row["flags"]))
    seconds = time.perf_counter() - t0
    log(f"[{family}] {seconds:.0f} s")
    return {"family": family, "lora": {**check, "file": dl.RECIPES[family].path.name}, "rows": rows,
            "targets": targets, "seconds": seconds}


def at_half(result, k, method) -> float | None:
    pts = sorted((r[k]["block_flops"], r[k]["psnr"]) for r in result["rows"] if r["method"] == method)
    return bq.psnr_at(pts, 0.5)


def markdown(results: list[dict]) -> str:
    def db(v):
        return "-" if v is None else f"{v:.2f} dB"
    out = ["# LoRAs against settings made without them", "",
           "Generated by `scripts/bench_lora.py`. Each adaptive method's settings, calibrations (made by the "
           "calibrate nodes on the model without the LoRA) and target_compute tunings (Tune Cache Threshold on the "
           "model without the LoRA), run on the trained digits model with its LoRA loaded (LoraLoaderModelOnly, "
           "strength 1; label l draws l + 1) beside the same settings on the model without it. Block FLOPs: the "
           "fraction of the transformer blocks' FLOPs that ran; PSNR against that model's own uncached output. "
           f"euler and dpmpp_2m, labels {', '.join(map(str, bq.LABELS))}, seed {SEED}, {bq.STEPS} steps, cfg {bq.CFG}. "
           f"Flagged: the LoRA moves the fraction by more than {MOVED * 100:.0f} points or to about no reuse "
           f"(>= {NO_REUSE:.0%}); a target_compute run misses its target by more than {MOVED * 100:.0f} points.", ""]
    for res in results:
        f, lo = res["family"], res["lora"]
        out += [f"## {f}", "",
                f"The LoRA ({lo['file']}): uncached, {db(lo['psnr_vs_base_same_label'])} against the base model's "
                f"image for the same label and seed, {db(lo['psnr_vs_base_next_label'])} against the base's for "
                f"label + 1 (what it was trained to draw; {lo['images']} images).", "",
                "Block FLOPs / PSNR (dB) of each setting on the model without the LoRA (base), with it (LoRA), and "
                "without it asked for label + 1, the digits the LoRA draws (control):", "",
                "| method | knob | setting | base | LoRA | control | flag |", "|---|---|---|---|---|---|---|"]
        out += [f"| {r['method']} | {r['knob']} | {r['setting']} | " +
                " | ".join(f"{r[k]['block_flops']:.1%} / {r[k]['psnr']:.2f}" for k in COLUMNS) +
                f" | {', '.join(r['flags'])} |" for r in res["rows"]]
        out += ["", "PSNR at 50% of block FLOPs (interpolated between the two nearest settings):", "",
                "| method | base | LoRA | control |", "|---|---|---|---|"]
        out += [f"| {m} | " + " | ".join(db(at_half(res, k, m)) for k in COLUMNS) + " |"
                for m in dict.fromkeys(r["method"] for r in res["rows"])]
        out += ["", "target_compute (the fraction of block evaluations asked for; computed: the mean of the runs, "
                "worst miss: the run furthest from the target). A run of the tuning's step count keeps to the course "
                "its tuning planned, moving the threshold as it goes (cache_core/tuning_scale.py); the threshold the "
                "tuning picks, set by hand on the LoRA's model, shows what it computed before that:", "",
                "| method | target | base: computed (worst miss) | base: PSNR | LoRA: computed (worst miss) "
                "| LoRA: PSNR | LoRA, the picked threshold fixed: computed / PSNR | flag |",
                "|---|---|---|---|---|---|---|---|"]

        def fixed(r):
            got = r.get("lora_fixed")
            return "-" if got is None else f"{got['computed']:.1%} / {got['psnr']:.2f}"
        out += [f"| {r['method']} | {r['target']:.0%} | {r['base']['computed']:.1%} ({r['base']['worst_miss']:.1%}) | "
                f"{r['base']['psnr']:.2f} | {r['lora']['computed']:.1%} ({r['lora']['worst_miss']:.1%}) | "
                f"{r['lora']['psnr']:.2f} | {fixed(r)} | {', '.join(r['flags'])} |" for r in res["targets"]]
        out.append("")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["wan", "flux"], choices=["wan", "flux"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    comfy_runtime.load()
    import logging
    logging.getLogger().setLevel(logging.WARNING)
    from harness import pack
    ck = pack.load()
    t0 = time.perf_counter()
    results = [run_family(ck, f, lambda s: print(s, flush=True)) for f in args.families]
    out = comfy_runtime.REPO / "output" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "lora.json").write_text(json.dumps(results, indent=1))
    md = markdown(results)
    (comfy_runtime.REPO / "docs" / "bench" / "lora.md").write_text(md)
    print(md)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
