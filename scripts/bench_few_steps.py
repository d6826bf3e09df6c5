"""What caching saves on a few-step run, and at what quality: every CacheKit method's quality sweep
(bench_quality.py's, each Apply node's EXAMPLES) on the trained digits models at 4, 6 and 8 steps, each run
against the uncached run at the same steps, seed and label (euler, 3 labels, seed 1). Distilled models
(Flux 2 Klein 4 steps, Z-Image Turbo 8, LTX-2 distilled, Wan with lightx2v LoRAs) sample this way; the digits
models are not distilled, so this measures what a method can find to reuse in so few steps, not a distilled
model's quality. The numbers behind the few-step note the nodes give (nodes/host/install.py).

    .runtime/comfyui-0.33.0/venv/bin/python scripts/bench_few_steps.py [--families wan flux] [--steps 4 6 8]
        [--out output/bench/few_steps] [--render]
"""
from __future__ import annotations

import argparse
import json
import time

import bench_quality as bq
from harness import comfy_runtime

STEPS = (4, 6, 8)
DOC = comfy_runtime.REPO / "docs" / "bench" / "few_steps.md"


def markdown(rows: list[dict], floor: float) -> str:
    """Per family, steps and method: the setting that saved the most block FLOPs with mean PSNR >= floor, and the
    most any setting saved (at whatever PSNR)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["family"], r["steps"], r["method"]), []).append(r)
    lines = [f"Per method, the setting that saved the most block FLOPs with a mean PSNR of at least {floor:.0f} dB "
             "against the uncached run at the same steps, and the most any setting of its sweep saved", "",
             f"| family | steps | method | best at >= {floor:.0f} dB | block FLOPs | PSNR (dB) | most saved (PSNR) |",
             "|---|---|---|---|---|---|---|"]
    for (family, steps, method), rs in groups.items():
        ok = [r for r in rs if r["psnr"] >= floor and r["block_flops"] < 0.999]
        best = min(ok, key=lambda r: r["block_flops"]) if ok else None
        most = min(rs, key=lambda r: r["block_flops"])
        most_s = f"{1 - most['block_flops']:.0%} ({most['psnr']:.1f} dB)" if most["block_flops"] < 0.999 else "none"
        cells = ([f"{best['knob']}={best['setting']}", f"{best['block_flops']:.0%}", f"{best['psnr']:.1f}"] if best
                 else ["-", "100%", ""])
        lines.append(f"| {family} | {steps} | {method} | " + " | ".join(cells) + f" | {most_s} |")
    return "\n".join(lines)


def main() -> int:
    from harness.bench_stages import family_args, family_rows
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    family_args(ap, comfy_runtime.REPO / "output" / "bench" / "few_steps")
    ap.add_argument("--steps", nargs="+", type=int, default=list(STEPS))
    ap.add_argument("--floor", type=float, default=30.0, help="the PSNR a saving must keep to count (dB)")
    ap.add_argument("--render", action="store_true", help="the tables from the last run's rows, measuring nothing")
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
    if args.render:
        rows = json.loads((args.out / "few_steps.json").read_text())
    else:
        rows = family_rows(args, __file__, measure, extra)
    if rows is None:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "few_steps.json").write_text(json.dumps(rows, indent=1))
    text = markdown(rows, args.floor)
    (args.out / "few_steps.md").write_text(text)
    if set(args.families) == {"wan", "flux"} and args.steps == list(STEPS):   # the whole run: the page users read
        DOC.write_text(f"# Few steps: what caching saves\n\n{__doc__.split(chr(10) + chr(10))[0]}\n\n"
                       f"Measured by `scripts/bench_few_steps.py` ({time.strftime('%Y-%m-%d')}, on a CPU).\n\n"
                       f"{text}\n")
    print(text)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
