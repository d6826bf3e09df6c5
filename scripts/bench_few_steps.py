"""What caching saves on a few-step run, and at what quality: every CacheKit method's quality sweep
(bench_quality.py's, each Apply node's EXAMPLES) on the trained digits models at 4, 6 and 8 steps, each run
against the uncached run at the same steps, seed and label (euler, 3 labels x 2 seeds). Distilled models
(Flux 2 Klein 4 steps, Z-Image Turbo 8, LTX-2 distilled, Wan with lightx2v LoRAs) sample this way; the digits
models are not distilled, so this measures what a method can find to reuse in so few steps, not a distilled
model's quality. The numbers behind the few-step note the nodes give (nodes/host/install.py).

    .runtime/comfyui-0.33.0/venv/bin/python scripts/bench_few_steps.py [--families wan flux] [--steps 4 6 8]
        [--out output/bench/few_steps]
"""
from __future__ import annotations

import argparse
import json
import time

import bench_quality as bq
from harness import comfy_runtime

STEPS = (4, 6, 8)


def best_rows(rows: list[dict], floor: float) -> dict:
    """(family, steps, method) -> the setting that saved the most block FLOPs with mean PSNR >= floor, or None."""
    best = {}
    for r in rows:
        key = (r["family"], r["steps"], r["method"])
        best.setdefault(key, None)
        if r["psnr"] >= floor and (best[key] is None or r["block_flops"] < best[key]["block_flops"]):
            best[key] = r
    return best


def markdown(rows: list[dict], floor: float) -> str:
    lines = [f"Lowest block-FLOP fraction each method reached with mean PSNR >= {floor:.0f} dB against the uncached "
             f"run at the same steps (-: no setting of its sweep saved anything at that quality)", "",
             "| family | steps | method | setting | block FLOPs | PSNR (dB) | min PSNR |",
             "|---|---|---|---|---|---|---|"]
    for (family, steps, method), r in best_rows(rows, floor).items():
        if r is None or r["block_flops"] > 0.999:
            lines.append(f"| {family} | {steps} | {method} | - | 100% | | |")
        else:
            lines.append(f"| {family} | {steps} | {method} | {r['knob']}={r['setting']} | {r['block_flops']:.0%} | "
                         f"{r['psnr']:.1f} | {r['psnr_min']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    from harness.bench_stages import family_args, family_rows
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    family_args(ap, comfy_runtime.REPO / "output" / "bench" / "few_steps")
    ap.add_argument("--steps", nargs="+", type=int, default=list(STEPS))
    ap.add_argument("--floor", type=float, default=30.0, help="the PSNR a saving must keep to count (dB)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    from harness import pack

    def measure(ck, family):
        import logging
        logging.getLogger().setLevel(logging.ERROR)     # the few-step note on every run: the point of the table
        only = [label for cls in pack.method_nodes().values() for label in cls.EXAMPLES.sweeps]
        return [r for steps in args.steps
                for r in bq.run_family(ck, family, lambda s: print(s, flush=True), only, steps=steps,
                                       samplers=("euler",))]
    extra = ["--steps", *map(str, args.steps), "--floor", str(args.floor)]
    rows = family_rows(args, __file__, measure, extra)
    if rows is None:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "few_steps.json").write_text(json.dumps(rows, indent=1))
    text = markdown(rows, args.floor)
    (args.out / "few_steps.md").write_text(text)
    print(text)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
