// dev8 dashboard, shared by every page: the REST API with the session cookie and the
// page's CSRF token, a DOM builder that only ever sets text (never HTML), dates, the
// delete confirmation, errors shown next to the field they are about, and redraws that
// keep the focus.
"use strict";
window.dev8 = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  class ApiError extends Error {
    constructor(message, status, field) { super(message); this.status = status; this.field = field; }
  }

  async function api(method, path, body) {
    const r = await fetch("/api/v1" + path, {
      method, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (r.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      throw new ApiError("logged out", 401);
    }
    const data = r.status === 204 ? null : await r.json();
    if (!r.ok) {
      // every error is {"detail": a sentence, "field": the field at fault}
      const message = typeof data?.detail === "string" ? data.detail : `HTTP ${r.status}`;
      throw new ApiError(message, r.status, data?.field ?? undefined);
    }
    return data;
  }

  const el = (tag, { dataset = {}, ...props } = {}, ...children) => {
    const e = Object.assign(document.createElement(tag), props);
    Object.assign(e.dataset, dataset);
    e.append(...children);
    return e;
  };
  // Times as people say them ("2 minutes ago", "in 3 days"); a date beyond a month.
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const UNITS = [[60, "second"], [3600, "minute", 60], [86400, "hour", 3600], [2592000, "day", 86400]];
  const when = (iso) => {
    if (!iso) return "—";
    const seconds = (new Date(iso) - Date.now()) / 1000;
    for (const [below, unit, per = 1] of UNITS) {
      if (Math.abs(seconds) < below) return relative.format(Math.round(seconds / per), unit);
    }
    return new Date(iso).toLocaleDateString();
  };
  const cap = (s) => s[0].toUpperCase() + s.slice(1);
  // "3 h 20 min", "45 s"; sizes as "512 MiB", "1.5 GiB".
  const duration = (seconds) => {
    const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
    return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min` : `${Math.round(seconds)} s`;
  };
  const size = (n) => {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
  };

  // Errors go into <p class="field-error" data-error-for="FIELD"> next to the input.
  function clearErrors(root = document) {
    root.querySelectorAll(".field-error").forEach((p) => { p.textContent = ""; p.hidden = true; });
    root.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
  }
  function showError(root, field, message, fallback) {
    const slot = field && root.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    const target = slot || fallback;
    target.textContent = message;
    target.hidden = false;
    const input = slot && document.getElementById(slot.dataset.errorInput || "");
    if (input) input.setAttribute("aria-invalid", "true");
    return target;
  }

  const dialog = document.getElementById("confirm-delete");
  function confirmDelete(name, onConfirm) {
    dialog.querySelectorAll("[data-name]").forEach((n) => { n.textContent = name; });
    dialog.querySelector("input[name=keep]").checked = true;
    const work = dialog.querySelector("[data-work]");
    work.hidden = true;
    work.replaceChildren();
    // what a delete without the home would lose, as the CLI says it (best effort: a running environment)
    api("GET", `/environments/${encodeURIComponent(name)}/work`).then((found) => {
      const repos = (found?.repos || []).map((r) => {
        const parts = [];
        if (r.changes) parts.push(`${r.changes} changed file${r.changes === 1 ? "" : "s"}`);
        if (r.unpushed) parts.push(`${r.unpushed} commit${r.unpushed === 1 ? "" : "s"} not pushed`);
        return el("li", { textContent: `${r.path}: ${parts.join(", ")}` });
      });
      if (!repos.length) return;
      work.replaceChildren("Lost unless the home is kept:", el("ul", {}, ...repos));
      work.hidden = false;
    }).catch(() => {});
    dialog.onclose = () => {
      if (dialog.returnValue === "delete") onConfirm(dialog.querySelector("input[name=keep]").checked);
    };
    dialog.showModal();
  }

  function download(filename, text) {
    const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/plain" })), download: filename });
    document.body.append(a);
    a.click();
    a.remove();
  }

  // Wraps an async loader so that only the newest call renders: a slow, older response
  // (e.g. the page-load fetch) never overwrites what a later one (after a change) showed.
  function latest(load, render) {
    let seq = 0;
    return async (...args) => {
      const mine = ++seq;
      const data = await load(...args);
      if (mine === seq) render(data, ...args);
    };
  }

  // What a timer re-renders must not take the keyboard focus away, close an open <select>
  // or drop a text selection: nothing is redrawn when the data is what was drawn last, and
  // after a redraw the focus goes back to the control with the same data-key.
  const drawn = new WeakMap();
  function redraw(root, data, render) {
    const json = JSON.stringify(data);
    if (drawn.get(root) === json) return;
    drawn.set(root, json);
    const active = document.activeElement;
    const key = active && root.contains(active) ? active.dataset.key : undefined;
    render(data);
    if (key !== undefined) root.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
  }

  // On a phone a table's rows become cards (dashboard.css): each cell is labelled with its
  // column's heading, kept up as scripts redraw the rows. A heading only screen readers
  // see (the actions column) labels nothing.
  function labelCells(table) {
    const heads = [...table.querySelectorAll("thead th")].map((th) => (th.querySelector(".sr-only") ? "" : th.textContent.trim()));
    for (const row of table.tBodies[0]?.rows ?? []) {
      [...row.cells].forEach((td, i) => { if (heads[i] && td.dataset.label !== heads[i]) td.dataset.label = heads[i]; });
    }
  }
  document.querySelectorAll("table").forEach((table) => {
    labelCells(table);
    new MutationObserver(() => labelCells(table)).observe(table, { childList: true, subtree: true });
  });

  // A lifecycle button's API action: Retry (on an environment in error) is a restart, every step again, now.
  const endpoint = (action) => ({ retry: "restart" })[action] || action;

  // An environment's image offers VS Code (`apps`, known once it has started; until then, say yes).
  const hasVSCode = (env) => env.apps == null || env.apps.includes("vscode");

  return { api, el, when, cap, duration, size, clearErrors, showError, confirmDelete, download, latest, redraw, hasVSCode,
           endpoint, ApiError };
})();
