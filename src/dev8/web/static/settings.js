// Settings: secrets (names only; set, replace, delete), the dotfiles repository, and API
// tokens (created with a name and an expiry, shown once; revoked). SSH keys are sshkeys.js.
"use strict";
(() => {
  const { api, el, when, latest } = window.dev8;
  const $ = (id) => document.getElementById(id);
  const showErr = (id, err) => { $(id).textContent = err ? err.message : ""; $(id).hidden = !err; };

  const refreshSecrets = latest(() => api("GET", "/secrets"), (secrets) => {
    $("secret-list").querySelector("tbody").replaceChildren(...secrets.map((s) => el("tr", { dataset: { secret: s.name } },
      el("td", {}, el("code", { textContent: s.name })), el("td", { textContent: when(s.updated_at) }),
      el("td", { className: "actions" },
        el("button", { type: "button", textContent: "Replace", ariaLabel: "Replace " + s.name,
                       onclick: () => { $("secret-name").value = s.name; $("secret-value").focus(); } }),
        el("button", { type: "button", className: "danger", textContent: "Delete", ariaLabel: "Delete " + s.name,
                       onclick: () => removeSecret(s.name) })))));
  });
  async function removeSecret(name) {
    if (!confirm(`Delete secret ${name}? Environments that use it keep their copy until reconfigured.`)) return;
    try { await api("DELETE", "/secrets/" + encodeURIComponent(name)); showErr("secret-error"); await refreshSecrets(); }
    catch (err) { showErr("secret-error", err); }
  }
  $("secret-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("secret-name").value.trim();
    try {
      await api("PUT", "/secrets/" + encodeURIComponent(name), { value: $("secret-value").value });
      e.target.reset();
      showErr("secret-error");
      await refreshSecrets();
    } catch (err) { showErr("secret-error", err); }
  });

  const refreshTokens = latest(() => api("GET", "/tokens"), (tokens) => {
    $("token-list").querySelector("tbody").replaceChildren(...tokens.map((t) => el("tr", { dataset: { token: t.name } },
      el("td", {}, t.name, ...(t.current ? [" ", el("span", { className: "muted", textContent: "(this browser)" })] : [])),
      el("td", { textContent: when(t.created_at) }),
      el("td", { textContent: t.expires_at ? when(t.expires_at) : "never" }), el("td", { textContent: when(t.last_used_at) }),
      el("td", { className: "actions" }, el("button", { type: "button", className: "danger", textContent: "Revoke",
                                                         ariaLabel: "Revoke " + t.name, onclick: () => revoke(t.id) })))));
  });
  async function revoke(id) {
    try { await api("DELETE", "/tokens/" + id); showErr("token-error"); await refreshTokens(); }
    catch (err) { showErr("token-error", err); }
  }
  $("token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const created = await api("POST", "/tokens", { name: $("token-name").value, expires_in: $("token-expiry").value });
      $("token-value").textContent = created.token;
      $("token-created").hidden = false;
      $("token-name").value = "";
      showErr("token-error");
      await refreshTokens();
    } catch (err) { showErr("token-error", err); }
  });

  function showDotfiles(d) {
    $("dotfiles-url").value = d.url || "";
    $("dotfiles-branch").value = d.branch || "";
    $("dotfiles-clear").hidden = !d.url;
    $("dotfiles-status").textContent = d.url ? "New environments get these dotfiles." : "No dotfiles repository.";
  }
  $("dotfiles-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      showDotfiles(await api("PUT", "/dotfiles", { url: $("dotfiles-url").value.trim(),
                                                   branch: $("dotfiles-branch").value.trim() || null }));
      showErr("dotfiles-error");
    } catch (err) { showErr("dotfiles-error", err); }
  });
  $("dotfiles-clear").addEventListener("click", async () => {
    try { await api("DELETE", "/dotfiles"); showDotfiles({}); showErr("dotfiles-error"); }
    catch (err) { showErr("dotfiles-error", err); }
  });
  api("GET", "/dotfiles").then(showDotfiles).catch((err) => showErr("dotfiles-error", err));

  refreshSecrets().catch((err) => showErr("secret-error", err));
  refreshTokens().catch((err) => showErr("token-error", err));
})();
