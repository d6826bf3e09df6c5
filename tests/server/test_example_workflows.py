"""The example workflows users open (workflows/*.json, the frontend's UI format) against a real ComfyUI
server: every node exists, every widget value fits its input in the frontend's order, every link joins
matching types, the templates browser lists them (each with its thumbnail, made from the file), and the Wan
and HunyuanVideo ones, converted to API format with the model files mapped to tiny ones, run (calibrate ->
save first, then load -> apply and the 'auto' ones, which find those saved calibrations)."""
import json
import urllib.parse

import pytest

from harness.comfy_runtime import CURRENT, REPO, VERSION

from harness import comfy_server
import make_workflows as mw
from make_workflows import FRONTEND_ONLY, to_api, widget_inputs

pytestmark = [pytest.mark.server, pytest.mark.every_runtime]   # the real server: make test runs it on each ComfyUI line
FIXTURE_NODES = REPO / "tests" / "fixtures" / "cachekit_test_nodes"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
INDEX = {e["file"]: e for e in mw.index()}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
STEPS = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory, comfy):
    """A server whose model folders hold every file name the workflows use (empty placeholders, so the
    loaders' dropdowns list them) plus the tiny models the runs map them to."""
    from harness import make_models
    base = tmp_path_factory.mktemp("workflows-base")
    for folder, names in mw.model_files([json.loads(p.read_text()) for p in WORKFLOWS]).items():
        for name in names:
            (base / "models" / folder).mkdir(parents=True, exist_ok=True)
            (base / "models" / folder / name).write_bytes(b"")
    make_models.wan(base / "models" / "diffusion_models" / "tiny_wan10.safetensors", dim=128, layers=10)
    make_models.hunyuan_video(base / "models" / "diffusion_models" / "tiny_hunyuan.safetensors", hidden=128,
                              depth=2, single=2)
    srv = comfy_server.ComfyServer(base, extra_node_dirs=(FIXTURE_NODES,))
    srv.start()
    yield srv
    srv.stop()


def for_tiny_models(prompt: dict) -> dict:
    """The same graph on the tiny models: the diffusion model file mapped to a tiny one of its family,
    text encoders replaced by seeded conditioning (no tiny umt5/llava exists), decoding replaced by
    SaveLatent, a small latent and few steps. 'auto' finds the calibrations saved for the tiny Wan (its
    width has no published preset), so the Wan TeaCache threshold is set instead of -1."""
    out = {}
    for nid, node in prompt.items():
        kind, inputs = node["class_type"], dict(node["inputs"])
        if kind in ("CLIPLoader", "DualCLIPLoader", "VAELoader", "VAEDecode", "VAEDecodeTiled", "SaveAnimatedWEBP",
                    "SaveImage"):
            continue
        if kind == "UNETLoader":
            inputs["unet_name"] = "tiny_hunyuan.safetensors" if "hunyuan" in inputs["unet_name"] else \
                "tiny_wan10.safetensors"
        if kind == "CLIPTextEncode":
            hunyuan = any(n["class_type"] == "FluxGuidance" for n in prompt.values())
            kind, inputs = "CacheKitTestConditioning", {"seed": int(nid), "tokens": 8,
                                                        "width": 768 if hunyuan else 4096,
                                                        "pooled": 768 if hunyuan else 0}
        if kind == "EmptyHunyuanLatentVideo":
            inputs.update(width=64, height=64, length=1)
        if kind == "KSamplerAdvanced":      # the Wan 2.2 experts' split, at the same place in fewer steps
            inputs.update({k: min(inputs[k], inputs["steps"]) * STEPS // inputs["steps"]
                           for k in ("start_at_step", "end_at_step")})
        if "steps" in inputs:
            inputs["steps"] = STEPS
        if kind == "ApplyTeaCache" and inputs.get("rel_l1_thresh") == -1.0 and "hunyuan" not in str(prompt):
            inputs["rel_l1_thresh"] = 0.2   # -1 is the preset's value: the tiny Wan's width has no preset
        out[nid] = {"class_type": kind, "inputs": inputs}
    for nid, node in prompt.items():
        if node["class_type"] in ("VAEDecode", "VAEDecodeTiled"):
            out[f"{nid}0"] = {"class_type": "SaveLatent", "inputs": {"samples": node["inputs"]["samples"],
                                                                      "filename_prefix": "examples"}}
    return out


# --- checks -------------------------------------------------------------------------------------------
def valid_widget(value, spec) -> bool:
    opts = spec[1] if len(spec) > 1 else {}
    kind = opts.get("widgetType", spec[0])       # a multi-type input ("FLOAT,INT") is edited as its widgetType
    if isinstance(kind, list) or kind == "COMBO":
        return value in (kind if isinstance(kind, list) else opts.get("options", []))
    ok = {"INT": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "FLOAT": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "STRING": lambda v: isinstance(v, str), "BOOLEAN": lambda v: isinstance(v, bool)}[kind](value)
    return ok and (kind not in ("INT", "FLOAT") or opts.get("min", value) <= value <= opts.get("max", value))


def test_the_shipped_set_is_there():
    shipped = {(e["family"], e["method"], e["task"]) for e in INDEX.values()}
    for family in ("flux_dev", "wan21_t2v_1.3B"):
        for method in ("first_block_cache", "teacache", "magcache", "taylorseer", "dbcache", "pab", "smoothcache",
                       "fastercache", "seacache", "spectrum"):
            assert (family, method, "apply") in shipped
    for method in ("magcache", "smoothcache", "teacache"):
        assert {("wan21_t2v_1.3B", method, "calibrate"), ("wan21_t2v_1.3B", method, "load")} <= shipped
    assert {("hunyuan_video", "teacache", "apply"), ("qwen_image", "magcache", "apply"),
            ("ltxv", "teacache", "apply"), ("wan21_t2v_1.3B", "first_block_cache", "compare")} <= shipped
    for family in ("wan22_t2v_14B", "flux2_klein_4b", "z_image_turbo", "ltx2"):    # ComfyUI 0.33.0's new lines
        assert (family, "first_block_cache", "apply") in shipped
    assert sorted(INDEX) == [p.name for p in WORKFLOWS]      # the index lists every file, and no other
    assert mw.DEMO.is_file()


def test_the_index_orders_start_here_first_then_by_family_and_task():
    entries = mw.index()
    assert entries[0]["title"].startswith("Start here") and entries[0]["method"] == "first_block_cache"
    families = [e["family"] for e in entries[1:]]
    assert families == sorted(families, key=list(mw.FAMILY_NAMES).index)       # grouped by family
    for family in set(families):
        tasks = [mw.GROUPS[e["task"]] for e in entries[1:] if e["family"] == family]
        assert tasks == sorted(tasks)                                          # apply, calibrate/load, compare
    for e in entries:
        assert e["file"] == f"{e['title']}.json" and e["description"] and "\n" not in e["description"]
        calibrate = [x for x in entries if (x["family"], x["method"], x["task"]) == (e["family"], e["method"],
                                                                                    "calibrate")]
        if e["task"] == "load":      # step 2 right after its step 1
            assert entries.index(calibrate[0]) == entries.index(e) - 1


@pytest.mark.parametrize("path", [*WORKFLOWS, mw.DEMO], ids=lambda p: p.stem)
def test_nodes_have_places_of_their_own(path):
    """Every node has a position and no two overlap (title bar included), so Nodes 2.0 and the classic canvas
    draw the graph as laid out."""
    nodes = json.loads(path.read_text())["nodes"]
    boxes = [(n["pos"][0], n["pos"][1] - 30, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1]) for n in nodes]
    assert all(b[2] > b[0] and b[3] > b[1] + 30 for b in boxes)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (path.name, a, b)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_thumbnail_is_made_from_the_file(server, path):
    """The card picture is the build's drawing of this very file (make_workflows.py), not a stale one."""
    from PIL import Image, ImageChops, ImageStat
    shipped = Image.open(path.with_suffix(".jpg")).convert("RGB")
    assert shipped.size == (512, 512)
    drawn = mw.thumbnail(json.loads(path.read_text()), path.stem, mw.node_looks(server.get("/object_info")),
                         INDEX[path.name]["description"])
    diff = ImageStat.Stat(ImageChops.difference(shipped, drawn)).mean
    assert max(diff) < 2.0, diff           # JPEG's loss only


@pytest.fixture(scope="module")
def calibrated(server):
    """The calibrate -> save workflows run first: the load and 'auto' workflows need their files."""
    info = server.get("/object_info")
    saved = {}
    for path in WORKFLOWS:
        if INDEX[path.name]["task"] == "calibrate":
            entry = server.run(for_tiny_models(to_api(json.loads(path.read_text()), info)))
            saved[path.stem] = [o["cachekit_calibration"][0] for o in entry["outputs"].values()
                                if "cachekit_calibration" in o]
    return saved


def test_calibrate_workflows_save_where_the_load_workflows_look(calibrated):
    assert sorted(name for names in calibrated.values() for name in names) == [
        "wan21_t2v_1.3B/lemica_00001.json", "wan21_t2v_1.3B/magcache_00001.json",
        "wan21_t2v_1.3B/smoothcache_00001.json", "wan21_t2v_1.3B/teacache_00001.json"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_matches_the_real_nodes(server, calibrated, path):
    wf = json.loads(path.read_text())
    info = server.get("/object_info")          # after the calibrations: their files are in the dropdown
    assert wf["version"] == 0.4 and wf["last_node_id"] == max(n["id"] for n in wf["nodes"])
    assert any(n["type"] == "Note" and n["widgets_values"][0].strip() for n in wf["nodes"])
    assert any(info.get(n["type"], {}).get("category", "").startswith("CacheKit") for n in wf["nodes"])
    nodes = {n["id"]: n for n in wf["nodes"]}
    unknown = {n["type"] for n in wf["nodes"] if n["type"] not in info and n["type"] not in FRONTEND_ONLY}
    if unknown and VERSION != CURRENT:
        # made on the current line: only a model the older line lacks (LTX-2) may use nodes it does not have
        assert INDEX[path.name]["family"] in mw.CURRENT_LINE_ONLY, f"{path.name}: unknown nodes {sorted(unknown)}"
        return
    for node in wf["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        assert node["type"] in info, f"{path.name}: unknown node {node['type']}"
        values = list(node["widgets_values"])
        for name, spec in widget_inputs(info, node["type"]):
            assert values, f"{path.name} {node['type']}: no value for {name}"
            value = values.pop(0)
            assert valid_widget(value, spec), f"{path.name} {node['type']}.{name} = {value!r} does not fit {spec}"
            if (spec[1] if len(spec) > 1 else {}).get("control_after_generate"):
                assert values.pop(0) in CONTROL_VALUES
        assert values == [], f"{path.name} {node['type']}: extra widget values {values}"
        required = info[node["type"]]["input"].get("required", {})
        linked = {s["name"] for s in node["inputs"] if s["link"] is not None}
        sockets = {n for n, s in required.items() if not valid_widget_kind(s)}
        assert sockets <= linked, f"{path.name} {node['type']}: unconnected {sockets - linked}"
    from comfy_execution.validation import validate_node_input
    for link_id, src, slot, dst, dslot, ltype in wf["links"]:
        out_type = info[nodes[src]["type"]]["output"][slot]
        sock = nodes[dst]["inputs"][dslot]
        assert sock["link"] == link_id and link_id in nodes[src]["outputs"][slot]["links"] and ltype == out_type
        in_type = info[nodes[dst]["type"]]["input"].get("required", {}).get(sock["name"]) or \
            info[nodes[dst]["type"]]["input"]["optional"][sock["name"]]
        assert validate_node_input(out_type, in_type[0]), f"{path.name}: {out_type} -> {sock['name']} {in_type[0]}"


def valid_widget_kind(spec) -> bool:
    kind = (spec[1] if len(spec) > 1 else {}).get("widgetType", spec[0])
    return isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def test_templates_browser_lists_every_workflow(server):
    listed = server.get("/workflow_templates")["CacheKit"]
    assert sorted(listed) == sorted(p.stem for p in WORKFLOWS)
    for path in WORKFLOWS[:3]:      # by the URLs the browser asks (names with spaces and dots)
        served = server.get(f"/api/workflow_templates/CacheKit/{urllib.parse.quote(path.name)}")
        served = served if isinstance(served, dict) else json.loads(served)
        assert served == json.loads(path.read_text())
        picture = server.get(f"/api/workflow_templates/CacheKit/{urllib.parse.quote(path.stem)}.jpg")
        assert picture == path.with_suffix(".jpg").read_bytes()


RUNNABLE = [p for p in WORKFLOWS if INDEX[p.name]["family"] in ("wan21_t2v_1.3B", "wan22_t2v_14B", "hunyuan_video")
            and INDEX[p.name]["task"] != "calibrate"]


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.stem)
def test_wan_and_hunyuan_workflows_run_on_tiny_models(server, calibrated, path):
    info = server.get("/object_info")
    prompt = for_tiny_models(to_api(json.loads(path.read_text()), info))
    entry = server.run(prompt)
    cache_ids = {nid for nid, n in prompt.items() if n["class_type"].startswith("Apply")}
    # the last run of each cache node (Wan 2.2: one per expert, each over its part of the steps)
    runs = server.get("/cachekit/stats")["runs"][-len(cache_ids):]
    assert {r["node_id"] for r in runs} == cache_ids and all(r["status"] == "finished" for r in runs)
    assert sum(r["total_steps"] for r in runs) == STEPS
    for nid in (nid for nid, n in prompt.items() if n["class_type"] == "CompareCacheQuality"):
        (report,) = entry["outputs"][nid]["text"]
        assert report.startswith("PSNR ") and "SSIM" in report, report
