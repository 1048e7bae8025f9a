"""In a real headless Chromium (Debian's, driven by Playwright; fixtures in conftest.py):
log in, the browser terminal, VS Code's workbench through dev8's proxy, and a preview's
scripts attacking dev8. Screenshots go to test-artifacts/ in the repository."""
from __future__ import annotations

import json
import re
from urllib.parse import quote

from tests.support import (
    Dev8Server,
    User,
    log_in,
    restricted_mode_shown,
    set_web_password,
    shot,
    trust_questions,
    unique,
    wait_until,
)


def terminal_text(page) -> str:  # type: ignore[no-untyped-def]
    return page.inner_text(".xterm-rows")


def test_browser_terminal_runs_commands_renders_text_and_reattaches(page, server: Dev8Server, alice: User):  # type: ignore[no-untyped-def]
    set_web_password(alice)
    name = unique("c")
    alice.cli("create", name)
    target = f"/@{alice.username}/{name}/terminal/"
    log_in(page, server, alice, target)
    page.wait_for_selector("#status:text('connected')")
    page.click("#terminal")
    page.keyboard.type("echo hello-$((6*7)) pid=$$\n")
    wait_until(lambda: "hello-42" in terminal_text(page), timeout=20, what="command output in the terminal")
    pid = re.search(r"hello-42 pid=(\d+)", terminal_text(page)).group(1)  # type: ignore[union-attr]
    # output is text: markup from the environment never becomes DOM
    page.keyboard.type("printf '<img id=pwn src=x onerror=alert(1)><b>bold</b>\\n'\n")
    wait_until(lambda: "<b>bold</b>" in terminal_text(page), timeout=20, what="markup printed as text")
    assert page.query_selector("#pwn") is None and page.query_selector(".xterm-rows b") is None
    # colours reach xterm.js as styles
    page.keyboard.type("printf '\\033[31mred\\033[0m\\n'\n")
    wait_until(lambda: page.query_selector(".xterm-rows span.xterm-fg-1") is not None, timeout=20,
               what="red text")
    # the window size follows the page
    page.set_viewport_size({"width": 700, "height": 500})
    page.keyboard.type("stty size\n")
    wait_until(lambda: re.search(r"\n\d+ (\d+)\n", terminal_text(page)) is not None, timeout=20, what="stty size")
    cols = int(re.findall(r"\n\d+ (\d+)\n", terminal_text(page))[-1])
    assert 40 < cols < 90
    # paste: the clipboard's text goes to the shell (bracketed, so it runs on Enter)
    page.evaluate("""() => { const dt = new DataTransfer(); dt.setData('text/plain', 'echo pasted-$((2+3))');
        document.querySelector('.xterm-helper-textarea').dispatchEvent(
            new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true})); }""")
    page.keyboard.press("Enter")
    wait_until(lambda: "pasted-5" in terminal_text(page), timeout=20, what="pasted command output")
    shot(page, "terminal")
    # a reload re-attaches to the same shell and repaints the recent output
    page.reload()
    page.wait_for_selector("#status:text('connected')")
    wait_until(lambda: "hello-42" in terminal_text(page), timeout=20, what="replayed output")
    page.click("#terminal")
    page.keyboard.type("echo again-$$\n")
    wait_until(lambda: f"again-{pid}" in terminal_text(page), timeout=20, what="the same shell")
    assert page.console_errors == []


def test_vscode_opens_edits_saves_and_runs_its_terminal(page, server: Dev8Server, alice: User,  # type: ignore[no-untyped-def]
                                                        fullstack_image: str):
    set_web_password(alice)
    name = unique("v")
    alice.cli("create", name, "--image", fullstack_image)
    alice.ssh(name, "mkdir -p ~/workspace/proj && echo 'first line' > ~/workspace/proj/notes.txt")
    # the user's own VS Code settings, seeded once: no trust question in their own environment
    seeded = alice.ssh(name, "cat ~/.local/share/code-server/User/settings.json").stdout
    assert json.loads(seeded)["security.workspace.trust.enabled"] is False, seeded
    asked = trust_questions(page)
    log_in(page, server, alice, "/login?next=/healthz")
    # the path form of VS Code's URL: the browser is sent to VS Code's own host, signed in there
    page.goto(f"{server.url}/@{alice.username}/{name}/apps/vscode/?folder=/home/dev/workspace/proj")
    assert page.url.startswith(f"http://vscode--{name}--{alice.username}.localhost:{server.http_port}/?folder="), page.url
    page.wait_for_selector(".monaco-workbench", timeout=120_000)
    page.wait_for_selector(".explorer-folders-view :text('notes.txt')", timeout=60_000)
    page.click(".explorer-folders-view :text('notes.txt')")
    page.wait_for_selector(".monaco-editor .view-lines:has-text('first line')", timeout=60_000)
    page.click(".monaco-editor .view-lines")
    page.keyboard.press("Control+End")
    page.keyboard.type("typed in the browser")
    page.keyboard.press("Control+S")
    wait_until(lambda: "typed in the browser" in alice.ssh(name, "cat ~/workspace/proj/notes.txt").stdout,
               timeout=30, what="the saved file")
    shot(page, "vscode-editor")
    # the integrated terminal runs in the environment
    page.keyboard.press("Control+Backquote")
    page.wait_for_selector(".terminal-wrapper .xterm", timeout=60_000)
    page.wait_for_timeout(1000)  # the shell prints its prompt
    page.click(".terminal-wrapper .xterm")  # the panel opens, but the editor may keep the focus
    page.keyboard.type("echo from-vscode-$((40+2)) > /tmp/vscode-terminal.txt\n")
    wait_until(lambda: alice.ssh(name, "cat /tmp/vscode-terminal.txt 2>/dev/null").stdout.strip() == "from-vscode-42",
               timeout=30, what="a command run in VS Code's terminal")
    shot(page, "vscode-terminal")
    assert asked == [] and not restricted_mode_shown(page)  # straight into the work, as in Codespaces


def test_vscode_on_its_own_subdomain(page, tmp_path, base_image: str, fullstack_image: str):  # type: ignore[no-untyped-def]
    server = Dev8Server(tmp_path / "server")
    server.start(DEV8_WILDCARD_DOMAIN=f"dev8.localhost:{server.http_port}")
    try:
        alice = User(server, "alice@example.com", tmp_path / "alice")
        set_web_password(alice)
        name = unique("d")
        alice.cli("create", name, "--image", fullstack_image)
        alice.ssh(name, "echo hi > ~/workspace/on-subdomain.txt")
        url = alice.cli("open", name).stdout.strip()
        root = f"http://vscode--{name}--{alice.username}.dev8.localhost:{server.http_port}/"
        assert url == root + "?folder=%2Fhome%2Fdev%2Fworkspace"  # no repository: the workspace folder
        log_in(page, server, alice, "/login?next=/healthz")  # logged in on dev8's own host first
        page.goto(url)
        # through /app-auth and the ticket, back to the app host, never via dev8's cookie
        assert page.url.startswith(root)
        page.wait_for_selector(".monaco-workbench", timeout=120_000)
        page.wait_for_selector(".explorer-folders-view :text('on-subdomain.txt')", timeout=60_000)
        app_cookies = page.context.cookies(url)
        assert [c["name"] for c in app_cookies] == ["dev8_app"] and app_cookies[0]["httpOnly"]
        shot(page, "vscode-subdomain")
    finally:
        server.shutdown()


# A preview serving this page tries what a malicious dev server or dependency would do with
# dev8's origin: read dev8's pages (the CSRF token), call the API, mint a token, read cookies,
# frame dev8. ``dev8`` is dev8's own URL, handed in the query string.
ATTACK_PAGE = """<!doctype html><html><head><title>working</title></head><body><script>
(async () => {
  const dev8 = new URLSearchParams(location.search).get("dev8");
  const out = {origin: location.origin, cookie: document.cookie};
  const attempt = async (what, f) => { try { out[what] = await f(); } catch (e) { out[what] = "blocked"; } };
  await attempt("relative_home", async () => (await fetch("/", {credentials: "include"})).text());
  await attempt("dev8_home", async () => (await fetch(dev8 + "/", {credentials: "include"})).text());
  await attempt("me", async () => (await fetch(dev8 + "/api/v1/me", {credentials: "include"})).status);
  await attempt("mint", async () => (await fetch(dev8 + "/api/v1/tokens", {method: "POST", credentials: "include",
      mode: "no-cors", headers: {"content-type": "text/plain"}, body: JSON.stringify({name: "stolen"})})).type);
  await attempt("relative_mint", async () => (await fetch("/api/v1/tokens", {method: "POST", credentials: "include",
      headers: {"content-type": "application/json"}, body: JSON.stringify({name: "stolen2"})})).status);
  const frame = document.createElement("iframe");
  frame.src = dev8 + "/";
  await new Promise(done => { frame.onload = done; setTimeout(done, 3000); document.body.append(frame); });
  await attempt("frame", async () => frame.contentDocument.documentElement.outerHTML);
  document.body.dataset.out = JSON.stringify(out);
  document.title = "done";
})();
</script></body></html>"""


def test_a_previews_scripts_cannot_act_as_its_owner_on_dev8(page, server: Dev8Server, alice: User):  # type: ignore[no-untyped-def]
    set_web_password(alice)
    name = unique("p")
    alice.cli("create", name)
    alice.ssh(name, "mkdir -p /tmp/site && cat > /tmp/site/attack.html && "
                    "(nohup python3 -m http.server 8200 --bind 127.0.0.1 --directory /tmp/site >/dev/null 2>&1 &)",
              input=ATTACK_PAGE)
    wait_until(lambda: alice.script().get(f"/@{alice.username}/{name}/ports/8200/attack.html").status_code == 200,
               timeout=30, what="the preview's server")
    log_in(page, server, alice, "/login?next=/healthz")
    # the URL a user would share or bookmark: the path form on dev8's own origin
    page.goto(f"{server.url}/@{alice.username}/{name}/ports/8200/attack.html?dev8={quote(server.url)}")
    page.wait_for_function("document.title === 'done'", timeout=60_000)
    out = json.loads(page.get_attribute("body", "data-out") or "{}")
    app_origin = f"http://8200--{name}--{alice.username}.localhost:{server.http_port}"
    assert out["origin"] == app_origin, out  # never dev8's origin
    assert out["cookie"] == ""  # the app's own session cookie is HttpOnly; dev8's is not this host's
    assert "csrf-token" not in out["relative_home"] and "attack.html" in out["relative_home"]  # "/" is the app's
    assert out["dev8_home"] == "blocked" and out["me"] == "blocked" and out["frame"] == "blocked", out
    tokens = alice.http().get("/tokens").json()
    assert not [t for t in tokens if t["name"].startswith("stolen")], tokens
    shot(page, "preview-attack")
