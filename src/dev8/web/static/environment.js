// Environment page: state and buttons (every 2 s), services and ports (every 10 s, they
// are asked of the environment over SSH), recent events, logs, connection help.
"use strict";
(() => {
  const { api, el, when, cap, duration, size, confirmDelete, redraw, hasVSCode, clearErrors, showError,
          endpoint } = window.dev8;
  const name = document.getElementById("env").dataset.name;
  const path = "/environments/" + encodeURIComponent(name);
  const $ = (id) => document.getElementById(id);
  const statusEl = $("status");
  // In error: Retry (a restart: every step again, now) rather than a Start that looks like it did nothing.
  // Edit: its image, CPUs and memory change only while it is stopped or in error.
  // Starting (also dev8 trying again after a failed try): Stop gives the start up.
  const ACTIONS = { running: ["stop", "restart", "reconfigure"], stopped: ["start", "edit"],
                    error: ["retry", "edit", "stop"], starting: ["stop"], pending: ["stop"] };
  let state = null;
  let current = null;

  function renderEnv(env) {
    state = env.state;
    current = env;
    $("state").textContent = env.state;
    // VS Code Desktop over Remote-SSH, on the same folder as VS Code in the browser
    const folder = new URL(env.vscode_url).searchParams.get("folder") || "/home/dev/workspace";
    $("open-desktop").href = `vscode://vscode-remote/ssh-remote+dev8.${name}${folder}`;
    $("state").className = "state " + env.state;
    $("state").title = env.status_message || "";
    document.body.dataset.state = env.state;
    const actions = $("actions");
    redraw(actions, [env.state, env.vscode_url, env.terminal_url, env.apps], () => {
      actions.replaceChildren();
      if (env.state === "running") {
        if (hasVSCode(env)) actions.append(el("a", { href: env.vscode_url, className: "button primary", target: "_blank",
                                                     rel: "noopener", textContent: "Open VS Code", id: "open-vscode",
                                                     dataset: { key: "vscode" } }));
        actions.append(el("a", { href: env.terminal_url, className: "button", target: "_blank", rel: "noopener",
                                 textContent: "Terminal", id: "open-terminal", dataset: { key: "terminal" } }));
      }
      for (const action of ACTIONS[env.state] ?? []) {
        actions.append(el("button", { type: "button", textContent: cap(action), dataset: { key: action },
                                      onclick: () => (action === "edit" ? openEdit() : act(action)) }));
      }
      actions.append(el("button", { type: "button", className: "danger", textContent: "Delete", dataset: { key: "delete" },
                                    onclick: () => confirmDelete(name, remove) }));
    });
    $("ssh-command").value = env.ssh_command;
    const details = [["Image", env.image], ["CPUs", String(env.cpus)], ["Memory", env.memory],
                     ["Repository", env.repo || "—"], ["Git hosts", env.git_hosts.join(", ") || "—"],
                     ["Secrets", env.secrets.join(", ") || "none"], ["Created", when(env.created_at)],
                     ["Last started", when(env.started_at)], ["Last used", when(env.last_used_at)]];
    const idle = env.idle_timeout < 60 ? `${env.idle_timeout} s` : `${Math.round(env.idle_timeout / 60)} min`;
    details.push(["Idle stop", env.idle_timeout ? `after ${idle} without use` : "never"]);
    if (env.stop_reason && env.state === "stopped") details.push(["Status", env.stop_reason]);
    // A failure in a sentence up top, the runtime's own words one click away.
    // (starting: what the last try failed with, while dev8 tries again)
    const failed = ["error", "unreachable", "starting"].includes(env.state) ? env.status_message : "";
    $("failure").hidden = !failed;
    $("failure-text").textContent = failed;
    $("failure-detail").hidden = !env.status_detail;
    $("failure-raw").textContent = env.status_detail;
    redraw($("details"), details, () => $("details").replaceChildren(...details.flatMap(([k, v]) => [
      el("dt", { textContent: k }), el("dd", { textContent: v, dataset: { detail: k } })])));
  }

  async function refreshEnv() {
    try {
      const env = await api("GET", path);
      const changed = env.state !== state;
      renderEnv(env);
      if (changed) { refreshInside(); refreshEvents(); }
    } catch (err) {
      if (err.status === 404) { statusEl.textContent = `${name} no longer exists.`; clearInterval(timer); }
      else if (err.status !== 401) statusEl.textContent = "Could not load: " + err.message;
    }
  }

  async function refreshLogs() {
    const { lines } = await api("GET", path + "/logs?tail=200");
    redraw($("logs"), lines, () => { $("logs").textContent = lines.length ? lines.join("\n") : "No output yet."; });
  }

  async function refreshInside() {
    refreshLogs().catch(() => {});
    const tbody = $("ports").querySelector("tbody");
    if (state !== "running") {
      redraw($("services"), state, () => $("services").replaceChildren(
        el("li", { className: "muted", textContent: `Not running (${state}).` })));
      redraw(tbody, [], () => tbody.replaceChildren());
      $("ports-empty").hidden = false;
      renderStats({ error: `Not running (${state}).` });
      return;
    }
    const [health, ports, stats] = await Promise.all([api("GET", path + "/health"), api("GET", path + "/ports"),
                                                      api("GET", path + "/stats")]);
    renderStats(stats);
    const services = Object.entries(health.services || {});
    redraw($("services"), [services, health.error], () => $("services").replaceChildren(...(services.length ? services.map(([svc, info]) => {
      const up = typeof info === "string" ? info : (info.state || info.status || JSON.stringify(info));
      return el("li", { dataset: { service: svc } }, el("span", { className: "state " + (/^(run|up|ok)/.test(up) ? "running" : "error"),
                                                                textContent: up }), " ", svc);
    }) : [el("li", { className: "muted", textContent: health.error || "No services reported." })])));
    redraw(tbody, ports.ports, () => tbody.replaceChildren(...ports.ports.map((p) => {
      const select = el("select", { ariaLabel: `Sharing of port ${p.port}`, dataset: { key: `share/${p.port}` } },
        ...["private", "authenticated", "public"].map((lvl) => el("option", { value: lvl, textContent: lvl })));
      select.value = p.share;
      select.onchange = () => share(p.port, select.value);
      // without app addresses browsers open no previews: say how to reach the port instead
      const none = el("span", { className: "muted", textContent: `dev8 port-forward ${name} ${p.port}:${p.port}` });
      return el("tr", { dataset: { port: String(p.port) } },
        el("td", { textContent: p.label ? `${p.port} (${p.label})` : String(p.port) }),
        el("td", { textContent: p.bind === "loopback" ? "127.0.0.1" : "all addresses" }),
        el("td", {}, ports.previews ? el("a", { href: p.url, target: "_blank", rel: "noopener",
                 textContent: "Open preview", dataset: { key: `preview/${p.port}` } }) : none),
        el("td", {}, ports.previews ? select : "—"));
    })));
    $("ports-empty").hidden = ports.ports.length !== 0;
  }

  // Uptime, CPU, memory and the home's size, as the environment itself reports them.
  function renderStats(stats) {
    const known = (v, show) => (v == null ? "unknown" : show(v));
    const rows = stats.error ? [["Uptime", stats.error]] : [
      ["Uptime", known(stats.uptime_seconds, duration)],
      ["CPU", known(stats.cpu_percent, (p) => `${p}% of one CPU` + (stats.cpu_limit ? ` (limit ${stats.cpu_limit} CPUs)` : ""))],
      ["Memory", known(stats.memory_bytes, (b) => size(b) + (stats.memory_limit_bytes ? ` of ${size(stats.memory_limit_bytes)}` : ""))],
      ["Home", known(stats.home_bytes, size) + `, ${size(stats.disk_free_bytes)} free`]];
    redraw($("resources"), rows, () => $("resources").replaceChildren(...rows.flatMap(([k, v]) => [
      el("dt", { textContent: k }), el("dd", { textContent: v, dataset: { resource: k } })])));
  }

  async function refreshEvents() {
    const events = await api("GET", path + "/events?follow=false&last=25");  // oldest first
    const newest = events[events.length - 1];
    redraw($("events"), events, () => $("events").replaceChildren(...events.reverse().map((ev) => el("li", { dataset: { status: ev.status } },
      el("time", { dateTime: ev.ts, textContent: when(ev.ts) }), " ", el("strong", { textContent: ev.step }), " ",
      el("span", { className: "state " + ({ ok: "running", error: "error", warning: "error" }[ev.status] || "starting"),
                   textContent: ev.status }), " ", el("span", { textContent: ev.message })))));
    // The newest event a warning that dev8 stops it soon (idle, session limit): say so up top.
    const warning = newest && newest.step === "idle" && newest.status === "warning" && state === "running";
    if (warning) statusEl.textContent = newest.message;
    else if (statusEl.dataset.idle) statusEl.textContent = "";
    statusEl.dataset.idle = warning ? "1" : "";
  }

  async function act(action) {
    statusEl.textContent = `${action}…`;
    try { renderEnv(await api("POST", `${path}/${endpoint(action)}`)); statusEl.textContent = ""; refreshEvents(); }
    catch (err) { statusEl.textContent = `Could not ${action}: ${err.message}`; }
  }
  const editDialog = $("edit-dialog");
  const editForm = $("edit");
  function openEdit() {
    clearErrors(editForm);
    $("e-image").value = current.image;
    $("e-cpus").value = current.cpus;
    $("e-memory").value = current.memory;
    editDialog.showModal();
  }
  editForm.addEventListener("input", () => clearErrors(editForm));  // an error is about what was typed before
  editForm.addEventListener("submit", async (ev) => {
    if (ev.submitter?.value !== "save") return;  // Cancel closes it
    ev.preventDefault();
    clearErrors(editForm);
    const body = {};
    const image = $("e-image").value.trim(), cpus = parseFloat($("e-cpus").value), memory = $("e-memory").value.trim();
    if (image !== current.image) body.image = image;
    if (cpus !== current.cpus) body.cpus = cpus;
    if (memory !== current.memory) body.memory = memory;
    try {
      renderEnv(await api("PATCH", path, body));
      editDialog.close("saved");
      statusEl.textContent = Object.keys(body).length ? "Saved." : "Nothing changed.";
      refreshEvents();
    } catch (err) {
      showError(editForm, err.field, err.message, $("edit-error"));
      document.getElementById(editForm.querySelector(`[data-error-for="${err.field}"]`)?.dataset.errorInput || "")?.focus();
    }
  });
  async function remove(keep) {
    try { await api("DELETE", `${path}?keep_volume=${keep}`); location.href = "/"; }
    catch (err) { statusEl.textContent = "Could not delete: " + err.message; }
  }
  async function share(port, level) {
    try { await api("PUT", `${path}/ports/${port}/share`, { level }); statusEl.textContent = `Port ${port}: ${level}.`; }
    catch (err) { statusEl.textContent = `Could not share port ${port}: ${err.message}`; }
  }

  document.querySelectorAll("[data-copy]").forEach((b) => b.addEventListener("click", async () => {
    const input = $(b.dataset.copy);
    input.select();
    try { await navigator.clipboard.writeText(input.value); b.textContent = "Copied"; }
    catch { b.textContent = "Select and copy"; }
  }));

  refreshEnv();
  const timer = setInterval(refreshEnv, 2000);
  setInterval(() => { refreshInside().catch(() => {}); refreshEvents().catch(() => {}); }, 10000);
})();
