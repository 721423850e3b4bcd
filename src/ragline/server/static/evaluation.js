// The evaluation page: the recorded runs (GET /runs), a paired comparison of two of them
// (GET /runs/compare) and a run's report (GET /runs/{id}/report), shown in a sandboxed iframe:
// the report's own HTML, with no script allowed to run.
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
    await fillRunChoices(runs);
  }

  // ---------------------------------------------------------------- compare two runs

  async function fillRunChoices(runs) {
    const complete = runs.filter((run) => run.status === "complete");
    for (const [side, pick] of [["a", 1], ["b", 0]]) {
      const select = $(`run-${side}`);
      const kept = select.value;
      clear(select);
      for (const run of complete) {
        select.append(el("option", { value: run.id }, `${run.id} · ${run.name}`));
      }
      if (complete.some((run) => run.id === kept)) select.value = kept;
      else if (complete.length) select.value = complete[Math.min(pick, complete.length - 1)].id;
      await fillConfigs(side);
    }
    $("compare-button").disabled = complete.length === 0;
  }

  // A run's configurations (GET /runs/{id}); a run with one needs no choice.
  async function fillConfigs(side) {
    const select = $(`config-${side}`);
    clear(select);
    const runId = $(`run-${side}`).value;
    if (!runId) return;
    try {
      const run = await json(`/runs/${encodeURIComponent(runId)}`);
      for (const name of run.configs || []) select.append(el("option", { value: name }, name));
      // B defaults to another configuration of the same run: a run often holds both arms.
      if (side === "b" && runId === $("run-a").value && select.options.length > 1) {
        select.selectedIndex = Math.min(1, select.options.length - 1);
      }
    } catch (exc) {
      toast(exc.message);
    }
  }

  const fixed = (x, digits = 4) => (x === null || x === undefined ? "–" : x.toFixed(digits));
  const signed = (x) => (x >= 0 ? "+" : "") + fixed(x);

  async function compare(event) {
    event.preventDefault();
    const params = new URLSearchParams({ a: $("run-a").value, b: $("run-b").value });
    if ($("config-a").value) params.set("config_a", $("config-a").value);
    if ($("config-b").value) params.set("config_b", $("config-b").value);
    $("compare-error").hidden = true;
    $("compare-button").disabled = true;
    let found;
    try {
      found = await json(`/runs/compare?${params}`);
    } catch (exc) {
      $("comparison").hidden = true;
      $("compare-error").textContent = exc.message;
      $("compare-error").hidden = false;
      return;
    } finally {
      $("compare-button").disabled = false;
    }
    $("comparison-title").textContent = `${found.b} (B) vs ${found.a} (A), ${found.n_queries} queries`;
    $("ci-head").textContent = `${Math.round(found.confidence * 100)}% CI`;
    const body = $("comparison-rows");
    clear(body);
    for (const m of found.metrics) {
      body.append(el("tr", { "data-metric": m.metric },
        el("td", {}, m.metric), el("td", { class: "num" }, fixed(m.mean_a)),
        el("td", { class: "num" }, fixed(m.mean_b)), el("td", { class: "num" }, signed(m.diff)),
        el("td", { class: "num" }, `[${signed(m.ci_low)}, ${signed(m.ci_high)}]`),
        el("td", { class: "num" }, fixed(m.p_value)), el("td", { class: "num" }, fixed(m.p_holm)),
        el("td", { class: "num" }, fixed(m.mde)),
        el("td", {}, el("span", { class: `verdict verdict-${m.verdict.replace(/ /g, "_")}` },
          m.verdict))));
    }
    const gate = $("gate");
    gate.className = found.gate.passed ? "gate-passed" : "gate-failed";
    gate.textContent = found.gate.passed ? "Regression gate: passed (no metric of B is "
      + "significantly worse)." : `Regression gate: failed. ${found.gate.failures.join(" ")}`;
    $("comparison").hidden = false;
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
    $("compare-form").addEventListener("submit", compare);
    for (const side of ["a", "b"]) {
      $(`run-${side}`).addEventListener("change", () => fillConfigs(side));
    }
    await refresh();
  });
})();
