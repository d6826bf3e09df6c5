"""Benchmark: every CacheKit method against the uncached model, side by side in one run, in-process
through ComfyUI's own sampler (comfy.sample.sample) on the demo's HunyuanVideo (random weights, CPU).

Prints, per method: wall time (median of --reps), speedup vs the uncached median, model calls and
block evaluations saved, and the latent's max abs difference / PSNR against the uncached latent.
The settings are chosen for this random model (its step-to-step changes are larger than a trained
model's), so the numbers show the mechanisms' cost and effect, not a quality ranking of the methods.

    .runtime/comfyui-0.33.0/venv/bin/python scripts/bench.py [--steps 20] [--reps 2]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import comfy_runtime  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--cfg", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=comfy_runtime.REPO / "output" / "bench")
    args = ap.parse_args()

    comfy_runtime.load()
    import torch
    import comfy.sd
    import make_models
    import pack
    import tiny_models as tm
    ck = pack.load()
    from cachekit.nodes import stats_feed

    base_dir = args.out / "models"
    unet = make_models.hunyuan_video(base_dir / "cachekit_demo_hunyuan_video.safetensors", hidden=384, depth=4,
                                     single=8)
    clip_path = make_models.clip_l(base_dir / "cachekit_demo_clip_l.safetensors")
    model = comfy.sd.load_diffusion_model(str(unet))
    clip = comfy.sd.load_clip(ckpt_paths=[str(clip_path)], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
    pos = clip.encode_from_tokens_scheduled(clip.tokenize("a lighthouse on a cliff at sunset, waves crashing"))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize("blurry, low quality"))
    lat = torch.zeros(1, 16, 1, 32, 32)
    steps, cfg = args.steps, args.cfg
    sampling = dict(seed=7, steps=steps, cfg=cfg, sampler_name="euler", scheduler="simple", positive=pos,
                    negative=neg, latent_image={"samples": lat}, denoise=1.0)

    def node(name, **inputs):
        return pack.node(ck, name, **inputs)[0]

    mag_cal = node("CalibrateMagCache", model=model, **sampling)
    smooth_cal = node("CalibrateSmoothCache", model=model, **sampling, lookahead=3)
    smooth_schedule = node("SmoothCacheSchedule", calibration=smooth_cal, alpha=0.3)
    methods = {
        "First Block Cache (thr 0.25, max 3 skips)": lambda m: node(
            "ApplyFirstBlockCache", model=m, residual_diff_threshold=0.25, max_consecutive_skips=3),
        "TeaCache (custom 1,0; thr 0.6)": lambda m: node(
            "ApplyTeaCache", model=m, rel_l1_thresh=0.6, coefficients="custom", custom_coefficients="1.0, 0.0"),
        "MagCache (calibrated; 0.3, K 3, r 0.2)": lambda m: node(
            "ApplyMagCache", model=m, threshold=0.3, max_skips=3, retention_ratio=0.2, calibration=mag_cal),
        "TaylorSeer (N 3, warmup 3, order 1)": lambda m: node(
            "ApplyTaylorSeerCache", model=m, cache_interval=3, warmup_steps=3, max_order=1, final_steps=0),
        "DBCache (F2 B1, R 0.3, W 3)": lambda m: node(
            "ApplyDBCache", model=m, Fn_compute_blocks=2, Bn_compute_blocks=1, residual_diff_threshold=0.3,
            max_warmup_steps=3),
        "PAB (self 2, cross 6, 0.2-0.9)": lambda m: node(
            "ApplyPyramidAttentionBroadcast", model=m, self_attention_interval=2, cross_attention_interval=6,
            start_percent=0.2, end_percent=0.9),
        "SmoothCache (calibrated, alpha 0.3)": lambda m: node("ApplySmoothCache", model=m, schedule=smooth_schedule),
        "FasterCache (uncond 5, attention 2)": lambda m: node("ApplyFasterCache", model=m),
    }

    def timed(m):
        times, out = [], None
        for _ in range(args.reps):
            t0 = time.perf_counter()
            out = tm.sample(m, lat, pos, neg, steps=steps, cfg=cfg, seed=7)
            times.append(time.perf_counter() - t0)
        return statistics.median(times), out

    tm.sample(model, lat, pos, neg, steps=2, cfg=cfg)            # warm-up (allocations, first-call costs)
    t_base, ref = timed(model)
    rows = []
    for name, make in methods.items():
        t, out = timed(make(model))
        st = stats_feed.recent()[-1]
        mse = float(((out.double() - ref.double()) ** 2).mean())
        peak = float(ref.max() - ref.min())
        psnr = math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)
        calls = sum(s["computed_calls"] + s["reused_calls"] for s in st["streams"].values())
        reused = sum(s["reused_calls"] for s in st["streams"].values())
        rows.append((name, t, t_base / t, reused, calls, st["saved_fraction"],
                     float((out - ref).abs().max()), psnr))

    print(f"\nCacheKit benchmark: HunyuanVideo 45M (random weights), latent 16x1x32x32, {steps} steps, cfg {cfg}, "
          f"euler/simple, CPU, median of {args.reps}")
    print(f"uncached: {t_base:.2f} s")
    print(f"{'method':44s} {'time':>7s} {'speedup':>8s} {'reused calls':>13s} {'blocks saved':>13s} "
          f"{'max|diff|':>10s} {'PSNR dB':>8s}")
    for name, t, sp, reused, calls, saved, mad, psnr in rows:
        print(f"{name:44s} {t:6.2f}s {sp:7.2f}x {reused:>6d}/{calls:<6d} {saved:12.0%} {mad:10.4f} {psnr:8.2f}")
    print("(reused calls count stream-calls with any reuse; PAB/SmoothCache/FasterCache run every block but skip "
          "attention/MLP/uncond work, so their block savings read 0%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
