// Prebuilds: the user's configurations with their latest runs (state, commit, duration, the
// steps of each), set one (shows its webhook secret once), run one now, delete one. Runs in
// progress are looked at again every few seconds.
"use strict";
(() => {
  const { api, el, when, duration, latest } = window.dev8;
  const $ = (id) => document.getElementById(id);
  const showErr = (id, err) => { $(id).textContent = err ? err.message : ""; $(id).hidden = !err; };
  const hooks = `${location.origin}/api/v1/prebuilds/hooks`;

  function runRow(r) {
    const took = r.finished_at ? duration((new Date(r.finished_at) - new Date(r.created_at)) / 1000) : "—";
    const log = r.log || r.message;
    // labelled for a phone, where rows become cards (common.js labels the tables a page starts with)
    const td = (label, ...children) => el("td", { dataset: { label } }, ...children);
    return el("tr", { dataset: { run: r.id } },
      td("State", el("span", { className: `state ${r.state}`, textContent: r.state })),
      td("Commit", el("code", { textContent: r.commit ? r.commit.slice(0, 7) : "—" })),
      td("Started", when(r.created_at)), td("Took", took),
      td("Log", log ? el("details", {}, el("summary", { textContent: r.message ? "Why it failed" : "Steps" }),
                                       el("pre", { textContent: [r.message, r.log].filter(Boolean).join("\n\n") }))
                    : ""));
  }

  function card(c) {
    const title = `${c.repo}${c.branch ? ` at ${c.branch}` : ""}`;
    return el("article", { className: "card", dataset: { prebuild: c.id } },
      el("h3", { textContent: title }),
      el("p", { className: "muted", textContent: `${c.image}, ${c.cpus} CPUs, ${c.memory}; keeps ${c.keep}` +
                                                  (c.every ? `; every ${duration(c.every)}` : "") }),
      c.runs.length ? el("div", { className: "table-wrap" }, el("table", {},
        el("caption", { className: "sr-only", textContent: `Runs of ${title}` }),
        el("thead", {}, el("tr", {}, ...["State", "Commit", "Started", "Took", "Log"].map(
          (h) => el("th", { scope: "col", textContent: h })))),
        el("tbody", {}, ...c.runs.map(runRow)))) : el("p", { className: "muted", textContent: "Never run." }),
      el("div", { className: "actions" },
        el("button", { type: "button", textContent: "Run now", ariaLabel: `Run ${title} now`,
                       onclick: () => act(() => api("POST", `/prebuilds/${c.id}/runs`)) }),
        el("button", { type: "button", className: "danger", textContent: "Delete", ariaLabel: `Delete ${title}`,
                       onclick: () => confirm(`Delete the prebuild of ${title}? Environments made from it keep their homes.`)
                         && act(() => api("DELETE", `/prebuilds/${c.id}`)) })));
  }

  let timer = null;
  const refresh = latest(() => api("GET", "/prebuilds"), (configs) => {
    $("prebuild-list").replaceChildren(...configs.map(card));
    $("prebuild-empty").hidden = configs.length > 0;
    clearTimeout(timer);
    if (configs.some((c) => c.runs.some((r) => r.state === "queued" || r.state === "running"))) {
      timer = setTimeout(() => refresh().catch((err) => showErr("prebuild-list-error", err)), 3000);
    }
  });
  async function act(call) {
    try { await call(); showErr("prebuild-list-error"); await refresh(); }
    catch (err) { showErr("prebuild-list-error", err); }
  }

  $("prebuild-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const host = $("prebuild-git").value.trim();
    try {
      const made = await api("PUT", "/prebuilds", {
        repo: $("prebuild-repo").value.trim(), branch: $("prebuild-branch").value.trim() || null,
        every: Number($("prebuild-every").value), git: host ? [{ kind: $("prebuild-kind").value, host }] : [] });
      if (made.webhook_secret) {
        $("prebuild-hook-value").textContent =
          `URL     ${hooks}/${host ? $("prebuild-kind").value : "github"}\nsecret  ${made.webhook_secret}`;
        $("prebuild-hook").hidden = false;
      }
      await api("POST", `/prebuilds/${made.id}/runs`);
      e.target.reset();
      showErr("prebuild-error");
      await refresh();
    } catch (err) { showErr("prebuild-error", err); }
  });
  refresh().catch((err) => showErr("prebuild-list-error", err));
})();
