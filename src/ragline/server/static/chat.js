// The chat page: the answer streams in from POST /collections/{name}/ask (SSE), then each
// claim's verdict; a citation [n] opens its source with the cited span highlighted.
"use strict";

(() => {
  const { el, clear, json, api, events, toast } = Ragline;
  const VERDICTS = new Set(["supported", "partially_supported", "unsupported", "misattributed",
    "no_citation", "invalid_source", "attributed"]);
  let history = [];  // [question, answer] pairs: follow-ups are rewritten into standalone ones
  let running = null;

  const $ = (id) => document.getElementById(id);

  // The answer's text with each [n] that names a citation made a button that opens it.
  function answerText(text, citations, collection) {
    const out = el("p", { class: "answer-text" });
    let last = 0;
    for (const match of text.matchAll(/\[(\d+)\]/g)) {
      out.append(text.slice(last, match.index));
      const citation = citations.get(Number(match[1]));
      out.append(citation ? citeButton(citation, collection) : match[0]);
      last = match.index + match[0].length;
    }
    out.append(text.slice(last));
    return out;
  }

  function citeButton(citation, collection) {
    const button = el("button", { type: "button", class: "cite", title: citation.label,
      "data-number": citation.number }, `[${citation.number}]`);
    button.addEventListener("click", () => openSource(collection, citation));
    return button;
  }

  function verdictBadge(verdict) {
    const name = VERDICTS.has(verdict) ? verdict : "unknown";
    return el("span", { class: `verdict verdict-${name}` }, verdict.replace(/_/g, " "));
  }

  function verdictList(answer, citations, collection) {
    const list = el("ol", { class: "verdicts" });
    for (const v of answer.verdicts || []) {
      const cites = (v.cited || []).map((n) => citations.get(n))
        .filter(Boolean).map((c) => citeButton(c, collection));
      list.append(el("li", { class: v.flagged ? "claim flagged" : "claim" },
        verdictBadge(v.verdict), " ", el("span", { class: "claim-text" }, v.sentence), " ",
        cites, v.reason ? el("span", { class: "reason" }, v.reason) : null));
    }
    return list;
  }

  function sourceList(answer, citations, collection) {
    const list = el("ol", { class: "sources" });
    for (const c of answer.citations || []) {
      list.append(el("li", {}, citeButton(c, collection), " ", c.label));
    }
    return (answer.citations || []).length ? el("details", {}, el("summary", {},
      `Sources (${answer.citations.length})`), list) : null;
  }

  function renderAnswer(turn, answer, collection) {
    const citations = new Map((answer.citations || []).map((c) => [c.number, c]));
    clear(turn.body);
    if (answer.abstained) {
      turn.body.append(el("p", { class: "abstained" }, "Abstained: ",
        answer.abstain_reason || "the sources do not answer this question."));
    }
    if (answer.text) turn.body.append(answerText(answer.text, citations, collection));
    if ((answer.verdicts || []).length) {
      turn.body.append(el("h3", {}, "Claims"), verdictList(answer, citations, collection));
    }
    const notes = (answer.usage && answer.usage.notes) || [];
    for (const note of notes) turn.body.append(el("p", { class: "note" }, note));
    const sources = sourceList(answer, citations, collection);
    if (sources) turn.body.append(sources);
    if (answer.trace_id) {  // what this request did: its spans on the traces page
      turn.body.append(el("p", { class: "trace-link" }, el("a", {
        href: `/ui/traces?trace=${encodeURIComponent(answer.trace_id)}`, class: "trace",
        "data-trace": answer.trace_id }, "Trace of this answer")));
    }
    turn.root.classList.remove("streaming");
    turn.root.setAttribute("data-state", "done");
  }

  function newTurn(question) {
    const body = el("div", { class: "turn-body" });
    const streamed = el("p", { class: "answer-text streamed" });
    body.append(streamed);
    const root = el("article", { class: "turn streaming", "data-state": "streaming" },
      el("p", { class: "question" }, question), body);
    $("transcript").append(root);
    root.scrollIntoView({ block: "end" });
    return { root, body, streamed };
  }

  async function ask(event) {
    event.preventDefault();
    const collection = $("collection").value;
    const question = $("question").value.trim();
    if (!collection || !question || running) return;
    const turn = newTurn(question);
    const body = { question, stream: true, extractive: $("extractive").checked,
      strict: $("strict").checked, k: Number($("k").value) || 5, history: history.slice(-5) };
    if ($("mode").value) body.mode = $("mode").value;
    running = new AbortController();
    $("ask-button").disabled = true;
    try {
      const reply = await api(`/collections/${encodeURIComponent(collection)}/ask`,
        { method: "POST", json: body, signal: running.signal,
          headers: { Accept: "text/event-stream" } });
      for await (const { event: kind, data } of events(reply)) {
        if (kind === "delta") {
          turn.streamed.append(data.text);
        } else if (kind === "answer") {
          renderAnswer(turn, data, collection);
          history.push([question, data.text]);
        } else if (kind === "error") {
          throw new Ragline.ApiError(data.status, data.error ? data.error.message : "error");
        }
      }
      $("question").value = "";
    } catch (exc) {
      if (exc.name !== "AbortError") {
        turn.body.append(el("p", { class: "error" }, exc.message));
        turn.root.setAttribute("data-state", "error");
      }
    } finally {
      running = null;
      $("ask-button").disabled = false;
    }
  }

  // The cited document with the citation's span (and the quoted part of it) highlighted.
  async function openSource(collection, citation) {
    const params = new URLSearchParams({ doc_id: citation.doc_id, start: citation.start,
      end: citation.end });
    let source;
    try {
      source = await json(`/collections/${encodeURIComponent(collection)}/source?${params}`);
    } catch (exc) {
      toast(`Could not open the source: ${exc.message}`);
      return;
    }
    const text = $("source-text");
    clear(text);
    const at = (offset) => Math.min(Math.max(offset - source.text_start, 0), source.text.length);
    const s = at(source.start);
    const e = at(source.end);
    let qs = s;
    let qe = s;
    if (citation.quote_start !== null && citation.quote_start !== undefined) {
      qs = Math.max(at(citation.quote_start), s);
      qe = Math.min(at(citation.quote_end), e);
    }
    if (source.text_start > 0) text.append("…");
    text.append(source.text.slice(0, s));
    const mark = el("mark", { class: "cited", id: "cited-span" });
    if (qe > qs) {
      mark.append(source.text.slice(s, qs), el("strong", { class: "quote" },
        source.text.slice(qs, qe)), source.text.slice(qe, e));
    } else {
      mark.append(source.text.slice(s, e));
    }
    text.append(mark, source.text.slice(e));
    if (source.text_end < source.length) text.append("…");
    $("source-title").textContent = `[${citation.number}] ${citation.label || source.doc_id}`;
    $("source-meta").textContent = `${source.title ? source.title + " · " : ""}characters `
      + `${source.start}–${source.end} of ${source.length}`;
    $("source-panel").hidden = false;
    mark.scrollIntoView({ block: "center" });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (!Ragline.requireKey()) return;
    $("ask-form").addEventListener("submit", ask);
    $("question").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        $("ask-form").requestSubmit();
      }
    });
    $("new-chat").addEventListener("click", () => {
      if (running) running.abort();
      history = [];
      clear($("transcript"));
      $("source-panel").hidden = true;
    });
    $("source-close").addEventListener("click", () => { $("source-panel").hidden = true; });
    try {
      const found = await Ragline.collections($("collection"));
      if (!found.length) toast("No collections yet: create one on the Documents page.");
    } catch (exc) {
      toast(exc.message);
    }
  });
})();
