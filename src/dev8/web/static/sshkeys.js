// The SSH keys section (create form and settings): list, paste, generate (private key
// shown once, downloadable), remove.
"use strict";
(() => {
  const { api, el, when, latest } = window.dev8;
  const list = document.getElementById("key-list");
  const error = document.getElementById("key-error");
  const paste = document.getElementById("key-paste");

  function fail(err) { error.textContent = err.message; error.hidden = false; paste.setAttribute("aria-invalid", "true"); }
  function ok() { error.hidden = true; paste.removeAttribute("aria-invalid"); }

  const refresh = latest(() => api("GET", "/keys"), (keys) => {
    list.replaceChildren(...keys.map((k) => el("li", { dataset: { key: k.name } },
      el("strong", { textContent: k.name }), " ", el("code", { textContent: "SHA256:" + k.fingerprint }),
      el("span", { className: "muted", textContent: " added " + when(k.created_at) + " " }),
      el("button", { type: "button", className: "danger", textContent: "Remove",
                     ariaLabel: "Remove key " + k.name, onclick: () => remove(k.id) }))));
    if (!keys.length) list.append(el("li", { className: "muted", textContent: "No SSH keys yet." }));
  });

  async function remove(id) {
    try { await api("DELETE", "/keys/" + id); ok(); await refresh(); } catch (err) { fail(err); }
  }

  document.getElementById("key-add").addEventListener("click", async () => {
    try {
      await api("POST", "/keys", { public_key: paste.value.trim() });
      paste.value = "";
      ok();
      await refresh();
    } catch (err) { fail(err); }
  });

  document.getElementById("key-generate").addEventListener("click", async () => {
    try {
      const { private_key: privateKey } = await api("POST", "/keys/generate", { name: "generated in the browser" });
      ok();
      document.getElementById("key-private").textContent = privateKey;
      document.getElementById("key-generated").hidden = false;
      document.getElementById("key-download").onclick = () => window.dev8.download("id_ed25519_dev8", privateKey);
      await refresh();
    } catch (err) { fail(err); }
  });

  refresh().catch(fail);
})();
