"""App subdomains (``<app>--<env>--<user>.<wildcard>``), the ticket hand-off from dev8's
host, port sharing levels and trusted-proxy headers, each written as the attack.

Requests go to 127.0.0.1 with the app's name in the Host header (what a browser sends for
*.localhost); cookies are carried by hand so that each test says which host holds which."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets

from tests.support import Dev8Server, User, set_web_password, start_envapps, unique, wait_until, web_login


@pytest.fixture
def sub_server(tmp_path: Path, base_image: str) -> Iterator[Dev8Server]:
    srv = Dev8Server(tmp_path / "server")
    srv.start(DEV8_WILDCARD_DOMAIN=f"dev8.localhost:{srv.http_port}")
    yield srv
    srv.shutdown()


@pytest.fixture
def users(sub_server: Dev8Server, tmp_path: Path) -> tuple[User, User]:
    alice = User(sub_server, "alice@example.com", tmp_path / "alice")
    bob = User(sub_server, "bob@example.com", tmp_path / "bob")
    for u in (alice, bob):
        set_web_password(u)
    return alice, bob


@pytest.fixture
def env(users: tuple[User, User]) -> str:
    alice, _ = users
    name = unique("s")
    alice.cli("create", name)
    start_envapps(alice, name)
    return name


def host(server: Dev8Server, app: str | int, env: str, user: str) -> str:
    return f"{app}--{env}--{user}.dev8.localhost:{server.http_port}"


def app_get(server: Dev8Server, app_host: str, path: str, app_cookie: str | None = None, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"host": app_host, "accept": "text/html", **kw.pop("headers", {})}
    if app_cookie:
        headers["cookie"] = f"dev8_app={app_cookie}"
    return httpx.get(server.url + path, headers=headers, follow_redirects=False, timeout=30, **kw)


def sign_in(server: Dev8Server, main: httpx.Client | None, app_host: str, path: str = "/") -> str | httpx.Response:
    """The browser's dance: app host → /app-auth on dev8's host → ticket → app cookie.
    Returns the app cookie, or the response that stopped the dance."""
    first = app_get(server, app_host, path)
    assert first.status_code == 303, first.text
    to = urlsplit(first.headers["location"])
    assert f"{to.scheme}://{to.netloc}" == server.url and to.path == "/app-auth"
    if main is None:
        return first
    auth = main.get(first.headers["location"], follow_redirects=False, headers={"accept": "text/html"})
    if auth.status_code != 303:
        return auth
    ticket_url = urlsplit(auth.headers["location"])
    assert ticket_url.netloc == app_host and ticket_url.path == "/.dev8/auth"
    redeemed = app_get(server, app_host, f"/.dev8/auth?{ticket_url.query}")
    assert redeemed.status_code == 303 and redeemed.headers["location"] == path, redeemed.text
    set_cookie = redeemed.headers["set-cookie"]
    assert "httponly" in set_cookie.lower() and "domain=" not in set_cookie.lower()  # host-only
    return redeemed.cookies["dev8_app"]


def test_an_app_host_signs_in_through_dev8_with_a_one_time_ticket(sub_server: Dev8Server, users, env: str):  # type: ignore[no-untyped-def]
    alice, bob = users
    main = web_login(sub_server, alice.email)
    h = host(sub_server, 8100, env, alice.username)
    cookie = sign_in(sub_server, main, h, "/deep?q=1")
    r = app_get(sub_server, h, "/deep?q=1", cookie)
    assert r.status_code == 200 and r.json()["path"] == "/deep?q=1"
    sent = {k.lower() for k in r.json()["headers"]}
    assert "cookie" not in sent and "authorization" not in sent  # dev8's cookies stay with dev8
    # VS Code's host gets its own sign-in: the port's cookie does not open it
    vs = host(sub_server, "vscode", env, alice.username)
    assert app_get(sub_server, vs, "/", cookie).status_code == 303
    # a ticket is good once, and only for the host it was made for
    again = main.get("/app-auth", params={"host": h, "next": "/"}, follow_redirects=False)
    query = urlsplit(again.headers["location"]).query
    other = host(sub_server, 8101, env, alice.username)
    assert app_get(sub_server, other, f"/.dev8/auth?{query}").status_code == 403
    assert app_get(sub_server, h, f"/.dev8/auth?{query}").status_code == 403  # used up by the try above
    # dev8's own session cookie means nothing on an app host
    r = httpx.get(sub_server.url + "/", headers={"host": h, "accept": "text/html",
                                                 "cookie": f"dev8_session={main.cookies['dev8_session']}"})
    assert r.status_code == 303
    # bob is logged in to dev8 but gets nothing of alice's app
    bob_main = web_login(sub_server, bob.email)
    refused = sign_in(sub_server, bob_main, h)
    assert isinstance(refused, httpx.Response) and refused.status_code == 404
    # not logged in at all: dev8 asks for a login and comes back to /app-auth
    anon = httpx.Client(base_url=sub_server.url)
    first = sign_in(sub_server, None, h)
    login = anon.get(first.headers["location"], headers={"accept": "text/html"}, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"].startswith("/login?next=%2Fapp-auth")
    # an app host under another domain, or a made-up app name, is no target
    assert main.get("/app-auth", params={"host": f"8100--{env}--alice.evil.example"}).status_code == 404
    assert app_get(sub_server, host(sub_server, "0x1F90", env, alice.username), "/").status_code == 404
    # nor does any other name under the app domain show dev8's own pages (its login form)
    not_an_app = app_get(sub_server, f"login.dev8.localhost:{sub_server.http_port}", "/login")
    assert not_an_app.status_code == 404 and f'href="{sub_server.url}/"' in not_an_app.text  # a page, a way back
    # next after the ticket stays on the app host
    evil = main.get("/app-auth", params={"host": h, "next": "//evil.example/"}, follow_redirects=False)
    redeemed = app_get(sub_server, h, "/.dev8/auth?" + urlsplit(evil.headers["location"]).query)
    assert redeemed.headers["location"] == "/"
    assert parse_qs(urlsplit(evil.headers["location"]).query)["ticket"]


def test_port_sharing_levels(sub_server: Dev8Server, users, env: str):  # type: ignore[no-untyped-def]
    alice, bob = users
    h = host(sub_server, 8100, env, alice.username)
    bob_main = web_login(sub_server, bob.email)
    assert isinstance(sign_in(sub_server, bob_main, h), httpx.Response)  # private by default
    shared = alice.cli("share", env, "8100", "authenticated")
    assert "authenticated" in shared.stdout and f"http://{h}/" in shared.stdout
    bob_cookie = sign_in(sub_server, bob_main, h)
    assert isinstance(bob_cookie, str)
    assert app_get(sub_server, h, "/x", bob_cookie).json()["path"] == "/x"
    assert app_get(sub_server, h, "/x").status_code == 303  # anonymous: log in first
    assert app_get(sub_server, h, "/x", headers={"accept": "application/json"}).status_code == 401
    # the path form on dev8's own origin never honours sharing: a script of bob's gets 404,
    # his browser is sent to the app host, where the share level decides
    assert bob.script().get(f"/@{alice.username}/{env}/ports/8100/").status_code == 404
    moved = bob_main.get(f"/@{alice.username}/{env}/ports/8100/")
    assert moved.status_code == 307 and moved.headers["location"] == f"http://{h}/"
    alice.cli("share", env, "8100", "public")
    assert app_get(sub_server, h, "/open").json()["path"] == "/open"  # anyone, no cookie
    assert app_get(sub_server, host(sub_server, 8101, env, alice.username), "/").status_code == 303  # other ports not
    listed = alice.cli("ports", env).stdout
    assert "public" in listed and f"http://{h}/" in listed
    alice.cli("share", env, "8100", "private")
    assert app_get(sub_server, h, "/x", bob_cookie).status_code == 404  # checked on every request
    bad = alice.cli("share", env, "8100", "everyone", check=False)
    assert bad.returncode == 1 and "unknown sharing level" in bad.stderr
    assert alice.http().put(f"/environments/{env}/ports/70000/share", json={"level": "public"}).status_code == 422
    assert bob.http().put(f"/environments/{env}/ports/8100/share", json={"level": "public"}).status_code == 404


async def _ws(server: Dev8Server, app_host: str, cookie: str | None, origin: str | None) -> str | int:
    headers = {"cookie": f"dev8_app={cookie}"} if cookie else {}
    try:  # the app's name in the URL (so in Host), the connection to dev8 on loopback
        async with websockets.connect(f"ws://{app_host}/", host="127.0.0.1", port=server.http_port,
                                      additional_headers=headers, origin=origin, open_timeout=20) as ws:
            await ws.send("ping")
            return await asyncio.wait_for(ws.recv(), 10)
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


def test_websockets_on_app_hosts_need_the_apps_own_origin(sub_server: Dev8Server, users, env: str):  # type: ignore[no-untyped-def]
    alice, _ = users
    h = host(sub_server, 8101, env, alice.username)
    cookie = sign_in(sub_server, web_login(sub_server, alice.email), h)
    assert asyncio.run(_ws(sub_server, h, cookie, f"http://{h}")) == "ping"
    sibling = f"http://{host(sub_server, 8100, env, alice.username)}"
    for origin in (sibling, sub_server.url, "http://evil.example", "null", None):
        assert asyncio.run(_ws(sub_server, h, cookie, origin)) == 403, origin
    alice.cli("share", env, "8101", "public")
    assert asyncio.run(_ws(sub_server, h, None, None)) == "ping"


def test_forwarded_headers_count_only_from_trusted_proxies(tmp_path: Path, base_image: str):
    for trusted in ("10.9.8.0/24", "127.0.0.1/32"):
        srv = Dev8Server(tmp_path / trusted.replace("/", "_"))
        srv.start(DEV8_WILDCARD_DOMAIN="apps.example.test", DEV8_TRUSTED_PROXIES=trusted)
        try:
            alice = User(srv, "alice@example.com", tmp_path / f"alice{trusted[:2]}")
            set_web_password(alice)
            name = unique("f")
            alice.cli("create", name)
            start_envapps(alice, name)
            main = web_login(srv, alice.email)
            cookie = {"cookie": f"dev8_session={main.cookies['dev8_session']}"}
            forged = {"x-forwarded-host": "dev8.example.test", "x-forwarded-proto": "https", **cookie}
            status = asyncio.run(_main_ws(srv, f"/@{alice.username}/{name}/terminal/ws", forged,
                                          "https://dev8.example.test"))
            via_proxy = httpx.get(srv.url + "/no-such-page", headers={"x-forwarded-host": f"8100--{name}--alice.apps.example.test",
                                                          "accept": "application/json"})
            echo = alice.script().get(f"/@{alice.username}/{name}/ports/8100/",
                                      headers={"x-forwarded-host": "h.example", "forwarded": "host=h.example"})
            if trusted.startswith("10."):   # a client on loopback is not the proxy: headers ignored
                assert status == 403 and via_proxy.status_code == 404
            else:                          # the proxy's view of host and scheme is believed
                assert status == "open" and via_proxy.status_code == 401
            sent = {k.lower() for k in echo.json()["headers"]}
            assert not sent & {"x-forwarded-host", "forwarded"}  # never passed on to the environment
        finally:
            srv.shutdown()


async def _main_ws(server: Dev8Server, path: str, headers: dict, origin: str) -> str | int:
    try:
        async with websockets.connect(server.url.replace("http://", "ws://") + path, additional_headers=headers,
                                      origin=origin, open_timeout=20):
            return "open"
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


def test_logging_out_of_dev8_ends_the_app_sessions_it_opened(sub_server: Dev8Server, users, env: str):  # type: ignore[no-untyped-def]
    alice, _ = users
    main = web_login(sub_server, alice.email)
    h = host(sub_server, 8100, env, alice.username)
    cookie = sign_in(sub_server, main, h)
    other_browser = web_login(sub_server, alice.email)  # alice's second browser stays logged in
    kept = sign_in(sub_server, other_browser, h)
    assert app_get(sub_server, h, "/", cookie).status_code == 200
    home = main.get("/", headers={"accept": "text/html"})
    import re
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]{64})"', home.text).group(1)  # type: ignore[union-attr]
    assert main.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    after = app_get(sub_server, h, "/", cookie)
    assert after.status_code == 303 and "/app-auth" in after.headers["location"]  # signed out of the app too
    assert app_get(sub_server, h, "/", kept).status_code == 200  # the other browser's session is its own


def test_a_sibling_app_hosts_form_cannot_post_to_a_private_preview(sub_server: Dev8Server, users, env: str):  # type: ignore[no-untyped-def]
    """Bob's public preview (``8000--web--bob``) is the same site as alice's private one: a
    form there that posts to alice's preview carries alice's app cookie. The headers below
    are what Chromium sends for such a form (Sec-Fetch-Site: same-site, Origin: bob's app)."""
    alice, bob = users
    main = web_login(sub_server, alice.email)
    h = host(sub_server, 8100, env, alice.username)
    cookie = sign_in(sub_server, main, h)
    bobs = f"http://{host(sub_server, 8000, 'web', bob.username)}"

    def post(**headers: str) -> httpx.Response:
        return httpx.post(sub_server.url + "/transfer", content=b"amount=all", timeout=30,
                          headers={"host": h, "cookie": f"dev8_app={cookie}",
                                   "content-type": "application/x-www-form-urlencoded", **headers})
    for attack in ({"sec-fetch-site": "same-site", "origin": bobs}, {"sec-fetch-site": "cross-site"},
                   {"origin": bobs}):
        r = post(**attack)
        assert r.status_code == 401 and "path" not in r.text, (attack, r.text)  # never reached the app
    # alice's own page posting to its own app, and a non-browser client with her cookie, work
    ok = post(**{"sec-fetch-site": "same-origin", "origin": f"http://{h}"})
    assert ok.status_code == 200 and ok.json()["path"] == "/transfer", ok.text
    assert post().status_code == 200
    # reading (GET) is not a state change: a sibling's link still opens it for her
    assert app_get(sub_server, h, "/", cookie, headers={"sec-fetch-site": "same-site"}).status_code == 200
    # the same form aimed at the path-mode URL on dev8's own host is sent on to the app host
    # (307: the browser repeats it there, where the checks above apply); dev8's session
    # cookie never carries it to the app
    path = f"/@{alice.username}/{env}/ports/8100/transfer"
    for origin in (bobs, sub_server.url):
        moved = main.post(path, content=b"amount=all", headers={"sec-fetch-site": "same-site", "origin": origin})
        assert moved.status_code == 307 and moved.headers["location"] == f"http://{h}/transfer", moved.text


def test_opening_a_stopped_environments_app_starts_it_for_its_owner_only(sub_server: Dev8Server, users, env: str):  # type: ignore[no-untyped-def]
    alice, bob = users
    h = host(sub_server, 8100, env, alice.username)
    cookie = sign_in(sub_server, web_login(sub_server, alice.email), h)
    alice.cli("share", env, "8100", "public")
    alice.cli("stop", env)
    # anyone else opening the public preview sees that it is stopped, and starts nothing
    other = app_get(sub_server, h, "/")
    assert other.status_code == 503 and "is stopped" in other.text
    assert alice.http().get(f"/environments/{env}").json()["desired_state"] == "stopped"
    # its owner's browser starts it: a page that reloads itself until the app answers
    first = app_get(sub_server, h, "/", cookie)
    assert first.status_code == 503 and f"starting {env}" in first.text and 'http-equiv="refresh"' in first.text
    wait_until(lambda: alice.http().get(f"/environments/{env}").json()["state"] == "running", timeout=120,
               what="the start")
    start_envapps(alice, env)  # the app itself is the user's to run again
    assert app_get(sub_server, h, "/x", cookie).json()["path"] == "/x"
    events = alice.http().get(f"/environments/{env}/events", params={"follow": "false", "last": 50}).json()
    assert "started by a connection (a preview)" in [e["message"] for e in events]


def test_vscode_of_an_image_without_it_is_a_page_saying_so(sub_server: Dev8Server, users, env: str):  # type: ignore[no-untyped-def]
    alice, _ = users
    h = host(sub_server, "vscode", env, alice.username)
    cookie = sign_in(sub_server, web_login(sub_server, alice.email), h)
    assert alice.http().get(f"/environments/{env}").json()["apps"] == []  # dev8/base reported none
    page = app_get(sub_server, h, "/", cookie)
    assert page.status_code == 404 and f"No VS Code in {env}" in page.text and "Remote-SSH" in page.text
    assert "refresh" not in page.text  # not a Starting page that never turns into VS Code
