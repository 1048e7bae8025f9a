"""Several dev8 servers on one PostgreSQL database (issue #24), on the fake runtime: each
environment is worked on by one replica at a time (a lease), events reach every replica's
streams, an app ticket minted by one is redeemed once by another, a replica killed in the
middle of a create is taken over by another, and a second server on one SQLite file is
refused."""
from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import (
    PASSWORD,
    Balancer,
    Dev8Server,
    DumbGitServer,
    Postgres,
    User,
    another_replica,
    kill_fake_environments,
    open_terminal,
    set_web_password,
    trust_gateway_of,
    unique,
    wait_until,
    web_login,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> Iterator[tuple[Dev8Server, ...]]:
    root = tmp_path_factory.mktemp("replicas")
    url = postgres.create_database()
    runtime = root / "runtime"
    a = Dev8Server(root / "a", url, {"DEV8_RUNTIME": "fake", "DEV8_RUNTIME_ROOT": str(runtime),
                                      "DEV8_REPLICA_ID": "replica-a"})
    # Behind one load balancer, every replica has the same public address and app domain:
    # here A's, and requests for them are sent to either replica's port.
    a.extra_env.update(DEV8_PUBLIC_URL=a.url, DEV8_WILDCARD_DOMAIN=f"dev8.localhost:{a.http_port}")
    a.start()
    b = another_replica(a, root / "b", DEV8_REPLICA_ID="replica-b").start()
    try:
        yield a, b
    finally:
        try:
            for srv in (a, b):
                srv.kill()
        finally:
            kill_fake_environments(runtime)


def events(api: httpx.Client, name: str) -> list[dict]:
    return api.get(f"/environments/{name}/events", params={"follow": "false", "after": 0}).json()


def states(api: httpx.Client) -> dict[str, str]:
    return {e["name"]: e["state"] for e in api.get("/environments").json()}


def test_two_replicas_start_each_environment_once_and_both_serve_it(
        cluster: tuple[Dev8Server, ...], tmp_path: Path) -> None:
    a, b = cluster
    user = User(a, "pair@example.com", tmp_path / "u")
    on_a, on_b = a.api(user.token), b.api(user.token)  # one login, either replica
    names = [unique("r") for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:  # created through both at once
        codes = list(pool.map(lambda i: (on_a if i % 2 else on_b).post(
            "/environments", json={"name": names[i]}).status_code, range(len(names))))
    assert codes == [202] * len(names)
    for api in (on_a, on_b):
        wait_until(lambda api=api: all(states(api).get(n) == "running" for n in names), timeout=120,  # type: ignore[misc]
                   what="every environment running, seen from each replica")
    for n in names:  # both reconcilers looked at every one; one started it, once
        starts = [e for e in events(on_b, n) if e["step"] == "start" and e["status"] == "ok"]
        assert len(starts) == 1, (n, events(on_b, n))
    # A user's request through B while either may hold it: done once, seen from A.
    assert on_b.post(f"/environments/{names[0]}/stop").status_code == 202
    wait_until(lambda: states(on_a).get(names[0]) == "stopped", timeout=60, what="stopped, seen from A")
    assert on_a.post(f"/environments/{names[0]}/start").status_code == 202
    wait_until(lambda: states(on_b).get(names[0]) == "running", timeout=60, what="running again, seen from B")
    starts = [e for e in events(on_a, names[0]) if e["step"] == "start" and e["status"] == "ok"]
    assert len(starts) == 2
    # The SSH gateway of either replica reaches an environment, with the host key the user
    # trusted at login on A (checked strictly).
    trust_gateway_of(user, b)
    for srv in (a, b):
        user.server = srv
        assert user.ssh(names[1], "echo via-gateway").stdout.strip() == "via-gateway"
    user.server = a
    health = {srv.url: httpx.get(srv.url + "/healthz").json()["replica"] for srv in (a, b)}
    assert health == {a.url: "replica-a", b.url: "replica-b"}
    listed = a.cli("admin", "replicas").stdout
    assert "replica-a  (runs the periodic pass)" in listed and "replica-b  http" in listed, listed


class Follow:
    """An event stream of one environment, read in a thread, its events in a queue."""

    def __init__(self, srv: Dev8Server, token: str, name: str, after: int, **headers: str) -> None:
        self.events: queue.Queue[dict] = queue.Queue()
        self.client = srv.api(token)
        self.response = self.client.send(self.client.build_request(
            "GET", f"/environments/{name}/events", params={"after": after}, headers=headers), stream=True)
        assert self.response.status_code == 200
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            for line in self.response.iter_lines():
                if line.startswith("data:"):
                    self.events.put(json.loads(line[5:]))

    def next(self, timeout: float) -> dict:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self.response.close()
        self.client.close()


def terminate_listeners(url: str) -> int:
    from sqlalchemy import create_engine, text
    engine = create_engine(url)
    with engine.begin() as c:
        n = len(c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")).all())
    engine.dispose()
    return n


def test_an_event_written_by_one_replica_reaches_a_stream_on_another_at_once(
        cluster: tuple[Dev8Server, ...], tmp_path: Path) -> None:
    """Streams are woken by PostgreSQL's LISTEN/NOTIFY, not by polling: with the feed up a
    stream looks in the store by itself only every 15 s, so an event of A's arriving on B's
    stream within 10 s came through the feed. With the feed's connection cut, the stream
    still gets every event (it polls, then the feed is back)."""
    a, b = cluster

    def feeds() -> list[str]:
        return [httpx.get(srv.url + "/healthz").json()["events"] for srv in (a, b)]
    assert feeds() == ["notify", "notify"]
    user = User(a, "fanout@example.com", tmp_path / "u")
    name = unique("f")
    on_a = a.api(user.token)
    assert on_a.post("/environments", json={"name": name}).status_code == 202
    wait_until(lambda: states(on_a).get(name) == "running", timeout=60, what="running")
    last = events(on_a, name)[-1]["id"]
    follow = Follow(b, user.token, name, last)
    try:
        time.sleep(1)  # the stream has read the store once and waits to be woken
        assert on_a.post(f"/environments/{name}/reconfigure").status_code == 202
        first = follow.next(timeout=10)
        assert first["step"] == "request" and first["message"] == "reconfigure requested", first
        assert terminate_listeners(a.database_url or "") == 2  # one feed per replica
        wait_until(lambda: "poll" in feeds(), timeout=10, interval=0.05, what="a feed seen down")
        assert on_a.post(f"/environments/{name}/reconfigure").status_code == 202
        seen = [follow.next(timeout=30)]
        while not (seen[-1]["step"] == "request" and seen[-1]["id"] > first["id"]):
            seen.append(follow.next(timeout=30))
        wait_until(lambda: feeds() == ["notify", "notify"], timeout=30, what="both feeds listening again")
    finally:
        follow.close()
    # A browser's EventSource reconnecting (to any replica) goes on after the last event it got.
    resumed = Follow(b, user.token, name, 0, **{"Last-Event-ID": str(first["id"])})
    try:
        assert resumed.next(timeout=10)["id"] > first["id"]  # not the environment's first event
    finally:
        resumed.close()


def app_get(srv: Dev8Server, app_host: str, path: str, cookie: str | None = None) -> httpx.Response:
    headers = {"host": app_host, "accept": "text/html", **({"cookie": f"dev8_app={cookie}"} if cookie else {})}
    return httpx.get(srv.url + path, headers=headers, follow_redirects=False, timeout=30)


def signed_out(r: httpx.Response) -> bool:
    return r.status_code == 303 and "/app-auth" in r.headers["location"]


def test_an_app_ticket_minted_by_one_replica_is_redeemed_once_by_another_and_ends_with_its_login(
        cluster: tuple[Dev8Server, ...], tmp_path: Path) -> None:
    a, b = cluster
    user = User(a, "apps@example.com", tmp_path / "u")
    set_web_password(user)
    name = unique("p")
    assert a.api(user.token).post("/environments", json={"name": name}).status_code == 202
    app_host = f"8100--{name}--{user.username}.dev8.localhost:{a.http_port}"
    assert signed_out(app_get(b, app_host, "/"))
    browser = web_login(a, user.email)  # logged in on A
    auth = browser.get(f"/app-auth?host={app_host}&next=/", headers={"accept": "text/html"}, follow_redirects=False)
    assert auth.status_code == 303, auth.text
    ticket_path = auth.headers["location"].split(app_host, 1)[1]
    redeemed = app_get(b, app_host, ticket_path)  # the load balancer sent the redirect to B
    assert redeemed.status_code == 303, redeemed.text
    cookie = redeemed.cookies["dev8_app"]
    assert app_get(a, app_host, ticket_path).status_code == 403  # used up, on every replica
    for srv in (a, b):  # the app session is served by either
        assert not signed_out(app_get(srv, app_host, "/", cookie)), srv.url
    home = browser.get("/", headers={"accept": "text/html"})
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]{64})"', home.text).group(1)  # type: ignore[union-attr]
    assert browser.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    wait_until(lambda: signed_out(app_get(b, app_host, "/", cookie)), timeout=30,
               what="the app session ended on B by a logout on A")


def test_an_image_job_runs_once_across_replicas_and_every_replica_shows_it(
        cluster: tuple[Dev8Server, ...], tmp_path: Path) -> None:
    a, b = cluster
    a.cli("admin", "create-user", "ops@example.com", "--admin", input="")
    token = a.cli("admin", "create-token", "ops@example.com").stdout.strip()
    on_a, on_b = a.api(token), b.api(token)
    assert on_a.put("/templates/slow", json={"image": "slow/image:1"}).status_code == 200  # so it is listed

    def job(api: httpx.Client) -> dict:
        return next(i["job"] for i in api.get("/images").json() if i["name"] == "slow/image:1") or {}
    assert on_a.post("/images/fetch", json={"image": "slow/image:1"}).status_code == 202
    twice = on_b.post("/images/fetch", json={"image": "slow/image:1"})  # the same pull, asked of B
    assert twice.status_code == 409 and "being fetched already" in twice.json()["detail"], twice.text
    wait_until(lambda: "step" in job(on_b).get("progress", ""), timeout=30, what="A's progress, seen on B")
    assert job(on_b)["state"] == "running"
    wait_until(lambda: job(on_b).get("state") == "done", timeout=60, what="done, seen on B")
    assert on_b.post("/images/fetch", json={"image": "slow/image:1"}).status_code == 202  # again, on B now


def test_failed_logins_count_across_replicas(cluster: tuple[Dev8Server, ...], tmp_path: Path) -> None:
    a, b = cluster
    user = User(a, "throttled@example.com", tmp_path / "u")
    set_web_password(user)
    for i in range(5):  # spread by the load balancer
        r = httpx.post((a if i % 2 else b).url + "/api/v1/auth/login", json={"email": user.email, "password": "wrong"})
        assert r.status_code == 401, r.text
    for srv in (a, b):
        r = httpx.post(srv.url + "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
        assert r.status_code == 429 and "too many failed logins" in r.json()["detail"], r.text


def test_a_replica_killed_mid_create_is_taken_over_on_the_same_instance(
        cluster: tuple[Dev8Server, ...], tmp_path: Path) -> None:
    a, b = cluster
    runtime = Path(a.extra_env["DEV8_RUNTIME_ROOT"])
    doomed = another_replica(a, tmp_path / "doomed", DEV8_REPLICA_ID="replica-doomed",
                             DEV8_FAULT_KILL_AFTER="start").start()
    user = User(doomed, "doomed@example.com", tmp_path / "u")
    name = unique("k")
    before = set(runtime.glob("*/pid"))
    balancer = Balancer(doomed.http_port, b.http_port).start()
    try:
        user.cli("login", balancer.url, "--token", user.token)
        # the user's `dev8 create` through the balancer, which sends it to the doomed replica
        creating = subprocess.Popen(User.server_cli_argv("create", name), env=doomed.env(
            DEV8_CONFIG_DIR=str(user.config_dir)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert doomed.wait_exit(60) == -signal.SIGKILL  # it dies once the instance is started
        started = set(runtime.glob("*/pid")) - before
        assert len(started) == 1  # its instance runs; its endpoint was never recorded
        pid = started.pop()
        first = pid.read_text()
        # the command's stream was cut: it follows again through the balancer (B now) and
        # sees the create finished there
        said, complaint = creating.communicate(timeout=90)
        assert creating.returncode == 0, (said, complaint)
        assert "reconnecting" in said and "✓ ready" in said, said
    finally:
        balancer.stop()
    on_b = b.api(user.token)
    assert states(on_b).get(name) == "running"
    assert pid.read_text() == first  # the instance it started, adopted, not a second one
    assert len(set(runtime.glob("*/pid")) - before) == 1
    listed = b.cli("admin", "replicas").stdout
    assert "replica-doomed" not in listed, listed  # no heartbeat: no longer listed
    trust_gateway_of(user, b)
    user.server = b
    assert user.ssh(name, "echo adopted").stdout.strip() == "adopted"


@pytest.fixture
def served_repo(tmp_path: Path) -> Iterator[str]:
    """A repository whose devcontainer.json has a create command that takes its time and
    counts its runs in the home."""
    server = DumbGitServer(tmp_path / "git", {".devcontainer/devcontainer.json": json.dumps(
        {"onCreateCommand": "echo run >> \"$HOME/created\"; sleep 10"})})
    try:
        yield server.url
    finally:
        server.stop()


def test_a_create_command_runs_once_when_its_replica_dies_while_it_runs(
        cluster: tuple[Dev8Server, ...], served_repo: str, tmp_path: Path) -> None:
    """The replica running devcontainer.json's create command dies; the command runs on in the
    environment, and the replica taking over waits for it instead of running it again."""
    a, b = cluster
    runtime = Path(a.extra_env["DEV8_RUNTIME_ROOT"])
    doomed = another_replica(a, tmp_path / "doomed", DEV8_REPLICA_ID="replica-lifecycle").start()
    user = User(doomed, "once@example.com", tmp_path / "u")
    name = unique("l")
    assert doomed.api(user.token).post("/environments", json={"name": name, "repo": served_repo}).status_code == 202
    on_b = b.api(user.token)
    wait_until(lambda: any(e["step"] == "lifecycle" and e["status"] == "running" for e in events(on_b, name)),
               timeout=60, what="the create command running on the doomed replica")
    doomed.kill(check_loop=False)
    wait_until(lambda: states(on_b).get(name) == "running", timeout=90, what="taken over by B")
    [home] = [m.parent / "home" for m in runtime.glob("*/meta") if json.loads(m.read_text())["labels"].get(
        "dev8.env-id") == on_b.get(f"/environments/{name}").json()["id"]]
    assert (home / "created").read_text() == "run\n"  # once, though two replicas ran the step
    lifecycle = [e for e in events(on_b, name) if e["step"] == "lifecycle"]
    assert [e["status"] for e in lifecycle] == ["running", "running", "ok"], lifecycle


def test_sigterm_tells_live_connections_to_reconnect_and_hands_its_part_back(
        cluster: tuple[Dev8Server, ...], tmp_path: Path) -> None:
    """A replica being stopped (a rolling upgrade) closes its browser WebSockets with 1012
    (the pages reconnect at once, to any replica) and its gateway SSH sessions with a reason,
    leaves the list of replicas at once and exits."""
    import websockets
    a, b = cluster
    leaving = another_replica(a, tmp_path / "leaving", DEV8_REPLICA_ID="replica-leaving").start()
    user = User(leaving, "drain@example.com", tmp_path / "u")
    set_web_password(user)
    name = unique("d")
    user.cli("create", name)
    cookie = web_login(leaving, user.email).cookies["dev8_session"]

    ssh = subprocess.Popen([*user.ssh_args(name)[:-1], "-tt", user.ssh_args(name)[-1], "echo in; sleep 60"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert ssh.stdout is not None and ssh.stdout.readline().strip() == "in"  # an OpenSSH session, open

    async def go() -> tuple[int | None, str]:
        ws, _ = await open_terminal(leaving, user, name, cookie, origin=a.url)
        assert leaving.proc is not None
        leaving.proc.send_signal(signal.SIGTERM)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 15)
        except websockets.ConnectionClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
        again, _ = await open_terminal(b, user, name, cookie, origin=a.url)  # the page's next try: any replica
        await again.close()
        return code, reason
    code, reason = asyncio.run(go())
    assert code == 1012 and "restarting" in reason, (code, reason)
    shown, said = ssh.communicate(timeout=30)
    # What `ssh` shows its user: dev8's notice on the terminal, or the disconnect's reason
    # (which of the two arrives first is the network's choice).
    assert "this dev8 server is restarting" in shown + said, (shown, said)
    assert leaving.wait_exit(30) == 0
    assert "replica-leaving" not in a.cli("admin", "replicas").stdout  # gone at once, not after a lease


def test_a_browser_terminal_outlives_the_replica_that_showed_it(cluster: tuple[Dev8Server, ...],
                                                                 tmp_path: Path) -> None:
    """The shell runs under a holder in the environment: a replica killed under a live
    terminal loses nothing but the connection; the page reconnects (to B) with its session
    id and finds the same shell, its recent output repainted first."""
    import websockets
    a, b = cluster
    doomed = another_replica(a, tmp_path / "doomed", DEV8_REPLICA_ID="replica-terminal")
    doomed.start()
    user = User(doomed, "term@example.com", tmp_path / "u")
    set_web_password(user)
    name = unique("t")
    user.cli("create", name)
    cookie = web_login(doomed, user.email).cookies["dev8_session"]

    async def until(ws: websockets.ClientConnection, needle: bytes) -> bytes:
        seen, said = b"", []
        while needle not in seen:
            try:
                message = await asyncio.wait_for(ws.recv(), 30)
            except TimeoutError:
                raise AssertionError(f"no {needle!r} within 30 s; got {seen[-500:]!r}, {said}") from None
            if isinstance(message, bytes):
                seen += message
                await ws.send(json.dumps({"t": "a", "n": len(message)}))
            else:
                said.append(message)
        return seen

    async def go() -> tuple[str, dict, bytes, bytes]:
        ws, hello = await open_terminal(doomed, user, name, cookie, origin=a.url)
        await ws.send(json.dumps({"t": "i", "d": "KEPT=shell-$((6*7)); echo marker-$((2+3))\n"}))
        await until(ws, b"marker-5")
        doomed.kill(check_loop=False)  # SIGKILL: no drain, no goodbye
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            await asyncio.wait_for(ws.recv(), 10)
        again, hello2 = await open_terminal(b, user, name, cookie, origin=a.url, session=hello["session"])
        repainted = await until(again, b"marker-5")
        await again.send(json.dumps({"t": "i", "d": "echo $KEPT\n"}))
        same_shell = await until(again, b"shell-42")
        await again.close()
        return hello["session"], hello2, repainted, same_shell
    first, hello2, repainted, same_shell = asyncio.run(go())
    assert hello2["session"] == first and hello2["fresh"] is True  # the page resets, then the repaint
    assert b"marker-5" in repainted and b"shell-42" in same_shell



def test_a_logout_on_one_replica_closes_a_terminal_open_on_another(cluster: tuple[Dev8Server, ...],
                                                                     tmp_path: Path) -> None:
    import websockets
    a, b = cluster
    user = User(a, "logout@example.com", tmp_path / "u")
    set_web_password(user)
    name = unique("o")
    user.cli("create", name)
    browser = web_login(a, user.email)
    cookie = browser.cookies["dev8_session"]

    async def go() -> str:
        ws, _ = await open_terminal(a, user, name, cookie)
        on_b = httpx.Client(base_url=b.url, cookies={"dev8_session": cookie}, timeout=30)  # the balancer picked B
        home = on_b.get("/", headers={"accept": "text/html"})
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]{64})"', home.text).group(1)  # type: ignore[union-attr]
        assert on_b.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 15)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.reason if exc.rcvd else ""
    assert "session ended" in asyncio.run(go())


def test_a_second_server_on_one_sqlite_database_is_refused(tmp_path: Path) -> None:
    first = Dev8Server(tmp_path / "one", extra_env={"DEV8_RUNTIME": "fake",
                                                     "DEV8_RUNTIME_ROOT": str(tmp_path / "rt")}).start()
    try:
        second = Dev8Server(tmp_path / "two", extra_env={"DEV8_RUNTIME": "fake",
                                                          "DEV8_RUNTIME_ROOT": str(tmp_path / "rt")})
        env = second.env(DEV8_DATA_DIR=str(first.data_dir))  # the same data dir, so the same database file
        proc = subprocess.run([sys.executable, "-m", "dev8.cli.main", "server"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode != 0
        assert f"another dev8 server (pid {first.proc.pid}) is serving the SQLite database" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert httpx.get(first.url + "/healthz").status_code == 200  # the first one serves on
        assert f"pid {first.proc.pid} on" in first.cli("admin", "replicas").stdout
        first.kill()
        assert "no server is running" in first.cli("admin", "replicas").stdout  # its lock went with it
    finally:
        first.kill()
        kill_fake_environments(tmp_path / "rt")


def test_replicas_started_at_once_on_a_fresh_database_migrate_it_once(postgres: Postgres) -> None:
    """A Deployment's replicas start together on an empty database: each upgrades it at
    start, and without one migration at a time the second fails creating alembic_version."""
    from dev8.store.db import Database, newest_revision

    url = postgres.create_database()
    start = threading.Barrier(3)

    def upgrade() -> str | None:
        db = Database(url, threads=1)
        try:
            start.wait(timeout=30)
            db.upgrade()
            return db.current_revision()
        finally:
            db.dispose()

    with ThreadPoolExecutor(3) as pool:
        revisions = [f.result(timeout=180) for f in [pool.submit(upgrade) for _ in range(3)]]
    assert revisions == [newest_revision()] * 3
