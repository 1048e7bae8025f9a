"""Idle auto-stop, the session limit and auto-start on connect, on a real server (fake
runtime) with OpenSSH clients through the gateway: use is traffic, not an open
connection; a warning comes first, in the events and in open terminals; the reason shows
in the API, CLI and audit; `ssh` to a stopped environment starts it and shows how far;
replicas checking at once warn and stop an environment once."""
from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dev8.core.activity import IdleStopper, Policy
from dev8.store.db import Database
from dev8.store.models import AuditEntry, Environment, Event, utcnow
from dev8.store.models import User as UserRow
from tests.support import Dev8Server, User, unique, wait_until
from tests.support import fake_server as support_fake_server

IDLE, SESSION = 10, 45  # seconds: the server's default idle timeout and its session limit


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev8Server]:
    with support_fake_server(tmp_path_factory.mktemp("idle"), DEV8_IDLE_TIMEOUT=str(IDLE),
                             DEV8_MAX_SESSION=str(SESSION), DEV8_IDLE_CHECK_INTERVAL="0.5") as srv:
        yield srv


@pytest.fixture(scope="module")
def dana(server: Dev8Server, tmp_path_factory: pytest.TempPathFactory) -> User:
    return User(server, "dana@example.com", tmp_path_factory.mktemp("dana"))


def env(user: User, name: str) -> dict:
    return user.http().get(f"/environments/{name}").json()


def audit_rows(server: Dev8Server, action: str) -> list[tuple[str, str, str]]:
    with sqlite3.connect(server.data_dir / "dev8.db") as db:
        return list(db.execute("SELECT actor, target, detail FROM audit_log WHERE action = ?", (action,)))


def test_idle_environments_stop_after_a_warning_while_used_ones_keep_running(server: Dev8Server, dana: User,
                                                                             tmp_path: Path) -> None:
    idle, busy, never = unique("idle"), unique("busy"), unique("never")
    dana.cli("create", idle)
    dana.cli("create", busy)
    dana.cli("create", never, "--idle-timeout", "0")
    assert env(dana, idle)["idle_timeout"] == IDLE and env(dana, never)["idle_timeout"] == 0
    # a terminal left open with nothing happening in it is not use
    forgotten = subprocess.Popen([*dana.ssh_args(idle)[:-1], "-tt", dana.ssh_args(idle)[-1], "sleep 120"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = time.monotonic()
    while env(dana, idle)["state"] != "stopped" and time.monotonic() - started < 40:
        assert dana.ssh(busy, "echo working").stdout.strip() == "working"  # use, through the gateway
        time.sleep(1.5)
    stopped = env(dana, idle)
    assert stopped["state"] == "stopped" and stopped["stop_reason"] == f"stopped after {IDLE} s idle", stopped
    _, err = forgotten.communicate(timeout=30)  # its session ended with the environment
    assert f"dev8: {idle} stops in" in err.decode() and "unless it is used" in err.decode(), err
    events = dana.http().get(f"/environments/{idle}/events", params={"follow": "false", "last": 50}).json()
    kinds = [(e["step"], e["status"], e["message"]) for e in events]
    warned = next(i for i, k in enumerate(kinds) if k[:2] == ("idle", "warning"))
    asked = next(i for i, k in enumerate(kinds) if k == ("request", "ok", f"stopped after {IDLE} s idle"))
    assert warned < asked, kinds
    assert (dana.email + "/" + idle, f"stopped after {IDLE} s idle") in [(t, d) for _, t, d in audit_rows(server, "env.auto_stop")]
    assert env(dana, busy)["state"] == "running" and env(dana, never)["state"] == "running"
    assert f"stopped after {IDLE} s idle" in " ".join(dana.cli("list").stdout.split())
    # connecting starts it again (the reason is cleared): a banner, the steps, then the command
    back = dana.ssh(idle, "echo back", timeout=120)
    assert back.returncode == 0 and back.stdout.strip() == "back", back.stderr
    assert f"dev8: {idle} is stopped: starting it" in back.stderr, back.stderr
    assert "dev8: start ok" in back.stderr and "dev8: ready ok" in back.stderr, back.stderr
    assert env(dana, idle)["stop_reason"] == "" and env(dana, idle)["state"] == "running"
    assert ("request", "ok", "started by a connection (SSH)") in [
        (e["step"], e["status"], e["message"]) for e in
        dana.http().get(f"/environments/{idle}/events", params={"follow": "false", "last": 50}).json()]
    # bad timeouts change nothing
    for bad in ("4s", "soon", "-1m", "31d"):
        r = dana.cli("create", unique("bad"), "--idle-timeout", bad, check=False)
        assert r.returncode != 0, bad
    r = dana.http().post("/environments", json={"name": unique("bad"), "idle_timeout": 3})
    assert r.status_code == 422 and r.json()["field"] == "idle_timeout"
    assert "0 (never) or between 5 s and 30 days" in r.json()["detail"]
    # the same rule as the server's own DEV8_IDLE_TIMEOUT (which runs this module at 10 s)
    half = unique("half")
    dana.cli("create", half, "--idle-timeout", "30s")
    assert "after 30 s without use" in dana.cli("show", half).stdout
    dana.cli("edit", half, "--idle-timeout", "1m")
    assert "after 1 min without use" in dana.cli("show", half).stdout  # not "60 s"
    assert not [e for e in dana.http().get("/environments").json() if e["name"].startswith("bad")]


def test_the_session_limit_stops_even_a_busy_environment(server: Dev8Server, dana: User) -> None:
    never = unique("long")
    dana.cli("create", never, "--idle-timeout", "0")
    wait_until(lambda: env(dana, never)["state"] == "stopped", timeout=SESSION + 30, interval=1,
               what="the session limit")
    assert env(dana, never)["stop_reason"] == f"stopped after {SESSION} s running (this dev8's session limit)"


def test_browser_terminals_keystrokes_are_use_and_an_idle_one_gets_the_warning(server: Dev8Server,
                                                                               dana: User) -> None:
    import asyncio
    import contextlib
    import json

    import websockets

    from tests.support import open_terminal, set_web_password, web_login
    set_web_password(dana)
    typing, watching = unique("type"), unique("watch")
    for name in (watching, typing):
        dana.cli("create", name)
    cookie = web_login(server, dana.email).cookies["dev8_session"]

    async def terminal(name: str) -> websockets.ClientConnection:
        return (await open_terminal(server, dana, name, cookie))[0]

    async def go() -> list[str]:
        idle = await terminal(watching)
        typed = await terminal(typing)
        notices: list[str] = []

        async def read(ws: websockets.ClientConnection) -> None:
            async for message in ws:
                if isinstance(message, str) and json.loads(message)["t"] == "notice":
                    notices.append(json.loads(message)["message"])
        reader = asyncio.create_task(read(idle))
        drain = asyncio.create_task(read(typed))
        start = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - start < IDLE + 8:
            await typed.send(json.dumps({"t": "i", "d": "echo still here\n"}))
            with contextlib.suppress(websockets.ConnectionClosed):  # closed once it stops
                await idle.send(json.dumps({"t": "r", "c": 100, "r": 30}))  # a resize is not use
            await asyncio.sleep(1)
        reader.cancel()
        drain.cancel()
        for ws in (typed, idle):
            await ws.close()
        return notices
    notices = asyncio.run(go())
    assert env(dana, watching)["state"] == "stopped" and env(dana, typing)["state"] == "running"
    assert any(n.startswith(f"{watching} stops in") for n in notices), notices


def test_replicas_checking_at_once_warn_and_stop_an_idle_environment_once(db_url: str) -> None:
    """Every replica runs the idle check on the one database: the warning event and the stop
    (its event and audit entry) are written once, whichever replica gets there first; each
    replica still tells its own open terminals."""
    db = Database(db_url)
    db.upgrade()
    with db.session() as s:
        owner = UserRow(email="ida@example.com", username="ida", is_admin=False, disabled=False)
        s.add(owner)
        s.flush()
        used = utcnow() - timedelta(seconds=3400)  # 200 s before the hour's idle timeout: warned
        s.add(Environment(owner_id=owner.id, name="idle", image="dev8/base:latest", cpus=1, memory="1g",
                          secret_names=[], options={}, desired_state="running", observed_state="running",
                          control_public_key="ssh-ed25519 AAAA", started_at=used, last_used_at=used))
    replicas = [IdleStopper(db, None, Policy(idle_timeout=3600, max_session=0), interval=1,  # type: ignore[arg-type]
                            warn=lambda *_: None, stopped=lambda _id: None) for _ in range(4)]

    def all_at_once(now: datetime) -> list[tuple[list, list]]:
        barrier = threading.Barrier(len(replicas))
        results: list[tuple[list, list]] = []

        def check(replica: IdleStopper) -> None:
            barrier.wait()
            results.append(replica.check({}, now))
        threads = [threading.Thread(target=check, args=(r,)) for r in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == len(replicas), results  # none failed
        return results

    def count(model, *where) -> int:  # type: ignore[no-untyped-def]
        with db.session() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where))
    warned = all_at_once(utcnow())
    assert all(len(w) == 1 and not stops for w, stops in warned), warned  # every replica's terminals hear it
    assert count(Event, Event.step == "idle", Event.status == "warning") == 1
    stopped = all_at_once(utcnow() + timedelta(seconds=400))
    assert sum(len(stops) for _w, stops in stopped) == 1, stopped
    assert count(AuditEntry, AuditEntry.action == "env.auto_stop") == 1
    assert count(Event, Event.message.like("stopped after%")) == 1
    assert count(Environment, Environment.desired_state == "stopped") == 1
    db.dispose()
