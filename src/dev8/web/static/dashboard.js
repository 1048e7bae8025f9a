// dev8 dashboard, environments list: rendered from the REST API (cookie session + CSRF
// header), refreshed every 2 s; every value goes in as text, never as HTML.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const tbody = document.querySelector("#envs tbody");
  const statusEl = document.getElementById("status");
  const dialog = document.getElementById("confirm-delete");
  const ACTIONS = { running: ["stop", "restart"], stopped: ["start"], error: ["start", "stop"], unreachable: [] };

  async function api(method, path, body) {
    const r = await fetch("/api/v1" + path, {
      method, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return null; }
    const data = r.status === 204 ? null : await r.json();
    if (!r.ok) throw new Error(typeof data?.detail === "string" ? data.detail : `HTTP ${r.status}`);
    return data;
  }

  const el = (tag, { dataset = {}, ...props } = {}, ...children) => {
    const e = Object.assign(document.createElement(tag), props);
    Object.assign(e.dataset, dataset);
    e.append(...children);
    return e;
  };
  const when = (iso) => iso ? new Date(iso).toLocaleString() : "—";

  function row(env) {
    const actions = el("td", { className: "actions" });
    if (env.state === "running") {
      actions.append(el("a", { href: env.vscode_url, className: "primary", target: "_blank", rel: "noopener",
                               textContent: "VS Code" }),
                     el("a", { href: env.terminal_url, target: "_blank", rel: "noopener", textContent: "Terminal" }));
    }
    for (const action of ACTIONS[env.state] ?? []) {
      actions.append(el("button", { type: "button", textContent: action[0].toUpperCase() + action.slice(1),
                                    onclick: () => act(env.name, action) }));
    }
    actions.append(el("button", { type: "button", className: "danger", textContent: "Delete",
                                  onclick: () => confirmDelete(env.name) }));
    const tr = el("tr", {},
      el("td", { dataset: { label: "Name" } }, el("strong", { textContent: env.name })),
      el("td", { dataset: { label: "State" } }, el("span", { className: "state " + env.state, textContent: env.state,
                                                          title: env.status_message || "" })),
      el("td", { dataset: { label: "Image" }, textContent: env.image }),
      el("td", { className: "repo", dataset: { label: "Repository" }, textContent: env.repo || "—", title: env.repo || "" }),
      el("td", { dataset: { label: "Created" }, textContent: when(env.created_at) }),
      el("td", { dataset: { label: "Last started" }, textContent: when(env.started_at) }),
      actions);
    tr.dataset.env = env.name;
    tr.dataset.state = env.state;
    return tr;
  }

  async function refresh() {
    try {
      const envs = await api("GET", "/environments");
      if (!envs) return;
      tbody.replaceChildren(...envs.map(row));
      document.getElementById("envs").hidden = envs.length === 0;
      document.getElementById("empty").hidden = envs.length !== 0;
      statusEl.textContent = "";
    } catch (err) {
      statusEl.textContent = "Could not load environments: " + err.message;
    }
  }

  async function act(name, action, params = "") {
    statusEl.textContent = `${action} ${name}…`;
    try {
      await api(action === "delete" ? "DELETE" : "POST",
                `/environments/${encodeURIComponent(name)}` + (action === "delete" ? params : "/" + action));
      await refresh();
    } catch (err) {
      statusEl.textContent = `Could not ${action} ${name}: ${err.message}`;
    }
  }

  function confirmDelete(name) {
    dialog.querySelectorAll("[data-name]").forEach((n) => { n.textContent = name; });
    dialog.querySelector("input[name=keep]").checked = true;
    dialog.onclose = () => {
      if (dialog.returnValue !== "delete") return;
      const keep = dialog.querySelector("input[name=keep]").checked;
      act(name, "delete", "?keep_volume=" + keep);
    };
    dialog.showModal();
  }

  refresh();
  setInterval(refresh, 2000);
})();
