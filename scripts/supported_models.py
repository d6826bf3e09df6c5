"""The README's list of supported models, from the family table (nodes/host/families.py) and the presets'
families (cache_core/presets/*.json): one line per family, with what ComfyUI loads into it, the published
presets that ship for it, and what it cannot take. tests/comfy/test_docs.py checks that the README holds it.

    .runtime/comfyui-0.33.0/venv/bin/python scripts/supported_models.py --write
"""
from __future__ import annotations

import argparse
import sys

from harness import comfy_runtime

README = comfy_runtime.REPO / "README.md"
NAMES = {"teacache": "TeaCache", "magcache": "MagCache"}
START, END = "<!-- supported models: scripts/supported_models.py -->", "<!-- end of supported models -->"


def lines() -> list[str]:
    comfy_runtime.load()
    from harness import pack
    ck = pack.load()
    from cachekit.cache_core import presets
    from cachekit.nodes.host.families import FAMILIES, UNSUPPORTED, made_for
    out = []
    for fam in FAMILIES:
        fitting = {kind: [n for n in presets.names(kind) if made_for(fam, presets.family(kind, n))]
                   for kind in ("teacache", "magcache")}
        shipped = [f"{NAMES[kind]} ({', '.join(names)})" for kind, names in fitting.items() if names]
        line = f"- **{fam.name}**: {fam.models}."
        if fam.injects:          # TeaCache and MagCache do not apply: no presets to name
            line += f" Only the methods that cache inside blocks (PAB, SmoothCache, FasterCache): it {fam.injects}."
        elif shipped:
            line += f" Published presets: {'; '.join(shipped)}."
        else:
            line += " No published TeaCache/MagCache preset: calibrate once, or use a method that needs none."
        if fam.cfg_pairs:
            line += " No FasterCache: it " + fam.cfg_pairs + "."
        out.append(line)
    out.append("- **Refused**, the node saying why (all reasons: [docs/coverage.md](docs/coverage.md)): "
               + ", ".join(_refused_name(cls, why) for cls, why in UNSUPPORTED.items()) + ".")
    del ck
    return out


def _refused_name(cls: str, why: str) -> str:
    """`Class` and, where the reason opens with it, the model's name: "`NaDiT` (SeedVR2)"."""
    name = f"`{cls.rsplit('.', 1)[1]}`"
    return f"{name} {why[:why.index(')') + 1]}" if why.startswith("(") else name


def block() -> str:
    return "\n".join([START, *lines(), END])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="rewrite the README's block")
    args = p.parse_args()
    text = block()
    if not args.write:
        print(text)
        return 0
    readme = README.read_text()
    a, b = readme.index(START), readme.index(END) + len(END)
    README.write_text(readme[:a] + text + readme[b:])
    print("wrote the supported models into", README.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
