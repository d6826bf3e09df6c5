"""End to end through the real ComfyUI server: the pack loads from custom_nodes, the node is listed,
an API workflow with it runs, its stats show reused steps, bad input is refused with HTTP 400."""
import pytest
import safetensors.torch

from harness.comfy_runtime import REPO

from harness import comfy_server

pytestmark = [pytest.mark.server, pytest.mark.every_runtime]   # the real server: make test runs it on each ComfyUI line
FIXTURE_NODES = REPO / "tests" / "fixtures" / "cachekit_test_nodes"


def wan_graph(threshold=1.0, seed=1, with_cache=True):
    g = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_wan.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "ApplyFirstBlockCache", "inputs": {
            "model": ["1", 0], "residual_diff_threshold": threshold, "start_percent": 0.0, "end_percent": 1.0,
            "max_consecutive_skips": -1, "warmup_steps": 0}},
        "3": {"class_type": "CacheKitTestConditioning", "inputs": {"seed": 1, "tokens": 8, "width": 4096}},
        "4": {"class_type": "CacheKitTestConditioning", "inputs": {"seed": 2, "tokens": 8, "width": 4096}},
        "5": {"class_type": "EmptyHunyuanLatentVideo",
              "inputs": {"width": 64, "height": 64, "length": 1, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {
            "model": ["2", 0], "seed": seed, "steps": 10, "cfg": 3.0, "sampler_name": "euler",
            "scheduler": "simple", "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["5", 0],
            "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "e2e"}},
    }
    if not with_cache:
        g["6"]["inputs"]["model"] = ["1", 0]
        del g["2"]
    return g


@pytest.fixture(scope="module")
def server(tmp_path_factory, comfy):
    from harness import make_models
    base = tmp_path_factory.mktemp("comfy-base")
    make_models.wan(base / "models" / "diffusion_models" / "tiny_wan.safetensors", dim=128, layers=2)
    srv = comfy_server.ComfyServer(base, extra_node_dirs=(FIXTURE_NODES,))
    srv.start()
    yield srv
    srv.stop()
    assert srv.proc is None


def test_node_listed_with_inputs(server):
    info = server.get("/object_info/ApplyFirstBlockCache")["ApplyFirstBlockCache"]
    assert info["display_name"] == "Apply First Block Cache" and info["category"] == "CacheKit"
    req = info["input"]["required"]
    # a short label on the widget; the input name saved workflows use stays
    assert req["residual_diff_threshold"][1]["display_name"] == "threshold"
    assert req["residual_diff_threshold"][1]["tooltip"].startswith("Higher = faster, lower = closer to the uncached")
    assert set(req) == {"model", "residual_diff_threshold", "start_percent", "end_percent",
                        "max_consecutive_skips", "warmup_steps"}
    assert req["residual_diff_threshold"][1]["min"] == 0.0 and req["residual_diff_threshold"][1]["tooltip"]
    assert info["output"] == ["MODEL"]


def test_every_node_of_the_pack_is_listed(server, ck):
    info = server.get("/object_info")
    folders = {}
    for name, display in ck.NODE_DISPLAY_NAME_MAPPINGS.items():
        assert info[name]["display_name"] == display
        folders.setdefault(info[name]["category"], set()).add(name)
    # the node library: the Apply nodes first, then calibrate/tune, files, and the multi-GPU node apart
    assert folders["CacheKit"] == {n for n in ck.NODE_CLASS_MAPPINGS if n.startswith("Apply")}
    assert folders["CacheKit/files"] == {"SaveCacheCalibration", "LoadCacheCalibration"}
    assert folders["CacheKit/advanced"] == {"RaylightCacheKit", "CacheKitOnRayWorkers"}
    assert info["CacheKitOnRayWorkers"]["deprecated"] and not info["RaylightCacheKit"].get("deprecated")
    assert {"CalibrateMagCache", "TuneCacheThreshold", "CompareCacheQuality"} <= folders["CacheKit/calibrate and tune"]
    assert len(folders) == 4
    assert info["CalibrateMagCache"]["output"] == ["MAGCACHE_RATIOS", "LATENT"]
    assert "calibration" in info["ApplyMagCache"]["input"]["optional"]


def test_frontend_and_web_extension_served(server):
    assert b"<html" in server.get("/").lower()
    exts = server.get("/extensions")
    assert any(e.endswith("/cachekit.js") and "CacheKit" in e for e in exts), exts
    js = next(e for e in exts if e.endswith("/cachekit.js"))
    assert b"cachekit.stats" in server.get(js)


def test_workflow_runs_and_reports_reused_steps(server):
    before = len(server.get("/cachekit/stats")["runs"])
    entry = server.run(wan_graph(threshold=1.0, seed=11))
    runs = server.get("/cachekit/stats")["runs"]
    assert len(runs) == before + 1
    run = runs[-1]
    assert run["node_id"] == "2" and run["family"] == "Wan" and run["status"] == "finished"
    assert run["total_steps"] == 10
    for stream in ("cond", "uncond"):
        s = run["streams"][stream]
        assert s["steps_seen"] == 10 and s["reused_steps"], s
    assert run["block_evals"] < run["block_evals_full"]
    files = entry["outputs"]["7"]["latents"]
    latent = safetensors.torch.load_file(str(server.base / "output" / files[0]["subfolder"] / files[0]["filename"]))
    assert latent["latent_tensor"].isfinite().all()
    assert "CacheKit FirstBlockCache [cond]: computed" in server.log()


def test_threshold_zero_over_the_server_is_exact(server):
    def latent_of(entry):
        f = entry["outputs"]["7"]["latents"][0]
        path = server.base / "output" / f["subfolder"] / f["filename"]
        return safetensors.torch.load_file(str(path))["latent_tensor"]
    plain = latent_of(server.run(wan_graph(seed=21, with_cache=False)))
    exact = latent_of(server.run(wan_graph(threshold=0.0, seed=21)))
    assert (plain == exact).all()


@pytest.mark.parametrize("inputs, bad, message", [
    ({"residual_diff_threshold": -0.5}, "residual_diff_threshold", "Value -0.5 smaller than min of 0.0"),
    ({"residual_diff_threshold": 1e30}, "residual_diff_threshold", "Value 1e+30 bigger than max of 1.0"),
    ({"max_consecutive_skips": 500}, "max_consecutive_skips", "Value 500 bigger than max of 100"),
])
def test_bad_widget_value_is_one_error_on_its_input(server, inputs, bad, message):
    """ComfyUI's own queue-time check: one error, on the input that holds the bad value, naming the value."""
    g = wan_graph()
    g["2"]["inputs"].update(inputs)
    status, body = server.post("/prompt", {"prompt": g})
    assert status == 400
    errors = body["node_errors"]["2"]["errors"]
    assert [(e["extra_info"]["input_name"], e["message"]) for e in errors] == [(bad, message)], errors
    assert body["node_errors"]["2"]["class_type"] == "ApplyFirstBlockCache"


def test_missing_calibration_file_says_which_workflow_writes_it(server):
    """A shipped load workflow opened before its calibrate workflow ran: one error, on the file input, naming the
    workflow to run first."""
    g = wan_graph()
    g["8"] = {"class_type": "LoadCacheCalibration", "inputs": {"calibration": "wan21_t2v_1.3B/magcache_00001.json"}}
    g["9"] = {"class_type": "ApplyMagCache", "inputs": {"model": ["1", 0], "threshold": 0.1, "max_skips": 2,
              "retention_ratio": 0.2, "ratios": "auto", "start_percent": 0.0, "end_percent": 1.0,
              "calibration": ["8", 0]}}
    g["6"]["inputs"]["model"] = ["9", 0]
    status, body = server.post("/prompt", {"prompt": g})
    assert status == 400
    errors = body["node_errors"]["8"]["errors"]
    assert [e["extra_info"]["input_name"] for e in errors] == ["calibration"], errors
    assert "the 'Wan 2.1 1.3B - MagCache 1 - calibrate and save' workflow (CacheKit's templates) writes it: " \
        "open and run that one first" in errors[0]["details"], errors


def test_preset_of_another_family_warns_on_the_run(server):
    """MagCache's Flux ratios on a Wan model: it runs (the user chose it), and says so in the run and the log."""
    g = wan_graph(seed=41)
    g["2"] = {"class_type": "ApplyMagCache", "inputs": {"model": ["1", 0], "threshold": 0.1, "max_skips": 2,
              "retention_ratio": 0.2, "ratios": "flux_dev", "start_percent": 0.0, "end_percent": 1.0}}
    server.run(g)
    run = server.get("/cachekit/stats")["runs"][-1]
    assert run["node_class"] == "ApplyMagCache"
    warning = "the preset 'flux_dev' was published for Flux, and this model is Wan"
    assert any(n.startswith(warning) for n in run["notes"]), run["notes"]
    assert f"Apply MagCache: {warning}" in server.log()
    g["2"]["inputs"]["ratios"] = "wan2.1_t2v_1.3B"        # a preset of its own family: no such note
    g["6"]["inputs"]["seed"] = 42
    server.run(g)
    assert not any("was published for" in n for n in server.get("/cachekit/stats")["runs"][-1]["notes"])


@pytest.mark.parametrize("value, message", [
    (1e10, "residual_diff_threshold must be <= 1.0, got 10000000000.0"),
    (float("nan"), "residual_diff_threshold must be finite, got nan"),
])
def test_bad_linked_value_fails_the_run_naming_node_and_value(server, value, message):
    """A value linked from another node skips the queue-time checks; the node function checks it."""
    g = wan_graph(seed=31)
    g["9"] = {"class_type": "PrimitiveFloat", "inputs": {"value": value}}
    g["2"]["inputs"]["residual_diff_threshold"] = ["9", 0]
    with pytest.raises(RuntimeError, match=f"Apply First Block Cache: {message}"):
        server.run(g)


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2s_ancestral", "dpmpp_sde"])
def test_taylorseer_with_multi_call_samplers_over_the_server(server, sampler):
    g = wan_graph(seed=41)
    g["2"] = {"class_type": "ApplyTaylorSeerCache", "inputs": {
        "model": ["1", 0], "cache_interval": 3, "warmup_steps": 2, "max_order": 1, "target": "residual",
        "factors_dtype": "float32", "start_percent": 0.0, "end_percent": 1.0}}
    g["6"]["inputs"]["sampler_name"] = sampler
    server.run(g)
    run = server.get("/cachekit/stats")["runs"][-1]
    assert run["status"] == "finished" and run["node_id"] == "2"
    assert all(s["steps_seen"] == 10 and s["reused_steps"] for s in run["streams"].values()), run


def test_compare_cache_quality_in_a_graph(server):
    """Cached and uncached KSamplers in one graph, Compare Cache Quality on their latents: the report comes
    back as the node's UI text with the PSNR of the two saved latents."""
    import math
    g = wan_graph(threshold=1.0, seed=51)
    g["8"] = dict(g["6"], inputs=dict(g["6"]["inputs"], model=["1", 0]))
    g["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": "e2e_plain"}}
    g["10"] = {"class_type": "CompareCacheQuality", "inputs": {"cached_latent": ["6", 0], "uncached_latent": ["8", 0]}}
    entry = server.run(g)
    (report,) = entry["outputs"]["10"]["text"]

    def latent_of(node):
        f = entry["outputs"][node]["latents"][0]
        path = server.base / "output" / f["subfolder"] / f["filename"]
        return safetensors.torch.load_file(str(path))["latent_tensor"]
    cached, plain = latent_of("7"), latent_of("9")
    mse = float(((cached.double() - plain.double()) ** 2).mean())
    assert mse > 0
    want = 10 * math.log10(float(plain.max() - plain.min()) ** 2 / mse)
    assert report.startswith(f"PSNR {want:.2f} dB, SSIM "), report
    assert f"Compare Cache Quality: {report}" in server.log()


def test_demo_workflow_converts_to_a_prompt_of_known_nodes_and_inputs(server):
    """make demo's workflow (UI format, with positions; the templates: test_example_workflows.py), converted as
    the demo queues it, and the uncached variant it compares against."""
    import json
    import demo
    import make_workflows
    info = server.get("/object_info")
    graph = make_workflows.to_api(json.loads(make_workflows.DEMO.read_text()), info)
    for node_id, node in graph.items():
        spec = info[node["class_type"]]
        declared = set(spec["input"].get("required", {})) | set(spec["input"].get("optional", {}))
        assert set(spec["input"].get("required", {})) <= set(node["inputs"]) <= declared, node_id
    plain = demo.variant(graph, cached=False, seed=3, steps=4, prefix="p")
    assert "ApplyFirstBlockCache" not in {n["class_type"] for n in plain.values()}
    assert demo.node(plain, "KSampler")[1]["inputs"]["model"] == demo.node(graph, "ApplyFirstBlockCache")[1][
        "inputs"]["model"]


def test_second_cache_node_replaces_the_first_and_both_nodes_are_told(server):
    """Apply TeaCache after Apply First Block Cache: the run is TeaCache's alone; the websocket events the
    frontend draws on the nodes name the replacement on both nodes, and the log says it."""
    g = wan_graph(seed=51)
    g["8"] = {"class_type": "ApplyTeaCache", "inputs": {
        "model": ["2", 0], "rel_l1_thresh": 0.5, "coefficients": "custom", "custom_coefficients": "1.0, 0.0",
        "start_percent": 0.0, "end_percent": 1.0}}
    g["6"]["inputs"]["model"] = ["8", 0]
    entry, events = server.run_watching(g, "cachekit.stats")
    by_node = {e["node_id"]: e for e in events}
    assert by_node["8"]["node"] == "Apply TeaCache" and by_node["8"]["method"] == "TeaCache"
    assert by_node["8"]["replaces"] == [{"node": "Apply First Block Cache", "node_id": "2",
                                         "node_class": "ApplyFirstBlockCache"}]
    assert by_node["2"]["replaced_by"] == {"node": "Apply TeaCache", "node_id": "8"}
    # each event names the prompt it ran in and the class of the node it is for: the page shows it there only
    assert {e["prompt_id"] for e in events} == {entry["prompt"][1]}
    assert (by_node["8"]["node_class"], by_node["2"]["node_class"]) == ("ApplyTeaCache", "ApplyFirstBlockCache")
    assert "Apply TeaCache (node 8) replaces Apply First Block Cache (node 2) on this MODEL" in server.log()


def _magcache_decisions(ratios: dict, steps: int, threshold: float, max_skips: int, final_steps: int = 2) -> list[int]:
    """The steps MagCache reuses with these ratios, cond and uncond batched (both must agree), worked out
    with cache_core alone: no model, the rule and the engine's limits only (final_steps: the node's default, which a
    prompt that leaves it out gets)."""
    from cachekit.cache_core import MagCache, ReuseLimits, StepInfo
    policy, limits = MagCache(ratios, threshold, max_skips, 0.0, final_steps), ReuseLimits()
    states = [policy.new_state(label) for label in ratios]
    reused = []
    for i in range(steps):
        step = StepInfo(i, steps, 1.0)
        want = i > 0 and limits.allow(step, 0, policy) and all(policy.wants_reuse(s, None, step) for s in states)
        for s in states:
            policy.commit(s, want, None, None, step)
        reused += [i] if want else []
    return reused


def test_calibrate_save_then_load_apply_in_later_prompts(server, ck):
    """Prompt 1 calibrates MagCache and saves the file; prompt 2 loads it from the dropdown and applies it:
    its decisions are the ones the loaded ratios dictate; prompt 3 runs it at another step count."""
    import json
    g = wan_graph(seed=61)
    cal = {"class_type": "CalibrateMagCache", "inputs": {
        "model": ["1", 0], "seed": 61, "steps": 10, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple",
        "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["5", 0], "denoise": 1.0}}
    first = {k: g[k] for k in ("1", "3", "4", "5")} | {"2": cal, "9": {"class_type": "SaveCacheCalibration", "inputs": {
        "calibration": ["2", 0], "filename_prefix": "e2e/magcache"}}}
    name = server.run(first)["outputs"]["9"]["cachekit_calibration"][0]
    listed = server.get("/object_info/LoadCacheCalibration")["LoadCacheCalibration"]["input"]["required"]
    assert name in listed["calibration"][0]                       # the dropdown lists it
    saved = json.loads((server.base / "models" / "cache_calibrations" / name).read_text())

    for steps in (10, 14):
        g = wan_graph(seed=62 + steps)
        g["8"] = {"class_type": "LoadCacheCalibration", "inputs": {"calibration": name}}
        g["2"] = {"class_type": "ApplyMagCache", "inputs": {
            "model": ["1", 0], "threshold": 0.3, "max_skips": 5, "retention_ratio": 0.0, "ratios": "auto",
            "start_percent": 0.0, "end_percent": 1.0, "calibration": ["8", 0]}}
        g["6"]["inputs"]["steps"] = steps
        server.run(g)
        run = server.get("/cachekit/stats")["runs"][-1]
        assert run["node_id"] == "2" and run["total_steps"] == steps
        expected = _magcache_decisions(saved["ratios"], steps, 0.3, 5)
        assert expected and all(s["reused_steps"] == expected for s in run["streams"].values()), (expected, run)
    assert f"loaded {name}: MagCache ratios for 10 steps on Wan (euler, simple)" in server.log()
    assert "ratios for 10 steps resampled to 14 by nearest index" in server.log()
