"""Auto-tune on the trained digits models: ask each threshold-driven method for a fraction of block evaluations
(target_compute), tuned once (Tune Cache Threshold: euler, label 3, seed 0; MagCache from its ratios), and
measure what the runs compute and their quality, over the quality benchmark's labels, seeds and samplers.

    .runtime/comfyui-0.33.0/venv/bin/python scripts/bench_tuning.py [--families wan flux]

Writes output/bench/tuning/tuning.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from harness import comfy_runtime

TARGETS = (0.3, 0.5, 0.7)


def methods(ck, cal, model):
    """method -> (node, settings at target_compute 0, whether it needs a tuning run): the first sweep of every Apply
    node whose threshold a target can replace (its THRESHOLD), at 0. A method without a probe aims at the target
    from its own schedule (MagCache) and needs no tuning run."""
    from harness import pack
    out = {}
    for key, cls in pack.method_nodes().items():
        if cls.THRESHOLD:
            label, sweep = next(iter(cls.EXAMPLES.sweeps.items()))
            settings = sweep.inputs(0.0, cal.get(key), lambda name, **i: pack.node(ck, name, **i)[0])
            node = cls()
            make_policy, _ = node.method(model, node.checked({**cls.defaults(), **settings}))
            out[label] = (cls.__name__, settings, make_policy().probe is not None)
    return out


def run_family(ck, family: str, log) -> list[dict]:
    from harness import pack
    import bench_quality as bq
    from harness import digits_models as dm
    import importlib
    stats_feed = importlib.import_module("cachekit.nodes.host.stats_feed")
    model = dm.load(family, log)
    cases = [(s, lab, seed) for s in bq.SAMPLERS for lab in bq.LABELS for seed in bq.SEEDS]
    refs = {c: dm.sample(model, family, c[1], c[2], steps=bq.STEPS, cfg=bq.CFG, sampler=c[0]) for c in cases}
    cal = bq.calibrations(ck, model, family)
    pos, neg = dm.conditioning(family, 3)
    rows = []
    for name, (node, settings, needs_tuning) in methods(ck, cal, model).items():
        extra = {}
        if needs_tuning:
            extra["tuning"] = pack.node(ck, "TuneCacheThreshold", model=pack.node(ck, node, model=model, **settings)[0],
                                        seed=0, steps=bq.STEPS, cfg=bq.CFG, sampler_name="euler", scheduler="simple",
                                        positive=pos, negative=neg, latent_image={"samples": dm.empty_latent(family)},
                                        denoise=1.0)[0]
        for target in TARGETS:
            patched = pack.node(ck, node, model=model, target_compute=target, **settings, **extra)[0]
            fracs, ps = [], []
            for c in cases:
                out = dm.sample(patched, family, c[1], c[2], steps=bq.STEPS, cfg=bq.CFG, sampler=c[0])
                s = stats_feed.recent()[-1]
                fracs.append(s["block_evals"] / s["block_evals_full"])
                ps.append(bq.psnr(out, refs[c]))
            row = dict(family=family, method=name, target=target, mean=statistics.mean(fracs),
                       worst=max(abs(f - target) for f in fracs), psnr=statistics.mean(ps), images=len(cases))
            rows.append(row)
            log(f"[{family}] {name:24s} target {target:.0%}: computed {row['mean']:.1%} (worst miss "
                f"{row['worst']:.1%}), PSNR {row['psnr']:.2f} dB")
    return rows


def markdown(rows) -> str:
    lines = ["| model | method | target | blocks computed (mean of 12 runs) | worst miss | PSNR (dB) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['method']} | {r['target']:.0%} | {r['mean']:.1%} | {r['worst']:.1%} | "
                     f"{r['psnr']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    from harness.bench_stages import family_args, family_rows
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    family_args(ap, comfy_runtime.REPO / "output" / "bench" / "tuning")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = family_rows(args, __file__, lambda ck, family: run_family(ck, family, lambda s: print(s, flush=True)))
    if rows is None:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tuning.json").write_text(json.dumps(rows, indent=1))
    (args.out / "tuning.md").write_text(markdown(rows) + "\n")
    print(markdown(rows))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
