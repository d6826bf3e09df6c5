"""How a benchmark stage runs: the scripts of a stage side by side, their torch threads splitting the cores (for
stages nothing times), and a stage measured per model family, one process per family, its rows gathered in the
families' order. bench_report.py runs the stages; bench_quality.py and bench_tuning.py are stages."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import comfy_runtime

REPO = comfy_runtime.REPO


def run_side_by_side(commands: list[list[str]]) -> float:
    """Run the scripts at once, their torch threads splitting the cores (for stages nothing times); seconds."""
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // len(commands)))}
    procs = []
    for args in commands:
        print("$", " ".join(args), "&", flush=True)
        procs.append(subprocess.Popen([sys.executable, *args], cwd=REPO, env=env))
    if any(p.wait() for p in procs):
        raise SystemExit("a side-by-side stage failed (its output is above)")
    return time.perf_counter() - t0


def per_family(script: str, families: list[str], extra: list[str] = ()) -> list[dict]:
    """A bench script run once per family, side by side (`script --families F --rows-to FILE ...extra`), its
    rows gathered in the families' order: for stages nothing times, on models a thread serves about as well
    as two."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        parts = {f: Path(tmp) / f"{f}.json" for f in families}
        run_side_by_side([[script, "--families", f, "--rows-to", str(parts[f]), *extra] for f in families])
        return [r for f in families for r in json.loads(parts[f].read_text())]


def family_args(ap, out: Path, families: tuple[str, ...] = ("wan", "flux")) -> None:
    """The arguments of a stage measured per family (family_rows); by default the two 16-token models."""
    ap.add_argument("--families", nargs="+", default=list(families))
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--rows-to", type=Path, help="measure the one family given and write its rows here (what "
                    "each family's process does when several are measured)")


def family_rows(args, script: str, measure, extra: list[str] = ()) -> list[dict] | None:
    """A stage's rows for args.families, measure(ck, family) giving one family's: in this process where it is
    one family's (with --rows-to they are written there and None returned) or there is one family, else by
    one process per family side by side (per_family)."""
    if not (args.rows_to or len(args.families) == 1):
        return per_family(script, args.families, list(extra))
    comfy_runtime.load()
    from harness import pack
    ck = pack.load()
    rows = [r for family in args.families for r in measure(ck, family)]
    if args.rows_to:
        args.rows_to.write_text(json.dumps(rows))
        return None
    return rows
