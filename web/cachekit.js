// CacheKit frontend. After each sampling run the server sends "cachekit.stats" (nodes/host/stats_feed.py); the
// cache node that ran shows what it did: steps computed per stream, blocks saved, what the cache held, the run's wall time and a
// per-step timeline (one row per stream: computed / reused / estimated). Calibrate and Load nodes show their
// calibration as a small chart. Everything is a DOM widget, which both node renderers (the classic canvas and
// Nodes 2.0) display.
// A run is shown only where it belongs: on the node of its id and class, in the workflow that queued its prompt
// (this page remembers which workflow queued which prompt, in localStorage, so a reload brings the last runs back
// from GET /cachekit/stats); a queued prompt's cache nodes say "queued" / "running" until their run arrives, and
// say so where the prompt failed or was interrupted before they ran.
// This page tells the server it draws runs itself (POST /cachekit/client), so ComfyUI's progress text does not print
// the summary a second time under the node. The template browser lists the pack's templates in the order of
// templates.json ("start here" first, then by family and task).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SETTING = "CacheKit.ShowTimeline";
const WIDGET = "cachekit_panel";
const PROMPTS = "CacheKit.promptWorkflows";   // localStorage: prompt id -> id of the workflow that queued it
const KEEP_PROMPTS = 200;
const runs = new Map();      // "workflow id|node id" -> the newest run record the server reported for that node
const pending = new Map();   // prompt id -> {workflow, nodes: Map(node id -> node class), state}
const unclaimed = new Map(); // prompt id -> records that arrived before this page knew the prompt was its own
const STEP_NAMES = { C: "computed", R: "reused", E: "estimated", "-": "not called" };
const SHOWN = /^(Apply|Calibrate|Tune)|^(Load|Save)CacheCalibration$/;   // the nodes with a panel
const RUNS = /^Apply/;                                              // those that report runs
const KEEP_UNCLAIMED = 20;
let awaiting = 0;        // queue requests this page sent that the server has not answered yet

const workflowId = () => app.graph?.id ?? null;   // the graph's id, saved in the workflow file as its "id"
const runKey = (workflow, nodeId) => `${workflow}|${nodeId}`;
const nodeClass = (node) => node?.comfyClass ?? node?.type;

function promptWorkflows() {
  try { return JSON.parse(localStorage.getItem(PROMPTS)) || {}; } catch { return {}; }
}

function rememberPrompt(promptId, workflow) {
  const map = promptWorkflows();
  delete map[promptId];
  map[promptId] = workflow;
  const ids = Object.keys(map);
  for (const id of ids.slice(0, Math.max(0, ids.length - KEEP_PROMPTS))) delete map[id];
  try { localStorage.setItem(PROMPTS, JSON.stringify(map)); } catch { /* storage full or off: this page only */ }
}

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
    .cachekit-note, .cachekit-warning { color: #e0c060; margin-bottom: 3px; white-space: normal; }
    .cachekit-warning::before, .cachekit-note::before { content: "⚠ "; }
    .cachekit-legend { display: flex; gap: 8px; font-size: 9px; color: #aaa; margin: 2px 0 1px 46px; }
    .cachekit-legend span::before { content: ""; display: inline-block; width: 8px; height: 8px; margin-right: 3px;
                                    border-radius: 1px; vertical-align: -1px; background: var(--swatch); }
    .cachekit-chart .cachekit-legend { margin-left: 0; }
    .cachekit-axis { font-size: 9px; color: #999; display: flex; justify-content: space-between; }
    .cachekit-saved { color: #8fd18f; white-space: normal; word-break: break-all; }
    .cachekit-state { color: #aaa; font-style: italic; margin-bottom: 3px; white-space: normal; }
    .cachekit-state.cachekit-failed { color: #e07a6a; font-style: normal; }
    .cachekit-row { display: flex; align-items: center; gap: 1px; height: 10px; margin: 1px 0; }
    .cachekit-label { width: 46px; flex: none; font-size: 9px; color: #aaa; }
    .cachekit-cell { flex: 1; height: 8px; min-width: 2px; border-radius: 1px; background: var(--swatch); }
    .cachekit-C { --swatch: #e0793c; } .cachekit-R { --swatch: #4caf50; }
    .cachekit-E { --swatch: #c9b037; } .cachekit--  { --swatch: #444; }
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

function legend(codes) {        // what the timeline's colours mean (the cells' own classes), for the ones it shows
  const row = el("div", "cachekit-legend");
  for (const c of Object.keys(STEP_NAMES).filter((k) => k !== "-" && codes.has(k))) {
    const item = el("span", `cachekit-${c}`, STEP_NAMES[c]);
    item.dataset.state = c;
    row.appendChild(item);
  }
  return row;
}

function showRun(node, run) {
  const root = panel(node);
  root.replaceChildren();
  root.dataset.run = String(run.run ?? "");
  delete root.dataset.state;
  if (run.replaced_by) {   // a warning, not a result: this node's settings did nothing in that run
    root.appendChild(el("div", "cachekit-warning",
      `not run: replaced by ${run.replaced_by.node} (#${run.replaced_by.node_id}) after it on the same MODEL`));
    return fit(node, root, 34);
  }
  root.appendChild(el("div", "cachekit-summary", run.summary));   // written by the server (RunStats.summary)
  const notes = run.notes || [];   // what the run says the user should know (few steps, a preset of another model)
  for (const n of notes) root.appendChild(el("div", "cachekit-note", n));
  const extra = notes.reduce((h, n) => h + 3 + 13 * Math.ceil(n.length / 40), 0);   // ~40 characters a line
  if (!timelineOn) return fit(node, root, 34 + extra);
  const streams = Object.values(run.streams || {});
  root.appendChild(legend(new Set(streams.flatMap((s) => [...(s.timeline || "")]))));
  for (const s of streams) {
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
  fit(node, root, 54 + extra + 13 * root.querySelectorAll(".cachekit-row").length);
}

function clearPanel(node) {
  const w = node.widgets?.find((x) => x.name === WIDGET);
  if (w) { w.element.replaceChildren(); delete w.element.dataset.run; delete w.element.dataset.state; }
}

function clearRun(node) {     // the node's settings changed: what it showed no longer describes it
  runs.delete(runKey(workflowId(), node.id));
  clearPanel(node);
}

function showState(node, state, text) {   // queued / running / failed: no run to show (yet)
  const root = panel(node);
  root.replaceChildren(el("div", `cachekit-state${state === "failed" ? " cachekit-failed" : ""}`, text));
  delete root.dataset.run;
  root.dataset.state = state;
  fit(node, root, 34);
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
  const axis = el("div", "cachekit-axis");
  axis.append(el("span", "cachekit-axis-y", `↑ ${chart.y ?? ""}`), el("span", "cachekit-axis-x", `${chart.x ?? ""} →`));
  root.appendChild(axis);
  const names = el("div", "cachekit-legend");     // which line is which (cond / uncond / the fit)
  lines.forEach(([name], k) => {
    const item = el("span", null, name);
    item.style.setProperty("--swatch", colors[k % colors.length]);
    item.dataset.series = name;
    names.appendChild(item);
  });
  if (chart.points) { const p = el("span", null, "measured"); p.style.setProperty("--swatch", "#ddd"); names.appendChild(p); }
  root.appendChild(names);
  fit(node, root, 134);
}

function showSaved(node, saved) {   // Save Cache Calibration: the file it wrote, as Load Cache Calibration lists it
  const root = panel(node);
  root.replaceChildren(el("div", "cachekit-saved", `saved ${saved.name}`));
  if (saved.path) root.appendChild(el("div", "cachekit-axis", saved.path));
  if (saved.summary) root.appendChild(el("div", "cachekit-axis", saved.summary));
  root.dataset.saved = saved.name;
  fit(node, root, 60);
}

function nodeById(id) {
  const graph = app.graph;
  return graph?.getNodeById?.(Number(id)) ?? graph?.getNodeById?.(id) ?? null;
}

// what belongs on this Apply node of the open workflow: its run, its prompt's state, or nothing
function show(node) {
  if (!RUNS.test(nodeClass(node) ?? "")) return;   // calibration charts come from the node's own output instead
  const key = String(node.id);
  const waiting = [...pending.values()].find((p) => p.workflow === workflowId() && p.nodes.has(key));
  const run = runs.get(runKey(workflowId(), key));
  if (waiting) showState(node, waiting.state, waiting.state === "running" ? "running…" : "queued…");
  else if (run && run.node_class === nodeClass(node)) showRun(node, run);
  else clearPanel(node);
}

function apply(run) {
  if (!run || run.node_id == null) return;
  const workflow = promptWorkflows()[run.prompt_id];
  if (!workflow) {        // not (yet) known as queued here: kept in case this page's queue answer is still coming
    if (run.prompt_id && awaiting > 0) {
      unclaimed.set(run.prompt_id, [...(unclaimed.get(run.prompt_id) || []), run]);
      for (const id of [...unclaimed.keys()].slice(0, -KEEP_UNCLAIMED)) unclaimed.delete(id);
    }
    return;
  }
  const key = runKey(workflow, run.node_id);
  const prev = runs.get(key);
  if (!run.replaced_by && prev && (prev.run ?? 0) > (run.run ?? 0)) return;
  runs.set(key, run);
  pending.get(run.prompt_id)?.nodes.delete(String(run.node_id));
  if (workflow !== workflowId()) return;
  const node = nodeById(run.node_id);
  if (node) show(node);
}

function panelNodes() {
  return (app.graph?._nodes ?? app.graph?.nodes ?? []).filter((n) => n.widgets?.some((w) => w.name === WIDGET));
}

function showAll() {
  for (const node of panelNodes()) show(node);
}

// a prompt this page queues: remember its workflow, and mark the cache nodes it runs as queued
function watchQueue() {
  const queue = api.queuePrompt;
  api.queuePrompt = async function (number, data, ...rest) {
    const workflow = data?.workflow?.id ?? workflowId();
    const ours = Object.entries(data?.output ?? {}).filter(([, n]) => RUNS.test(n?.class_type ?? ""));
    let res;
    awaiting += 1;
    try {
      res = await queue.call(this, number, data, ...rest);
    } catch (e) {          // refused at validation: none of its cache nodes ran (the errors are on their inputs)
      refuse(workflow, ours.map(([id]) => id));
      throw e;
    } finally {
      awaiting -= 1;
    }
    if (res?.prompt_id) {
      // ComfyUI runs the outputs whose nodes are valid and names the others' errors in the answer
      const refused = new Set(Object.keys(res.node_errors ?? {}));
      const queued = ours.filter(([id]) => !refused.has(String(id)));
      refuse(workflow, ours.map(([id]) => String(id)).filter((id) => refused.has(id)));
      rememberPrompt(res.prompt_id, workflow);
      pending.set(res.prompt_id, { workflow, state: "queued",
                                   nodes: new Map(queued.map(([id, n]) => [String(id), n.class_type])) });
      if (workflow === workflowId()) for (const [id] of queued) { const n = nodeById(id); if (n) show(n); }
      for (const run of unclaimed.get(res.prompt_id) || []) apply(run);
      unclaimed.delete(res.prompt_id);
    }
    return res;
  };
}

function refuse(workflow, ids) {   // nodes the server refused at validation: they will not run, so show no run
  if (workflow !== workflowId()) return;
  for (const id of ids) {
    const node = nodeById(id);
    if (node && RUNS.test(nodeClass(node) ?? "")) showState(node, "failed", "did not run: an input was refused");
  }
}

function settle(promptId, state, text) {   // the prompt ended: its cache nodes that got no run say why
  const p = pending.get(promptId);
  if (!p) return;
  pending.delete(promptId);
  if (p.workflow !== workflowId()) return;
  for (const id of p.nodes.keys()) {
    const node = nodeById(id);
    if (!node) continue;
    if (state) showState(node, state, text);
    else show(node);      // nothing new ran there (ComfyUI reused its cached result): its last run, if any
  }
}

function onPromptEvents() {
  api.addEventListener("execution_start", ({ detail }) => {
    const p = pending.get(detail?.prompt_id);
    if (!p) return;
    p.state = "running";
    if (p.workflow === workflowId()) for (const id of p.nodes.keys()) { const n = nodeById(id); if (n) show(n); }
  });
  api.addEventListener("execution_success", ({ detail }) => settle(detail?.prompt_id));
  api.addEventListener("execution_error", ({ detail }) => settle(detail?.prompt_id, "failed",
    `did not run: the prompt stopped with an error${detail?.node_id != null ? ` at node #${detail.node_id}` : ""}`));
  api.addEventListener("execution_interrupted", ({ detail }) => settle(detail?.prompt_id, "failed",
    "did not run: the prompt was interrupted"));
}

// this page draws runs itself: the server leaves ComfyUI's progress text (the summary again) out of its prompts
let announced = null;
async function announce() {
  if (!api.clientId || api.clientId === announced) return;
  announced = api.clientId;
  try {
    await api.fetchApi("/cachekit/client", { method: "POST", headers: { "Content-Type": "application/json" },
                                             body: JSON.stringify({ client_id: api.clientId }) });
  } catch (e) { console.warn("CacheKit: could not register this page", e); }
}

// the template browser: the pack's templates in the order of templates.json (written with them by the build)
const MODULE = decodeURIComponent(new URL(import.meta.url).pathname.split("/").slice(-2, -1)[0] ?? "");
function orderTemplates() {
  const list = api.getWorkflowTemplates;
  if (typeof list !== "function") return;
  const order = fetch(new URL("./templates.json", import.meta.url)).then((r) => r.json())
    .then((index) => new Map(index.templates.map((t, i) => [t.file.replace(/\.json$/, ""), i])))
    .catch(() => new Map());
  api.getWorkflowTemplates = async function (...args) {
    const all = await list.apply(this, args);
    const rank = await order;
    const ours = all?.[MODULE];
    if (Array.isArray(ours) && rank.size) {
      all[MODULE] = [...ours].sort((a, b) => (rank.get(a) ?? 1e9) - (rank.get(b) ?? 1e9) || a.localeCompare(b));
    }
    return all;
  };
}
orderTemplates();   // now, before the browser first asks

// the last run of each node survives a page reload: the server keeps recent runs (fetched in setup)
let statsLoaded;
const statsReady = new Promise((resolve) => { statsLoaded = resolve; });

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
    watchQueue();
    onPromptEvents();
    // the server names this page's client id in its first status message (and again on a new socket)
    api.addEventListener("status", announce);
    await announce();
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
  afterConfigureGraph() {     // a workflow restored or loaded: its nodes show their last run there, nothing else
    showAll();
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!/^CacheKit(\/|$)/.test(nodeData.category ?? "")) return;
    const created = nodeType.prototype.onNodeCreated;
    const shows = SHOWN.test(nodeData.name);
    nodeType.prototype.onNodeCreated = function () {
      const r = created?.apply(this, arguments);
      // the panel is there from the start: Nodes 2.0 mounts the widgets a node has when it is drawn
      if (shows) {
        panel(this);
        // a restored workflow's node gets its id after this: show what belongs on it once both are known
        statsReady.then(() => setTimeout(() => { if (this.graph) show(this); }, 0));
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
      const saved = message?.cachekit_saved?.[0];
      if (saved) showSaved(this, saved);
    };
  },
});
