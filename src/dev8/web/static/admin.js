// Admin: users (create, disable/enable, grant/revoke admin), images (build, pull, push to a
// registry), every environment, the audit log (newest first, paged back with "Older entries").
"use strict";
(() => {
  const { api, el, when, redraw } = window.dev8;
  const $ = (id) => document.getElementById(id);
  const me = document.querySelector(".who span").textContent;
  let oldest = null;

  async function refreshUsers() {
    const users = await api("GET", "/admin/users");
    $("users").querySelector("tbody").replaceChildren(...users.map((u) => {
      const actions = el("td", { className: "actions" });
      if (u.email !== me) {
        actions.append(
          el("button", { type: "button", textContent: u.disabled ? "Enable" : "Disable",
                         className: u.disabled ? "" : "danger", onclick: () => update(u.id, { disabled: !u.disabled }) }),
          el("button", { type: "button", textContent: u.is_admin ? "Revoke admin" : "Make admin",
                         onclick: () => update(u.id, { is_admin: !u.is_admin }) }),
          el("button", { type: "button", textContent: "Set password", ariaLabel: "Set the password of " + u.email,
                         onclick: () => setPassword(u) }));
      }
      return el("tr", { dataset: { user: u.email } }, el("td", { textContent: u.email }), el("td", { textContent: u.username }),
        el("td", { textContent: u.is_admin ? "admin" : "user" }),
        el("td", {}, el("span", { className: "state " + (u.disabled ? "error" : "running"),
                                  textContent: u.disabled ? "disabled" : "active" })),
        el("td", { textContent: when(u.created_at) }), actions);
    }));
  }
  // Images: build or pull ahead of time; while a job runs its progress is polled.
  let imagesTimer = null;
  async function refreshImages() {
    const images = await api("GET", "/images");
    const tbody = $("images").querySelector("tbody");
    redraw(tbody, images, () => tbody.replaceChildren(...images.map((i) => {
      const job = i.job;
      const running = job?.state === "running";
      const verb = i.built_here ? (i.status === "ready" ? "Rebuild" : "Build") : "Pull";
      const progress = running ? job.progress || "starting…"
        : job?.state === "failed" ? `failed: ${job.error}` : job?.state === "done" ? `done ${when(job.finished_at)}` : i.note;
      return el("tr", { dataset: { image: i.name, job: job?.state || "" } },
        el("td", {}, el("code", { textContent: i.name })),
        el("td", {}, el("span", { className: "state " + (running ? "starting" : i.status === "ready" ? "running"
                                                         : i.status === "unavailable" ? "error" : "stopped"),
                                  textContent: running ? (i.built_here ? "building" : "pulling") : i.status })),
        el("td", { className: "progress", textContent: progress }),
        el("td", { className: "actions" }, el("button", { type: "button", textContent: verb, disabled: running,
          ariaLabel: `${verb} ${i.name}`, dataset: { key: `fetch/${i.name}` }, onclick: () => fetchImage(i.name) })));
    })));
    const pick = $("push-image");
    const chosen = pick.value;
    const names = images.map((i) => i.name);
    if (pick.options.length !== names.length || names.some((n, k) => pick.options[k].value !== n)) {
      pick.replaceChildren(...names.map((n) => el("option", { value: n, textContent: n })));
      if (names.includes(chosen)) pick.value = chosen;
    }
    const pushing = images.find((i) => i.name === pick.value)?.push_job;
    const push = images.find((i) => i.push_job?.state === "running")?.push_job || pushing;
    $("push-progress").dataset.job = push?.state || "";
    $("push-progress").textContent = !push ? "" : push.state === "running" ? `pushing: ${push.progress || "starting…"}`
      : push.state === "failed" ? `push failed: ${push.error}` : push.progress;
    const busy = images.some((i) => i.job?.state === "running" || i.push_job?.state === "running");
    if (busy && !imagesTimer) imagesTimer = setInterval(() => refreshImages().catch(() => {}), 2000);
    if (!busy && imagesTimer) { clearInterval(imagesTimer); imagesTimer = null; }
    if (!busy && $("status").textContent.startsWith("Fetching")) $("status").textContent = "";
  }
  $("push-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { image: $("push-image").value, registry: $("push-registry").value.trim(),
                   username: $("push-username").value.trim(), password: $("push-password").value };
    try {
      await api("POST", "/images/push", body);
      $("push-password").value = "";
      $("push-error").hidden = true;
    } catch (err) { $("push-error").textContent = err.message; $("push-error").hidden = false; }
    await refreshImages();
  });
  $("push-image").addEventListener("change", () => refreshImages().catch(() => {}));
  async function fetchImage(image) {
    try { await api("POST", "/images/fetch", { image }); $("status").textContent = `Fetching ${image}…`; }
    catch (err) { $("status").textContent = `Could not fetch ${image}: ${err.message}`; }
    refreshImages();
  }

  async function setPassword(u) {
    const password = prompt(`New password for ${u.email} (8+ characters). Their browser sessions end.`);
    if (!password) return;
    try {
      await api("POST", `/admin/users/${u.id}/password`, { password });
      $("status").textContent = `Password set for ${u.email}.`;
      await refreshAudit(true);
    } catch (err) { $("status").textContent = err.message; }
  }
  async function update(id, change) {
    try { await api("PATCH", "/admin/users/" + id, change); $("status").textContent = ""; await Promise.all([refreshUsers(), refreshAudit(true)]); }
    catch (err) { $("status").textContent = err.message; }
  }
  $("user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/admin/users", { email: $("user-email").value, password: $("user-password").value,
                                          is_admin: $("user-admin").checked });
      e.target.reset();
      $("user-error").hidden = true;
      await Promise.all([refreshUsers(), refreshAudit(true)]);
    } catch (err) { $("user-error").textContent = err.message; $("user-error").hidden = false; }
  });

  async function refreshEnvs() {
    const envs = await api("GET", "/admin/environments");
    $("all-envs").querySelector("tbody").replaceChildren(...envs.map((e) => el("tr", { dataset: { env: `${e.owner}/${e.name}` } },
      el("td", { textContent: e.owner }), el("td", { textContent: e.name }),
      el("td", {}, el("span", { className: "state " + e.state, textContent: e.state })),
      el("td", { textContent: e.image }), el("td", { textContent: when(e.created_at) }))));
  }

  async function refreshAudit(reset) {
    const filter = $("audit-filter").value.trim();
    const query = (reset || oldest === null ? "" : `&before=${oldest}`) + (filter ? `&action=${encodeURIComponent(filter)}` : "");
    const entries = await api("GET", "/admin/audit?limit=50" + query);
    const rows = entries.map((a) => el("tr", { dataset: { action: a.action } }, el("td", { textContent: when(a.ts) }),
      el("td", { textContent: a.actor }), el("td", {}, el("code", { textContent: a.action })),
      el("td", { textContent: a.target }), el("td", { textContent: a.detail })));
    const tbody = $("audit").querySelector("tbody");
    if (reset || oldest === null) tbody.replaceChildren(...rows); else tbody.append(...rows);
    if (entries.length) oldest = entries[entries.length - 1].id;
    $("audit-more").disabled = entries.length < 50;
  }
  $("audit-more").addEventListener("click", () => refreshAudit(false));
  let filterTimer;
  $("audit-filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { oldest = null; refreshAudit(true).catch((err) => { $("status").textContent = err.message; }); }, 300);
  });

  Promise.all([refreshUsers(), refreshImages(), refreshEnvs(), refreshAudit(true)]).catch((err) => { $("status").textContent = err.message; });
})();
