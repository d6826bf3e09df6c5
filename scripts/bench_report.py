"""`make bench`: trains (or loads) the digits models, runs the quality and speed benchmarks in this process
order, and writes BENCHMARKS.md with the tables, the chart and the sample grids (copied into docs/bench/).
Every number in BENCHMARKS.md comes from the run that wrote it.

    .runtime/comfyui-0.33.0/venv/bin/python scripts/bench_report.py [--reps 3] [--doc-only]

--doc-only rewrites BENCHMARKS.md from the outputs of the last run (output/bench/), without running anything.
--only STAGE [--methods M ...] reruns one stage (quality: only those methods, their rows replaced) and records
it in times.json as a partial rerun, which BENCHMARKS.md then says. The memory stage (scripts/bench_memory.py)
writes its table to docs/bench/memory.md, which the page's "Memory at real sizes" section is filled from. The
quantized weights (scripts/bench_quantized.py, `make bench-quantized`, ~26 min) and LoRAs (scripts/bench_lora.py,
`make bench-lora`, ~17 min) run on their own, outside make bench's time: their pages in docs/bench/ say when and how
they were made; the "Quantized weights and LoRAs" section embeds the first and the summary of the second, and
--separate (which those two stages run when they finish) refreshes that section and the notes of BENCHMARKS.md in
place.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

from harness import comfy_runtime
from harness.bench_stages import run_side_by_side

REPO = comfy_runtime.REPO
OUT = REPO / "output" / "bench"
DOCS = REPO / "docs" / "bench"


def _run(args: list[str]) -> float:
    t0 = time.perf_counter()
    print("$", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=REPO, check=True)
    return time.perf_counter() - t0


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import torch
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, ComfyUI {comfy_runtime.comfyui_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), no GPU")


def speed_table(s: dict) -> str:
    lines = ["| method | block FLOPs run | ideal speedup | measured speedup | efficiency | overhead when never reusing "
             "| cache held (MiB, per stream) | host syncs per call |", "|---|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        held = ", ".join(f"{k} {v:.2f}" for k, v in r["held_mib"].items())
        lines.append(f"| {r['method']} | {r['block_flops']:.1%} | {r['ideal']:.2f}x | {r['measured']:.2f}x | "
                     f"{r['efficiency']:.2f} | {r['overhead']:+.1%} | {held} | {r['host_syncs_per_call']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--doc-only", action="store_true")
    ap.add_argument("--only", choices=("quality", "speed", "tuning", "memory"))
    ap.add_argument("--methods", nargs="+")
    ap.add_argument("--separate", action="store_true",
                    help="refresh only the quantized / LoRA section and the notes in place")
    args = ap.parse_args()
    if args.separate:
        refresh_in_place()
        return 0
    if args.only:
        times = json.loads((OUT / "times.json").read_text())
        cmd = {"quality": ["scripts/bench_quality.py", *(["--methods", *args.methods] if args.methods else [])],
               "speed": ["scripts/bench_speed.py", "--reps", str(args.reps)], "tuning": ["scripts/bench_tuning.py"],
               "memory": ["scripts/bench_memory.py"]}
        label = f"{args.only} (rerun{' of ' + ', '.join(args.methods) if args.methods else ''})"
        times[label] = _run(cmd[args.only])
        (OUT / "times.json").write_text(json.dumps(times))
    elif not args.doc_only:
        t0 = time.perf_counter()
        times = {}
        # the models train side by side, a thread each (nothing is timed there): those that start from another's
        # weights once those exist (all at once where they do: then the round only draws the sample grids)
        from harness import digits_models as dm
        rounds = ([f for f, r in dm.RECIPES.items() if not r.start], [f for f, r in dm.RECIPES.items() if r.start])
        if all(dm.trained(f) for f in rounds[0]):
            rounds = (rounds[0] + rounds[1], [])
        times["train " + " + ".join(dm.RECIPES)] = sum(run_side_by_side([
            ["scripts/train_digits.py", "--family", family, "--grid", str(OUT / f"digits_{family}.png")]
            for family in families]) for families in rounds if families)
        times["quality"] = _run(["scripts/bench_quality.py"])
        times["speed"] = _run(["scripts/bench_speed.py", "--reps", str(args.reps)])
        times["tuning"] = _run(["scripts/bench_tuning.py"])
        times["memory"] = _run(["scripts/bench_memory.py"])
        times["total"] = time.perf_counter() - t0
        (OUT / "times.json").write_text(json.dumps(times))
    write_doc(json.loads((OUT / "times.json").read_text()))
    return 0


SAME = "the same images at every setting (equal mean and min PSNR)"
# the methods that decide from what they measure (the goal: each 3 dB above a working EasyCache at 50%)
ADAPTIVE = ("First Block Cache", "TeaCache (calibrated)", "MagCache (calibrated)", "SeaCache", "DBCache (F1 B0)",
            "DBCache (F1 B0, FoCa)", "SpeCa")
# the goals for the best method per model: PSNR (dB) at each fraction of block FLOPs
FRONTIER = ((0.2, 40.0), (0.3, 45.0), (0.5, 60.0))


def goals(rows: list[dict]) -> dict[str, str]:
    """The template's goal lines, each computed from this run's quality rows."""
    import bench_quality as bq
    refs = bq.references(rows)
    from harness import digits_models as dm
    families = sorted({r["family"] for r in rows}, key=list(dm.RECIPES).index)
    full = [f for f in families if f in bq.FULL]        # the models measured beside the references

    def row(family, method, setting):
        return next((r for r in rows if r["family"] == family and r["method"] == method and r["setting"] == setting),
                    None)

    def offset(method):
        """CacheKit's block-FLOP fraction minus its reference's, setting by setting (percentage points)."""
        out = []
        for family in full:
            ref = {r["setting"]: r["block_flops"] for r in rows
                   if r["family"] == family and r["method"] == refs[method]}
            d = [100 * (r["block_flops"] - ref[r["setting"]]) for r in rows
                 if r["family"] == family and r["method"] == method and r["setting"] in ref]
            out.append(f"{min(d):+.1f} to {max(d):+.1f} on {family}" if d else f"- on {family}")
        return ", ".join(out)

    def same_images(family, mine, ref):
        a = [(r["psnr"], r["psnr_min"]) for r in rows if r["family"] == family and r["method"] == mine]
        b = [(r["psnr"], r["psnr_min"]) for r in rows if r["family"] == family and r["method"] == ref]
        return bool(a) and len(a) == len(b) and all(abs(x - y) < 0.01 for p, q in zip(a, b) for x, y in zip(p, q))

    adaptive = [m for m in dict.fromkeys(r["method"] for r in rows) if m in ADAPTIVE]
    met, missed = [], []
    for family in families:
        easy = bq.at_half(rows, family, bq.WORKING_EASYCACHE)
        for m in adaptive:
            v = bq.at_half(rows, family, m)
            if v is None:
                missed.append(f"{m} on {family} (its curve does not reach 50%)")
            elif easy is not None:
                (met if v - easy >= 3 else missed).append(f"{m} on {family} ({v - easy:+.1f} dB)")
    fbc = [(f, row(f, "First Block Cache", 0.25), row(f, "First Block Cache (diffusers)", 0.25)) for f in full]
    same = {m: all(same_images(f, m, refs[m]) for f in full) for m in ("PAB", "FasterCache") if m in refs}
    rises = [f"{method} on {family} {a['setting']}->{b['setting']} (+{b['psnr'] - a['psnr']:.1f} dB, "
             f"{a['block_flops']:.1%} -> {b['block_flops']:.1%} of block FLOPs)"
             for family in families for method in dict.fromkeys(r["method"] for r in rows if r["family"] == family)
             if method not in refs.values() and "ComfyUI" not in method and method != bq.UNCACHED_REFERENCE
             for a, b, at_same in bq.rises(rows, family, method) if not at_same]

    def at_half(method):
        vals = [bq.at_half(rows, f, method) for f in families]
        return f"{method} " + " / ".join("-" if v is None else f"{v:.1f}" for v in vals) + " dB"
    floor = [r["block_flops"] for r in rows if r["method"] == "FasterCache"]
    own = [m for m in dict.fromkeys(r["method"] for r in rows)
           if m not in refs.values() and "ComfyUI" not in m and m != bq.UNCACHED_REFERENCE]

    def best(family, x, goal):
        vals = [(v, m) for m in own if (v := bq.psnr_at(bq.curve(rows, family, m), x)) is not None]
        if not vals:
            return f"{x:.0%} -"
        v, m = max(vals)
        return f"{x:.0%} {v:.1f} dB ({m}; {'met' if v >= goal else 'missed'})"
    return {
        "frontier": "; ".join(f"{f}: " + ", ".join(best(f, x, goal) for x, goal in FRONTIER) for f in families),
        "adaptive_met": ", ".join(met) or "none", "adaptive_missed": ", ".join(missed) or "none",
        "vs_references": "; ".join(f"{m} {f} {bq.vs_reference(rows, f, m) or '-'}" for m in refs for f in full),
        "fbc_worst": ", ".join(f"{f} {a['psnr_min']:.1f} dB against {b['psnr_min']:.1f}" for f, a, b in fbc
                               if a and b) or "not measured",
        "same_images": "; ".join(f"{m} {SAME if ok else 'other images in some cases (see the rows)'}"
                                 for m, ok in same.items()) or "not measured",
        "pab_offsets": offset("PAB") if "PAB" in refs else "-",
        "fastercache_offsets": offset("FasterCache") if "FasterCache" in refs else "-",
        "fastercache_floor": f"{min(floor):.0%}" if floor else "not measured",
        "rises": "; ".join(rises) or "none",
        "families": " / ".join(families),
        "at_half": "; ".join(at_half(m) for m in dict.fromkeys(r["method"] for r in rows)
                             if m not in refs.values() and m != bq.UNCACHED_REFERENCE),
    }


def render(times: dict, rows: list[dict], speed: dict, tuning_md: str, machine: str) -> str:
    """BENCHMARKS.md's text: docs/bench/template.md filled from one run's outputs, the dated notes of
    docs/bench/notes.md under "Notes". A placeholder the run gives no value for raises KeyError, not a blank."""
    import bench_quality as bq
    times = dict(times)
    full = times.pop("total")
    reruns = sum(v for k, v in times.items() if "rerun" in k)
    families = list(dict.fromkeys(r["family"] for r in rows))
    values = {
        "full_minutes": f"{full / 60:.0f}",
        "reruns": f", the reruns listed below {reruns / 60:.0f} more" if reruns else "",
        "machine": machine, "stage_times": ", ".join(f"{k} {v:.0f}" for k, v in times.items()),
        "seeds": ", ".join(map(str, bq.SEEDS)),
        "images": " / ".join(sorted({str(r["images"]) for r in rows}, key=int, reverse=True)),
        "quality_tables": bq.markdown(rows, families),
        "speed_model": speed["model"], "speed_tokens": str(speed["tokens"]), "speed_steps": str(speed["steps"]),
        "speed_cfg": str(speed["cfg"]), "block_share": f"{speed['block_share']:.1%}", "reps": str(speed["reps"]),
        "speed_table": speed_table(speed), "rss_10": f"{speed['rss_run10_mib']:.0f}",
        "rss_50": f"{speed['rss_run50_mib']:.0f}", "tuning_table": tuning_md.strip(),
        "notes": (DOCS / "notes.md").read_text().strip(), "memory": memory_section(),
        "quantized": generated_section("quantized.md"), "lora": lora_section(),
        **goals(rows),
    }
    return string.Template((DOCS / "template.md").read_text()).substitute(values)


def generated_section(name: str) -> str:
    """A stage's page in docs/bench/ (what it wrote last), less its title, as a section of BENCHMARKS.md."""
    return (DOCS / name).read_text().split("\n", 1)[1].strip()


def lora_section() -> str:
    """docs/bench/lora.md less its title and its per-setting tables (the page has them): each family's LoRA, PSNR
    at 50% and target_compute, under headings a level down."""
    blocks = generated_section("lora.md").split("\n\n")
    kept, skip = [], False
    for block in blocks:
        if block.startswith("Block FLOPs / PSNR (dB) of each setting"):
            skip = True                     # that paragraph and its table
            continue
        if skip:
            skip = False
            continue
        kept.append("##" + block if block.startswith("## ") else block)
    return "\n\n".join(kept)


SEPARATE = "## Quantized weights and LoRAs"
REFRESHED = (SEPARATE, "## Notes")      # the sections made outside make bench's run


def refresh_in_place(page: Path | None = None) -> None:
    """Puts the template's REFRESHED sections into BENCHMARKS.md (or `page`) in place, filled from what make
    bench-quantized and make bench-lora wrote last and from the dated notes (they run outside make bench's time):
    each replaces the section of its heading, or goes before the first section that follows it in the template."""
    page = page or REPO / "BENCHMARKS.md"

    def sections(text: str) -> list[str]:
        return [("## " if i else "") + part for i, part in enumerate(text.split("\n## "))]

    def head(section: str) -> str:
        return section.split("\n", 1)[0]
    template = sections((DOCS / "template.md").read_text())
    values = {"quantized": generated_section("quantized.md"), "lora": lora_section(),
              "notes": (DOCS / "notes.md").read_text().strip()}
    doc = sections(page.read_text())
    for heading in REFRESHED:
        at = next(i for i, sec in enumerate(template) if head(sec) == heading)
        filled = string.Template(template[at]).substitute(values)
        heads = [head(sec) for sec in doc]
        if heading in heads:
            doc[heads.index(heading)] = filled
        else:
            later = {head(sec) for sec in template[at + 1:]}
            doc.insert(next((i for i, h in enumerate(heads) if h in later), len(doc)), filled)
    page.write_text("\n".join(doc))
    print(f"{page.name}: {', '.join(h[3:] for h in REFRESHED)} refreshed")


def memory_section() -> str:
    """The "Memory at real sizes" section's generated part: what the memory stage (scripts/bench_memory.py) wrote
    last, the same text as docs/bench/memory.md."""
    return (DOCS / "memory.md").read_text().strip()


def write_doc(times: dict) -> None:
    """BENCHMARKS.md and its pictures from the last run's outputs (output/bench/)."""
    import bench_quality as bq            # the tables and the chart drawn again from the rows (--doc-only)
    DOCS.mkdir(parents=True, exist_ok=True)
    from harness import digits_models as dm
    for family in dm.RECIPES:
        shutil.copy(OUT / f"digits_{family}.png", DOCS / f"digits_{family}.png")
    rows = json.loads((OUT / "quality" / "quality.json").read_text())
    bq.chart(rows, list(dict.fromkeys(r["family"] for r in rows)), DOCS / "quality.png")
    doc = render(times, rows, json.loads((OUT / "speed" / "speed.json").read_text()),
                 (OUT / "tuning" / "tuning.md").read_text(), _machine())
    (REPO / "BENCHMARKS.md").write_text(doc)
    print(f"wrote BENCHMARKS.md (the full run took {times['total']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
