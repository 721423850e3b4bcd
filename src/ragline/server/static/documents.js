// The documents page: upload (multipart, then an ingest job), list with status, delete, and
// the ingest job's progress polled from GET /jobs/{id}.
"use strict";

(() => {
  const { el, clear, json, api, toast, bytes } = Ragline;
  const JOB = "ragline.job";
  const $ = (id) => document.getElementById(id);
  const collection = () => $("collection").value;
  const path = (rest) => `/collections/${encodeURIComponent(collection())}${rest}`;

  async function refresh() {
    const body = $("documents");
    if (!collection()) {
      clear(body);
      $("documents-empty").hidden = false;
      return;
    }
    let found;
    try {
      found = (await json(path("/documents"))).documents;
    } catch (exc) {
      toast(exc.message);
      return;
    }
    clear(body);
    for (const doc of found) {
      const remove = el("button", { type: "button", class: "link danger",
        "aria-label": `Delete ${doc.name}` }, "Delete");
      remove.addEventListener("click", () => removeDocument(doc.name));
      const detail = doc.status === "failed" ? `${doc.reason}: ${doc.message}`
        : (doc.doc_ids || []).join(", ");
      body.append(el("tr", { "data-name": doc.name, "data-status": doc.status },
        el("td", { class: "name" }, doc.name), el("td", { class: "num" }, bytes(doc.bytes)),
        el("td", {}, el("span", { class: `status status-${doc.status}` }, doc.status)),
        el("td", { class: "detail" }, detail), el("td", {}, remove)));
    }
    $("documents-empty").hidden = found.length > 0;
  }

  function showJob(job) {
    const p = job.progress || {};
    const total = p.files_total || 0;
    const done = p.files_done || 0;
    $("job").hidden = false;
    $("job").setAttribute("data-status", job.status);
    $("job-progress").max = Math.max(total, 1);
    $("job-progress").value = job.status === "done" ? Math.max(total, 1) : done;
    let line = `Ingest ${job.status}: ${done}/${total} files, ${p.chunks_embedded || 0} chunks`
      + ` embedded`;
    if (p.failures) line += `, ${p.failures} failed`;
    if (job.error) line += ` (${job.error})`;
    $("job-status").textContent = line;
  }

  async function follow(job) {
    sessionStorage.setItem(JOB, job.id);
    showJob(job);
    while (job.status === "queued" || job.status === "running") {
      await new Promise((resolve) => setTimeout(resolve, 500));
      try {
        job = await json(`/jobs/${encodeURIComponent(job.id)}`);
      } catch (exc) {
        toast(exc.message);
        return;
      }
      showJob(job);
    }
    sessionStorage.removeItem(JOB);
    await refresh();
  }

  async function upload(event) {
    event.preventDefault();
    const files = $("files").files;
    if (!files.length || !collection()) return;
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    $("upload-button").disabled = true;
    try {
      const reply = await json(path("/documents?ingest=true"), { method: "POST", body: form });
      $("files").value = "";
      await refresh();
      if (reply.job) await follow(reply.job);
    } catch (exc) {
      toast(`Upload failed: ${exc.message}`);
    } finally {
      $("upload-button").disabled = false;
    }
  }

  async function removeDocument(name) {
    if (!confirm(`Delete ${name}? It leaves the index at the next ingest, which starts now.`)) {
      return;
    }
    try {
      const reply = await json(path(`/documents/${encodeURIComponent(name)}`),
        { method: "DELETE" });
      await refresh();
      await follow(reply.job);
    } catch (exc) {
      toast(`Delete failed: ${exc.message}`);
    }
  }

  async function create(event) {
    event.preventDefault();
    const name = $("new-name").value.trim();
    try {
      await api("/collections", { method: "POST", json: { name } });
      sessionStorage.setItem("ragline.collection", name);
      await Ragline.collections($("collection"));
      $("new-name").value = "";
      await refresh();
    } catch (exc) {
      toast(`Could not create ${name}: ${exc.message}`);
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (!Ragline.requireKey()) return;
    $("upload-form").addEventListener("submit", upload);
    $("create-form").addEventListener("submit", create);
    $("refresh").addEventListener("click", refresh);
    $("collection").addEventListener("change", refresh);
    try {
      await Ragline.collections($("collection"));
    } catch (exc) {
      toast(exc.message);
    }
    await refresh();
    const pending = sessionStorage.getItem(JOB);  // a job this tab started before a reload
    if (pending) {
      try {
        await follow(await json(`/jobs/${encodeURIComponent(pending)}`));
      } catch (_) {
        sessionStorage.removeItem(JOB);
      }
    }
  });
})();
