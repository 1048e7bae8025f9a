"""The browser terminal's WebSocket, driven as the page drives it: a shell on an SSH PTY,
resize, re-attach to the same shell with recent output, flow control, and who may open it."""
from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
import websockets

from tests.support import Dev8Server, User, set_web_password, unique, web_login


@pytest.fixture
def term_env(server: Dev8Server, alice: User) -> str:
    set_web_password(alice)
    name = unique("t")
    alice.cli("create", name)
    return name


class Term:
    """One browser tab's WebSocket: collects output, acknowledges it unless told not to."""

    def __init__(self, ws: websockets.ClientConnection, hello: dict) -> None:
        self.ws, self.hello, self.out, self.ack = ws, hello, bytearray(), True

    @classmethod
    async def open(cls, server: Dev8Server, path: str, cookie: str, **query: str) -> Term:
        q = "&".join(f"{k}={v}" for k, v in {"cols": "80", "rows": "24", **query}.items())
        ws = await websockets.connect(server.url.replace("http://", "ws://") + path + "?" + q, max_size=None,
                                      additional_headers={"cookie": f"dev8_session={cookie}"}, origin=server.url)
        return cls(ws, json.loads(await asyncio.wait_for(ws.recv(), 20)))

    async def type(self, text: str) -> None:
        await self.ws.send(json.dumps({"t": "i", "d": text}))

    async def until(self, needle: bytes, timeout: float = 30) -> bytes:
        async def read() -> None:
            while needle not in self.out:
                await self.pump_once()
        await asyncio.wait_for(read(), timeout)
        return bytes(self.out)

    async def pump_once(self) -> None:
        msg = await self.ws.recv()
        if isinstance(msg, bytes):
            self.out += msg
            if self.ack:
                await self.ws.send(json.dumps({"t": "a", "n": len(msg)}))


def test_shell_resize_and_reattach_to_the_same_shell_with_recent_output(server: Dev8Server, alice: User,
                                                                       term_env: str):
    cookie = web_login(server, alice.email).cookies["dev8_session"]
    path = f"/@{alice.username}/{term_env}/terminal/ws"

    async def scenario() -> None:
        t = await Term.open(server, path, cookie)
        assert t.hello["t"] == "hello" and t.hello["replay"] == 0
        await t.type("echo hi-$((6*7)) pid=$$ user=$(id -un) term=$TERM\r")
        out = await t.until(b"term=xterm-256color")
        pid = out.split(b"hi-42 pid=")[1].split()[0]
        assert b"user=dev" in out
        await t.ws.send(json.dumps({"t": "r", "c": 100, "r": 30}))
        await t.type("stty size\r")
        await t.until(b"30 100")
        await t.ws.close()
        # a reload: the same shell, the screen repainted from the replay
        again = await Term.open(server, path, cookie, session=t.hello["session"])
        assert again.hello["session"] == t.hello["session"] and again.hello["replay"] > 0
        await again.until(b"hi-42")
        await again.type("echo again-$$\r")
        await again.until(b"again-" + pid + b"\r\n")
        await again.ws.close()
        # no session id (a new tab): a new shell
        fresh = await Term.open(server, path, cookie)
        assert fresh.hello["session"] != t.hello["session"]
        await fresh.type("echo fresh-$$\r")
        out = await fresh.until(b"fresh-")
        await fresh.until(b"\r\n", timeout=5)
        assert b"fresh-" + pid + b"\r" not in out
        # the shell exits: the page is told
        await fresh.type("exit\r")
        while True:
            msg = await asyncio.wait_for(fresh.ws.recv(), 20)
            if isinstance(msg, str):
                assert json.loads(msg) == {"t": "exit"}
                break
    asyncio.run(scenario())


def test_a_restarted_server_re_attaches_the_page_to_the_same_shell_with_its_history(
        server: Dev8Server, alice: User, term_env: str):
    """The shell runs under dev8-env's holder in the environment, not in the server: a server
    restarted (here killed, as a crash would) under a live terminal loses the connection
    only; the page reconnects with its session id to the same shell, repainted first."""
    cookie = web_login(server, alice.email).cookies["dev8_session"]
    path = f"/@{alice.username}/{term_env}/terminal/ws"

    async def before() -> tuple[str, bytes]:
        t = await Term.open(server, path, cookie)
        await t.type("KEPT=still-$((6*7)); echo pid=$$ history-$((40+2))\r")
        out = await t.until(b" history-42")
        pid = re.search(rb"pid=(\d+) history-42", out).group(1)  # type: ignore[union-attr]
        return t.hello["session"], pid
    session, pid = asyncio.run(before())
    server.kill()
    server.start()

    async def after() -> None:
        again = await Term.open(server, path, cookie, session=session)
        assert again.hello["session"] == session and again.hello["fresh"] is True
        await again.until(b"pid=" + pid + b" history-42")  # repainted by the holder
        await again.type("echo $KEPT-$$\r")
        await again.until(b"still-42-" + pid)  # the same shell, its variables kept
        await again.ws.close()
    asyncio.run(after())


def test_output_waits_for_a_browser_that_has_not_rendered_it(server: Dev8Server, alice: User, term_env: str):
    cookie = web_login(server, alice.email).cookies["dev8_session"]
    size = 30 * 1024 * 1024

    async def scenario() -> None:
        t = await Term.open(server, f"/@{alice.username}/{term_env}/terminal/ws", cookie)
        t.ack = False  # a page that has not drawn anything yet
        await t.type(f"head -c {size} /dev/zero | tr '\\0' x; echo; echo END-$((1+1))\r")
        try:
            await asyncio.wait_for(_forever(t), 4)
        except TimeoutError:
            pass
        held = len(t.out)
        # the producer is stopped, not finished: SSH's window is full and dev8 does not read
        running = alice.ssh(term_env, "pgrep -x head >/dev/null && echo running || echo gone").stdout.strip()
        assert held < 2 * 1024 * 1024, held
        assert running == "running"
        # the page catches up: everything arrives
        await t.ws.send(json.dumps({"t": "a", "n": held}))
        t.ack = True
        out = await t.until(b"END-2", timeout=300)
        assert out.count(b"x") >= size
    asyncio.run(scenario())


async def _forever(t: Term) -> None:
    while True:
        await t.pump_once()


async def _ws_status(server: Dev8Server, path: str, headers: dict, origin: str | None) -> int | str:
    try:
        async with websockets.connect(server.url.replace("http://", "ws://") + path, additional_headers=headers,
                                      origin=origin, open_timeout=20) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 20))["t"]
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


def test_only_the_owner_opens_a_terminal_from_dev8s_origin(server: Dev8Server, alice: User, bob: User,
                                                           term_env: str):
    set_web_password(bob)
    alice_web, bob_web = web_login(server, alice.email), web_login(server, bob.email)
    page = f"/@{alice.username}/{term_env}/terminal/"
    r = alice_web.get(page)
    assert r.status_code == 200 and "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "/static/xterm.js" in r.text and alice_web.get("/static/xterm.js").status_code == 200
    assert '<a href="/">Environments</a>' in r.text  # the way back to the dashboard
    assert bob_web.get(page).status_code == 404
    anonymous = httpx.Client(base_url=server.url)
    login = anonymous.get(page, headers={"accept": "text/html"})
    assert login.status_code == 303 and login.headers["location"].startswith("/login?next=")
    ws = page + "ws"
    alice_cookie = {"cookie": f"dev8_session={alice_web.cookies['dev8_session']}"}
    assert asyncio.run(_ws_status(server, ws, alice_cookie, server.url)) == "hello"
    assert asyncio.run(_ws_status(server, ws, {"cookie": f"dev8_session={bob_web.cookies['dev8_session']}"},
                                  server.url)) == 403
    for origin in ("http://evil.example", "null", None):
        assert asyncio.run(_ws_status(server, ws, alice_cookie, origin)) == 403, origin
    assert asyncio.run(_ws_status(server, ws, {}, server.url)) == 403
    assert asyncio.run(_ws_status(server, ws, {"authorization": f"Bearer {alice.token}"}, None)) == "hello"


def test_a_leaked_session_id_does_not_open_someone_elses_shell(server: Dev8Server, alice: User, bob: User,
                                                               term_env: str):
    set_web_password(bob)
    bob_env = unique("b")
    bob.cli("create", bob_env)
    alice_cookie = web_login(server, alice.email).cookies["dev8_session"]
    bob_cookie = web_login(server, bob.email).cookies["dev8_session"]

    async def scenario() -> None:
        mine = await Term.open(server, f"/@{alice.username}/{term_env}/terminal/ws", alice_cookie)
        await mine.type("export SECRET_MARK=alice-only; echo set\r")
        await mine.until(b"set\r\n")
        await mine.ws.close()
        other = await Term.open(server, f"/@{bob.username}/{bob_env}/terminal/ws", bob_cookie,
                                session=mine.hello["session"])
        assert other.hello["session"] != mine.hello["session"] and other.hello["replay"] == 0
        await other.type("echo mark=${SECRET_MARK:-none}\r")
        out = await other.until(b"mark=none")
        assert b"alice-only" not in out
    asyncio.run(scenario())
