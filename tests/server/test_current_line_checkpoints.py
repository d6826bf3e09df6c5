"""The families new on ComfyUI 0.33 through the real server, each from a tiny checkpoint file its own UNETLoader
detects (scripts/harness/make_models.py): UNETLoader -> Apply First Block Cache -> KSampler on that model's empty
latent (WanDancer, which First Block Cache refuses: Pyramid Attention Broadcast). No tiny text encoder exists for
them (Qwen2.5-VL, Gemma 3, T5-XXL, T5Gemma...), so the conditioning is the test node's seeded tensor of the width
the model's text input takes; everything else is ComfyUI's own nodes. Nothing here feeds the inputs that come from a
VAE or CLIP vision (SCAIL's pose video, Animate-2's reference, WanDancer's music): those models run their text-to-
video path."""
import pytest
import safetensors.torch

from harness.comfy_runtime import REPO

from harness import comfy_server

pytestmark = pytest.mark.server   # not every_runtime: the current line's classes, run on that line only
FIXTURE_NODES = REPO / "tests" / "fixtures" / "cachekit_test_nodes"
STEPS = 10


def video_latent(width=64, height=64, length=5):
    """EmptyHunyuanLatentVideo: 16 channels, 4x in time, 8x in space; what Wan 2.1, Kandinsky 5 video and CogVideoX
    latents are shaped as (ComfyUI's Kandinsky 5 node makes the same zeros, but wants a VAE for it)."""
    return {"class_type": "EmptyHunyuanLatentVideo",
            "inputs": {"width": width, "height": height, "length": length, "batch_size": 1}}


# make_models writer -> the family the node's stats name, the latent node and its channels (16 unless given), the
# conditioning's text width (and pooled width), and whether LTXVConditioning sets the frame rate
FAMILIES = {
    "kandinsky5": dict(family="Kandinsky 5", latent=video_latent(), text=3584, pooled=768),
    "ltx2": dict(family="LTX-2", text=128, channels=128, latent={"class_type": "EmptyLTXVLatentVideo", "inputs": {
        "width": 64, "height": 64, "length": 9, "batch_size": 1}}, frame_rate=True),
    "krea2": dict(family="Krea 2", latent=video_latent(length=1), text=160),
    "cogvideox": dict(family="CogVideoX", latent=video_latent(), text=64),
    "joyimage": dict(family="JoyImage", latent=video_latent(length=1), text=4096),
    "lens": dict(family="Lens", channels=128, latent={"class_type": "EmptyFlux2LatentImage", "inputs": {
        "width": 128, "height": 128, "batch_size": 1}}, text=32),
    "wan_scail": dict(family="Wan SCAIL", latent=video_latent(), text=4096),
    "wan_scail2": dict(family="Wan SCAIL", latent=video_latent(), text=4096),
    "wan_animate2": dict(family="Wan-Animate-2", latent=video_latent(), text=4096),
    # T5Gemma's 768-wide states; EmptyLatentAudio's 64 zero channels KSampler widens to Stable Audio 3's 256
    "stable_audio3": dict(family="Stable Audio", text=768, channels=256, latent={
        "class_type": "EmptyLatentAudio", "inputs": {"seconds": 2.0, "batch_size": 1}}),
}
# WanDancer adds its music into the hidden state between blocks: First Block Cache refuses it, PAB serves it
COMPONENT_ONLY = {"wandancer": dict(family="WanDancer", latent=video_latent(), text=4096)}
PAB = {"class_type": "ApplyPyramidAttentionBroadcast", "inputs": {
    "self_attention_interval": 2, "cross_attention_interval": 3, "start_percent": 0.0, "end_percent": 1.0}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, comfy):
    from harness import make_models
    base = tmp_path_factory.mktemp("current-line-base")
    for key in [*FAMILIES, *COMPONENT_ONLY]:
        getattr(make_models, key)(base / "models" / "diffusion_models" / f"tiny_{key}.safetensors")
    srv = comfy_server.ComfyServer(base, extra_node_dirs=(FIXTURE_NODES,))
    srv.start()
    yield srv
    srv.stop()


def graph(key, threshold=1.0, seed=1, with_cache=True):
    spec = FAMILIES.get(key) or COMPONENT_ONLY[key]
    cond = {"tokens": 8, "width": spec["text"], "pooled": spec.get("pooled", 0)}
    g = {
        "1": {"class_type": "UNETLoader",
              "inputs": {"unet_name": f"tiny_{key}.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "ApplyFirstBlockCache", "inputs": {
            "model": ["1", 0], "residual_diff_threshold": threshold, "start_percent": 0.0, "end_percent": 1.0,
            "max_consecutive_skips": -1, "warmup_steps": 0}},
        "3": {"class_type": "CacheKitTestConditioning", "inputs": {"seed": 1, **cond}},
        "4": {"class_type": "CacheKitTestConditioning", "inputs": {"seed": 2, **cond}},
        "5": spec["latent"],
        "6": {"class_type": "KSampler", "inputs": {
            "model": ["2", 0] if with_cache else ["1", 0], "seed": seed, "steps": STEPS, "cfg": 3.0,
            "sampler_name": "euler", "scheduler": "simple", "positive": ["3", 0], "negative": ["4", 0],
            "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": f"current_{key}"}},
    }
    if spec.get("frame_rate"):     # LTX-2's RoPE reads the frame rate from the conditioning, as its template sets it
        g["8"] = {"class_type": "LTXVConditioning", "inputs": {"positive": ["3", 0], "negative": ["4", 0],
                                                               "frame_rate": 25.0}}
        g["6"]["inputs"].update(positive=["8", 0], negative=["8", 1])
    if not with_cache:
        del g["2"]
    return g


def latent_of(server, entry):
    f = entry["outputs"]["7"]["latents"][0]
    return safetensors.torch.load_file(str(server.base / "output" / f["subfolder"] / f["filename"]))["latent_tensor"]


@pytest.mark.parametrize("key", FAMILIES)
def test_first_block_cache_reuses_steps_on_the_loaded_checkpoint(server, key):
    entry = server.run(graph(key, threshold=1.0, seed=11))
    run = server.get("/cachekit/stats")["runs"][-1]
    assert run["node_id"] == "2" and run["status"] == "finished", run
    assert run["family"] == FAMILIES[key]["family"] and run["total_steps"] == STEPS, run
    for stream in ("cond", "uncond"):
        s = run["streams"][stream]    # the steps' indices: each step either computed or reused, none both
        assert s["reused_steps"] and sorted(s["computed_steps"] + s["reused_steps"]) == list(range(STEPS)), s
        assert s["steps_seen"] == STEPS, s
    assert run["block_evals"] < run["block_evals_full"]
    latent = latent_of(server, entry)
    assert latent.shape[1] == FAMILIES[key].get("channels", 16) and latent.isfinite().all()


@pytest.mark.parametrize("key", FAMILIES)
def test_threshold_zero_is_the_uncached_output(server, key):
    plain = latent_of(server, server.run(graph(key, seed=21, with_cache=False)))
    exact = latent_of(server, server.run(graph(key, threshold=0.0, seed=21)))
    assert plain.isfinite().all() and plain.std() > 0 and (plain == exact).all()   # a real output, matched bit for bit


def with_pab(g, interval=2):
    g["2"] = {"class_type": PAB["class_type"], "inputs": {**PAB["inputs"], "model": ["1", 0],
                                                          "self_attention_interval": interval,
                                                          "cross_attention_interval": interval}}
    return g


def test_wandancer_first_block_cache_is_refused_with_the_reason(server):
    with pytest.raises(RuntimeError) as failed:
        server.run(graph("wandancer", seed=31))
    assert "Apply First Block Cache: WanDancer adds its music features into the hidden state" in str(failed.value)
    assert "Apply Pyramid Attention Broadcast" in str(failed.value)     # the methods that can serve it


def test_wandancer_pab_reuses_attention_on_the_loaded_checkpoint(server):
    entry = server.run(with_pab(graph("wandancer", seed=32)))
    run = server.get("/cachekit/stats")["runs"][-1]
    assert run["node_id"] == "2" and run["status"] == "finished" and run["family"] == "WanDancer", run
    for stream in ("cond", "uncond"):
        s = run["streams"][stream]
        assert s["components_reused"] > 0 and s["steps_seen"] == STEPS, s
        assert sorted(s["computed_steps"] + s["reused_steps"]) == list(range(STEPS)), s
    assert latent_of(server, entry).isfinite().all()


def test_wandancer_pab_interval_one_is_the_uncached_output(server):
    plain = latent_of(server, server.run(graph("wandancer", seed=33, with_cache=False)))
    exact = latent_of(server, server.run(with_pab(graph("wandancer", seed=33), interval=1)))
    assert plain.isfinite().all() and (plain == exact).all()
