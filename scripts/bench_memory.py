"""Memory at real sizes: the bytes each method's cache holds per stream on Wan 2.1 14B (1280x720, 81 frames) and
FLUX.1-dev (1024x1024), from the engine's own count (cache_core/streams.py held_bytes, the run stats' held_bytes).

A real-size run cannot go through ComfyUI's sampler on the meta device (the methods decide on tensor values), and a
real-size tensor of Wan 14B 720p is 774 MB. So the run is made on a model of the real ComfyUI class with the real
number of blocks and real dtype (bf16), but small widths and a small latent, sampled through comfy.sample with the
real step count; the engine lists the tensors each stream holds at the end of the run, and each axis of each tensor
is mapped from the small size to the real one by what it measures (the hidden width, the image / text / joint
tokens, the latent's frames, height and width). The real classes are also built on the meta device, for their
block counts and widths. tests/comfy/test_memory_accounting.py holds the mapping: a run at one small size mapped to
another equals what the engine reports when sampling at that other size, for every row.

    .runtime/comfyui-0.33.0/venv/bin/python scripts/bench_memory.py [--out output/bench/memory] [--render]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from harness import comfy_runtime

OUT = comfy_runtime.REPO / "output" / "bench" / "memory"
DOC = comfy_runtime.REPO / "docs" / "bench" / "memory.md"    # BENCHMARKS.md's "Memory at real sizes" reads it
# inputs that pick the calibration a real model loads (a published preset, a saved file, a schedule, TeaCache's
# threshold -1: the preset's own): a random-weight model takes the node's first EXAMPLES case's instead; what a
# stream holds does not depend on them
CALIBRATION_INPUTS = ("coefficients", "custom_coefficients", "rel_l1_thresh", "ratios", "calibration", "schedule")
# the options that change what a stream holds, beyond the nodes' defaults and their EXAMPLES cases
MEMORY_OPTIONS = {
    "taylorseer": {"factors_dtype bfloat16": dict(factors_dtype="bfloat16"),
                   "max_order 2": dict(max_order=2)},
    "spectrum": {"history_on_cpu": dict(history_on_cpu=True)},
    "dbcache": {"taylorseer_order 2": dict(taylorseer_order=2), "calibrator foca": dict(calibrator="foca")},
    "lemica": {"forecast taylor": dict(forecast="taylor"), "forecast foca": dict(forecast="foca")},
}
# an input that, set, keeps the method's own state (policy_state: Spectrum's history) in system memory; the span
# residual the engine caches stays on the model's device
STATE_IN_SYSTEM_MEMORY = "history_on_cpu"


@dataclass(frozen=True)
class Family:
    """One model at one size: its ComfyUI class and config, the latent (C, [T,] H, W), the text tokens, and the
    run (steps, cfg) of the pack's example workflow (scripts/make_workflows.py; its key in EXAMPLES.templates)."""
    label: str
    workflow: str
    model_class: str            # comfy.supported_models class
    params: str                 # the config dataclass whose later fields with_fields_since fills ("" = none)
    config: dict
    latent: tuple
    text: int
    steps: int
    cfg: float

    def sizes(self) -> dict[str, int]:
        """What the held tensors' axes measure at this size (the names the mapping matches them by)."""
        c = self.config
        if "dim" in c:                                             # Wan: the video tokens alone
            _, t, h, w = self.latent
            pt, ph, pw = c["patch_size"]
            return dict(dim=c["dim"], ffn=c["ffn_dim"], tokens=(t // pt) * (h // ph) * (w // pw), text=self.text,
                        frames=t, height=h, width=w)
        _, h, w = self.latent                                      # Flux: image, text and joint (single blocks)
        p = c["patch_size"]
        image = (h // p) * (w // p)
        return dict(dim=c["hidden_size"], mlp=int(c["hidden_size"] * c["mlp_ratio"]), image=image, text=self.text,
                    joint=image + self.text, height=h, width=w)

    def blocks(self) -> int:
        c = self.config
        return c["num_layers"] if "dim" in c else c["depth"] + c["depth_single_blocks"]


WAN = Family("Wan 2.1 T2V 14B, 1280x720, 81 frames", "wan21_t2v_14B", "WAN21_T2V", "",
             dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=5120,
                  ffn_dim=13824, freq_dim=256, text_dim=4096, out_dim=16, num_heads=40, num_layers=40),
             latent=(16, 21, 90, 160), text=512, steps=30, cfg=6.0)
FLUX = Family("FLUX.1-dev, 1024x1024", "flux_dev", "Flux", "comfy.ldm.flux.model:FluxParams",
              dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
                   hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=19, depth_single_blocks=38,
                   axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True),
              latent=(16, 128, 128), text=512, steps=20, cfg=1.0)
REAL = {"wan": WAN, "flux": FLUX}
# the small stand-ins: the real classes, blocks, dtype and run, each width and token count a size of its own, so
# every axis of a held tensor says what it measures
SMALL = {"wan": replace(WAN, config=WAN.config | dict(dim=44, ffn_dim=52, num_heads=2, freq_dim=16, text_dim=24),
                        latent=(16, 5, 14, 18), text=8),
         "flux": replace(FLUX, config=FLUX.config | dict(hidden_size=96, num_heads=3, axes_dim=[8, 12, 12],
                                                           vec_in_dim=20, context_in_dim=24),
                         latent=(16, 10, 10), text=9)}


def with_blocks(family: Family, blocks: int) -> Family:
    """The same family with fewer blocks (the tests' quicker models); Flux keeps one double block in three."""
    c = family.config
    if "dim" in c:
        return replace(family, config=c | dict(num_layers=blocks))
    double = max(1, blocks // 3)
    return replace(family, config=c | dict(depth=double, depth_single_blocks=blocks - double))


def model_config(family: Family) -> dict:
    if not family.params:
        return dict(family.config)
    return comfy_runtime.with_fields_since(family.params, dict(family.config), txt_ids_dims=[])


def real_model_on_meta(family: Family):
    """The real ComfyUI diffusion model at this size, on the meta device (no memory): its blocks and parameters."""
    import comfy.supported_models as sm
    cfg = getattr(sm, family.model_class)(model_config(family))
    cfg.set_inference_dtype(torch.bfloat16, None)
    return cfg.get_model({}, device=torch.device("meta")).diffusion_model


def build(family: Family, seed: int = 0):
    """(ModelPatcher, latent, positive, negative) of the family at its size, bf16, weights from a seeded generator."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm
    from harness import tiny_models as tm
    cfg = getattr(sm, family.model_class)(model_config(family))
    cfg.set_inference_dtype(torch.bfloat16, None)
    model = cfg.get_model({})
    tm.fill_weights(model.diffusion_model, seed)
    model.eval()
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    g = torch.Generator().manual_seed(seed + 1)
    c = family.config
    width = c.get("text_dim", c.get("context_in_dim"))
    extra = {} if "dim" in c else dict(guidance=3.5)

    def cond():
        more = {} if "dim" in c else dict(pooled_output=torch.randn(1, c["vec_in_dim"], generator=g))
        return tm.conditioning(torch.randn(1, family.text, width, generator=g), **extra, **more)
    return patcher, torch.zeros(1, *family.latent), cond(), cond()


# --- what a run holds --------------------------------------------------------------------------------------------
def held_tensors(obj, seen: set | None = None) -> list[tuple[tuple, torch.dtype]]:
    """The (shape, dtype) of every tensor streams.held_bytes counts in obj, walked the same way."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        key = (obj.device, obj.data_ptr(), tuple(obj.shape), obj.stride())
        if key in seen:
            return []
        seen.add(key)
        return [(tuple(obj.shape), obj.dtype)]
    if id(obj) in seen or callable(obj):
        return []
    seen.add(id(obj))
    if isinstance(obj, dict):
        return [t for k, v in obj.items() for t in held_tensors(k, seen) + held_tensors(v, seen)]
    if isinstance(obj, (list, tuple, set)):
        return [t for v in obj for t in held_tensors(v, seen)]
    fields = getattr(obj, "__dict__", None)
    if fields is None and hasattr(obj, "__slots__"):
        fields = {n: getattr(obj, n, None) for n in obj.__slots__}
    return held_tensors(fields, seen) if fields else []


def nbytes(tensors) -> int:
    return sum(math.prod(shape) * torch.empty((), dtype=dtype).element_size() for shape, dtype in tensors)


@contextlib.contextmanager
def recording_runs(ck):
    """While inside: each run's held tensors as it closes, per stream label, and the run-level ones (what the policy
    object itself keeps across streams: FasterCache's CFG deltas), in the list yielded."""
    run_mod = importlib.import_module(f"{ck.__name__}.cache_core.run")
    held_bytes = importlib.import_module(f"{ck.__name__}.cache_core.streams").held_bytes
    runs, close = [], run_mod.CacheRun.close

    def recorded_close(self, status="finished"):
        streams, states = {}, {}
        for st in self.streams.values():
            seen = set()     # one walk of (state, residual, components), as held_bytes makes it
            states[st.label] = held_tensors(st.policy_state, seen)
            streams[st.label] = states[st.label] + held_tensors((st.residual, st.components), seen)
            assert nbytes(streams[st.label]) == held_bytes((st.policy_state, st.residual, st.components)), st.label
        runs.append(dict(streams=streams, states=states, run_level=held_tensors(self.policy)))
        return close(self, status)
    run_mod.CacheRun.close = recorded_close
    try:
        yield runs
    finally:
        run_mod.CacheRun.close = close


def scaled(tensors, small: dict[str, int], real: dict[str, int]) -> int:
    """Bytes of the tensors with each axis of a small size mapped to the real one (an axis no size names, such as
    the batch of one or the 16 latent channels, stays)."""
    by_size = {}
    for name, n in small.items():
        if by_size.get(n, real[name]) != real[name]:
            raise ValueError(f"two sizes of {n} map to different real sizes: pick distinct small sizes ({small})")
        by_size[n] = real[name]
    return nbytes([(tuple(by_size.get(n, n) for n in shape), dtype) for shape, dtype in tensors])


# --- the rows -----------------------------------------------------------------------------------------------------
def settings(key: str, cls) -> dict[str, dict]:
    """Row label -> the node's inputs: its defaults, its EXAMPLES cases' reusing settings, its memory options."""
    cases = cls.EXAMPLES.cases
    first = next(iter(cases.values())).on if cases else {}
    base = {**cls.defaults(), **{k: v for k, v in first.items() if k in CALIBRATION_INPUTS}}
    rows = {"defaults": base}
    rows |= {f"EXAMPLES {cid}": {**base, **case.on} for cid, case in cases.items()}
    rows |= {f"defaults, {label}": {**base, **extra} for label, extra in MEMORY_OPTIONS.get(key, {}).items()}
    return rows


def measure(ck, cls, inputs: dict, family: Family) -> dict:
    """One run of the node at the family's size through comfy.sample: the tensors each stream and the run held at
    the end, and the held_bytes the run's stats report per stream."""
    from harness import pack
    from harness import tiny_models as tm
    stats_feed = importlib.import_module(f"{ck.__name__}.nodes.host.stats_feed")
    model, latent, pos, neg = build(family)
    patched = pack.node(ck, cls.__name__, model=model, **_for_steps(ck, inputs, family.steps))[0]
    template = cls.EXAMPLES.template(family.workflow)      # FasterCache's Flux workflow sets cfg 2
    cfg = template.sampler.get("cfg", family.cfg) if template else family.cfg
    with recording_runs(ck) as runs:
        tm.sample(patched, latent, pos, neg, steps=family.steps, cfg=cfg)
    (run,) = runs
    stats = stats_feed.recent()[-1]["streams"]
    return dict(streams=run["streams"], states=run["states"], run_level=run["run_level"], cfg=cfg,
                reported={label: s["held_bytes"] for label, s in stats.items()})


def _for_steps(ck, inputs: dict, steps: int) -> dict:
    """A schedule input (SmoothCache's) stretched to the run's steps, its pattern repeated; a LeMiCa calibration
    (searched for one step count) made up again for the run's."""
    cal = inputs.get("calibration")
    if isinstance(cal, dict) and cal.get("format") == ck.cache_core.calibration_data.LEMICA_ERRORS:
        return {**inputs, "calibration": ck.nodes.lemica.example_calibration(steps)}
    schedule = inputs.get("schedule")
    if not (isinstance(schedule, dict) and isinstance(schedule.get("schedule"), dict)):
        return inputs
    rows = {k: (row * steps)[:steps] for k, row in schedule["schedule"].items()}
    return {**inputs, "schedule": {**schedule, "steps": steps, "schedule": rows}}


def held_at(measured: dict, small: Family, size: Family) -> dict:
    """Bytes per stream and at the run level at `size`, from a run measured at `small`."""
    a, b = small.sizes(), size.sizes()
    return dict(streams={label: scaled(t, a, b) for label, t in measured["streams"].items()},
                states={label: scaled(t, a, b) for label, t in measured["states"].items()},
                run_level=scaled(measured["run_level"], a, b))


def rows(ck, families=("wan", "flux"), log=print) -> list[dict]:
    from harness import pack
    out = []
    for key, cls in pack.method_nodes().items():
        every = settings(key, cls)
        base = every["defaults"]
        for label, inputs in every.items():
            row = dict(method=cls.METHOD, key=key, setting=label,
                       changed={k: v for k, v in inputs.items() if base.get(k) != v and k not in CALIBRATION_INPUTS})
            for f in families:
                t0 = time.perf_counter()
                m = measure(ck, cls, inputs, SMALL[f])
                assert {k: nbytes(v) for k, v in m["streams"].items()} == m["reported"], (key, label, f)
                real = held_at(m, SMALL[f], REAL[f])
                top = max(real["streams"], key=real["streams"].get, default=None)
                row[f] = dict(per_stream=real["streams"].get(top, 0), run_level=real["run_level"],
                              system_memory=real["states"][top] if inputs.get(STATE_IN_SYSTEM_MEMORY) else 0,
                              streams=real["streams"], small_reported=m["reported"], cfg=m["cfg"],
                              tensors_per_stream=max((len(v) for v in m["streams"].values()), default=0))
                per_run = f", {human(real['run_level'])} per run" if real["run_level"] else ""
                log(f"{cls.METHOD:28s} {label:34s} {f:5s} {human(row[f]['per_stream']):>10s} per stream "
                    f"({row[f]['tensors_per_stream']} tensors){per_run}  [{time.perf_counter() - t0:.1f} s]")
            out.append(row)
    return _distinct(out, families)


def _distinct(out: list[dict], families) -> list[dict]:
    """A method's EXAMPLES rows that hold what its defaults hold add nothing to the table."""
    keep = []
    for r in out:
        base = next(b for b in out if b["key"] == r["key"] and b["setting"] == "defaults")
        if r is base or not r["setting"].startswith("EXAMPLES") or any(
                r[f]["per_stream"] != base[f]["per_stream"] for f in families):
            keep.append(r)
    return keep


def human(n: int) -> str:
    """Bytes in binary units, as the node's summary shows them (cache_core/stats.py)."""
    from harness import pack
    return pack.load_core().stats.readable_bytes(n)


def markdown(rows_: list[dict], families=("wan", "flux")) -> str:
    """One row per method and setting: the node's defaults, or the inputs that differ from them."""
    head = " | ".join(f"{REAL[f].label}, per stream" for f in families)
    lines = [f"| method | setting | {head} |", "|---|---|" + "---|" * len(families)]
    for r in rows_:
        cells = []
        for f in families:
            held, off = r[f]["per_stream"], r[f]["system_memory"]
            v = f"{human(held - off)} + {human(off)} in system memory" if off else human(held)
            if r[f]["run_level"]:
                v += f" + {human(r[f]['run_level'])} per run"
            cells.append(v)
        setting = ", ".join(f"{k} {v}" for k, v in r["changed"].items()) or "defaults"
        lines.append(f"| {r['method']} | {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def real_models(families=("wan", "flux")) -> dict:
    """The real classes on the meta device: parameters and blocks, which the small stand-ins share."""
    out = {}
    for f in families:
        dm = real_model_on_meta(REAL[f])
        blocks = sum(len(getattr(dm, a)) for a in ("blocks", "double_blocks", "single_blocks") if hasattr(dm, a))
        assert blocks == REAL[f].blocks() == SMALL[f].blocks(), (f, blocks)
        out[f] = dict(label=REAL[f].label, parameters=sum(p.numel() for p in dm.parameters()), blocks=blocks,
                      latent=REAL[f].latent, sizes=REAL[f].sizes(), steps=REAL[f].steps, cfg=REAL[f].cfg)
    return out


def document(result: dict) -> str:
    """The section's generated part: the models as measured, the table, the date."""
    lines = []
    for f, m in result["models"].items():
        z = m["sizes"]
        tokens = (f"{z['tokens']} video tokens of width {z['dim']} (FFN {z['ffn']}), {z['text']} text tokens"
                  if "tokens" in z else f"{z['image']} image + {z['text']} text tokens of width {z['dim']} "
                                        f"(MLP {z['mlp']})")
        other = sorted({f"{r['method']} at cfg {r[f]['cfg']:g}" for r in result["rows"] if r[f]["cfg"] != m["cfg"]})
        lines.append(f"- {m['label']}: {m['parameters'] / 1e9:.2f} B parameters, {m['blocks']} blocks (the ComfyUI "
                     f"class on the meta device); latent {'x'.join(map(str, m['latent']))}, {tokens}; "
                     f"{m['steps']} steps, cfg {m['cfg']:g}" + (f" ({', '.join(other)}: its example workflow's)"
                                                                 if other else "") + ".")
    return "\n".join([*lines, "", markdown(result["rows"]), "",
                      f"Measured by `scripts/bench_memory.py` ({result['date']})."])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--render", action="store_true", help="the table from the last run's rows, measuring nothing")
    args = ap.parse_args()
    t0 = time.perf_counter()
    comfy_runtime.load()
    from harness import pack
    ck = pack.load()
    if args.render:
        result = json.loads((args.out / "memory.json").read_text())
    else:
        import logging
        logging.getLogger().setLevel(logging.ERROR)   # the nodes' notes on every run
        result = dict(models=real_models(), rows=rows(ck), date=time.strftime("%Y-%m-%d"))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "memory.json").write_text(json.dumps(result, indent=1))
    text = document(result)
    (args.out / "memory.md").write_text(text + "\n")
    DOC.write_text(text + "\n")
    print(text)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
