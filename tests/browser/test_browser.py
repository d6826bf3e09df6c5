"""The frontend extension (web/cachekit.js) in a real browser: Debian's Chromium driven by Playwright against
the real ComfyUI server with the pack and a tiny Wan model. The page loads without CacheKit errors, the nodes
are in the search (First Block Cache first for "cache"), a shipped workflow loads by file with every node
resolved and its widgets' short labels whole, a queued workflow runs and the cache node shows what the server
reported (GET /cachekit/stats) once, with a legend, in the classic renderer and in Nodes 2.0, the timeline follows
its setting and survives a reload, a calibration chart renders with its axes and legend, Save Cache Calibration
shows the file it wrote, every shipped workflow queues the prompt the server tests run, the template browser lists
the templates in order with their pictures. Screenshots go to output/browser/. The browser is installed by
scripts/setup_runtime.sh; without it this test fails."""
import json
from pathlib import Path

import pytest

from harness.comfy_runtime import REPO
from harness import comfy_server
import make_workflows as mw

pytestmark = pytest.mark.server
SHOTS = REPO / "output" / "browser"
FIXTURE_NODES = REPO / "tests" / "fixtures" / "cachekit_test_nodes"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SHIPPED = mw.find("wan21_t2v_1.3B", "first_block_cache")     # the "start here" template
WORKFLOWS = sorted(mw.OUT.glob("*.json"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, comfy):
    from harness import make_models
    base = tmp_path_factory.mktemp("browser-base")
    # the shipped workflows' files, as empty placeholders (listed only)
    for folder, names in mw.model_files([json.loads(p.read_text()) for p in WORKFLOWS]).items():
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (base / "models" / folder / name).write_bytes(b"")
    make_models.wan(base / "models" / "diffusion_models" / "tiny_wan.safetensors", dim=128, layers=6)
    srv = comfy_server.ComfyServer(base, extra_node_dirs=(FIXTURE_NODES,))
    srv.start()
    yield srv
    srv.stop()


def tiny_workflow(info: dict, seed: int, replaced: bool = False) -> dict:
    """Load the tiny Wan -> Apply First Block Cache -> KSampler (cfg 3: cond and uncond) -> SaveLatent, and a
    Calibrate MagCache on the same model whose calibration is saved (its node shows the chart). `replaced`: an
    Apply TeaCache after the First Block Cache (which it replaces), with the Flux coefficients (on this Wan)."""
    import make_workflows as mw
    wf = mw.Workflow(info)
    unet = wf.add("UNETLoader", unet_name="tiny_wan.safetensors", weight_dtype="default")
    pos = wf.add("CacheKitTestConditioning", seed=1, tokens=8, width=4096)
    neg = wf.add("CacheKitTestConditioning", seed=2, tokens=8, width=4096)
    lat = wf.add("EmptyHunyuanLatentVideo", width=64, height=64, length=1, batch_size=1)
    fbc = wf.add("ApplyFirstBlockCache", model=unet[0], residual_diff_threshold=0.3, max_consecutive_skips=2)
    if replaced:
        fbc = wf.add("ApplyTeaCache", model=fbc[0], rel_l1_thresh=0.3, coefficients="flux")
    ks = wf.add("KSampler", model=fbc[0], positive=pos[0], negative=neg[0], latent_image=lat[0], seed=seed, steps=8,
                cfg=3.0, sampler_name="euler", scheduler="simple", denoise=1.0)
    wf.add("SaveLatent", samples=ks[0], filename_prefix="browser")
    cal = wf.add("CalibrateMagCache", model=unet[0], positive=pos[0], negative=neg[0], latent_image=lat[0], seed=seed,
                 steps=8, cfg=3.0, sampler_name="euler", scheduler="simple", denoise=1.0)
    wf.add("SaveCacheCalibration", calibration=cal[0], filename_prefix="browser/magcache")
    out = wf.to_json()
    for node in out["nodes"]:     # the frontend gives every INT named seed a control widget after it
        if node["type"] == "CacheKitTestConditioning":
            node["widgets_values"].insert(1, "fixed")
        if node["type"] in ("CalibrateMagCache", "SaveCacheCalibration"):   # room for the cache node to grow
            node["pos"][1] += 260
    return out


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).is_file(), "Debian's chromium is missing: run scripts/setup_runtime.sh (make setup)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


class Page:
    """One browser tab on the server, with the console errors it logged."""

    def __init__(self, browser, server, vue: bool):
        import urllib.request
        # the renderer, as the settings dialog stores it; no first-run template (it has missing models)
        settings = {"Comfy.VueNodes.Enabled": vue, "Comfy.TutorialCompleted": True}
        req = urllib.request.Request(f"{server.url}/settings", data=json.dumps(settings).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        self.context = browser.new_context(viewport={"width": 1600, "height": 1000})   # its own storage
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.url = server.url
        self.open()

    def open(self):
        self.page.goto(self.url)
        self.page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=60_000)

    def js(self, code, arg=None):
        return self.page.evaluate(code, arg)

    def load_file(self, path: Path):
        self.page.set_input_files("#comfy-file-input", str(path))
        name = json.loads(path.read_text())["nodes"][-1]["type"]
        self.page.wait_for_function("(t) => window.app.graph._nodes.some(n => n.type === t)", arg=name,
                                    timeout=30_000)

    def search(self, text: str) -> list[str]:
        """The names the node library's search lists for `text` (the sidebar opened and closed again)."""
        self.page.get_by_text("Nodes", exact=True).first.click()
        box = self.page.locator("input[placeholder*='Search']").first
        box.fill(text)
        self.page.wait_for_timeout(1_000)
        found = self.js("""() => [...document.querySelectorAll('.p-tree-node-label, [class*=tree] *')]
            .filter(e => e.childElementCount === 0 && e.offsetParent).map(e => e.textContent.trim())""")
        self.page.get_by_text("Nodes", exact=True).first.click()
        return found

    def canvas_search(self, text: str) -> list[str]:
        """The node names the canvas search (a double click on the canvas opens it) lists for `text`, best first."""
        self.js("() => window.app.extensionManager.command.execute('Workspace.SearchBox.Toggle')")
        self.page.wait_for_timeout(700)
        self.page.keyboard.type(text)
        self.page.wait_for_function("() => document.querySelectorAll('[role=option]').length > 0", timeout=10_000)
        self.page.wait_for_timeout(700)
        found = self.js("() => [...document.querySelectorAll('[role=option]')].map(e => e.innerText.split('\\n')[0])")
        self.page.keyboard.press("Escape")
        self.page.wait_for_timeout(500)
        return found

    def shot(self, name, around=None):
        """A screenshot in output/browser/; `around`: a node id to center on and crop to (the docs' pictures)."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        if around is None:
            return self.page.screenshot(path=str(SHOTS / f"{name}.png"))
        self.js("(id) => { const c = window.app.canvas; c.ds.scale = 1.1;"
                " c.centerOnNode(c.graph.getNodeById(Number(id))); c.setDirty(true, true); }", around)
        self.page.wait_for_timeout(500)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), clip={"x": 380, "y": 120, "width": 880, "height": 760})


def node_id(page, kind):
    return page.js("(t) => window.app.graph._nodes.find(n => n.type === t).id", kind)


def panel_text(page, nid):
    return page.js("""(id) => {
        const el = document.querySelector(`.cachekit-panel[data-node-id="${id}"] .cachekit-summary`);
        return el ? el.textContent : null; }""", nid)


def timeline(page, nid):
    return page.js("""(id) => Object.fromEntries([...document.querySelectorAll(
        `.cachekit-panel[data-node-id="${id}"] .cachekit-row`)].map(r => [r.dataset.stream,
        [...r.querySelectorAll('.cachekit-cell')].map(c => c.dataset.state).join('')]))""", nid)


def run_and_wait(page, server, nid):
    before = len(server.get("/cachekit/stats")["runs"])
    page.js("() => window.app.queuePrompt(0)")
    page.page.wait_for_function("""([id, n]) => {
        const el = document.querySelector(`.cachekit-panel[data-node-id="${id}"]`);
        return el && el.dataset.run && Number(el.dataset.run) > n; }""", arg=[nid, before], timeout=120_000)
    return [r for r in server.get("/cachekit/stats")["runs"] if str(r["node_id"]) == str(nid)][-1]


def notes(page, nid):
    return page.js("""(id) => [...document.querySelectorAll(
        `.cachekit-panel[data-node-id="${id}"] .cachekit-note`)].map(n => n.textContent)""", nid)


def check_shown(page, nid, run):
    assert panel_text(page, nid) == run["summary"]
    assert notes(page, nid) == run["notes"] and run["notes"]      # 8 steps: the few-step warning, on the node
    assert timeline(page, nid) == {s["label"]: s["timeline"] for s in run["streams"].values()}
    assert run["streams"]["cond"]["reused_steps"] and "R" in run["streams"]["cond"]["timeline"]
    # the legend names the colours the timeline uses, and only those
    shown = set("".join(s["timeline"] for s in run["streams"].values())) - {"-"}
    assert page.js("""(id) => [...document.querySelectorAll(
        `.cachekit-panel[data-node-id="${id}"] .cachekit-legend span`)]
        .map(s => s.dataset.state + ':' + s.textContent)""",
        nid) == [f"{c}:{name}" for c, name in (("C", "computed"), ("R", "reused"), ("E", "estimated")) if c in shown]
    # one summary: the server leaves ComfyUI's progress text (the same summary again) out for this page
    assert not page.js("(id) => window.app.graph.getNodeById(Number(id)).widgets.some("
                       "w => w.name === '$$node-text-preview')", nid)


def check_labels(page, vue: bool):
    """The First Block Cache node's widgets show their short labels (display_name), whole."""
    nid = node_id(page, "ApplyFirstBlockCache")
    labels = page.js("""(id) => Object.fromEntries(window.app.graph.getNodeById(Number(id)).widgets
        .filter(w => w.name !== 'cachekit_panel').map(w => [w.name, w.label ?? w.name]))""", nid)
    assert labels["residual_diff_threshold"] == "threshold"
    assert labels["max_consecutive_skips"] == "max skips in a row"
    if vue:        # drawn as DOM: each label's text fits its box (no ellipsis)
        cut = page.js("""(labels) => [...document.querySelectorAll('[data-node-id] *')]
            .filter(e => e.childElementCount === 0 && labels.includes(e.textContent.trim()))
            .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)""",
                      ["threshold", "max skips in a row", "start_percent", "end_percent", "warmup_steps"])
        assert cut == [], cut


@pytest.mark.parametrize("vue", [False, True], ids=["classic", "nodes2"])
def test_the_node_shows_the_run_the_server_reported(server, browser, tmp_path, vue):
    page = Page(browser, server, vue)
    try:
        assert page.js("() => window.app.extensionManager.setting.get('Comfy.VueNodes.Enabled')") is vue
        # the nodes are registered and found by the search
        assert page.js("() => ['ApplyFirstBlockCache', 'ApplySeaCache', 'ApplySpectrumCache', 'TuneCacheThreshold']"
                       ".every(t => window.LiteGraph.registered_node_types[t])")
        found = page.search("Cache")
        assert {"Apply SeaCache", "Apply Spectrum Cache", "Tune Cache Threshold",
                "Apply First Block Cache"} <= set(found)
        # the canvas search ranks node ids that start with the text first (the Ray node's old id did), then by
        # ComfyUI's popularity table: for "cache" CacheKit's first is an Apply node, never the raylight one
        ours = {n["display_name"] for n in server.get("/object_info").values() if n["category"].startswith("CacheKit")}
        ranked = [n for n in page.canvas_search("cache") if n in ours]
        assert ranked[0].startswith("Apply ") and "Raylight: CacheKit on Ray Workers" not in ranked[:8], ranked
        assert page.canvas_search("first block")[0] == "Apply First Block Cache"
        # a shipped workflow loads by file: every node resolved, no missing-node dialog
        page.load_file(SHIPPED)
        assert page.js("() => window.app.graph._nodes.every(n => n.type === 'Note' || n.type === 'MarkdownNote' ||"
                       " window.LiteGraph.registered_node_types[n.type])")
        assert page.page.locator("text=/missing/i").count() == 0
        check_labels(page, vue)
        page.js("() => window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
        page.page.wait_for_timeout(500)
        page.shot(f"loaded_{'nodes2' if vue else 'classic'}")
        # the tiny workflow, loaded by file too, runs; the cache node shows what the server reported
        wf = tmp_path / "tiny.json"
        # its own seed per renderer: ComfyUI would not run a prompt it ran already
        wf.write_text(json.dumps(tiny_workflow(server.get("/object_info"), seed=10 + vue)))
        page.load_file(wf)
        nid = node_id(page, "ApplyFirstBlockCache")
        run = run_and_wait(page, server, nid)
        check_shown(page, nid, run)
        assert run["wall_s"] > 0 and run["summary"].endswith(" s")
        # the calibration chart (one line per stream)
        cal = node_id(page, "CalibrateMagCache")
        page.page.wait_for_function("""(id) => document.querySelectorAll(
            `.cachekit-panel[data-node-id="${id}"] svg polyline`).length >= 2""", arg=cal, timeout=30_000)
        chart = page.js("""(id) => { const p = document.querySelector(`.cachekit-panel[data-node-id="${id}"]`);
            return {x: p.querySelector('.cachekit-axis-x').textContent,
                    y: p.querySelector('.cachekit-axis-y').textContent,
                    legend: [...p.querySelectorAll('.cachekit-legend span')].map(s => s.textContent),
                    lines: [...p.querySelectorAll('polyline')].map(l => l.dataset.series)}; }""", cal)
        assert chart["x"] == "step →" and chart["y"].startswith("↑ residual magnitude ratio")
        assert chart["legend"] == chart["lines"] and sorted(chart["lines"]) == ["cond", "uncond"], chart
        # Save Cache Calibration says which file it wrote
        save = node_id(page, "SaveCacheCalibration")
        page.page.wait_for_function("""(id) => document.querySelector(
            `.cachekit-panel[data-node-id="${id}"]`)?.dataset.saved""", arg=save, timeout=30_000)
        saved = page.js("(id) => document.querySelector(`.cachekit-panel[data-node-id=\"${id}\"]`).textContent", save)
        assert saved.startswith("saved browser/magcache_") and "cache_calibrations" in saved, saved
        page.shot(f"run_{'nodes2' if vue else 'classic'}")
        page.shot(f"node_after_run_{'nodes2' if vue else 'classic'}", around=nid)
        # the timeline follows its setting
        page.js("() => window.app.extensionManager.setting.set('CacheKit.ShowTimeline', false)")
        page.page.wait_for_function("(id) => !document.querySelector(`.cachekit-panel[data-node-id=\"${id}\"] "
                                    ".cachekit-row`)", arg=nid, timeout=10_000)
        assert panel_text(page, nid) == run["summary"]
        page.js("() => window.app.extensionManager.setting.set('CacheKit.ShowTimeline', true)")
        # the last run survives a reload (asked from the server)
        page.open()
        page.page.wait_for_function("""(id) => document.querySelector(
            `.cachekit-panel[data-node-id="${id}"] .cachekit-summary`)""", arg=nid, timeout=30_000)
        check_shown(page, nid, run)
        page.shot(f"reloaded_{'nodes2' if vue else 'classic'}")
        # a changed input clears what no longer describes it
        page.js("""(id) => { const n = window.app.graph.getNodeById(id);
                             const w = n.widgets.find(w => w.name === 'residual_diff_threshold');
                             w.value = 0.25; w.callback?.(0.25); }""", nid)
        assert panel_text(page, nid) is None
        # errors raised in the extension's code or logged by it (the frontend's own blocked registry lookups
        # name our nodes in their URLs too, and are not ours)
        ours = [e for e in page.errors if "cachekit.js" in e or e.startswith("CacheKit")]
        assert not ours, ours
    finally:
        page.context.close()


def panels(page) -> dict:
    """Every CacheKit panel on the open workflow that shows something: node id -> (node type, its text)."""
    return page.js("""() => Object.fromEntries([...document.querySelectorAll('.cachekit-panel')]
        .filter(e => e.textContent.trim()).map(e => [e.dataset.nodeId,
            [window.app.graph.getNodeById(Number(e.dataset.nodeId))?.type ?? null, e.textContent.trim()]]))""")


def with_node_id(workflow: dict, kind: str, new_id: int) -> dict:
    """The workflow with the node of `kind` and the node holding id `new_id` trading ids (links follow)."""
    old = next(n["id"] for n in workflow["nodes"] if n["type"] == kind)
    swap = {old: new_id, new_id: old}
    for n in workflow["nodes"]:
        n["id"] = swap.get(n["id"], n["id"])
    workflow["links"] = [[ln[0], swap.get(ln[1], ln[1]), ln[2], swap.get(ln[3], ln[3]), *ln[4:]]
                         for ln in workflow["links"]]
    workflow["last_node_id"] = max(workflow["last_node_id"], new_id)
    return workflow


def load_graph(page, workflow: dict):
    """Load a workflow as a file opened in the browser would be (its own graph, its own id)."""
    page.js("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
    page.page.wait_for_timeout(500)


@pytest.mark.parametrize("vue", [False, True], ids=["classic", "nodes2"])
def test_a_run_shows_only_on_the_node_of_the_workflow_that_ran_it(server, browser, vue):
    """A run is shown on the node of its id and class, in the workflow that queued it, and nowhere else: not on
    ComfyUI's default workflow (whose nodes have the same ids), not on another workflow with the same node ids,
    not after a reload on a workflow that did not run it. A queued prompt's cache node says so until its run
    arrives; a prompt refused at validation leaves its cache node empty, not showing an earlier run."""
    page = Page(browser, server, vue)
    try:
        info = server.get("/object_info")
        # the cache node takes the id of ComfyUI's default workflow's Save Image node
        default_ids = page.js("async () => { await window.app.loadGraphData(); return window.app.graph._nodes.map("
                              "n => [Number(n.id), n.type]); }")
        save_id = next(i for i, t in default_ids if t == "SaveImage")
        ran = with_node_id(tiny_workflow(info, seed=30 + vue), "ApplyFirstBlockCache", save_id)
        ran["id"] = "00000000-0000-4000-8000-00000000000a"
        twin = json.loads(json.dumps(ran)) | {"id": "00000000-0000-4000-8000-00000000000b"}
        load_graph(page, ran)
        nid = node_id(page, "ApplyFirstBlockCache")
        page.js("""(id) => { const el = window.app.graph.getNodeById(id).widgets.find(w => w.name === 'cachekit_panel')
                .element;
            window.__cachekitStates = [];
            new MutationObserver(() => window.__cachekitStates.push(el.dataset.state || (el.dataset.run ? 'run' : '')))
                .observe(el, {attributes: true, childList: true, subtree: true}); }""", nid)
        run = run_and_wait(page, server, nid)
        check_shown(page, nid, run)
        states = page.js("() => window.__cachekitStates")
        assert {"queued", "running"} & set(states) and states[-1] == "run", states
        others = (str(node_id(page, k)) for k in ("CalibrateMagCache", "SaveCacheCalibration"))
        assert set(panels(page)) == {str(nid), *others}
        # ComfyUI's default workflow: its nodes take the same ids, and show nothing of CacheKit's
        page.js("async () => { await window.app.loadGraphData(); }")
        page.page.wait_for_timeout(500)
        assert page.js("(id) => window.app.graph.getNodeById(Number(id))?.type", nid) not in (None,
                                                                                          "ApplyFirstBlockCache")
        assert panels(page) == {}
        assert not page.js("() => window.app.graph._nodes.some(n => n.widgets?.some(w => w.name === 'cachekit_panel'))")
        # another workflow with the same nodes and ids, never run: nothing; the one that ran: its run again
        load_graph(page, twin)
        assert node_id(page, "ApplyFirstBlockCache") == nid and panels(page) == {}
        load_graph(page, ran)
        check_shown(page, nid, run)
        # a prompt refused at validation (a value out of range): the node does not keep showing the earlier run
        page.js("""(id) => window.app.graph.getNodeById(Number(id)).widgets
                       .find(w => w.name === 'residual_diff_threshold').value = 'not a number'""", nid)
        page.js("() => window.app.queuePrompt(0).catch(() => null)")   # the calibration part of it still runs
        page.page.wait_for_function("(id) => window.app.graph.getNodeById(Number(id)).widgets.find("
                                    "w => w.name === 'cachekit_panel').element.dataset.state === 'failed'",
                                    arg=nid, timeout=30_000)
        assert panel_text(page, nid) is None and panels(page)[str(nid)][1] == "did not run: an input was refused"
        # one error, on the input that holds the bad value (what the frontend marks on the node)
        errors = page.js("(id) => window.app.lastNodeErrors?.[String(id)]?.errors ?? null", nid)
        assert [e["extra_info"]["input_name"] for e in errors] == ["residual_diff_threshold"], errors
        page.shot(f"refused_{'nodes2' if vue else 'classic'}")
        # a cache node replaced by a later one on the same MODEL: a warning on it, not a result
        load_graph(page, tiny_workflow(info, seed=50 + vue, replaced=True))
        tea, nid = node_id(page, "ApplyTeaCache"), node_id(page, "ApplyFirstBlockCache")
        run_and_wait(page, server, tea)
        page.page.wait_for_function("(id) => document.querySelector(`.cachekit-panel[data-node-id=\"${id}\"] "
                                    ".cachekit-warning`)", arg=nid, timeout=30_000)
        assert panels(page)[str(nid)][1] == (f"not run: replaced by Apply TeaCache (#{tea}) after it on the same "
                                             f"MODEL")
        colour = page.js("""(id) => [...document.querySelectorAll('.cachekit-warning')]
            .filter(e => e.closest('.cachekit-panel').dataset.nodeId === String(id))
            .map(e => getComputedStyle(e).color)""",
                         nid)
        assert colour == ["rgb(224, 192, 96)"], (colour, page.js("() => [...document.querySelectorAll("
                                                                 "'.cachekit-panel')].map(e => e.outerHTML)"))
        # the TeaCache node that ran, with a preset published for another family: it says so, in the warning colour
        warned = [n for n in notes(page, tea) if n.startswith("the preset 'flux' was published for Flux, and this "
                                                                "model is Wan")]
        assert warned and page.js("""(id) => getComputedStyle(document.querySelector(
            `.cachekit-panel[data-node-id="${id}"] .cachekit-note`)).color""", tea) == "rgb(224, 192, 96)"
        page.shot(f"warnings_{'nodes2' if vue else 'classic'}", around=tea)
        ours = [e for e in page.errors if "cachekit.js" in e or e.startswith("CacheKit")]
        assert not ours, ours
    finally:
        page.context.close()


def test_the_frontend_queues_every_shipped_workflow_as_the_server_tests_run_it(server, browser):
    """Each shipped workflow, loaded in the frontend and turned into the prompt it queues, has the inputs
    make_workflows.to_api gives it (which tests/server runs): every widget value on its own input, the V3 combos
    and the multi-type inputs drawn as their widgetType (LTX-2's audio frame rate) included."""
    info = server.get("/object_info")
    page = Page(browser, server, False)
    try:
        for path in WORKFLOWS:
            wf = json.loads(path.read_text())
            queued = page.js("async (g) => { await window.app.loadGraphData(g);"
                             " return (await window.app.graphToPrompt()).output; }", wf)
            assert {nid: (n["class_type"], n["inputs"]) for nid, n in queued.items()} == \
                {nid: (n["class_type"], n["inputs"]) for nid, n in mw.to_api(wf, info).items()}, path.name
    finally:
        page.context.close()


def test_template_browser_lists_the_templates_in_order_with_their_pictures(server, browser):
    """ComfyUI's template browser, CacheKit's category: every template, titled by its name, in the index's order
    ("start here" first), each card with its own thumbnail; the first one opens."""
    page = Page(browser, server, False)
    try:
        page.js("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        page.page.get_by_text("CacheKit", exact=True).last.click()
        expected = [e["title"] for e in mw.index()]
        page.page.wait_for_function("(t) => [...document.querySelectorAll('[role=dialog] h3')].some("
                                    "h => h.textContent.trim() === t)", arg=expected[0], timeout=30_000)
        page.page.wait_for_timeout(1_500)
        # each card: its title, and the size of the picture it shows (the browser fetches it into a blob)
        cards = page.js("""() => [...document.querySelectorAll('[role=dialog] h3')].map(h => {
            let box = h; while (box && !box.querySelector('img')) box = box.parentElement;
            const img = box?.querySelector('img');
            return [h.textContent.trim(), img ? [img.naturalWidth, img.naturalHeight] : null]; })""")
        cards = [(title, size) for title, size in cards if title in expected]   # not the sidebar's headings
        titles = [title for title, _ in cards]
        assert titles == expected[:len(titles)] and len(titles) >= 20, titles     # the rest load on scrolling
        page.shot("template_browser")
        loaded = [size for _, size in cards if size and size[0]]
        assert len(loaded) >= 8 and all(size == [512, 512] for size in loaded), cards   # ours, in view at least
        page.page.get_by_text(expected[0], exact=True).click()
        page.page.wait_for_function("() => window.app.graph._nodes.some(n => n.type === 'ApplyFirstBlockCache')",
                                    timeout=30_000)
        ours = [e for e in page.errors if "cachekit.js" in e or e.startswith("CacheKit")]
        assert not ours, ours
    finally:
        page.context.close()
