"""Quantized models through the real ComfyUI server, as users run them: GGUF files (Q8_0, and the K-quant Q4_K) in
the server's diffusion_models folder, loaded by ComfyUI-GGUF's own Unet Loader (GGUF), with CacheKit and ComfyUI-GGUF
both installed as custom node packs. The files are the tiny Wan 2.1 and HunyuanVideo checkpoints the other server
tests load, and on the current line a tiny Flux (harness/make_models.py: shapes ComfyUI's own detector recognises),
written as GGUF by harness/quantized_models.py, so nothing answers the detector here. UnetLoaderGGUF -> a CacheKit
Apply node -> KSampler on seeded conditioning (the test node) and an empty latent: at its off setting a method is the
uncached output bit for bit; on, its run stats show reuse and its output differs but stays finite."""
import pytest
import safetensors.torch

from harness.comfy_runtime import REPO

from harness import comfy_runtime, comfy_server
from harness import quantized_models as qm

pytestmark = [pytest.mark.server, pytest.mark.every_runtime]   # the real server: make test runs it on each ComfyUI line
FIXTURE_NODES = REPO / "tests" / "fixtures" / "cachekit_test_nodes"
STEPS = 6
SEED = 7

# the model -> how make_models writes it, the file's general.architecture (ComfyUI-GGUF's list), the family the stats
# name, the conditioning's text width and pooled width (umt5-xxl's 4096; HunyuanVideo's CLIP-L 768, pooled too; Flux's
# T5 4096 and CLIP-L pooled) and its empty latent's node
_VIDEO, _IMAGE = "EmptyHunyuanLatentVideo", "EmptySD3LatentImage"
MODELS = {
    "wan": dict(write=lambda m, p: m.wan(p, dim=128, layers=2), arch="wan", family="Wan", text=4096, pooled=0,
                latent=_VIDEO),
    "hunyuan": dict(write=lambda m, p: m.hunyuan_video(p, hidden=128, depth=2, single=2), arch="hyvid",
                    family="HunyuanVideo", text=768, pooled=768, latent=_VIDEO),
}
# 0.3.75's detector sizes any Flux file as 24 heads of 128 (3072 wide); the current line's reads the heads from the
# width, so a tiny Flux file loads there only
if comfy_runtime.VERSION != comfy_runtime.OLDEST:
    MODELS["flux"] = dict(write=lambda m, p: m.flux(p, hidden=256, depth=1, single=2), arch="flux", family="Flux",
                          text=4096, pooled=768, latent=_IMAGE)
FILES = [(model, qtype) for model in MODELS for qtype in qm.GGUF_TYPES]
_WHOLE = {"start_percent": 0.0, "end_percent": 1.0}
_FBC = dict(max_consecutive_skips=-1, warmup_steps=0, **_WHOLE)
# method -> its node, its off setting and a setting that reuses: First Block Cache (whole steps) and Pyramid Attention
# Broadcast (a component method: attention outputs)
METHODS = {
    "fbc": ("ApplyFirstBlockCache", dict(residual_diff_threshold=0.0, **_FBC),
            dict(residual_diff_threshold=1.0, **_FBC)),
    "pab": ("ApplyPyramidAttentionBroadcast", dict(self_attention_interval=1, cross_attention_interval=1, **_WHOLE),
            dict(self_attention_interval=2, cross_attention_interval=3, **_WHOLE)),
}


def gguf_name(model, qtype):
    return f"tiny_{model}_{qtype}.gguf"


def checkpoint_name(model):
    return f"tiny_{model}.safetensors"


@pytest.fixture(scope="module")
def written(tmp_path_factory, comfy):
    """The server's base folder with each model's float32 checkpoint and its two GGUF files in its diffusion_models
    folder, and {file: {GGML type: tensor count}} as each GGUF file was written."""
    from harness import make_models
    base = tmp_path_factory.mktemp("gguf-base")
    folder = base / "models" / "diffusion_models"
    counts = {}
    for model, spec in MODELS.items():
        state_dict = safetensors.torch.load_file(str(spec["write"](make_models, folder / checkpoint_name(model))))
        for qtype in qm.GGUF_TYPES:
            counts[model, qtype] = qm.write_gguf(state_dict, folder / gguf_name(model, qtype), spec["arch"], qtype)
    return base, counts


@pytest.fixture(scope="module")
def server(written):
    """A server with CacheKit and ComfyUI-GGUF installed as custom node packs."""
    srv = comfy_server.ComfyServer(written[0], extra_node_dirs=(FIXTURE_NODES, qm.GGUF_PACK))
    srv.start()
    yield srv
    srv.stop()


def graph(model, qtype, method=None, setting="off", seed=SEED):
    """Unet Loader (GGUF) -> [the method's Apply node] -> KSampler -> SaveLatent; qtype None: the float32 checkpoint
    through ComfyUI's Load Diffusion Model instead."""
    spec = MODELS[model]
    cond = {"tokens": 8, "width": spec["text"], "pooled": spec["pooled"]}
    loader = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": gguf_name(model, qtype)}} if qtype else \
        {"class_type": "UNETLoader", "inputs": {"unet_name": checkpoint_name(model), "weight_dtype": "default"}}
    g = {
        "1": loader,
        "3": {"class_type": "CacheKitTestConditioning", "inputs": {"seed": 1, **cond}},
        "4": {"class_type": "CacheKitTestConditioning", "inputs": {"seed": 2, **cond}},
        "5": {"class_type": spec["latent"], "inputs": {"width": 64, "height": 64, "batch_size": 1,
                                                       **({"length": 1} if spec["latent"] == _VIDEO else {})}},
        "6": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": seed, "steps": STEPS, "cfg": 3.0, "sampler_name": "euler",
            "scheduler": "simple", "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["5", 0],
            "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0],
                                                     "filename_prefix": f"gguf_{model}_{qtype or 'f32'}"}},
    }
    if method:
        node, off, on = METHODS[method]
        g["2"] = {"class_type": node, "inputs": {"model": ["1", 0], **(off if setting == "off" else on)}}
        g["6"]["inputs"]["model"] = ["2", 0]
    return g


def latent_of(server, entry):
    f = entry["outputs"]["7"]["latents"][0]
    return safetensors.torch.load_file(str(server.base / "output" / f["subfolder"] / f["filename"]))["latent_tensor"]


def run_method(server, model, qtype, method, setting):
    """The method's prompt on this file: its latent and the one CacheKit run it made (the stats name its prompt)."""
    entry = server.run(graph(model, qtype, method, setting))
    (run,) = [r for r in server.get("/cachekit/stats")["runs"] if r["prompt_id"] == entry["prompt"][1]]
    assert run["node_id"] == "2" and run["node_class"] == METHODS[method][0] and run["status"] == "finished", run
    assert run["family"] == MODELS[model]["family"] and run["total_steps"] == STEPS, run
    return latent_of(server, entry), run


@pytest.fixture(scope="module")
def uncached(server):
    """Each file's uncached latent at SEED (qtype None: the float32 checkpoint's), run once (a second identical
    prompt would be ComfyUI's cached result)."""
    done = {}

    def get(model, qtype):
        if (model, qtype) not in done:
            done[model, qtype] = latent_of(server, server.run(graph(model, qtype)))
        return done[model, qtype]
    return get


def test_both_packs_listed_and_the_files_offered(server, ck):
    info = server.get("/object_info")
    assert info["UnetLoaderGGUF"]["display_name"] == "Unet Loader (GGUF)"
    assert sorted(info["UnetLoaderGGUF"]["input"]["required"]["unet_name"][0]) == \
        sorted(gguf_name(m, q) for m, q in FILES)
    for name, display in ck.NODE_DISPLAY_NAME_MAPPINGS.items():
        assert info[name]["display_name"] == display


@pytest.mark.parametrize("model", MODELS)
def test_each_gguf_file_runs_its_checkpoint_quantized(server, uncached, model):
    """The same model as the float32 checkpoint, its weights quantized: near it, and nearer in Q8_0 than in Q4_K."""
    full = uncached(model, None)
    error = {q: float((uncached(model, q) - full).norm() / full.norm()) for q in qm.GGUF_TYPES}
    assert 0 < error["Q8_0"] < error["Q4_K"] < 0.1, error


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model, qtype", FILES)
def test_off_is_the_uncached_output_of_the_gguf_model(server, written, uncached, model, qtype, method):
    plain = uncached(model, qtype)
    # ComfyUI-GGUF loaded the file's quantized tensors as written (its log line counts them by GGML type)
    counts = written[1][model, qtype]
    assert qtype in counts and "gguf qtypes: " + ", ".join(f"{k} ({v})" for k, v in counts.items()) in server.log()
    exact, run = run_method(server, model, qtype, method, "off")
    assert all(not s["reused_steps"] and not s["components_reused"] for s in run["streams"].values()), run
    assert plain.isfinite().all() and plain.std() > 0 and (plain == exact).all()   # a real output, matched bit for bit


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model, qtype", FILES)
def test_on_reuses_and_changes_the_gguf_output(server, uncached, model, qtype, method):
    plain = uncached(model, qtype)
    cached, run = run_method(server, model, qtype, method, "on")
    for stream in ("cond", "uncond"):
        s = run["streams"][stream]    # the steps' indices: each step either computed or reused, none both
        assert s["steps_seen"] == STEPS and sorted(s["computed_steps"] + s["reused_steps"]) == list(range(STEPS)), s
        assert s["reused_steps"] and 0 in s["computed_steps"], s
        if method == "pab":           # attention outputs reused inside the steps that ran the blocks
            assert s["components_reused"] > 0, s
    if method == "fbc":               # whole steps reused: the blocks after the first skipped
        assert run["block_evals"] < run["block_evals_full"], run
    assert cached.shape == plain.shape and cached.isfinite().all() and not (cached == plain).all()
