// The first-run setup page: creates the first admin through the API with the setup token
// from the page URL (no inline script: the page's CSP allows scripts from dev8 only), then
// logs that admin in (the login form's own request), so the dashboard opens logged in.
const token = new URLSearchParams(location.search).get("token") || "";
document.getElementById("f").addEventListener("submit", async (e) => {
  e.preventDefault();
  const data = new FormData(e.target), out = document.getElementById("out");
  const r = await fetch("/api/v1/setup", {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({token, email: data.get("email"), password: data.get("password")})});
  const body = await r.json();
  out.textContent = "";
  if (!r.ok) { out.textContent = "Error: " + (typeof body.detail === "string" ? body.detail : "invalid input"); return; }
  const login = await fetch("/login", {method: "POST", body: new URLSearchParams(
    {email: data.get("email"), password: data.get("password"), next: "/"})});
  const pre = document.createElement("pre");
  pre.textContent = "dev8 login " + location.origin + " --token " + body.token;
  const link = document.createElement("a");
  link.href = login.ok ? "/" : "/login";
  link.textContent = login.ok ? "Open the dashboard" : "Log in to the dashboard";
  out.append("Done. ", link, " — or from a terminal:", pre);
  e.target.remove();
});
