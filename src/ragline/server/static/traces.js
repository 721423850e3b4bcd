// The traces page: the key's recent requests (GET /traces) and one request's span tree
// (GET /traces/{id}): each span's time, its place on the request's timeline and its
// attributes. /ui/traces?trace=ID opens that trace (the chat page links each answer so).
"use strict";

(() => {
  const { el, clear, json, toast } = Ragline;
  const $ = (id) => document.getElementById(id);
  const PREFIX = "ragline.";

  const ms = (seconds) => (seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms`
    : `${seconds.toFixed(2)} s`);
  const when = (epoch) => new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19);
  const count = (value) => (value === null || value === undefined ? "–" : String(value));
  // OpenTelemetry's UNSET is a span that recorded no error: shown as ok.
  const statusBadge = (status) => (status === "error"
    ? el("span", { class: "status status-failed" }, "error")
    : el("span", { class: "status status-done", title: `span status: ${status}` }, "ok"));

  async function refresh() {
    const params = new URLSearchParams({ limit: String(Number($("limit").value) || 50) });
    if ($("collection").value) params.set("collection", $("collection").value);
    let traces;
    try {
      traces = (await json(`/traces?${params}`)).traces;
    } catch (exc) {
      toast(exc.message);
      return;
    }
    const body = $("traces");
    clear(body);
    for (const trace of traces) {
      const open = el("button", { type: "button", class: "link mono" }, trace.trace_id.slice(0, 12));
      open.addEventListener("click", () => showTrace(trace.trace_id));
      body.append(el("tr", { "data-trace": trace.trace_id },
        el("td", {}, open), el("td", {}, when(trace.start)), el("td", {}, trace.name),
        el("td", {}, trace.collection || "–"), el("td", { class: "num" }, ms(trace.duration_s)),
        el("td", {}, statusBadge(trace.status)),
        el("td", { class: "num" }, count(trace.claims)),
        el("td", { class: "num" }, count(trace.flagged)),
        el("td", {}, trace.arm ? `${trace.experiment}/${trace.arm}` : "–"),
        el("td", {}, trace.rating || "–")));
    }
    $("traces-empty").hidden = traces.length > 0;
  }

  function attributeList(attributes) {
    const list = el("dl", { class: "attributes" });
    for (const [name, value] of Object.entries(attributes || {}).sort()) {
      const shown = typeof value === "string" ? value : JSON.stringify(value);
      list.append(el("dt", {}, name.startsWith(PREFIX) ? name.slice(PREFIX.length) : name),
        el("dd", {}, shown));
    }
    return list;
  }

  // One span and its children: name, duration, a bar on the request's timeline, attributes.
  function spanItem(span, origin, total) {
    const bar = el("span", { class: "span-bar" });
    // CSSOM properties, not a style attribute: the page's CSP allows no inline styles.
    bar.style.marginLeft = `${(100 * (span.start - origin)) / total}%`;
    bar.style.width = `${Math.max(0.5, (100 * span.duration_s) / total)}%`;
    const head = el("div", { class: "span-head" },
      el("span", { class: "span-name" }, span.name),
      el("span", { class: "span-time" }, ms(span.duration_s)),
      el("span", { class: "muted" }, `+${ms(Math.max(0, span.start - origin))}`),
      span.status === "error" ? statusBadge(span.status) : null);
    const item = el("li", { class: "span", "data-span": span.name }, head,
      el("div", { class: "span-track" }, bar),
      el("details", {}, el("summary", {}, `attributes (${Object.keys(span.attributes || {}).length})`),
        attributeList(span.attributes)));
    if (span.children.length) {
      item.append(el("ul", { class: "spans" },
        span.children.map((child) => spanItem(child, origin, total))));
    }
    return item;
  }

  async function showTrace(traceId) {
    let found;
    try {
      found = await json(`/traces/${encodeURIComponent(traceId)}`);
    } catch (exc) {
      toast(`Could not open trace ${traceId}: ${exc.message}`);
      return;
    }
    const { trace, spans } = found;
    $("trace-card").hidden = false;
    $("trace-card").setAttribute("data-trace", trace.trace_id);
    $("trace-title").textContent = `${trace.name} · ${trace.trace_id}`;
    const parts = [when(trace.start), ms(trace.duration_s),
      trace.status === "error" ? "failed" : "ok"];
    if (trace.collection) parts.push(`collection ${trace.collection}`);
    if (trace.key_id) parts.push(`key ${trace.key_id}`);
    if (trace.arm) parts.push(`experiment ${trace.experiment}, arm ${trace.arm}`);
    if (trace.rating) parts.push(`rated ${trace.rating}`);
    $("trace-meta").textContent = parts.join(" · ");
    const list = $("spans");
    clear(list);
    const origin = Math.min(...spans.map((s) => s.start));
    const end = Math.max(...spans.map((s) => s.end));
    const total = Math.max(end - origin, 1e-6);
    for (const span of spans) list.append(spanItem(span, origin, total));
    const url = new URL(location.href);
    url.searchParams.set("trace", trace.trace_id);
    history.replaceState(null, "", url);
    $("trace-card").scrollIntoView({ block: "start" });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (!Ragline.requireKey()) return;
    $("refresh").addEventListener("click", refresh);
    $("collection").addEventListener("change", refresh);
    $("trace-close").addEventListener("click", () => { $("trace-card").hidden = true; });
    try {
      const { collections } = await json("/collections");
      for (const c of collections) $("collection").append(el("option", { value: c.name }, c.name));
    } catch (exc) {
      toast(exc.message);
    }
    await refresh();
    const wanted = new URLSearchParams(location.search).get("trace");
    if (wanted && /^[0-9a-f]{32}$/.test(wanted)) await showTrace(wanted);
  });
})();
