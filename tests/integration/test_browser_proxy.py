"""Access to apps and ports proxied over SSH, with login, isolation and the defences the
issues list, each written as the attack. Path-mode URLs on dev8's origin serve scripts
with a bearer token; browsers are sent to the app's own host (test_subdomains.py has the
app hosts themselves)."""
from __future__ import annotations

import asyncio
import subprocess
import time

import httpx
import pytest
import websockets

from tests.support import PASSWORD, Dev8Server, User, set_web_password, start_envapps, unique, wait_until, web_login


@pytest.fixture
def app_env(server: Dev8Server, alice: User) -> str:
    server.cli("admin", "set-password", alice.email, "--password-stdin", input=PASSWORD + "\n")
    name = unique("w")
    alice.cli("create", name)
    start_envapps(alice, name)
    return name


def test_a_browser_never_gets_an_app_on_dev8s_origin(server: Dev8Server, alice: User, app_env: str):
    """A page served at /@alice/env/ports/8100/ would run on dev8's origin: its scripts could
    read dev8's pages and act as alice. Browsers (session cookie, or nothing) are sent to the
    app's own host, *.localhost on a dev8 reached on loopback, with path and query kept;
    the app never answers on dev8's origin, whatever the method."""
    path = f"/@{alice.username}/{app_env}/ports/8100/x%20y/z?y=1"
    app_host = f"8100--{app_env}--{alice.username}.localhost:{server.http_port}"
    browser = httpx.Client(base_url=server.url, timeout=30)
    login = browser.post("/login", data={"email": alice.email, "password": PASSWORD, "next": path})
    assert login.status_code == 303 and login.headers["location"] == path  # back where the user was going
    assert {"httponly", "samesite=lax"} <= {a.strip() for a in login.headers["set-cookie"].lower().split(";")}
    for client in (browser, httpx.Client(base_url=server.url)):
        for method in ("GET", "POST", "PUT", "DELETE"):
            r = client.request(method, path, headers={"accept": "text/html"}, content=b"a=1" if method != "GET" else None)
            assert r.status_code == 307 and r.headers["location"] == f"http://{app_host}/x%20y/z?y=1", (method, r.text)
            assert "path" not in r.text  # the app was not asked
    vscode = browser.get(f"/@{alice.username}/{app_env}/apps/vscode/?folder=%2Fhome")
    assert vscode.headers["location"] == f"http://vscode--{app_env}--{alice.username}.localhost:{server.http_port}/?folder=%2Fhome"
    # a name that is no environment's is not turned into a host name
    assert browser.get("/@alice.evil.example/x/ports/8100/").status_code == 404
    # the app host signs the browser in through dev8 (as every app host does) and serves it
    first = httpx.get(server.url + "/x%20y/z?y=1", headers={"host": app_host, "accept": "text/html"})
    assert first.status_code == 303 and first.headers["location"].startswith(f"{server.url}/app-auth?")
    ticket = browser.get(first.headers["location"], headers={"accept": "text/html"})
    assert ticket.status_code == 303 and ticket.headers["location"].startswith(f"http://{app_host}/.dev8/auth?")
    redeemed = httpx.get(server.url + ticket.headers["location"].split(app_host, 1)[1], headers={"host": app_host})
    app_cookie = redeemed.cookies["dev8_app"]
    seen = httpx.get(server.url + "/x%20y/z?y=1", headers={"host": app_host, "cookie": f"dev8_app={app_cookie}"})
    assert seen.status_code == 200 and seen.json()["path"] == "/x%20y/z?y=1"
    # scripts with a token keep the path form; without one they are told so
    assert alice.script().get(path).json()["path"] == "/x%20y/z?y=1"
    assert httpx.get(server.url + path, headers={"authorization": "Bearer nope"}).status_code == 401


def test_a_dev8_without_an_app_domain_explains_instead_of_serving_apps(tmp_path, base_image: str):  # type: ignore[no-untyped-def]
    """Reached at an address that is not loopback and with no DEV8_WILDCARD_DOMAIN, dev8 has
    nowhere to put apps but its own origin: a browser gets a page saying why and what works."""
    srv = Dev8Server(tmp_path / "server")
    srv.start(DEV8_PUBLIC_URL="http://dev8.example.test")
    try:
        alice = User(srv, "alice@example.com", tmp_path / "alice")
        set_web_password(alice)
        name = unique("n")
        alice.cli("create", name)
        start_envapps(alice, name)
        browser = web_login(srv, alice.email)
        page = browser.get(f"/@{alice.username}/{name}/ports/8100/", headers={"accept": "text/html"})
        assert page.status_code == 403 and "DEV8_WILDCARD_DOMAIN" in page.text, page.text
        assert f"dev8 port-forward {name} 8100:8100" in page.text and "path" not in page.text
        vscode = browser.get(f"/@{alice.username}/{name}/apps/vscode/")
        assert vscode.status_code == 403 and "Remote-SSH" in vscode.json()["detail"]
        assert alice.script().get(f"/@{alice.username}/{name}/ports/8100/a").json()["path"] == "/a"
        assert alice.http().get(f"/environments/{name}").json()["vscode_url"].startswith("http://dev8.example.test/@")
        shared = alice.cli("share", name, "8100", "public")
        assert "browsers open no previews" in " ".join(shared.stderr.split())
    finally:
        srv.shutdown()


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_login_only_follows_same_origin_relative_next(server: Dev8Server, alice: User, target: str):
    server.cli("admin", "set-password", alice.email, "--password-stdin", input=PASSWORD + "\n")
    r = httpx.post(server.url + "/login", data={"email": alice.email, "password": PASSWORD, "next": target})
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_wrong_password_is_one_generic_message(server: Dev8Server, alice: User):
    server.cli("admin", "set-password", alice.email, "--password-stdin", input=PASSWORD + "\n")
    wrong = httpx.post(server.url + "/login", data={"email": alice.email, "password": "nope"})
    unknown = httpx.post(server.url + "/login", data={"email": "nobody@example.com", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password." in wrong.text
    # the same page but for the email typed, which stays in the field
    assert wrong.text.replace(alice.email, "?") == unknown.text.replace("nobody@example.com", "?")
    assert f'value="{alice.email}"' in wrong.text
    assert "set-cookie" not in wrong.headers


def test_repeated_failed_logins_are_throttled_on_the_page_and_the_api(server: Dev8Server, alice: User, bob: User):
    server.cli("admin", "set-password", alice.email, "--password-stdin", input=PASSWORD + "\n")
    for _ in range(5):
        assert httpx.post(server.url + "/login", data={"email": alice.email, "password": "guess"}).status_code == 401
    # now even the right password is refused for a while, with the reason and when to retry
    page = httpx.post(server.url + "/login", data={"email": alice.email, "password": PASSWORD})
    assert page.status_code == 429 and "Too many failed logins" in page.text and int(page.headers["retry-after"]) > 0
    assert "set-cookie" not in page.headers
    api = httpx.post(server.url + "/api/v1/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert api.status_code == 429 and "retry-after" in api.headers
    # another user is not locked out by alice's attacker
    server.cli("admin", "set-password", bob.email, "--password-stdin", input=PASSWORD + "\n")
    assert httpx.post(server.url + "/login", data={"email": bob.email, "password": PASSWORD}).status_code == 303


def test_dev8_cookies_and_authorization_never_reach_the_environment(server: Dev8Server, alice: User, app_env: str):
    client = alice.script()
    client.cookies.set("app_pref", "dark")
    client.cookies.set("dev8_app", "a-session")
    client.cookies.set("dev8_session", "another")
    seen = client.get(f"/@{alice.username}/{app_env}/ports/8100/", headers={"x-custom": "1"}).json()["headers"]
    lower = {k.lower(): v for k, v in seen.items()}
    assert "dev8_" not in lower.get("cookie", "") and "app_pref=dark" in lower["cookie"]
    assert lower["x-custom"] == "1" and "authorization" not in lower


def test_other_users_get_404_on_every_path_form(server: Dev8Server, alice: User, bob: User, app_env: str):
    client = bob.script()
    for path in (f"/@{alice.username}/{app_env}/ports/8100/", f"/@{alice.username}/{app_env}/apps/vscode/",
                 f"/@{bob.username}/{app_env}/ports/8100/", f"/@{alice.username}/nothere/ports/8100/"):
        assert client.get(path).status_code == 404, path
    ws = asyncio.run(_ws_status(server, f"/@{alice.username}/{app_env}/ports/8101/",
                                {"authorization": f"Bearer {bob.token}"}, None))
    assert ws == 403


@pytest.mark.parametrize("port", ["8080@evil", "0x1F90", "0", "65536", "localhost", "-1", "08100x"])
def test_port_must_be_an_integer(server: Dev8Server, alice: User, port: str):
    r = httpx.get(f"{server.url}/@{alice.username}/any/ports/{port}/", headers={"authorization": f"Bearer {alice.token}"})
    assert r.status_code == 400


def test_port_preview_reaches_loopback_only_services(server: Dev8Server, alice: User, app_env: str):
    client = alice.script()
    r = client.get(f"/@{alice.username}/{app_env}/ports/8100/deep/path?q=1")
    assert r.status_code == 200 and r.json()["path"] == "/deep/path?q=1"
    assert client.get(f"/@{alice.username}/{app_env}/ports/8100", follow_redirects=False).status_code == 308
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]  # no other site frames it
    # the app's redirect goes back to the browser: the proxy itself never follows one
    moved = client.get(f"/@{alice.username}/{app_env}/ports/8100/redirect", follow_redirects=False)
    assert moved.status_code == 302 and moved.headers["location"] == "http://169.254.169.254/latest/meta-data/"
    nothing = client.get(f"/@{alice.username}/{app_env}/ports/9/")  # nothing listens
    assert nothing.status_code == 502 and "nothing answers on port 9" in nothing.json()["detail"]
    # a browser opening the page gets one that retries by itself (an app still starting)
    page = client.get(f"/@{alice.username}/{app_env}/ports/9/", headers={"accept": "text/html"})
    assert page.status_code == 502 and '<meta http-equiv="refresh" content="1">' in page.text
    assert "nothing answers on port 9" in page.text and page.headers["retry-after"] == "1"
    assert "tries again every second." in page.text and "Error" not in page.text  # no exception's name
    assert 'name="viewport"' in page.text and "Back to your environments" in page.text


def test_a_browser_opening_vs_code_while_it_starts_waits_for_it(
        server: Dev8Server, alice: User, fullstack_image: str, docker_client):  # type: ignore[no-untyped-def]
    """Right after `ready` code-server is still starting: the page request waits for it
    instead of getting the "Starting…" page (scripts still get their 502 at once)."""
    import time
    from concurrent.futures import ThreadPoolExecutor
    server.cli("admin", "set-password", alice.email, "--password-stdin", input=PASSWORD + "\n")
    name = unique("v")
    alice.cli("create", name, "--image", fullstack_image)
    [container] = docker_client.containers.list(filters={"label": f"dev8.installation={server.installation()}"})
    url = f"/@{alice.username}/{name}/apps/vscode/?folder=%2Fhome%2Fdev%2Fworkspace"
    script, browser = alice.script(), alice.script()
    assert container.exec_run("sv down /etc/dev8/service/code-server").exit_code == 0
    wait_until(lambda: script.get(url).status_code == 502, timeout=30, what="code-server stopped")
    with ThreadPoolExecutor(1) as pool:
        opening = pool.submit(browser.get, url, headers={"accept": "text/html"}, timeout=60)
        time.sleep(1)  # the page request is waiting while code-server is down
        assert not opening.done()
        assert container.exec_run("sv up /etc/dev8/service/code-server").exit_code == 0
        page = opening.result()
    assert page.status_code == 200 and "workbench" in page.text, page.text[:300]


def test_uploads_larger_than_the_api_body_limit_stream_through_the_proxy(
        server: Dev8Server, alice: User, app_env: str):
    import hashlib
    import os
    client = alice.script()
    body = os.urandom(5 * 1024 * 1024)  # 20× the API's 256 KiB limit
    r = client.post(f"/@{alice.username}/{app_env}/ports/8100/upload", content=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "/upload", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    # the API keeps its limit
    big = alice.http().put("/secrets/BIG", json={"value": "x" * 300 * 1024})
    assert big.status_code == 413


async def _ws_status(server: Dev8Server, path: str, headers: dict, origin: str | None) -> int | str:
    uri = server.url.replace("http://", "ws://") + path
    try:
        async with websockets.connect(uri, additional_headers=headers, origin=origin, open_timeout=20) as ws:
            await ws.send("ping")
            return await asyncio.wait_for(ws.recv(), 10)
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


def test_path_mode_websockets_take_a_token_never_the_cookie(server: Dev8Server, alice: User, app_env: str):
    """A browser's app runs on its own host, so dev8's session cookie opens no app
    WebSocket on dev8's origin, whichever page asks (its own included: cross-site WebSocket
    hijacking and an app page on dev8's origin alike)."""
    client = web_login(server, alice.email)
    cookie = {"cookie": f"dev8_session={client.cookies['dev8_session']}"}
    path = f"/@{alice.username}/{app_env}/ports/8101/"
    for origin in (server.url, "http://evil.example", "null", server.url.rsplit(":", 1)[0] + ":1",
                   f"http://vscode--{app_env}--{alice.username}.localhost:{server.http_port}", None):
        assert asyncio.run(_ws_status(server, path, cookie, origin)) == 403, origin
    bearer = {"authorization": f"Bearer {alice.token}"}
    assert asyncio.run(_ws_status(server, path, bearer, None)) == "ping"  # the CLI's way
    assert asyncio.run(_ws_status(server, path, {}, server.url)) == 403  # no credentials at all
    for _ in range(5):  # a client closing a relayed WebSocket is normal, not an error
        assert asyncio.run(_ws_status(server, path, bearer, None)) == "ping"
    time.sleep(1)
    assert "Traceback" not in server.log() and "Task exception" not in server.log(), server.log()[-3000:]


def test_cli_ports_open_and_port_forward(server: Dev8Server, alice: User, app_env: str):
    from tests.support import free_port
    listed = alice.cli("ports", app_env).stdout
    assert "8100" in listed and "8101" in listed and "loopback" in listed
    assert f"http://8100--{app_env}--{alice.username}.localhost:{server.http_port}/" in listed
    url = alice.http().get(f"/environments/{app_env}").json()["vscode_url"]
    assert url == f"http://vscode--{app_env}--{alice.username}.localhost:{server.http_port}/?folder=%2Fhome%2Fdev%2Fworkspace"
    # its image (dev8/base) has no VS Code: `dev8 open` says so instead of a URL that never turns into VS Code
    no_vscode = alice.cli("open", app_env, check=False)
    assert no_vscode.returncode == 1 and "has no VS Code" in no_vscode.stderr and "--terminal" in no_vscode.stderr
    assert alice.cli("open", app_env, "--terminal").stdout.strip().endswith(f"/@{alice.username}/{app_env}/terminal/")
    bad = alice.cli("port-forward", app_env, "3000:0x50", check=False)
    assert bad.returncode == 1 and "invalid port mapping" in bad.stderr
    local = free_port()
    proc = subprocess.Popen([*alice.server_cli_argv("port-forward", app_env, f"{local}:8100", "-i", str(alice.key))],
                            env=alice.server.env(DEV8_CONFIG_DIR=str(alice.config_dir)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        r = wait_until(lambda: httpx.get(f"http://127.0.0.1:{local}/fwd", timeout=2), timeout=30, what="forward")
        assert r.json()["path"] == "/fwd"
    finally:
        proc.terminate()
        proc.wait(10)


def test_login_and_setup_pages_allow_no_inline_script(server: Dev8Server):
    for path in ("/login", "/setup"):
        csp = httpx.get(server.url + path).headers["content-security-policy"]
        script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert "'unsafe-inline'" not in script_src and "'self'" in script_src, csp
    assert "/static/setup.js" in httpx.get(server.url + "/setup").text
    assert httpx.get(server.url + "/static/setup.js").status_code == 200


def test_another_site_cannot_log_the_browser_into_its_own_account(server: Dev8Server, alice: User, page):  # type: ignore[no-untyped-def]
    """Login CSRF, for real: a page on another origin (here another port of 127.0.0.1, the
    same site, as a sibling app host would be) auto-submits a login form with the attacker's
    credentials to dev8."""
    import http.server
    import threading
    set_web_password(alice)  # alice plays the attacker: her credentials are in the form
    form = (f'<form id="f" method="post" action="{server.url}/login">'
            f'<input name="email" value="{alice.email}"><input name="password" value="{PASSWORD}">'
            '</form><script>document.getElementById("f").submit()</script>').encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(form)

        def log_message(self, *args: object) -> None:
            pass
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with page.expect_response(lambda r: r.url.startswith(server.url + "/login")) as posted:
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        assert posted.value.status == 403
        assert not [c for c in page.context.cookies(server.url) if c["name"] == "dev8_session"]
        # without Sec-Fetch-Site (older browsers), a foreign Origin is refused too
        for origin in (f"http://127.0.0.1:{evil.server_address[1]}", "null"):
            r = httpx.post(server.url + "/login", data={"email": alice.email, "password": PASSWORD},
                           headers={"origin": origin})
            assert r.status_code == 403 and "set-cookie" not in r.headers, origin
        # the same form on dev8's own login page works
        page.goto(server.url + "/login")
        page.fill("input[name=email]", alice.email)
        page.fill("input[name=password]", PASSWORD)
        with page.expect_response(lambda r: r.url == server.url + "/login") as ours:
            page.click("button")
        assert ours.value.status == 303  # (its Origin is "null": the page sends no referrer)
        assert [c for c in page.context.cookies(server.url) if c["name"] == "dev8_session"]
    finally:
        evil.shutdown()


def test_static_files_are_sent_compressed_to_browsers_that_take_it(server: Dev8Server):
    plain = httpx.get(server.url + "/static/xterm.js", headers={"accept-encoding": "identity"})
    packed = httpx.get(server.url + "/static/xterm.js", headers={"accept-encoding": "gzip, br"})
    assert "content-encoding" not in plain.headers and packed.headers["content-encoding"] == "gzip"
    assert packed.content == plain.content and packed.num_bytes_downloaded < len(plain.content) / 2
    assert packed.headers["vary"] == "Accept-Encoding" and "javascript" in packed.headers["content-type"]
    assert "content-encoding" not in httpx.get(server.url + "/static/nope.js").headers
