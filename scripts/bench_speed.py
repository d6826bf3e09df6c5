"""Speed against the ideal, overhead, memory and host syncs, on a model big enough that the transformer
dominates a step (a Wan 2.1 class model, dim 512, 8 blocks, seeded random weights: speed does not need
trained weights), through ComfyUI's own sampling path.

Per method, with a setting that reuses:
  block FLOPs run   fraction of the transformer blocks' FLOPs executed (FlopCounterMode, per block module)
  ideal speedup     1 / (1 - share * (1 - fraction)), share = the blocks' part of an uncached run's time,
                    measured with timers around every block (not assumed)
  measured speedup  fastest uncached time / fastest cached time, the two timed alternately in this process (the
                    fastest of a few: on a shared machine the noise only adds time, and one slow run moved a median
                    of 4 by a quarter)
  efficiency        measured / ideal
With a setting that never reuses: overhead = cached / uncached time - 1.
Memory: tensor bytes each method's cache held per stream at the end of the run (the engine's own count), and
the process's resident memory after 50 consecutive runs whose latent size changes, against after 10.
Host syncs: calls of Tensor.item / tolist / numpy / __bool__ / __float__ / __int__ during a run beyond
those of the uncached run, per model call (euler: one call per step, cond and uncond batched).

    .runtime/comfyui-0.33.0/venv/bin/python scripts/bench_speed.py [--reps 3] [--steps 20]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from harness import comfy_runtime, pack
from harness.host_syncs import count_host_syncs

CFG = 4.0


def methods(node):
    """name -> (setting that reuses, setting that never reuses): every Apply node's EXAMPLES.speed. Random weights
    change a lot between steps: the thresholds are set so that this model reuses (they would be far too high for a
    trained one)."""
    def applied(cls, inputs):
        return lambda m: node(cls.__name__, model=m, **inputs)
    return {cls.SHORT or cls.METHOD: (applied(cls, cls.EXAMPLES.speed[0]), applied(cls, cls.EXAMPLES.speed[1]))
            for cls in pack.method_nodes().values() if cls.EXAMPLES.speed}


class BlockTimer:
    """Wall time spent inside the transformer blocks (forward pre/post hooks; CPU work is synchronous)."""
    def __init__(self, blocks):
        self.total, self._t = 0.0, None
        self._h = [h for b in blocks
                   for h in (b.register_forward_pre_hook(self._pre), b.register_forward_hook(self._post))]

    def _pre(self, *_):
        self._t = time.perf_counter()

    def _post(self, *_):
        self.total += time.perf_counter() - self._t

    def close(self):
        for h in self._h:
            h.remove()


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=24, help="latent side (tokens = (size/2)^2)")
    ap.add_argument("--out", type=Path, default=comfy_runtime.REPO / "output" / "bench" / "speed")
    args = ap.parse_args()
    comfy_runtime.load()
    import logging
    logging.disable(logging.WARNING)     # the few-step note of the 50-run memory loop, the sampler's chatter
    import torch
    from harness import tiny_models as tm
    from harness.block_flops import block_flops
    ck = pack.load()
    from cachekit.nodes.host import stats_feed

    def node(name, **inputs):
        return pack.node(ck, name, **inputs)[0]

    import comfy.supported_models as sm
    cfg = dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), text_len=16, in_dim=16, dim=512,
               ffn_dim=2048, freq_dim=256, text_dim=256, out_dim=16, num_heads=4, num_layers=8)
    model = tm.patcher(sm.WAN21_T2V, cfg, seed=0)
    g = torch.Generator().manual_seed(1)
    pos, neg = (tm.conditioning(torch.randn(1, 16, 256, generator=g)) for _ in range(2))
    lat = torch.zeros(1, 16, 1, args.size, args.size)
    blocks = list(model.model.diffusion_model.blocks)

    def run(m, latent=lat):
        return tm.sample(m, latent, pos, neg, steps=args.steps, cfg=CFG, seed=3)

    run(model)                                                   # warm-up
    timer = BlockTimer(blocks)
    t0 = time.perf_counter()
    run(model)
    share = timer.total / (time.perf_counter() - t0)
    timer.close()
    with count_host_syncs() as comfy_syncs:           # what ComfyUI's sampling does on its own
        _, full = block_flops(lambda: run(model), model.model.diffusion_model)
    rows = []
    for name, (reusing, never) in methods(node).items():
        patched, idle = reusing(model), never(model)
        _, flops = block_flops(lambda: run(patched), model.model.diffusion_model)
        frac = flops / full
        st = stats_feed.recent()[-1]
        held = {k: s["held_bytes"] for k, s in st["streams"].items()}
        t_base, t_on, t_idle = [], [], []
        syncs = {}
        for rep in range(args.reps):                             # alternately, so drift hits all three alike
            for lst, m in ((t_base, model), (t_on, patched), (t_idle, idle)):
                # the host reads are counted in the first timed run of `patched` (its second run: the first
                # one's set-up reads are not counted); the counter's cost is a few calls per step
                with count_host_syncs() if rep == 0 and m is patched else contextlib.nullcontext() as counted:
                    t = time.perf_counter()
                    run(m)
                    lst.append(time.perf_counter() - t)
                syncs = counted or syncs
        base = min(t_base)
        ideal = 1 / (1 - share * (1 - frac))
        measured = base / min(t_on)
        rows.append(dict(method=name, block_flops=frac, ideal=ideal, measured=measured, efficiency=measured / ideal,
                         overhead=min(t_idle) / base - 1,
                         held_mib={k: v / 2 ** 20 for k, v in held.items()},
                         host_syncs_per_call=(syncs["n"] - comfy_syncs["n"]) / args.steps, base_s=base))
        r = rows[-1]
        print(f"{name:18s} blocks {frac:6.1%}  ideal {ideal:5.2f}x  measured {measured:5.2f}x  efficiency "
              f"{r['efficiency']:5.2f}  overhead {r['overhead']:+6.1%}  held {sum(r['held_mib'].values()):6.2f} MiB  "
              f"syncs/call {r['host_syncs_per_call']:.2f}", flush=True)

    # memory over 50 runs with changing sizes (FBC reusing, the cache holding tensors of each size in turn)
    patched = methods(node)["First Block Cache"][0](model)
    sizes = (16, 24, 32, 20)
    rss = []
    for i in range(50):
        tm.sample(patched, torch.zeros(1, 16, 1, sizes[i % 4], sizes[i % 4]), pos, neg, steps=6, cfg=CFG, seed=i)
        rss.append(rss_mib())
    growth = rss[-1] - rss[9]
    print(f"resident memory after run 10: {rss[9]:.0f} MiB, after run 50: {rss[-1]:.0f} MiB ({growth:+.1f} MiB)")
    args.out.mkdir(parents=True, exist_ok=True)
    result = dict(model="Wan 2.1 class, dim 512, 8 blocks, 4 heads, random weights", tokens=(args.size // 2) ** 2,
                  steps=args.steps, cfg=CFG, reps=args.reps, block_share=share, rows=rows,
                  rss_run10_mib=rss[9], rss_run50_mib=rss[-1], threads=torch.get_num_threads())
    (args.out / "speed.json").write_text(json.dumps(result, indent=1))
    print(f"blocks' share of an uncached run: {share:.1%}; wrote {args.out / 'speed.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
