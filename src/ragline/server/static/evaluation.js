// The evaluation page: the recorded runs (GET /runs) and a run's report (GET /runs/{id}/report),
// shown in a sandboxed iframe: the report's own HTML, with no script allowed to run.
"use strict";

(() => {
  const { el, clear, json, api, toast } = Ragline;
  const $ = (id) => document.getElementById(id);
  const when = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "–");

  async function refresh() {
    let runs;
    try {
      runs = (await json("/runs")).runs;
    } catch (exc) {
      toast(exc.message);
      return;
    }
    const body = $("runs");
    clear(body);
    for (const run of runs) {
      const open = el("button", { type: "button", class: "link" }, "Report");
      open.addEventListener("click", () => showReport(run));
      body.append(el("tr", { "data-run": run.id },
        el("td", { class: "name mono" }, run.id), el("td", {}, run.kind),
        el("td", {}, run.name),
        el("td", {}, el("span", { class: `status status-${run.status}` }, run.status)),
        el("td", {}, when(run.created_at)), el("td", {}, when(run.finished_at)),
        el("td", {}, open)));
    }
    $("runs-empty").hidden = runs.length > 0;
  }

  async function showReport(run) {
    $("report-card").hidden = false;
    $("report-title").textContent = `${run.id} · ${run.kind} · ${run.name}`;
    $("report-note").textContent = "Rendering the report…";
    const frame = $("report");
    frame.hidden = true;
    try {
      const html = await (await api(`/runs/${encodeURIComponent(run.id)}/report`)).text();
      frame.srcdoc = html;  // sandboxed (no scripts, an opaque origin): the report is inert
      frame.hidden = false;
      $("report-note").textContent = run.reason || "";
    } catch (exc) {
      $("report-note").textContent = `No report: ${exc.message}`;
    }
    $("report-card").scrollIntoView({ block: "start" });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (!Ragline.requireKey()) return;
    $("refresh").addEventListener("click", refresh);
    $("report-close").addEventListener("click", () => { $("report-card").hidden = true; });
    await refresh();
  });
})();
