"""Write docs/coverage.md: which method works on which model family, from the tests that passed.

Runs the family x method tests (tiny real models of each family, through ComfyUI's sampling path) and
marks a cell "works" only where the method's off setting was bit-identical to the uncached model AND its
on setting reused with stats equal to the evaluations counted with hooks; "n/a" only where the test of its
refusal passed (the reason is the family row's); anything else stays empty.

    make coverage        (both runtimes built by scripts/setup_runtime.sh)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def columns() -> dict[str, list[str]]:
    """table column -> the test ids' method keys that must all pass (a method's variants included): every Apply
    node's EXAMPLES, in the tables' order."""
    from harness import comfy_runtime
    from harness import pack
    comfy_runtime.load()
    return {cls.SHORT or cls.METHOD: list(cls.EXAMPLES.test_ids) for cls in pack.load().nodes.METHOD_NODES}


TESTS = ("test_off_is_bit_identical or test_reuse_matches_stats or test_span_methods_refused or "
         "test_cfg_cache_refused or "
         "test_threshold_zero_is_bit_identical or test_high_threshold_reuses")


def passed_tests(versions: tuple[str, ...]) -> dict[str, list[str]]:
    """The family x method tests that pass on each ComfyUI line, run in that line's own venv, the lines side by
    side (a core and a torch thread each)."""
    from harness import comfy_runtime
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for v in versions:
            env = dict(os.environ, CACHEKIT_COVERAGE_OUT=str(Path(tmp) / f"{v}.json"), CACHEKIT_COMFY=v,
                       OMP_NUM_THREADS="1")
            env.pop("CACHEKIT_COMFY_DIR", None)
            runs[v] = subprocess.Popen([str(comfy_runtime.python(v)), "-m", "pytest", "-c", "tests/pytest.ini", "-q",
                                        "-p", "no:cacheprovider", "tests/comfy/test_methods_comfy.py",
                                        "tests/comfy/test_first_block_cache.py", "-k", TESTS], cwd=ROOT, env=env)
        for proc in runs.values():
            proc.wait()
        return {v: json.loads((Path(tmp) / f"{v}.json").read_text())["passed"] for v in versions}


def cells(passed: list[str]) -> dict[tuple[str, str], str]:
    """(method key, family key) -> "works" / "n/a" from the passed test ids."""
    got: dict[str, set] = {}
    for nodeid in passed:
        m = re.search(r"::(\w+)\[(.+)\]$", nodeid)
        if m:
            got.setdefault(m.group(1), set()).add(m.group(2))
    off, reuse = got.get("test_off_is_bit_identical", set()), got.get("test_reuse_matches_stats_and_counted_blocks_and_"
                                                                       "repeats", set())
    out = {tuple(i.split("-", 1)): "works" for i in off & reuse}
    for fam in {i.split("-", 1)[1] for i in got.get("test_threshold_zero_is_bit_identical", set())
                if i.startswith("3.0-")} & got.get("test_high_threshold_reuses_and_stats_match_counted_blocks", set()):
        out[("fbc", fam)] = "works"
    for i in got.get("test_span_methods_refused_where_blocks_get_hints", set()):
        out[tuple(i.split("-", 1))] = "n/a"
    for i in got.get("test_cfg_cache_refused_where_the_model_pairs_the_halves", set()):
        out[tuple(i.split("-", 1))] = "n/a cfg"
    return out


def table(found: dict, builders: dict, labels: dict, families, reasons: dict, cfg_reasons: dict) -> list[str]:
    """One line's table; the reasons of its n/a cells are collected into reasons and cfg_reasons."""
    cols = columns()
    rows = ["| family | diffusion model class | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for key, build in builders.items():
        model = build()[0]
        row = families.detect(model, "coverage")
        marks = []
        for column, keys in cols.items():
            states = {found.get((k, key)) for k in keys}
            if states == {"works"}:
                marks.append("works")
            elif states == {"n/a"}:
                reasons[row.name] = row.injects
                marks.append("n/a ¹")
            elif states == {"n/a cfg"}:
                cfg_reasons[row.name] = row.cfg_pairs
                marks.append("n/a ²")
            else:
                marks.append("")
        rows.append(f"| {labels[key]} | `{type(model.model.diffusion_model).__name__}` | " + " | ".join(marks) + " |")
    return rows


def main() -> int:
    from harness import comfy_runtime
    comfy_runtime.load()
    from harness import pack
    from harness import tiny_models as tm
    ck = pack.load()
    families = ck.nodes.host.families
    builders = {**tm.FAMILIES, **tm.COMPONENT_ONLY}
    lines = [
        "# Which method works on which model family",
        "",
        "Generated by `scripts/coverage_table.py` (`make coverage`) from the tests that passed, on each supported",
        "ComfyUI line in its own runtime: a tiny model of each family's real ComfyUI class, sampled through",
        "ComfyUI's own path. **works**: the method's exact setting gave output bit-identical to the model without",
        "it, and its caching setting reused with stats equal to the block/attention/MLP evaluations counted with",
        "hooks. **n/a**: the node refuses, with the reason below. Empty: not tested, so not claimed. What changed",
        "between the lines: [comfyui-versions.md](comfyui-versions.md).",
        "",
    ]
    reasons, cfg_reasons = {}, {}
    lines_of = {comfy_runtime.CURRENT: "the current line", comfy_runtime.OLDEST: "the oldest supported"}
    for version, passed in passed_tests(tuple(lines_of)).items():
        lines += [f"## ComfyUI {version} ({lines_of[version]})", "",
                  *table(cells(passed), builders, tm.LABELS, families, reasons, cfg_reasons), ""]
    for name, reason in reasons.items():
        lines.append(f"¹ {name} {reason}.")
    for name, reason in cfg_reasons.items():
        lines.append(f"² {name} {reason}: FasterCache's CFG cache runs the cond half alone.")
    lines += ["", "Refused with a message saying why: " + "; ".join(
        f"`{cls.rsplit('.', 1)[1]}` {why}" for cls, why in families.UNSUPPORTED.items()) + ".",
              "A subclass of a class above is its family while it keeps that class's forward; one that redefines "
              "its forward (ComfyUI 0.33's SCAIL, Animate2, WanDancer and causal Wan, LTX-2 audio-video, Z-Image "
              "pixel space, Anima) is refused naming what it redefined. Any other class gets \"is not a supported "
              "diffusion transformer\" and the list above.", ""]
    out = ROOT / "docs" / "coverage.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
