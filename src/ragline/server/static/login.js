"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  const next = new URLSearchParams(location.search).get("next") || "";
  // Only a page of this UI: never an open redirect to another site.
  const target = /^\/ui\/[A-Za-z0-9_\-/?=&%.]*$/.test(next) && !next.startsWith("//")
    ? next : "/ui/chat";

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const key = document.getElementById("key").value.trim();
    try {
      await Ragline.api("/collections", { key });  // a cheap call that checks the key
      sessionStorage.setItem(Ragline.KEY, key);
      location.assign(target);
    } catch (exc) {
      error.textContent = exc.status === 401 ? "That key is not valid (unknown or revoked)."
        : `Could not sign in: ${exc.message}`;
      error.hidden = false;
    }
  });
});
