"""The main job: a real workflow through the real ComfyUI server, without and with First Block Cache.

  1. writes a small HunyuanVideo checkpoint and a CLIP-L text encoder (random, seeded weights: no model
     hub is reachable here) where ComfyUI's UNETLoader/CLIPLoader find them;
  2. starts ComfyUI headless on a free loopback port with CacheKit in custom_nodes;
  3. queues workflows/demo/hunyuan_video_first_block_cache.json (the UI-format file, as the frontend would
     queue it) once to load the models, then per round the same workflow without the cache node and with
     it (same seed), timing each on the server;
  4. prints and saves a report: steps computed/reused per stream, wall times and speedup (flagged as noise
     when the rounds disagree), and how far the cached latent is from the uncached one (max abs difference,
     PSNR); saves both latents;
  5. stops the server.
The models are random, so absolute quality and the threshold that suits them say nothing about a
trained model: the point is the mechanism, measured end to end.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
from pathlib import Path

from harness import comfy_runtime
from harness import comfy_server
import make_workflows

REPO = comfy_runtime.REPO
WORKFLOW = make_workflows.DEMO
NOISY = 0.15   # rounds' speedups further apart than this (relative to their median): the machine was busy


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "output" / "demo")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2, help="uncached/cached pairs, each with its own seed")
    p.add_argument("--threshold", type=float, default=None, help="override the workflow's threshold")
    p.add_argument("--size", type=int, default=256, help="image width/height in pixels (latent = size/8)")
    return p.parse_args()


def make_models(base: Path) -> None:
    comfy_runtime.load()
    from harness import make_models
    make_models.hunyuan_video(base / "models" / "diffusion_models" / "cachekit_demo_hunyuan_video.safetensors",
                              hidden=384, depth=4, single=8)
    make_models.clip_l(base / "models" / "text_encoders" / "cachekit_demo_clip_l.safetensors")


def node(graph: dict, kind: str) -> tuple[str, dict]:
    return next((nid, n) for nid, n in graph.items() if n["class_type"] == kind)


def variant(graph: dict, *, cached: bool, seed: int, steps: int, prefix: str) -> dict:
    g = copy.deepcopy(graph)
    node(g, "KSampler")[1]["inputs"].update(seed=seed, steps=steps)
    node(g, "SaveLatent")[1]["inputs"]["filename_prefix"] = prefix
    if not cached:   # the same workflow with the cache node taken out
        fbc_id, fbc = node(g, "ApplyFirstBlockCache")
        node(g, "KSampler")[1]["inputs"]["model"] = fbc["inputs"]["model"]
        del g[fbc_id]
    return g


def load_latent(server, entry):
    import safetensors.torch
    f = next(o["latents"][0] for o in entry["outputs"].values() if "latents" in o)
    return safetensors.torch.load_file(str(server.base / "output" / f["subfolder"] / f["filename"]))["latent_tensor"]


def compare(ref, out) -> dict:
    ref, out = ref.double(), out.double()
    mse = float(((out - ref) ** 2).mean())
    peak = float(ref.max() - ref.min())
    return {"max_abs_diff": float((out - ref).abs().max()), "mse": mse,
            "psnr_db": math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)}


def main() -> int:
    args = parse_args()
    out_dir = args.out.resolve()
    base = out_dir / "comfy-base"
    make_models(base)
    rounds = []
    with comfy_server.ComfyServer(base) as server:
        graph = make_workflows.to_api(json.loads(WORKFLOW.read_text()), server.get("/object_info"))
        fbc = node(graph, "ApplyFirstBlockCache")[1]["inputs"]
        if args.threshold is not None:
            fbc["residual_diff_threshold"] = args.threshold
        node(graph, "EmptyHunyuanLatentVideo")[1]["inputs"].update(width=args.size, height=args.size)
        print(f"[demo] ComfyUI at {server.url} (pid {server.proc.pid}); loading models with a 1-step warm-up")
        server.run(variant(graph, cached=False, seed=1, steps=1, prefix="warmup"))
        for r in range(args.rounds):
            seed = 1000 + r
            plain = server.run(variant(graph, cached=False, seed=seed, steps=args.steps, prefix=f"uncached_{r}"))
            cached = server.run(variant(graph, cached=True, seed=seed, steps=args.steps, prefix=f"cached_{r}"))
            stats = server.get("/cachekit/stats")["runs"][-1]
            t_plain, t_cached = comfy_server.execution_seconds(plain), comfy_server.execution_seconds(cached)
            rounds.append({"seed": seed, "uncached_s": t_plain, "cached_s": t_cached,
                           "speedup": t_plain / t_cached, "quality": compare(load_latent(server, plain),
                                                                             load_latent(server, cached)),
                           "stats": stats})
            print(f"[demo] round {r}: uncached {t_plain:.2f}s, cached {t_cached:.2f}s")
        server_log = server.log()
    speedups = [r["speedup"] for r in rounds]
    median = statistics.median(speedups)
    report = {
        "comfyui": comfy_runtime.comfyui_version(),
        "workflow": str(WORKFLOW.relative_to(REPO)), "model": "HunyuanVideo (random weights, 45M params)",
        "steps": args.steps, "cfg": node(graph, "KSampler")[1]["inputs"]["cfg"],
        "latent": f"16x1x{args.size // 8}x{args.size // 8}",
        "first_block_cache": {k: v for k, v in fbc.items() if k != "model"},
        "rounds": rounds,
        "median_speedup": median,
        # the same work timed twice should agree: where it does not, the machine was busy and the ratio is noise
        "timing_spread": (max(speedups) - min(speedups)) / median,
        "timing_noisy": len(speedups) < 2 or (max(speedups) - min(speedups)) / median > NOISY,
        "cachekit_log": [line for line in server_log.splitlines() if "CacheKit FirstBlockCache" in line],
        "outputs": str(base / "output"),
        "report": str(out_dir / "report.json"),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    print_report(report)
    return 0


def print_report(rep: dict) -> None:
    print(f"\n=== CacheKit demo: First Block Cache on a real ComfyUI {rep['comfyui']} workflow ===")
    print(f"workflow {rep['workflow']}  model {rep['model']}  steps {rep['steps']}  cfg {rep['cfg']}  "
          f"latent {rep['latent']}")
    print(f"Apply First Block Cache: {rep['first_block_cache']}")
    for r in rep["rounds"]:
        q = r["quality"]
        print(f"\nseed {r['seed']}: uncached {r['uncached_s']:.2f}s  cached {r['cached_s']:.2f}s  "
              f"speedup {r['speedup']:.2f}x  |  cached vs uncached latent: max abs diff {q['max_abs_diff']:.4f}, "
              f"PSNR {q['psnr_db']:.2f} dB")
        for s in r["stats"]["streams"].values():
            print(f"  {s['label']:>6}: computed {len(s['computed_steps'])}/{s['steps_seen']} steps "
                  f"{s['computed_steps']}, reused {s['reused_steps']}")
        print(f"  block evaluations {r['stats']['block_evals']}/{r['stats']['block_evals_full']} "
              f"({r['stats']['saved_fraction']:.0%} saved)")
    if rep["timing_noisy"]:
        each = ", ".join(f"{r['speedup']:.2f}x" for r in rep["rounds"])
        print(f"\ntiming too noisy to mean anything: the rounds' speedups ({each}) differ by "
              f"{rep['timing_spread']:.0%} of their median; the machine was busy. Run it again on an idle machine, "
              f"or with --rounds 4. The step counts and the quality above do not depend on timing.")
    else:
        print(f"\nmedian speedup over {len(rep['rounds'])} rounds: {rep['median_speedup']:.2f}x "
              f"(server-side execution time of each prompt, same machine, same run; rounds within "
              f"{rep['timing_spread']:.0%} of each other)")
    print(f"latents saved under {rep['outputs']}")
    print(f"report: {rep['report']}")


if __name__ == "__main__":
    sys.exit(main())
