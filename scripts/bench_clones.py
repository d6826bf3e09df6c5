"""Benchmark: what cloning a cached MODEL costs, the way ComfyUI's own nodes clone it (every LoRA loader,
ModelSampling*, TorchCompileModel...). Per method: resident memory added and time taken by N clones of the
cached model, next to N clones of the uncached one, measured side by side in one process on a Wan model
of a real block width (random weights, CPU).

    .runtime/comfyui-0.33.0/venv/bin/python scripts/bench_clones.py [--dim 1536] [--layers 2] [--clones 10]
"""
from __future__ import annotations

import argparse
import gc
import sys
import time

from harness import comfy_runtime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=1536, help="Wan hidden width (1536 = Wan 2.1 1.3B)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--clones", type=int, default=10)
    args = ap.parse_args()

    comfy_runtime.load()
    import psutil
    import comfy.supported_models as sm
    from harness import pack
    from harness import tiny_models as tm
    ck = pack.load()
    import importlib
    core, install = ck.cache_core, importlib.import_module("cachekit.nodes.host.install").install

    cfg = dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), text_len=16, in_dim=16, dim=args.dim,
               ffn_dim=args.dim * 4, freq_dim=256, text_dim=32, out_dim=16, num_heads=args.dim // 128,
               num_layers=args.layers)
    model = tm.patcher(sm.WAN21_T2V, cfg, 0)
    rows = {"self": [1, 0, 1], "cross": [1, 0, 1], "mlp": [1, 0, 1]}
    methods = {
        "uncached": lambda: model,
        "First Block Cache": lambda: install(model, {}, lambda: core.FirstBlockCache(0.1), "FBC"),
        "TeaCache": lambda: install(model, {}, lambda: core.TeaCache(0.2, [1.0, 0.0]), "TeaCache"),
        "MagCache": lambda: install(model, {}, lambda: core.MagCache({"cond": [1.0, 0.9]}, 0.1), "MagCache"),
        "SmoothCache": lambda: install(model, {}, lambda: core.SmoothCache(rows), "SmoothCache"),
        "PAB": lambda: install(model, {}, lambda: core.PyramidAttentionBroadcast({"self": 2}), "PAB"),
    }
    proc = psutil.Process()
    print(f"Wan dim {args.dim}, {args.layers} blocks; {args.clones} clones each")
    print(f"{'model':20s} {'RSS added':>10s} {'time':>8s}")
    for name, make in methods.items():
        m = make()
        gc.collect()
        rss, t0 = proc.memory_info().rss, time.perf_counter()
        clones = [m.clone() for _ in range(args.clones)]
        took = time.perf_counter() - t0
        gc.collect()
        grown = proc.memory_info().rss - rss
        print(f"{name:20s} {grown / 2**20:8.0f} MiB {took:7.3f} s")
        del clones, m
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
