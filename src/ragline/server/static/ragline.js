// ragline web UI: what every page shares. The API key lives in sessionStorage (this tab only)
// and goes with every data call as `Authorization: Bearer KEY`. Data is put on the page with
// textContent or text nodes only, never parsed as HTML.
"use strict";

const Ragline = (() => {
  const KEY = "ragline.key";
  const COLLECTION = "ragline.collection";

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const key = () => sessionStorage.getItem(KEY);

  function toLogin() {
    const here = location.pathname + location.search;
    location.assign("/ui/login?next=" + encodeURIComponent(here));
  }

  // The page needs a key: without one, go to the login page (and come back).
  function requireKey() {
    if (key()) return true;
    toLogin();
    return false;
  }

  async function errorOf(reply) {
    let message = `${reply.status} ${reply.statusText}`;
    try {
      const body = await reply.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (_) { /* not JSON */ }
    return new ApiError(reply.status, message);
  }

  // fetch() with the key; a 401 sends the user back to sign in, other errors throw ApiError.
  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    headers.set("Authorization", "Bearer " + (options.key || key() || ""));
    const init = { method: options.method || "GET", headers, signal: options.signal };
    if (options.json !== undefined) {
      headers.set("Content-Type", "application/json");
      init.body = JSON.stringify(options.json);
    } else if (options.body !== undefined) {
      init.body = options.body;
    }
    const reply = await fetch(path, init);
    if (reply.status === 401 && !options.key) {
      sessionStorage.removeItem(KEY);
      toLogin();
    }
    if (!reply.ok) throw await errorOf(reply);
    return reply;
  }

  const json = async (path, options) => (await api(path, options)).json();

  // An element with attributes and children (strings become text nodes, never HTML).
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) throw new Error("el(): no event attributes");
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  let toastTimer = null;
  function toast(message) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  // Server-Sent Events from a fetch() reply: yields {event, data} with data parsed as JSON.
  async function* events(reply) {
    const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  }

  // Fill a <select> with the collections this key may use; remembers the last one chosen.
  async function collections(select) {
    const { collections: found } = await json("/collections");
    clear(select);
    for (const c of found) select.append(el("option", { value: c.name }, c.name));
    const last = sessionStorage.getItem(COLLECTION);
    if (last && found.some((c) => c.name === last)) select.value = last;
    select.addEventListener("change", () => sessionStorage.setItem(COLLECTION, select.value));
    return found;
  }

  function bytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  // The header: who is signed in (the key's public id only) and a sign-out button.
  function header() {
    const who = document.getElementById("who");
    const current = key();
    if (!who || !current) return;
    const parts = current.split("_");
    document.getElementById("key-id").textContent = parts.length >= 3 ? `key ${parts[1]}` : "key";
    who.hidden = false;
    document.getElementById("logout").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      location.assign("/ui/login");
    });
  }

  document.addEventListener("DOMContentLoaded", header);

  return { KEY, ApiError, api, json, el, clear, toast, events, collections, bytes, requireKey,
           key };
})();
