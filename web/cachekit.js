// CacheKit frontend: after each sampling run the server sends "cachekit.stats"; the cache node that
// produced it shows what the run computed and saved, under its widgets.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

function summarize(run) {
  if (run.replaced_by) {
    const by = run.replaced_by;
    return `not run: replaced by ${by.node} (#${by.node_id}) after it`;
  }
  const streams = Object.values(run.streams || {});
  const parts = streams.map((s) => `${s.label} ${s.computed_steps.length}/${s.steps_seen}`);
  const saved = Math.round((run.saved_fraction || 0) * 100);
  const replaced = (run.replaces || []).map((r) => `${r.node} #${r.node_id}`);
  const forced = Object.values(run.forced || {}).reduce((a, b) => a + b, 0);
  const note = (replaced.length ? ` · replaced ${replaced.join(", ")}` : "") +
    (forced ? ` · ${forced} calls had hints` : "") + ((run.notes || []).length ? ` · ${run.notes.length} note(s) in the log` : "");
  return `${parts.join(" · ")} steps computed · ${saved}% blocks saved${note}`;
}

app.registerExtension({
  name: "CacheKit.RunStats",
  setup() {
    api.addEventListener("cachekit.stats", ({ detail }) => {
      if (!detail || detail.node_id == null || !app.graph) return;
      const node = app.graph.getNodeById(Number(detail.node_id)) ?? app.graph.getNodeById(detail.node_id);
      if (!node) return;
      node.cachekitSummary = summarize(detail);
      node.setDirtyCanvas?.(true, true);
    });
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.category !== "CacheKit") return;
    const draw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      draw?.apply(this, arguments);
      if (!this.cachekitSummary || this.flags?.collapsed) return;
      ctx.save();
      ctx.font = "11px sans-serif";
      ctx.fillStyle = "#8fd18f";
      ctx.fillText(this.cachekitSummary, 10, this.size[1] - 6);
      ctx.restore();
    };
  },
});
