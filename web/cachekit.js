// CacheKit frontend. After each sampling run the server sends "cachekit.stats" (nodes/stats_feed.py); the
// cache node that ran shows what it did: steps computed per stream, blocks saved, the run's wall time and a
// per-step timeline (one row per stream: computed / reused / estimated). Calibrate and Load nodes show their
// calibration as a small chart. Everything is a DOM widget, which both node renderers (the classic canvas and
// Nodes 2.0) display; the last run per node is fetched from GET /cachekit/stats after a page reload.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SETTING = "CacheKit.ShowTimeline";
const WIDGET = "cachekit_panel";
const lastRun = new Map();   // node id -> the newest run record the server reported for it
const STEP_NAMES = { C: "computed", R: "reused", E: "estimated", "-": "not called" };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function addStyle() {
  if (document.getElementById("cachekit-style")) return;
  const s = el("style");
  s.id = "cachekit-style";
  s.textContent = `
    .cachekit-panel { font: 11px sans-serif; color: #ccc; padding: 2px 4px; overflow: hidden; }
    .cachekit-summary { color: #8fd18f; margin-bottom: 3px; white-space: normal; }
    .cachekit-note { color: #e0c060; margin-bottom: 3px; white-space: normal; }
    .cachekit-row { display: flex; align-items: center; gap: 1px; height: 10px; margin: 1px 0; }
    .cachekit-label { width: 46px; flex: none; font-size: 9px; color: #aaa; }
    .cachekit-cell { flex: 1; height: 8px; min-width: 2px; border-radius: 1px; }
    .cachekit-C { background: #e0793c; } .cachekit-R { background: #4caf50; }
    .cachekit-E { background: #c9b037; } .cachekit--  { background: #444; }
    .cachekit-chart-title { color: #aaa; font-size: 10px; }
    .cachekit-chart svg { width: 100%; height: 80px; background: #1b1b1b; }`;
  document.head.appendChild(s);
}

function panel(node) {
  let w = node.widgets?.find((x) => x.name === WIDGET);
  if (!w) {
    const root = el("div", "cachekit-panel");
    w = node.addDOMWidget(WIDGET, "cachekit", root, {
      serialize: false, hideOnZoom: false, getMinHeight: () => root.cachekitHeight ?? 24,
      getMaxHeight: () => (root.cachekitHeight ?? 24) + 40,
    });
  }
  w.element.dataset.nodeId = String(node.id);
  return w.element;
}

let timelineOn = true;   // the setting's value (onChange runs before the setting store has the new one)

function fit(node, root, height) {   // make room for what the panel now shows
  root.cachekitHeight = height;
  const grow = () => {
    const need = node.computeSize?.();
    if (need && need[1] > node.size[1]) node.setSize([Math.max(node.size[0], need[0]), need[1]]);
    node.setDirtyCanvas?.(true, true);
  };
  grow();
  setTimeout(grow, 300);   // and again once the frontend has added its own text under the node
}

function summarize(run) {
  if (run.replaced_by) return `not run: replaced by ${run.replaced_by.node} (#${run.replaced_by.node_id}) after it`;
  return run.summary;      // written by the server (RunStats.summary), also as ComfyUI's progress text
}

function showRun(node, run) {
  const root = panel(node);
  root.replaceChildren();
  root.dataset.run = String(run.run ?? "");
  root.appendChild(el("div", "cachekit-summary", summarize(run)));
  const notes = run.replaced_by ? [] : run.notes || [];   // what the run says the user should know (few steps, ...)
  for (const n of notes) root.appendChild(el("div", "cachekit-note", n));
  const extra = notes.reduce((h, n) => h + 3 + 13 * Math.ceil(n.length / 40), 0);   // ~40 characters a line
  if (!timelineOn || run.replaced_by) return fit(node, root, 34 + extra);
  for (const s of Object.values(run.streams || {})) {
    const row = el("div", "cachekit-row");
    row.dataset.stream = s.label;
    row.appendChild(el("span", "cachekit-label", s.label));
    [...(s.timeline || "")].forEach((c, i) => {
      const cell = el("span", `cachekit-cell cachekit-${c}`);
      cell.dataset.step = String(i);
      cell.dataset.state = c;
      cell.title = `step ${i}: ${STEP_NAMES[c] ?? c}`;
      row.appendChild(cell);
    });
    root.appendChild(row);
  }
  fit(node, root, 40 + extra + 13 * root.querySelectorAll(".cachekit-row").length);
}

function clearRun(node) {
  lastRun.delete(String(node.id));
  const w = node.widgets?.find((x) => x.name === WIDGET);
  if (w) { w.element.replaceChildren(); delete w.element.dataset.run; }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function showChart(node, chart) {
  const root = panel(node);
  root.replaceChildren();
  root.classList.add("cachekit-chart");
  root.appendChild(el("div", "cachekit-chart-title", chart.kind));
  const lines = [...Object.entries(chart.series || {})];
  if (chart.curve) lines.push(["fit", chart.curve[1], chart.curve[0]]);
  const xs = lines.flatMap(([, ys, xv]) => (xv || ys.map((_, i) => i)));
  const ys = lines.flatMap(([, v]) => v).concat(chart.points ? chart.points[1] : []);
  if (chart.line != null) ys.push(chart.line);
  const [x0, x1] = [Math.min(...xs, 0), Math.max(...xs, 1)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const px = (x) => 4 + ((x - x0) / (x1 - x0 || 1)) * 192;
  const py = (y) => 76 - ((y - y0) / (y1 - y0 || 1)) * 72;
  const g = svg("svg", { viewBox: "0 0 200 80", preserveAspectRatio: "none" });
  const colors = ["#4caf50", "#e0793c", "#5b9bd5", "#c9b037", "#b05fc4"];
  lines.forEach(([name, v, xv], k) => {
    const pts = v.map((y, i) => `${px(xv ? xv[i] : i).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    const pl = svg("polyline", { points: pts, fill: "none", stroke: colors[k % colors.length], "stroke-width": 1.2 });
    pl.dataset.series = name;
    pl.appendChild(svg("title", {})).textContent = name;
    g.appendChild(pl);
  });
  if (chart.points) chart.points[0].forEach((x, i) =>
    g.appendChild(svg("circle", { cx: px(x), cy: py(chart.points[1][i]), r: 1.5, fill: "#ddd" })));
  if (chart.line != null)
    g.appendChild(svg("line", { x1: 0, x2: 200, y1: py(chart.line), y2: py(chart.line), stroke: "#888",
                                "stroke-dasharray": "3,2" }));
  root.appendChild(g);
  fit(node, root, 104);
}

function nodeById(id) {
  const graph = app.graph;
  return graph?.getNodeById?.(Number(id)) ?? graph?.getNodeById?.(id) ?? null;
}

function apply(run) {
  if (!run || run.node_id == null) return;
  const key = String(run.node_id);
  const prev = lastRun.get(key);
  if (!run.replaced_by && prev && (prev.run ?? 0) > (run.run ?? 0)) return;
  lastRun.set(key, run);
  const node = nodeById(key);
  if (node) showRun(node, run);
}

// the last run of each node survives a page reload: the server keeps recent runs (fetched in setup)
let statsLoaded;
const statsReady = new Promise((resolve) => { statsLoaded = resolve; });

function showAll() {
  for (const [id, run] of lastRun) {
    const n = nodeById(id);
    if (n) showRun(n, run);
  }
}

app.registerExtension({
  name: "CacheKit.RunStats",
  settings: [{
    id: SETTING, category: ["CacheKit", "Display", "Timeline"], name: "Show the per-step timeline on cache nodes",
    type: "boolean", defaultValue: true,
    onChange: (value) => {
      timelineOn = value !== false;
      showAll();
    },
  }],
  async setup() {
    addStyle();
    timelineOn = app.extensionManager?.setting?.get?.(SETTING) !== false;
    api.addEventListener("cachekit.stats", ({ detail }) => apply(detail));
    try {
      const res = await api.fetchApi("/cachekit/stats");
      for (const run of (await res.json()).runs || []) apply(run);
    } catch (e) {
      console.warn("CacheKit: no run stats from the server", e);
    }
    statsLoaded();
    showAll();
  },
  afterConfigureGraph() {     // a workflow restored or loaded: its nodes show their last run
    showAll();
  },
  loadedGraphNode(node) {
    const run = lastRun.get(String(node.id));
    if (run) showRun(node, run);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.category !== "CacheKit") return;
    const created = nodeType.prototype.onNodeCreated;
    const shows = /^(Apply|Calibrate|Tune)|^LoadCacheCalibration$/.test(nodeData.name);
    nodeType.prototype.onNodeCreated = function () {
      const r = created?.apply(this, arguments);
      // the panel is there from the start: Nodes 2.0 mounts the widgets a node has when it is drawn
      if (shows) {
        panel(this);
        // a restored workflow's node gets its id after this: show its last run once both are known
        statsReady.then(() => setTimeout(() => {
          const run = lastRun.get(String(this.id));
          if (run && this.graph) showRun(this, run);
        }, 0));
      }
      if (nodeData.name.startsWith("Apply")) {
        // a setting or link the user changes: the shown run no longer describes the node. Loading a workflow
        // sets them too (while the graph is configured, right after the node is made): those do not count
        setTimeout(() => { this.cachekitReady = true; }, 0);
        const byUser = () => this.cachekitReady && !app.configuringGraph;
        for (const w of this.widgets || []) {
          const cb = w.callback;
          w.callback = (...a) => { if (byUser()) clearRun(this); return cb?.apply(w, a); };
        }
        const conn = this.onConnectionsChange;
        this.onConnectionsChange = (...a) => { if (byUser()) clearRun(this); return conn?.apply(this, a); };
      }
      return r;
    };
    const executed = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      executed?.apply(this, arguments);
      const chart = message?.cachekit_chart?.[0];
      if (chart) showChart(this, chart);
    };
  },
});
