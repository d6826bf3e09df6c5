"""Write the example workflows in workflows/: the UI format ComfyUI's frontend saves and loads (version 0.4:
nodes, links, widgets_values), which its templates browser lists for this pack.

Node definitions (widget order, sockets, output types) come from a real ComfyUI server started here with
CacheKit installed (/object_info), so every file matches the nodes it names. Run it after changing a node:

    .runtime/comfyui-0.33.0/venv/bin/python scripts/make_workflows.py

The workflows use ComfyUI's core loaders and the usual model file names; each has a note saying what it
does and what to expect. Each is named by its title (the template browser shows an extension's templates by
file name) and gets a thumbnail of its node graph (<name>.jpg, the browser's card picture); web/templates.json
lists them in the browser's order ("start here" first, then by family: apply, calibrate then load, compare),
which the web extension applies and the tests find files by. workflows/demo/ holds make demo's workflow.
tests/server/test_example_workflows.py checks every file against a real server and runs the Wan (2.1, and 2.2's two
experts) and HunyuanVideo ones on tiny models.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from harness import comfy_server, pack

OUT = comfy_server.REPO / "workflows"
IMAGE_PROMPT = "a lighthouse on a rocky cliff at sunset, waves crashing, dramatic sky, detailed photograph"
VIDEO_PROMPT = "a red fox running through fresh snow in a birch forest, slow motion, golden hour light"
VIDEO_NEGATIVE = "blurry, static, low quality, watermark, text"
SOCKET_FREE = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def is_widget(spec) -> bool:
    opts = spec[1] if len(spec) > 1 else {}
    kind = opts.get("widgetType", spec[0])    # a multi-type input ("FLOAT,INT"): the frontend draws its widgetType
    return (isinstance(kind, list) or kind in SOCKET_FREE) and not opts.get("forceInput")


class Workflow:
    """A graph in the frontend's format, built node by node with values by input name."""

    def __init__(self, info: dict):
        self.info, self.nodes, self.links = info, [], []

    def add(self, kind: str, title: str | None = None, **values):
        info = self.info[kind]
        node_id = len(self.nodes) + 1
        sockets, widgets = [], []
        order = info["input_order"]
        for section in ("required", "optional"):
            for name in order.get(section, []):
                spec = info["input"][section][name]
                if is_widget(spec):
                    opts = spec[1] if len(spec) > 1 else {}
                    choices = (spec[0] if isinstance(spec[0], list) else opts.get("options")) or [None]  # V3: COMBO
                    default = opts.get("default", choices[0])
                    widgets.append(values.get(name, default))
                    if opts.get("control_after_generate"):
                        widgets.append("fixed")          # shared workflows reproduce: no random seed
                    continue
                link = None
                if name in values:
                    origin, slot = values[name]
                    link = len(self.links) + 1
                    otype = self.info[origin["type"]]["output"][slot]
                    self.links.append([link, origin["id"], slot, node_id, len(sockets), otype])
                    origin["outputs"][slot]["links"].append(link)
                sockets.append({"name": name, "type": spec[0], "link": link})
        unknown = set(values) - set(order.get("required", [])) - set(order.get("optional", []))
        if unknown:
            raise ValueError(f"{kind}: no inputs {sorted(unknown)}")
        node = {"id": node_id, "type": kind, "pos": [0, 0], "size": [340, 0], "flags": {}, "order": node_id - 1,
                "mode": 0, "inputs": sockets,
                "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                            for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))],
                "properties": {"Node name for S&R": kind}, "widgets_values": widgets}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return _Ref(node)

    def note(self, text: str) -> None:
        self.nodes.append({"id": len(self.nodes) + 1, "type": "Note", "pos": [0, 0], "size": [420, 220],
                           "flags": {}, "order": len(self.nodes), "mode": 0, "inputs": [], "outputs": [],
                           "properties": {}, "widgets_values": [text], "color": "#432", "bgcolor": "#653"})

    def to_json(self) -> dict:
        depth = {}
        for node in self.nodes:                         # nodes are added after their inputs
            sources = [ln[1] for ln in self.links if ln[3] == node["id"]]
            depth[node["id"]] = 1 + max((depth[s] for s in sources), default=-1)
        rows: dict[int, int] = {}
        for node in self.nodes:
            col = depth[node["id"]] if node["type"] != "Note" else 0
            # columns wide enough for the note, rows as tall as Nodes 2.0 draws a widget (taller than the canvas)
            node["pos"] = [40 + 460 * col, 40 + rows.get(col, 0)]
            if node["type"] != "Note":
                node["size"][1] = 46 + 32 * (len(node["widgets_values"]) + len(node["inputs"]))
            rows[col] = rows.get(col, 0) + node["size"][1] + 70
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
                "version": 0.4}


class _Ref:
    """A node as the builder hands it back: ref[i] is its i-th output, to pass as another node's input."""
    def __init__(self, node: dict):
        self.node = node

    def __getitem__(self, slot: int) -> tuple[dict, int]:
        return self.node, slot


# --- the model families: loaders, prompts, latent, sampler settings ----------------------------------
def flux(wf, cache, sample, name, cfg=1.0):
    unet = wf.add("UNETLoader", unet_name="flux1-dev.safetensors", weight_dtype="default")
    clip = wf.add("DualCLIPLoader", clip_name1="clip_l.safetensors", clip_name2="t5xxl_fp16.safetensors", type="flux")
    vae = wf.add("VAELoader", vae_name="ae.safetensors")
    pos = wf.add("FluxGuidance", conditioning=wf.add("CLIPTextEncode", "Positive", text=IMAGE_PROMPT, clip=clip[0])[0],
                 guidance=3.5)
    neg = wf.add("CLIPTextEncode", "Negative", text="", clip=clip[0])
    lat = wf.add("EmptySD3LatentImage", width=1024, height=1024, batch_size=1)
    model = cache(wf, unet[0])
    out = sample(wf, model, pos[0], neg[0], lat[0], dict(steps=20, cfg=cfg, sampler_name="euler", scheduler="simple"))
    wf.add("SaveImage", images=wf.add("VAEDecode", samples=out, vae=vae[0])[0], filename_prefix=f"cachekit/{name}")


def wan21(wf, cache, sample, name, cfg=6.0):
    unet = wf.add("UNETLoader", unet_name="wan2.1_t2v_1.3B_fp16.safetensors", weight_dtype="default")
    clip = wf.add("CLIPLoader", clip_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan")
    vae = wf.add("VAELoader", vae_name="wan_2.1_vae.safetensors")
    pos = wf.add("CLIPTextEncode", "Positive", text=VIDEO_PROMPT, clip=clip[0])
    neg = wf.add("CLIPTextEncode", "Negative", text=VIDEO_NEGATIVE, clip=clip[0])
    lat = wf.add("EmptyHunyuanLatentVideo", width=832, height=480, length=33, batch_size=1)
    shifted = wf.add("ModelSamplingSD3", model=unet[0], shift=8.0)
    model = cache(wf, shifted[0])
    out = sample(wf, model, pos[0], neg[0], lat[0], dict(steps=30, cfg=cfg, sampler_name="uni_pc", scheduler="simple"))
    wf.add("SaveAnimatedWEBP", images=wf.add("VAEDecode", samples=out, vae=vae[0])[0],
           filename_prefix=f"cachekit/{name}", fps=16.0, lossless=False, quality=85, method="default")


def hunyuan_video(wf, cache, name):
    unet = wf.add("UNETLoader", unet_name="hunyuan_video_t2v_720p_bf16.safetensors", weight_dtype="default")
    clip = wf.add("DualCLIPLoader", clip_name1="clip_l.safetensors", clip_name2="llava_llama3_fp8_scaled.safetensors",
                  type="hunyuan_video")
    vae = wf.add("VAELoader", vae_name="hunyuan_video_vae_bf16.safetensors")
    pos = wf.add("FluxGuidance", conditioning=wf.add("CLIPTextEncode", "Positive", text=VIDEO_PROMPT, clip=clip[0])[0],
                 guidance=6.0)
    neg = wf.add("CLIPTextEncode", "Negative", text="", clip=clip[0])
    lat = wf.add("EmptyHunyuanLatentVideo", width=848, height=480, length=73, batch_size=1)
    model = cache(wf, unet[0])
    out = ksampler(wf, model, pos[0], neg[0], lat[0], dict(steps=30, cfg=1.0, sampler_name="euler", scheduler="simple"))
    wf.add("SaveAnimatedWEBP", images=wf.add("VAEDecodeTiled", samples=out, vae=vae[0])[0],
           filename_prefix=f"cachekit/{name}", fps=24.0, lossless=False, quality=85, method="default")


def qwen_image(wf, cache, name):
    unet = wf.add("UNETLoader", unet_name="qwen_image_fp8_e4m3fn.safetensors", weight_dtype="default")
    clip = wf.add("CLIPLoader", clip_name="qwen_2.5_vl_7b_fp8_scaled.safetensors", type="qwen_image")
    vae = wf.add("VAELoader", vae_name="qwen_image_vae.safetensors")
    pos = wf.add("CLIPTextEncode", "Positive", text=IMAGE_PROMPT, clip=clip[0])
    neg = wf.add("CLIPTextEncode", "Negative", text="", clip=clip[0])
    lat = wf.add("EmptySD3LatentImage", width=1328, height=1328, batch_size=1)
    shifted = wf.add("ModelSamplingAuraFlow", model=unet[0], shift=3.1)
    model = cache(wf, shifted[0])
    out = ksampler(wf, model, pos[0], neg[0], lat[0], dict(steps=20, cfg=2.5, sampler_name="euler", scheduler="simple"))
    wf.add("SaveImage", images=wf.add("VAEDecode", samples=out, vae=vae[0])[0], filename_prefix=f"cachekit/{name}")


def ltxv(wf, cache, name):
    ckpt = wf.add("CheckpointLoaderSimple", ckpt_name="ltx-video-2b-v0.9.5.safetensors")
    clip = wf.add("CLIPLoader", clip_name="t5xxl_fp16.safetensors", type="ltxv")
    cond = wf.add("LTXVConditioning", positive=wf.add("CLIPTextEncode", "Positive", text=VIDEO_PROMPT, clip=clip[0])[0],
                  negative=wf.add("CLIPTextEncode", "Negative", text=VIDEO_NEGATIVE, clip=clip[0])[0], frame_rate=25.0)
    lat = wf.add("EmptyLTXVLatentVideo", width=768, height=512, length=97, batch_size=1)
    model = cache(wf, ckpt[0])
    out = ksampler(wf, model, cond[0], cond[1], lat[0], dict(steps=30, cfg=3.0, sampler_name="euler",
                                                             scheduler="simple"))
    wf.add("SaveAnimatedWEBP", images=wf.add("VAEDecode", samples=out, vae=ckpt[2])[0],
           filename_prefix=f"cachekit/{name}", fps=24.0, lossless=False, quality=85, method="default")


def wan22(wf, cache, name):
    """Wan 2.2 T2V 14B as ComfyUI's template runs it: the high-noise expert samples the first half of the steps and
    hands its noisy latent to the low-noise expert; each expert is its own MODEL, so each gets its own cache node
    (each run then covers its own half of the schedule)."""
    clip = wf.add("CLIPLoader", clip_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan")
    vae = wf.add("VAELoader", vae_name="wan_2.1_vae.safetensors")
    pos = wf.add("CLIPTextEncode", "Positive", text=VIDEO_PROMPT, clip=clip[0])
    neg = wf.add("CLIPTextEncode", "Negative", text=VIDEO_NEGATIVE, clip=clip[0])
    lat = wf.add("EmptyHunyuanLatentVideo", width=640, height=640, length=81, batch_size=1)
    steps, split = 20, 10
    for noise, title in (("high", "High-noise expert"), ("low", "Low-noise expert")):
        unet = wf.add("UNETLoader", title, unet_name=f"wan2.2_t2v_{noise}_noise_14B_fp8_scaled.safetensors",
                      weight_dtype="default")
        model = cache(wf, wf.add("ModelSamplingSD3", model=unet[0], shift=5.0)[0])
        first = noise == "high"
        # the low-noise expert goes on from the high-noise one's latent
        lat = wf.add("KSamplerAdvanced", model=model, add_noise="enable" if first else "disable", noise_seed=42,
                     steps=steps, cfg=3.5, sampler_name="euler", scheduler="simple", positive=pos[0],
                     negative=neg[0], latent_image=lat[0], start_at_step=0 if first else split,
                     end_at_step=split if first else 10000,
                     return_with_leftover_noise="enable" if first else "disable")
    wf.add("SaveAnimatedWEBP", images=wf.add("VAEDecode", samples=lat[0], vae=vae[0])[0],
           filename_prefix=f"cachekit/{name}", fps=16.0, lossless=False, quality=85, method="default")


def custom_sample(wf, guider, sampler_name, sigmas, lat):
    """SamplerCustomAdvanced, as the templates of models with their own sigma schedule sample."""
    return wf.add("SamplerCustomAdvanced", noise=wf.add("RandomNoise", noise_seed=42)[0], guider=guider,
                  sampler=wf.add("KSamplerSelect", sampler_name=sampler_name)[0], sigmas=sigmas, latent_image=lat)


def flux2_klein(wf, cache, name):
    """Flux.2 Klein 4B, the distilled one: 4 steps, CFG 1 (no guidance) with a zeroed negative."""
    unet = wf.add("UNETLoader", unet_name="flux-2-klein-4b.safetensors", weight_dtype="default")
    clip = wf.add("CLIPLoader", clip_name="qwen_3_4b.safetensors", type="flux2")
    vae = wf.add("VAELoader", vae_name="flux2-vae.safetensors")
    pos = wf.add("CLIPTextEncode", "Positive", text=IMAGE_PROMPT, clip=clip[0])
    neg = wf.add("ConditioningZeroOut", conditioning=pos[0])
    lat = wf.add("EmptyFlux2LatentImage", width=1024, height=1024, batch_size=1)
    guider = wf.add("CFGGuider", model=cache(wf, unet[0]), positive=pos[0], negative=neg[0], cfg=1.0)
    sigmas = wf.add("Flux2Scheduler", steps=4, width=1024, height=1024)
    out = custom_sample(wf, guider[0], "euler", sigmas[0], lat[0])
    wf.add("SaveImage", images=wf.add("VAEDecode", samples=out[0], vae=vae[0])[0], filename_prefix=f"cachekit/{name}")


def z_image_turbo(wf, cache, name):
    """Z-Image Turbo: 8 steps, CFG 1 with a zeroed negative."""
    unet = wf.add("UNETLoader", unet_name="z_image_turbo_bf16.safetensors", weight_dtype="default")
    clip = wf.add("CLIPLoader", clip_name="qwen_3_4b.safetensors", type="lumina2")
    vae = wf.add("VAELoader", vae_name="ae.safetensors")
    pos = wf.add("CLIPTextEncode", "Positive", text=IMAGE_PROMPT, clip=clip[0])
    neg = wf.add("ConditioningZeroOut", conditioning=pos[0])
    lat = wf.add("EmptySD3LatentImage", width=1024, height=1024, batch_size=1)
    model = cache(wf, wf.add("ModelSamplingAuraFlow", model=unet[0], shift=3.0)[0])
    out = ksampler(wf, model, pos[0], neg[0], lat[0], dict(steps=8, cfg=1.0, sampler_name="res_multistep",
                                                           scheduler="simple"))
    wf.add("SaveImage", images=wf.add("VAEDecode", samples=out, vae=vae[0])[0], filename_prefix=f"cachekit/{name}")


def ltx2(wf, cache, name):
    """LTX-2 19B dev as the first stage of ComfyUI's text-to-video template samples (at 768x512, no upscale stage):
    video and audio latents sampled together as one AV latent, then split and decoded apart."""
    ckpt_name = "ltx-2-19b-dev-fp8.safetensors"
    ckpt = wf.add("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    clip = wf.add("LTXAVTextEncoderLoader", text_encoder="gemma_3_12B_it_fp4_mixed.safetensors", ckpt_name=ckpt_name)
    audio_vae = wf.add("LTXVAudioVAELoader", ckpt_name=ckpt_name)
    fps, frames = 24, 121
    cond = wf.add("LTXVConditioning", positive=wf.add("CLIPTextEncode", "Positive", text=VIDEO_PROMPT, clip=clip[0])[0],
                  negative=wf.add("CLIPTextEncode", "Negative", text=VIDEO_NEGATIVE, clip=clip[0])[0],
                  frame_rate=float(fps))
    video = wf.add("EmptyLTXVLatentVideo", width=768, height=512, length=frames, batch_size=1)
    audio = wf.add("LTXVEmptyLatentAudio", frames_number=frames, frame_rate=fps, batch_size=1, audio_vae=audio_vae[0])
    lat = wf.add("LTXVConcatAVLatent", video_latent=video[0], audio_latent=audio[0])
    guider = wf.add("CFGGuider", model=cache(wf, ckpt[0]), positive=cond[0], negative=cond[1], cfg=4.0)
    sigmas = wf.add("LTXVScheduler", steps=20, max_shift=2.05, base_shift=0.95, stretch=True, terminal=0.1,
                    latent=lat[0])
    av = wf.add("LTXVSeparateAVLatent", av_latent=custom_sample(wf, guider[0], "euler_ancestral", sigmas[0], lat[0])[0])
    images = wf.add("VAEDecodeTiled", samples=av[0], vae=ckpt[2], tile_size=512, overlap=64, temporal_size=4096,
                    temporal_overlap=8)
    wf.add("SaveAnimatedWEBP", images=images[0], filename_prefix=f"cachekit/{name}", fps=float(fps), lossless=False,
           quality=85, method="default")
    wf.add("SaveAudio", audio=wf.add("LTXVAudioVAEDecode", samples=av[1], audio_vae=audio_vae[0])[0],
           filename_prefix=f"cachekit/{name}")


def ksampler(wf, model, pos, neg, lat, s):
    return wf.add("KSampler", model=model, seed=42, positive=pos, negative=neg, latent_image=lat, denoise=1.0, **s)[0]


# --- what goes between the loader and the sampler -----------------------------------------------------
def apply(kind, **values):
    return lambda wf, model: wf.add(kind, model=model, **values)[0]


def calibrate_sample(node, save_prefix, schedule_alpha=None, **own):
    """Sample with a calibrate node (it samples like KSampler) and save what it recorded."""
    def sample(wf, model, pos, neg, lat, s):
        cal = wf.add(node, model=model, seed=42, positive=pos, negative=neg, latent_image=lat, denoise=1.0,
                     **s, **own)
        out = cal[0]
        if schedule_alpha is not None:
            out = wf.add("SmoothCacheSchedule", calibration=out, alpha=schedule_alpha)[0]
        wf.add("SaveCacheCalibration", calibration=out, filename_prefix=save_prefix)
        return cal[1]
    return sample


def loaded(kind, file, **values):
    def cache(wf, model):
        cal = wf.add("LoadCacheCalibration", calibration=file)
        key = "schedule" if kind == "ApplySmoothCache" else "calibration"
        return wf.add(kind, model=model, **{key: cal[0]}, **values)[0]
    return cache


def smoothcache_sample(alpha):
    """SmoothCache in one graph: calibrate, build the schedule, then sample again with it applied."""
    def sample(wf, model, pos, neg, lat, s):
        cal = wf.add("CalibrateSmoothCache", model=model, seed=42, positive=pos, negative=neg, latent_image=lat,
                     denoise=1.0, lookahead=3, **s)
        schedule = wf.add("SmoothCacheSchedule", calibration=cal[0], alpha=alpha)
        cached = wf.add("ApplySmoothCache", model=model, schedule=schedule[0])
        return ksampler(wf, cached[0], pos, neg, lat, s)
    return sample


def lemica_sample(target):
    """LeMiCa in one graph: calibrate (an uncached run recording the reuse errors), then sample with the schedule
    searched from it."""
    def sample(wf, model, pos, neg, lat, s):
        cal = wf.add("CalibrateLeMiCa", model=model, seed=42, positive=pos, negative=neg, latent_image=lat,
                     denoise=1.0, **s)
        cached = wf.add("ApplyLeMiCa", model=model, calibration=cal[0], target_compute=target, final_steps=1,
                        forecast="reuse")
        return ksampler(wf, cached[0], pos, neg, lat, s)
    return sample


def compare_sample(kind, **values):
    """The same sampling without and with the cache node, and Compare Cache Quality on the two latents."""
    def sample(wf, model, pos, neg, lat, s):
        plain = ksampler(wf, model, pos, neg, lat, s)
        cached = ksampler(wf, wf.add(kind, model=model, **values)[0], pos, neg, lat, s)
        wf.add("CompareCacheQuality", cached_latent=cached, uncached_latent=plain)
        return cached
    return sample


MODELS = {
    "flux_dev": "Flux.1-dev: models/diffusion_models/flux1-dev.safetensors, models/text_encoders/clip_l.safetensors "
                "and t5xxl_fp16.safetensors, models/vae/ae.safetensors.",
    "wan21_t2v_1.3B": "Wan 2.1 T2V 1.3B: models/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors, "
                      "models/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors, "
                      "models/vae/wan_2.1_vae.safetensors.",
    "hunyuan_video": "HunyuanVideo T2V 720p: models/diffusion_models/hunyuan_video_t2v_720p_bf16.safetensors, "
                     "models/text_encoders/clip_l.safetensors and llava_llama3_fp8_scaled.safetensors, "
                     "models/vae/hunyuan_video_vae_bf16.safetensors.",
    "qwen_image": "Qwen-Image: models/diffusion_models/qwen_image_fp8_e4m3fn.safetensors, "
                  "models/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors, models/vae/qwen_image_vae.safetensors.",
    "ltxv": "LTX-Video 2B 0.9.5: models/checkpoints/ltx-video-2b-v0.9.5.safetensors, "
            "models/text_encoders/t5xxl_fp16.safetensors.",
    "wan22_t2v_14B": "Wan 2.2 T2V 14B: models/diffusion_models/wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors and "
                     "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors, "
                     "models/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors, models/vae/wan_2.1_vae.safetensors.",
    "flux2_klein_4b": "Flux.2 Klein 4B (distilled): models/diffusion_models/flux-2-klein-4b.safetensors, "
                      "models/text_encoders/qwen_3_4b.safetensors, models/vae/flux2-vae.safetensors.",
    "z_image_turbo": "Z-Image Turbo: models/diffusion_models/z_image_turbo_bf16.safetensors, "
                     "models/text_encoders/qwen_3_4b.safetensors, models/vae/ae.safetensors.",
    "ltx2": "LTX-2 19B dev: models/checkpoints/ltx-2-19b-dev-fp8.safetensors (the model and its video and audio "
            "VAEs), models/text_encoders/gemma_3_12B_it_fp4_mixed.safetensors.",
}
AFTER = ("After the run the cache node shows the steps it computed and reused per stream (cond, uncond), and "
         "the log has the same per stream. Set the threshold to 0 (interval 1) to get exactly the uncached "
         "result, for comparison.")


# a method whose example is a graph of its own (the rest: its node between the loader and KSampler)
GRAPHS = {"smoothcache": (lambda wf, model: model, smoothcache_sample(0.18)),
          "lemica": (lambda wf, model: model, lemica_sample(0.5))}


def methods(family: str) -> dict:
    """name -> (note, cache, sampler, sampler inputs) of every Apply method for one family: each node's
    EXAMPLES.templates."""
    out = {}
    for key, cls in pack.method_nodes().items():
        t = cls.EXAMPLES.template(family)
        if t is not None:
            cache, sample = GRAPHS.get(key, (apply(cls.__name__, **t.inputs), ksampler))
            out[key] = (t.note, cache, sample, t.sampler)
    return out


# --- templates: a readable name (the template browser shows extension templates by file name), an order, a
# thumbnail, and an index the web extension sorts the browser by and the tests find files by -------------------
FAMILY_NAMES = {"wan21_t2v_1.3B": "Wan 2.1 1.3B", "wan22_t2v_14B": "Wan 2.2 14B", "flux_dev": "Flux.1-dev",
                "flux2_klein_4b": "Flux.2 Klein 4B", "z_image_turbo": "Z-Image Turbo", "qwen_image": "Qwen-Image",
                "hunyuan_video": "HunyuanVideo", "ltx2": "LTX-2", "ltxv": "LTX-Video"}   # in the browser's order
CURRENT_LINE_ONLY = {"ltx2"}   # models whose nodes only the current line has (their workflows load there only)
TASKS = ("apply", "calibrate", "load", "compare")
GROUPS = {"apply": 0, "calibrate": 1, "load": 1, "compare": 2}   # in a family: apply, calibrate then load, compare
START = ("wan21_t2v_1.3B", "first_block_cache", "apply")   # the smallest model, the simplest method
INDEX = comfy_server.REPO / "web" / "templates.json"


def title(family: str, method: str, task: str) -> str:
    f, m = FAMILY_NAMES[family], pack.method_nodes()[method].METHOD
    if (family, method, task) == START:
        return f"Start here - {m} on {f}"
    return {"apply": f"{f} - {m}", "calibrate": f"{f} - {m} 1 - calibrate and save",
            "load": f"{f} - {m} 2 - load the calibration", "compare": f"{f} - {m} compared with uncached"}[task]


def description(note: str) -> str:
    """The note's first sentence, for the index (one line)."""
    first = note.split("\n")[0].split(". ")[0].rstrip(".")
    return first if len(first) <= 200 else first[:197].rstrip() + "..."


def order_key(entry: dict) -> tuple:
    start = (entry["family"], entry["method"], entry["task"]) == START
    return (not start, list(FAMILY_NAMES).index(entry["family"]), GROUPS[entry["task"]],
            list(pack.method_nodes()).index(entry["method"]), TASKS.index(entry["task"]))


def wrapped(draw, text: str, font, width: float) -> list[str]:
    lines, words = [], text.split()
    while words:
        line = words.pop(0)
        while words and draw.textlength(f"{line} {words[0]}", font=font) <= width:
            line += " " + words.pop(0)
        lines.append(line)
    return lines


def thumbnail(graph: dict, heading: str, looks: dict, caption: str = ""):
    """The workflow's node graph, drawn small between its title and its one-line description (CacheKit's nodes in
    green, notes in brown): the template browser's card picture, made from the file so it always shows what the
    file holds (the browser shows an extension's templates by name alone). `looks`: node_looks(/object_info)."""
    from PIL import Image, ImageDraw, ImageFont
    width, height, top, pad = 512, 512, 84, 14   # square: the browser shows its cards square
    img = Image.new("RGB", (width, height), "#1b1b1b")
    draw = ImageDraw.Draw(img)
    small = ImageFont.load_default(size=17)
    below = wrapped(draw, caption, small, width - 2 * pad)[:5]
    bottom = height - pad - 22 * len(below) - (12 if below else 0)
    nodes = {n["id"]: n for n in graph["nodes"]}
    x0 = min(n["pos"][0] for n in nodes.values())
    y0 = min(n["pos"][1] for n in nodes.values())
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes.values())
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes.values())
    scale = min((width - 2 * pad) / (x1 - x0), (bottom - top) / (y1 - y0))
    left = pad + ((width - 2 * pad) - (x1 - x0) * scale) / 2
    upper = top + ((bottom - top) - (y1 - y0) * scale) / 2

    def at(x, y):
        return left + (x - x0) * scale, upper + (y - y0) * scale
    for _, src, slot, dst, dslot, _ in graph["links"]:
        a, b = nodes[src], nodes[dst]
        ax, ay = at(a["pos"][0] + a["size"][0], a["pos"][1] + 40 + 22 * slot)
        bx, by = at(b["pos"][0], b["pos"][1] + 40 + 22 * dslot)
        points = [(ax + (bx - ax) * t, ay + (by - ay) * (3 * t * t - 2 * t * t * t)) for t in
                  (i / 16 for i in range(17))]
        draw.line(points, fill="#7a8a99", width=1)
    label = ImageFont.load_default(size=max(7, int(22 * scale)))
    for n in nodes.values():
        bx0, by0 = at(*n["pos"])
        bx1, by1 = at(n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        name, ours = looks.get(n["type"], (n["type"], False))
        body, bar = (("#4a3c2a", "#6b5535") if n["type"] == "Note" else
                     ("#23402a", "#2f7d3f") if ours else ("#2c2c2c", "#3d3d3d"))
        draw.rounded_rectangle((bx0, by0, bx1, by1), radius=3, fill=body, outline="#555" if not ours else "#5fbf6f")
        draw.rectangle((bx0 + 1, by0 + 1, bx1 - 1, min(by1 - 1, by0 + max(4, 30 * scale))), fill=bar)
        draw.text((bx0 + 3, by0 + 1), n.get("title") or name, font=label, fill="#e8e8e8")
    big = ImageFont.load_default(size=24)
    for i, line in enumerate(wrapped(draw, heading, big, width - 2 * pad)[:2]):
        draw.text((pad, 10 + 30 * i), line, font=big, fill="#ffffff")
    for i, line in enumerate(below):
        draw.text((pad, bottom + 12 + 22 * i), line, font=small, fill="#bbbbbb")
    draw.text((width - 6, height - 4), "CacheKit", font=ImageFont.load_default(size=12), fill="#8fd18f",
              anchor="rd")
    return img


def node_looks(info: dict) -> dict:
    """Node type -> (its display name, whether it is CacheKit's), from /object_info."""
    return {kind: (node.get("display_name") or kind, node.get("category", "").startswith("CacheKit"))
            for kind, node in info.items()}


class Templates:
    """The templates written in one build: each file, its thumbnail, and the index entry."""

    def __init__(self, info: dict):
        self.entries, self.looks = [], node_looks(info)

    def write(self, family: str, method: str, task: str, wf: Workflow, note: str) -> None:
        name = title(family, method, task)
        graph = wf.to_json()
        (OUT / f"{name}.json").write_text(json.dumps(graph, indent=1) + "\n")
        line = description(note)
        thumbnail(graph, name, self.looks, line).save(OUT / f"{name}.jpg", quality=88)
        self.entries.append({"file": f"{name}.json", "title": name, "description": line,
                             "family": family, "method": method, "task": task})
        print("wrote", (OUT / f"{name}.json").relative_to(comfy_server.REPO), "and its .jpg")

    def finish(self) -> None:
        entries = sorted(self.entries, key=order_key)
        INDEX.write_text(json.dumps({"about": "CacheKit's templates (workflows/), in the order the template browser "
                                              "shows them; written by scripts/make_workflows.py",
                                     "templates": entries}, indent=1) + "\n")
        print("wrote", INDEX.relative_to(comfy_server.REPO))


def index() -> list[dict]:
    return json.loads(INDEX.read_text())["templates"]


def find(family: str, method: str, task: str = "apply") -> Path:
    """The shipped workflow file of one template."""
    return OUT / next(e["file"] for e in index() if (e["family"], e["method"], e["task"]) == (family, method, task))


# --- UI format -> API format, as the frontend converts a graph when it queues it -----------------------------
FRONTEND_ONLY = {"Note", "MarkdownNote"}        # nodes that live in the frontend only


def widget_inputs(info: dict, node_type: str) -> list[tuple[str, list]]:
    """(name, declaration) of the inputs the frontend shows as widgets, in widgets_values' order."""
    spec, order = info[node_type]["input"], info[node_type]["input_order"]
    return [(name, spec[section][name]) for section in ("required", "optional") for name in order.get(section, [])
            if is_widget(spec[section][name])]


def model_files(workflows) -> dict[str, set[str]]:
    """The model file names the workflows reference, by the folder their loader lists them from (in its widgets'
    order; text encoder loaders: text_encoders): the tests' servers hold them as empty placeholders."""
    folders = {"UNETLoader": ("diffusion_models",), "VAELoader": ("vae",), "CheckpointLoaderSimple": ("checkpoints",),
               "LTXAVTextEncoderLoader": ("text_encoders", "checkpoints"), "LTXVAudioVAELoader": ("checkpoints",)}
    found: dict[str, set[str]] = {}
    for wf in workflows:
        for node in wf["nodes"]:
            names = [v for v in node.get("widgets_values", []) if isinstance(v, str) and v.endswith(".safetensors")]
            for folder, name in zip(folders.get(node["type"], ("text_encoders",) * len(names)), names, strict=True):
                found.setdefault(folder, set()).add(name)
    return found


def to_api(wf: dict, info: dict) -> dict:
    prompt = {}
    links = {ln[0]: ln for ln in wf["links"]}
    for node in wf["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        inputs = {}
        values = iter(node["widgets_values"])
        for name, spec in widget_inputs(info, node["type"]):
            inputs[name] = next(values)
            if (spec[1] if len(spec) > 1 else {}).get("control_after_generate"):
                next(values)
        for sock in node["inputs"]:
            if sock["link"] is not None:
                ln = links[sock["link"]]
                inputs[sock["name"]] = [str(ln[1]), ln[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


DEMO = OUT / "demo" / "hunyuan_video_first_block_cache.json"   # make demo's workflow (random-weight models)


def demo_workflow(info: dict) -> Workflow:
    wf = Workflow(info)
    wf.note("make demo's workflow (scripts/demo.py): a small random-weight HunyuanVideo the demo writes, First Block "
            "Cache on it, the latent saved. The demo queues it without and with the cache node and compares.")
    unet = wf.add("UNETLoader", unet_name="cachekit_demo_hunyuan_video.safetensors", weight_dtype="default")
    clip = wf.add("CLIPLoader", clip_name="cachekit_demo_clip_l.safetensors", type="stable_diffusion")
    pos = wf.add("CLIPTextEncode", "Positive", text="a lighthouse on a cliff at sunset, waves crashing, cinematic",
                 clip=clip[0])
    neg = wf.add("CLIPTextEncode", "Negative", text="blurry, low quality", clip=clip[0])
    lat = wf.add("EmptyHunyuanLatentVideo", width=256, height=256, length=1, batch_size=1)
    fbc = wf.add("ApplyFirstBlockCache", model=unet[0], residual_diff_threshold=0.25, max_consecutive_skips=3,
                 warmup_steps=0)
    out = wf.add("KSampler", model=fbc[0], seed=42, steps=20, cfg=6.0, sampler_name="euler", scheduler="simple",
                 positive=pos[0], negative=neg[0], latent_image=lat[0], denoise=1.0)
    wf.add("SaveLatent", samples=out[0], filename_prefix="cachekit_demo")
    return wf


def main() -> int:
    with tempfile.TemporaryDirectory() as base:
        with comfy_server.ComfyServer(Path(base)) as server:
            info = server.get("/object_info")
    for old in [*OUT.glob("*.json"), *OUT.glob("*.jpg")]:   # names follow the titles: no stale file stays
        old.unlink()
    out = Templates(info)
    builders = {"flux_dev": flux, "wan21_t2v_1.3B": wan21}
    for family, build in builders.items():
        for method, (note, cache, sample, extra) in methods(family).items():
            wf = Workflow(info)
            wf.note(f"{note}\n\n{AFTER}\n\nModels: {MODELS[family]}")
            build(wf, cache, sample, f"{family}_{method}", **extra)
            out.write(family, method, "apply", wf, note)
    # calibrate once and save; load the file in later workflows (Wan 2.1 1.3B)
    family = "wan21_t2v_1.3B"
    calibrations = {
        "magcache": ("CalibrateMagCache", {}, None, "ApplyMagCache",
                     dict(threshold=0.12, max_skips=3, retention_ratio=0.2)),
        "teacache": ("CalibrateTeaCache", {"degree": 4}, None, "ApplyTeaCache", dict(rel_l1_thresh=0.1)),
        "smoothcache": ("CalibrateSmoothCache", {"lookahead": 3}, 0.18, "ApplySmoothCache", {}),
        "lemica": ("CalibrateLeMiCa", {}, None, "ApplyLeMiCa", dict(target_compute=0.5, final_steps=1,
                                                                    forecast="reuse")),
    }
    for method, (node, own, alpha, apply_node, values) in calibrations.items():
        prefix = f"{family}/{method}"
        wf = Workflow(info)
        note = (f"{node} samples once without caching (like KSampler, same settings) and records what "
                f"{apply_node.replace('Apply', 'Apply ')} needs"
                + (f"; SmoothCache Schedule turns it into a schedule (alpha {alpha})" if alpha is not None else "")
                + f". Save Cache Calibration writes it to models/cache_calibrations/{prefix}_00001.json (the "
                  f"next free number). Then open the template '{title(family, method, 'load')}'.")
        wf.note(f"{note}\n\nModels: {MODELS[family]}")
        wan21(wf, lambda w, m: m, calibrate_sample(node, prefix, alpha, **own), f"{family}_calibrate_{method}")
        out.write(family, method, "calibrate", wf, note)
        wf = Workflow(info)
        reach = ("A LeMiCa schedule is searched for the calibration's step count: sample with the same steps"
                 if method == "lemica" else "The calibration also works at another step count (resampled or "
                 "rebuilt; the log says how)")
        note = (f"Load Cache Calibration picks the file '{title(family, method, 'calibrate')}' saved (run that "
                f"template first) and {apply_node.replace('Apply', 'Apply ')} uses it. {reach} and on a fine-tune "
                f"of the same model (with a warning).")
        wf.note(f"{note}\n\n{AFTER}\n\nModels: {MODELS[family]}")
        wan21(wf, loaded(apply_node, f"{prefix}_00001.json", **values), ksampler, f"{family}_load_{method}")
        out.write(family, method, "load", wf, note)
    # check a setting inside ComfyUI: uncached and cached side by side, compared
    wf = Workflow(info)
    note = ("Samples the same seed without and with Apply First Block Cache (threshold 0.08) and compares the two "
            "latents with Compare Cache Quality: PSNR, SSIM and the largest difference show on that node and in "
            "the log. Raise the threshold for speed until the numbers drop below what you accept.")
    wf.note(f"{note}\n\nModels: {MODELS[family]}")
    wan21(wf, lambda w, m: m, compare_sample("ApplyFirstBlockCache", residual_diff_threshold=0.08),
          f"{family}_compare_quality")
    out.write(family, "first_block_cache", "compare", wf, note)
    # one method each on the other families; few-step models get a low threshold and one reuse in a row at most
    few_steps = ("{} steps leave little to reuse: each step changes the image a lot, so a reused one costs more than "
                 "in a long run. Hence a low threshold ({}) and never two reuses in a row; expect a small gain, and "
                 "the node's few-step warning.")
    for family, method, build, note, cache in [
        ("wan22_t2v_14B", "first_block_cache", wan22, "Apply First Block Cache on each of Wan 2.2's two experts "
         "(threshold 0.08, at most 2 reuses in a row): the high-noise expert samples steps 0-10 of 20, the low-noise "
         "one steps 10-20, and each cache node decides over its own expert's steps. First Block Cache needs no "
         "numbers published for a model, so it fits either expert as it is.",
         apply("ApplyFirstBlockCache", residual_diff_threshold=0.08, max_consecutive_skips=2)),
        ("flux2_klein_4b", "first_block_cache", flux2_klein, "Apply First Block Cache on Flux.2 Klein 4B, distilled "
         "to 4 steps without guidance (CFG 1). " + few_steps.format(4, 0.03),
         apply("ApplyFirstBlockCache", residual_diff_threshold=0.03, max_consecutive_skips=1)),
        ("z_image_turbo", "first_block_cache", z_image_turbo, "Apply First Block Cache on Z-Image Turbo, distilled "
         "to 8 steps without guidance (CFG 1). " + few_steps.format(8, 0.05),
         apply("ApplyFirstBlockCache", residual_diff_threshold=0.05, max_consecutive_skips=1)),
        ("ltx2", "first_block_cache", ltx2, "Apply First Block Cache on LTX-2, video and sound in one model: block "
         "0's change is measured for the video and for the audio apart, and a step is reused only where both "
         "changed less than the threshold. 0.05 is a cautious start (no LTX-2 value is published): raise it while "
         "picture and sound hold. This is the first stage of ComfyUI's LTX-2 template (20 steps, CFG 4); its "
         "upscale-and-refine stage runs 3 distilled steps, too few to cache.",
         apply("ApplyFirstBlockCache", residual_diff_threshold=0.05, max_consecutive_skips=2)),
        ("hunyuan_video", "teacache", hunyuan_video, "Apply TeaCache with the published HunyuanVideo coefficients "
         "and their 'slow' threshold 0.1 (0.15 is faster; ali-vilab/TeaCache).",
         apply("ApplyTeaCache", rel_l1_thresh=-1.0, coefficients="auto")),
        ("qwen_image", "magcache", qwen_image, "Apply MagCache with the published Qwen-Image ratios and the MagCache "
         "repository's Qwen-Image recipe (0.06, K 2, retention 0.2).",
         apply("ApplyMagCache", threshold=0.06, max_skips=2, retention_ratio=0.2, ratios="auto")),
        ("ltxv", "teacache", ltxv, "Apply TeaCache with the published LTX-Video coefficients and their 'slow' "
         "threshold 0.03 (0.05 is faster; ali-vilab/TeaCache).",
         apply("ApplyTeaCache", rel_l1_thresh=-1.0, coefficients="auto")),
    ]:
        wf = Workflow(info)
        wf.note(f"{note}\n\n{AFTER}\n\nModels: {MODELS[family]}")
        build(wf, cache, f"{family}_{method}")
        out.write(family, method, "apply", wf, note)
    out.finish()
    DEMO.parent.mkdir(exist_ok=True)
    DEMO.write_text(json.dumps(demo_workflow(info).to_json(), indent=1) + "\n")
    print("wrote", DEMO.relative_to(comfy_server.REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
