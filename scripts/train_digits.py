"""Train (or load) one digits model and draw its sample grid (scripts/harness/digits_models.py says what they are).

    .runtime/comfyui-0.33.0/venv/bin/python scripts/train_digits.py [--family wan|flux] [--grid out.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import comfy_runtime, digits_models


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=sorted(digits_models.RECIPES), default="wan")
    ap.add_argument("--grid", type=Path)
    args = ap.parse_args()
    comfy_runtime.load()
    model = digits_models.load(args.family)
    if args.grid:
        print("grid:", digits_models.grid(model, args.family, args.grid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
