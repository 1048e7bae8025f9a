// Create form: every change is checked by the API itself (/environments/validate), so the rules
// are the server's; errors appear next to their field once it has been touched. Submit
// creates everything in one request (tokens typed here become secrets in the same
// transaction), then the start steps stream in from the event stream.
"use strict";
(() => {
  const { api, el, clearErrors, showError } = window.dev8;
  const form = document.getElementById("create");
  const formError = document.getElementById("form-error");
  const gitRows = document.getElementById("git-rows");
  const DEFAULT_SECRET = { github: "GITHUB_TOKEN", gitlab: "GITLAB_TOKEN", bitbucket: "BITBUCKET_TOKEN" };
  const touched = new Set();
  let saved = [];
  let rowSeq = 0;

  const $ = (id) => document.getElementById(id);
  const val = (id) => $(id).value.trim();

  // --- secret pickers: a saved secret, or a new value stored under a name -------------
  function fillPicker(picker) {
    const choice = picker.querySelector(".choice");
    const current = choice.value;
    const fixed = [...choice.options].filter((o) => o.value === "" || o.value === "__new__");
    choice.replaceChildren(...fixed, ...saved.map((n) => el("option", { value: n, textContent: "Saved secret " + n })));
    const preferred = picker.dataset.optional === "true" ? "" : (saved.includes(picker.dataset.defaultName)
      ? picker.dataset.defaultName : "__new__");
    choice.value = [...choice.options].some((o) => o.value === current) && picker.dataset.chosen ? current : preferred;
    syncPicker(picker);
  }
  function syncPicker(picker) {
    picker.querySelector(".new-value").hidden = picker.querySelector(".choice").value !== "__new__";
  }
  // The secret name the picker stands for (null: none); a new value goes into new_secrets.
  function pickerValue(picker, body, field) {
    const choice = picker.querySelector(".choice").value;
    const slot = picker.querySelector(".field-error");
    slot.dataset.errorFor = field;
    if (choice !== "__new__") return choice || null;
    const name = picker.querySelector(".save-as").value.trim();
    const value = picker.querySelector(".value").value;
    slot.dataset.errorFor = "new_secrets." + name;
    if (value) body.new_secrets[name] = value;
    return name;
  }
  function wirePicker(picker) {
    picker.dataset.wired = "1";
    picker.querySelector(".choice").addEventListener("change", () => { picker.dataset.chosen = "1"; syncPicker(picker); });
    fillPicker(picker);
  }

  // --- git provider rows ---------------------------------------------------------------
  function addGitRow() {
    const row = $("git-row").content.firstElementChild.cloneNode(true);
    const n = ++rowSeq;
    row.querySelectorAll("[id]").forEach((e) => { e.id = e.id.replace("git-token", `git${n}-token`); });
    row.querySelectorAll("label[for]").forEach((e) => { e.htmlFor = e.htmlFor.replace("git-token", `git${n}-token`); });
    row.querySelectorAll("[data-error-input]").forEach((e) => {
      e.dataset.errorInput = e.dataset.errorInput.replace("git-token", `git${n}-token`); });
    row.querySelectorAll("input.host, input.username, select.kind").forEach((e) => { e.id = `git${n}-${e.dataset.part}`; });
    const picker = row.querySelector(".secret-picker");
    const kind = row.querySelector(".kind");
    const host = row.querySelector(".host");
    const defaultName = () => {
      const h = host.value.trim().toUpperCase().replace(/[^A-Z0-9]+/g, "_").replace(/^_|_$/g, "");
      return DEFAULT_SECRET[kind.value] + (h ? "_" + h : "");
    };
    const rename = () => {
      const saveAs = picker.querySelector(".save-as");
      if (!saveAs.dataset.edited) saveAs.value = defaultName();
      picker.dataset.defaultName = defaultName();
      host.placeholder = { github: "github.com", gitlab: "gitlab.com", bitbucket: "bitbucket.org" }[kind.value];
    };
    picker.querySelector(".save-as").addEventListener("input", (e) => { e.target.dataset.edited = "1"; });
    kind.addEventListener("change", () => { rename(); if (!picker.dataset.chosen) fillPicker(picker); });
    host.addEventListener("input", rename);
    row.querySelector(".remove").addEventListener("click", () => { row.remove(); scheduleCheck(); });
    gitRows.append(row);
    rename();
    wirePicker(picker);
    kind.focus();
  }

  function body() {
    const b = { name: val("f-name"), image: val("f-image") || null, cpus: val("f-cpus") ? Number(val("f-cpus")) : null,
                memory: val("f-memory") || null, repo: val("f-repo") || null, branch: val("f-branch") || null,
                idle_timeout: val("f-idle") !== "" ? Math.round(Number(val("f-idle")) * 60) : null,
                git: [], ai: {}, new_secrets: {}, template: template ? template.name : null };
    [...gitRows.children].forEach((row, i) => {
      for (const part of ["kind", "host", "username"]) {
        row.querySelector(`.field-error[data-part="${part}"]`).dataset.errorFor = `git.${i}.${part}`;
        row.querySelector(`.field-error[data-part="${part}"]`).dataset.errorInput = row.querySelector(`.${part}`).id;
      }
      const picker = row.querySelector(".secret-picker");
      b.git.push({ kind: row.querySelector(".kind").value, host: row.querySelector(".host").value.trim() || null,
                   username: row.querySelector(".username").value.trim() || null,
                   secret: pickerValue(picker, b, `git.${i}.secret`) });
    });
    for (const kind of ["anthropic", "gemini", "copilot"]) {
      const secret = pickerValue(document.querySelector(`[data-picker="ai-${kind}"]`), b, `ai.${kind}`);
      if (secret) b.ai[kind] = secret;
    }
    return b;
  }

  // --- validation as you type ----------------------------------------------------------
  let timer, checking = 0;
  function scheduleCheck() { clearTimeout(timer); timer = setTimeout(check, 300); }
  async function check() {
    const seq = ++checking;
    const b = body();
    if (!b.name) { clearErrors(form); return; }
    let result;
    try { result = await api("POST", "/environments/validate", b); } catch { return; }  // e.g. a non-numeric CPU count
    if (seq !== checking) return;
    clearErrors(form);
    formError.hidden = true;
    const field = result.field || "";
    if (!result.valid && touched.has(field.split(".").slice(0, field.startsWith("git.") ? 3 : 1).join("."))) {
      showError(form, field, result.detail, formError);
    }
  }
  form.addEventListener("input", (e) => {
    const field = e.target.dataset.field || fieldOfRow(e.target);
    if (field) touched.add(field);
    scheduleCheck();
  });
  form.addEventListener("change", scheduleCheck);
  function fieldOfRow(input) {
    const row = input.closest(".git-row");
    if (row && input.dataset.part) return `git.${[...gitRows.children].indexOf(row)}.${input.dataset.part}`;
    const picker = input.closest(".secret-picker");
    if (picker) return "new_secrets";
    return null;
  }

  // --- submit and progress -------------------------------------------------------------
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearTimeout(timer);
    checking++;
    clearErrors(form);
    formError.hidden = true;
    const b = body();
    if (!b.name) {  // the one rule worth saying in the form's own words before asking the API
      showError(form, "name", "Name is required: 1–32 lowercase letters, digits and “-”.", formError);
      $("f-name").focus();
      return;
    }
    const button = $("create-button");
    button.disabled = true;
    try {
      const env = await api("POST", "/environments", b);
      follow(env.name);
    } catch (err) {
      const shown = showError(form, err.field, err.message, formError);
      shown.scrollIntoView({ block: "center" });
      button.disabled = false;
    }
  });

  function follow(name) {
    form.hidden = true;
    const progress = $("progress");
    progress.hidden = false;
    progress.querySelectorAll("[data-name]").forEach((n) => { n.textContent = name; });
    const steps = $("steps"), status = $("progress-status");
    const items = new Map();
    const item = (step) => {
      if (!items.has(step)) {
        const li = el("li", { dataset: { step } }, el("span", { className: "mark", textContent: "…" }), " ",
                      el("strong", { textContent: step }), " ", el("span", { className: "detail muted" }));
        items.set(step, li);
        steps.append(li);
      }
      return items.get(step);
    };
    const source = new EventSource(`/api/v1/environments/${encodeURIComponent(name)}/events`);
    const envPage = "/environments/" + encodeURIComponent(name);
    $("progress-page").href = envPage;
    source.addEventListener("progress", (msg) => {
      const ev = JSON.parse(msg.data);
      const li = item(ev.step);
      li.dataset.status = ev.status;
      li.querySelector(".mark").textContent = { ok: "✓", error: "✗", warning: "!", running: "…", progress: "…" }[ev.status] || "·";
      if (ev.message) li.querySelector(".detail").textContent = ev.message;
      if (ev.status === "error") {
        source.close();
        status.replaceChildren(`Step “${ev.step}” failed: ${ev.message}. `,
                               el("a", { href: envPage, textContent: "Open the environment page" }));
      } else if (ev.step === "ready" && ev.status === "ok") {
        source.close();
        status.textContent = `${name} is ready.`;
        location.href = envPage;
      }
    });
    source.addEventListener("deleted", () => { source.close(); status.textContent = `${name} was deleted.`; });
  }

  // --- templates: a card each; the chosen one's values are the fields' defaults, and the
  // fields it does not let users change are disabled ------------------------------------
  const TEMPLATE_INPUTS = { image: "f-image", cpus: "f-cpus", memory: "f-memory", idle_timeout: "f-idle",
                            repo: "f-repo", branch: "f-branch" };
  const placeholders = Object.fromEntries(Object.values(TEMPLATE_INPUTS).map((id) => [id, $(id).placeholder]));
  let template = null;
  function chooseTemplate(t) {
    template = t;
    const notes = [];
    for (const [field, id] of Object.entries(TEMPLATE_INPUTS)) {
      const value = t ? t[field] : null;
      const locked = t && value != null && !t.editable.includes(field);
      $(id).placeholder = value == null ? placeholders[id] : String(field === "idle_timeout" ? Math.round(value / 60) : value);
      $(id).disabled = locked;
      if (locked) $(id).value = "";
    }
    showImage();
    if (t && t.git.length) notes.push("git logins for " + t.git.map((g) => g.host || g.kind).join(", "));
    if (t && t.extensions.length) notes.push("extensions " + t.extensions.join(", "));
    if (t && Object.keys(t.env).length) notes.push("variables " + Object.keys(t.env).join(", "));
    $("template-note").textContent = t ? `${t.name}: ${t.description || "no description"}` +
      (notes.length ? `; also ${notes.join("; ")}` : "") + ". Greyed-out fields are set by the template." : "";
    scheduleCheck();
  }
  function templateCard(t) {
    const input = el("input", { type: "radio", name: "template", value: t ? t.name : "", checked: !t,
                                onchange: () => chooseTemplate(t) });
    return el("label", { className: "card template-card", dataset: { template: t ? t.name : "" } }, input,
              el("strong", { textContent: t ? t.name : "No template" }),
              el("span", { className: "muted", textContent: t ? (t.description || t.image || "") : "Choose every value yourself" }));
  }
  api("GET", "/templates").then((list) => {
    if (!list.length) return;
    $("template-cards").replaceChildren(templateCard(null), ...list.map(templateCard));
    $("template-section").hidden = false;
  }).catch(() => {});

  // --- images: what each known one offers, and whether it is ready or must be built first
  let images = {};
  function showImage() {
    const chosen = val("f-image") || $("f-image").placeholder;
    const image = images[chosen];
    $("image-status").textContent = image ? [image.description, image.note].filter(Boolean).join(" — ") : "";
    $("image-status").dataset.status = image ? image.status : "";
  }
  $("f-image").addEventListener("input", showImage);
  api("GET", "/images").then((list) => {
    images = Object.fromEntries(list.map((i) => [i.name, i]));
    showImage();
  }).catch(() => {});

  // --- start -------------------------------------------------------------------------
  // What was typed before this script ran (a fast typist, a slow page) is checked too.
  form.querySelectorAll("[data-field]").forEach((input) => { if (input.value) touched.add(input.dataset.field); });
  if (touched.size) scheduleCheck();
  $("add-git").addEventListener("click", () => { addGitRow(); scheduleCheck(); });
  api("GET", "/secrets").then((secrets) => {
    saved = secrets.map((s) => s.name);
    document.querySelectorAll(".secret-picker").forEach((p) => {
      if (p.dataset.wired) fillPicker(p);
      else wirePicker(p);
    });
  }).catch((err) => { formError.textContent = "Could not load your secrets: " + err.message; formError.hidden = false; });
})();
