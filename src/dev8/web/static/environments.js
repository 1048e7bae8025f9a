// Environments list: rendered from the REST API, refreshed every 2 s.
"use strict";
(() => {
  const { api, el, when, cap, confirmDelete, redraw, hasVSCode, endpoint } = window.dev8;
  const tbody = document.querySelector("#envs tbody");
  const statusEl = document.getElementById("status");
  const ACTIONS = { running: ["stop", "restart"], stopped: ["start"], error: ["retry", "stop"], unreachable: [],
                    starting: ["stop"], pending: ["stop"] };
  // Why it is not running, as text (a touch screen shows no tooltip): shortened, the whole on its page.
  const REASON_CHARS = 90;
  const reason = (env) => (["error", "unreachable", "starting"].includes(env.state) ? env.status_message || "" : "");
  const short = (text) => (text.length > REASON_CHARS ? text.slice(0, REASON_CHARS - 1) + "…" : text);

  function row(env) {
    const key = (what) => ({ key: `${env.name}/${what}` });
    const actions = el("td", { className: "actions" });
    if (env.state === "running") {
      if (hasVSCode(env)) actions.append(el("a", { href: env.vscode_url, className: "button primary", target: "_blank",
                                                   rel: "noopener", textContent: "VS Code", dataset: key("vscode") }));
      actions.append(el("a", { href: env.terminal_url, className: "button", target: "_blank", rel: "noopener",
                               textContent: "Terminal", dataset: key("terminal") }));
    }
    for (const action of ACTIONS[env.state] ?? []) {
      actions.append(el("button", { type: "button", textContent: cap(action), dataset: key(action),
                                    onclick: () => act(env.name, action) }));
    }
    actions.append(el("button", { type: "button", className: "danger", textContent: "Delete", dataset: key("delete"),
                                  onclick: () => confirmDelete(env.name, (keep) => act(env.name, "delete", keep)) }));
    const tr = el("tr", {},
      el("td", { className: "name" },
         el("a", { href: "/environments/" + encodeURIComponent(env.name), className: "env-name", dataset: key("page") },
            el("strong", { textContent: env.name }))),
      el("td", {}, el("span", { className: "state " + env.state, textContent: env.state,
                                                          title: env.status_message || "" }),
         ...(env.state === "stopped" && env.stop_reason
           ? [el("span", { className: "muted stop-reason", textContent: " " + env.stop_reason })] : []),
         ...(reason(env) ? [el("div", { className: "muted status-reason", textContent: short(reason(env)),
                                        title: reason(env) })] : [])),
      el("td", { className: "image", textContent: env.image, title: env.image }),
      el("td", { className: "repo", textContent: env.repo || "—", title: env.repo || "" }),
      el("td", { textContent: when(env.created_at) }),
      el("td", { textContent: when(env.last_used_at) }),
      actions);
    tr.dataset.env = env.name;
    tr.dataset.state = env.state;
    return tr;
  }

  async function refresh() {
    try {
      const envs = await api("GET", "/environments");
      redraw(tbody, envs, () => tbody.replaceChildren(...envs.map(row)));
      document.getElementById("envs").hidden = envs.length === 0;
      document.getElementById("empty").hidden = envs.length !== 0;
      statusEl.textContent = "";
    } catch (err) {
      if (err.status !== 401) statusEl.textContent = "Could not load environments: " + err.message;
    }
  }

  async function act(name, action, keepVolume) {
    statusEl.textContent = `${action} ${name}…`;
    const path = `/environments/${encodeURIComponent(name)}`;
    try {
      if (action === "delete") await api("DELETE", `${path}?keep_volume=${keepVolume}`);
      else await api("POST", `${path}/${endpoint(action)}`);
      await refresh();
    } catch (err) {
      statusEl.textContent = `Could not ${action} ${name}: ${err.message}`;
    }
  }

  refresh();
  setInterval(refresh, 2000);
})();
