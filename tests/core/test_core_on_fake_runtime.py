"""The core (API, reconciler, connection pool, SSH gateway, configure over SSH) against the
``fake`` runtime: a real dev8 server and real OpenSSH clients, no Docker engine."""
from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator

import asyncssh
import httpx
import pytest

from tests.support import Dev8Server, User, unique, wait_until
from tests.support import fake_server as support_fake_server


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev8Server]:
    with support_fake_server(tmp_path_factory.mktemp("fake-core")) as srv:
        yield srv


@pytest.fixture(scope="module")
def carol(fake_server: Dev8Server, tmp_path_factory: pytest.TempPathFactory) -> User:
    user = User(fake_server, "carol@example.com", tmp_path_factory.mktemp("carol"))
    user.cli("secrets", "set", "API_TOKEN", input="tok-fake-1234\n")
    return user


def env_row(server: Dev8Server, name: str) -> dict:
    with sqlite3.connect(server.data_dir / "dev8.db") as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM environments WHERE name = ?", (name,)).fetchone())


def steps(user: User, name: str) -> list[tuple[str, str]]:
    return [(e["step"], e["status"]) for e in user.http().get(f"/environments/{name}/events", params={"follow": "false", "last": 500}).json()]


def state(user: User, name: str) -> str:
    return user.http().get(f"/environments/{name}").json()["state"]


def kill_instance(server: Dev8Server, row: dict) -> None:
    for pid_file in server.runtime_root.glob("*/pid"):  # type: ignore[attr-defined]
        pid, instance = pid_file.read_text().split()
        if instance == row["instance_id"]:
            os.killpg(int(pid), signal.SIGKILL)
            return
    raise AssertionError("instance process not found")


def test_create_configures_over_ssh_and_the_gateway_reaches_a_network_endpoint(fake_server: Dev8Server,
                                                                               carol: User) -> None:
    name = unique("f")
    out = carol.cli("create", name, "--secret", "API_TOKEN").stdout
    for step in ("image", "start", "host-key", "sshd", "configure", "ready"):
        assert f"✓ {step}" in out, out
    row = env_row(fake_server, name)
    assert row["ssh_host"] == "127.0.0.1" and row["ssh_port"] and row["host_key"].startswith("ssh-ed25519 ")
    assert row["instance_id"] and '"pid"' in row["runtime_state"]
    r = carol.ssh(name, 'cat "$DEV8_RUN_DIR/secrets/API_TOKEN"; echo; exit 4')
    assert r.returncode == 4 and r.stdout.strip() == "tok-fake-1234", r.stderr
    health = carol.http().get(f"/environments/{name}/health").json()
    assert health["state"] == "running" and "error" not in health, health
    ports = carol.http().get(f"/environments/{name}/ports").json()
    assert "error" not in ports and isinstance(ports["ports"], list)


def test_a_new_instance_is_configured_again(fake_server: Dev8Server, carol: User) -> None:
    name = unique("n")
    carol.cli("create", name, "--secret", "API_TOKEN")
    before = env_row(fake_server, name)
    configured = steps(carol, name).count(("configure", "ok"))
    kill_instance(fake_server, before)  # its tmpfs is gone with it
    wait_until(lambda: steps(carol, name).count(("configure", "ok")) > configured and state(carol, name) == "running",
               timeout=60, what="configure of the new instance")
    after = env_row(fake_server, name)
    assert after["instance_id"] != before["instance_id"]
    assert after["host_key"] == before["host_key"]  # kept in the storage
    r = carol.ssh(name, 'cat "$DEV8_RUN_DIR/secrets/API_TOKEN"')
    assert r.returncode == 0 and r.stdout.strip() == "tok-fake-1234", r.stderr


def test_a_host_key_other_than_the_pinned_one_is_refused(fake_server: Dev8Server, carol: User) -> None:
    name = unique("k")
    carol.cli("create", name)
    pinned = env_row(fake_server, name)["host_key"]
    assert carol.ssh(name, "true").returncode == 0
    # The same instance, but the endpoint now answers with another key than the pinned one
    # (as a man in the middle would): store a different pin, as if the sshd had changed.
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()
    carol.cli("stop", name)
    wait_until(lambda: state(carol, name) == "stopped", timeout=30, what="stopped")
    with sqlite3.connect(fake_server.data_dir / "dev8.db") as db:
        db.execute("UPDATE environments SET host_key = ? WHERE name = ?", (other, name))
    carol.cli("start", name)  # a new instance: the runtime's key (authenticated channel) is pinned again
    wait_until(lambda: state(carol, name) == "running", timeout=60, what="running")
    assert env_row(fake_server, name)["host_key"] == pinned
    with sqlite3.connect(fake_server.data_dir / "dev8.db") as db:
        db.execute("UPDATE environments SET host_key = ? WHERE name = ?", (other, name))
    carol.http().post(f"/environments/{name}/reconfigure")  # same instance, wrong pin
    wait_until(lambda: state(carol, name) == "error", timeout=60, what="refusal")
    shown = carol.http().get(f"/environments/{name}").json()
    assert "host key" in shown["status_message"], shown
    r = carol.ssh(name, "true")
    assert r.returncode != 0 and "host key" in r.stderr, r.stderr
    # an environment whose pooled connection predates the change drops it and is refused too
    with sqlite3.connect(fake_server.data_dir / "dev8.db") as db:
        db.execute("UPDATE environments SET observed_state = 'running' WHERE name = ?", (name,))
    health = carol.http().get(f"/environments/{name}/health").json()
    assert "host key" in health.get("error", ""), health


def test_backend_down_answers_503_marks_unreachable_and_recovers(fake_server: Dev8Server, carol: User) -> None:
    name = unique("u")
    carol.cli("create", name)
    flag = fake_server.runtime_root / "UNAVAILABLE"  # type: ignore[attr-defined]
    flag.touch()
    try:
        r = carol.http().post("/environments", json={"name": unique("x")})
        assert r.status_code == 503 and "fake runtime unavailable" in r.json()["detail"]
        assert "unavailable" in httpx.get(f"{fake_server.url}/healthz").json()["runtime"]
        carol.http().post(f"/environments/{name}/restart")
        wait_until(lambda: state(carol, name) == "unreachable", timeout=30, what="unreachable")
    finally:
        flag.unlink()
    wait_until(lambda: state(carol, name) == "running", timeout=60, what="recovery")
    assert carol.ssh(name, "echo back").stdout.strip() == "back"


def test_a_gateway_connection_outlives_a_new_instance_of_its_environment(fake_server: Dev8Server,
                                                                         carol: User) -> None:
    """VS Code Remote-SSH and ControlMaster keep one connection open: after the environment
    got a new instance, new sessions on it reach the new one."""
    import asyncio
    name = unique("g")
    carol.cli("create", name)

    async def go() -> tuple[str, str]:
        async with asyncssh.connect("127.0.0.1", fake_server.ssh_port, username=name, known_hosts=None,
                                    client_keys=[asyncssh.read_private_key(str(carol.key))],
                                    agent_path=None, config=[]) as conn:
            before = (await conn.run("echo $PPID", check=True)).stdout.strip()
            row = env_row(fake_server, name)
            await asyncio.to_thread(kill_instance, fake_server, row)
            await asyncio.to_thread(wait_until, lambda: env_row(fake_server, name)["instance_id"] != row["instance_id"]
                                    and state(carol, name) == "running", 60, 0.1, "the new instance")
            after = (await conn.run("echo $PPID", check=True)).stdout.strip()
            return before, after
    before, after = asyncio.run(go())
    assert before and after and before != after  # a shell of another sshd process: the new instance


def test_a_secret_that_cannot_be_decrypted_is_an_error_naming_it(fake_server: Dev8Server, carol: User) -> None:
    name = unique("d")
    carol.cli("secrets", "set", "BROKEN", input="value-1\n")
    # a ciphertext copied from another secret does not open under this name (bound by AAD)
    with sqlite3.connect(fake_server.data_dir / "dev8.db") as db:
        db.execute("UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE name = 'API_TOKEN'), "
                   "nonce = (SELECT nonce FROM secrets WHERE name = 'API_TOKEN'), "
                   "wrapped_key = (SELECT wrapped_key FROM secrets WHERE name = 'API_TOKEN') WHERE name = 'BROKEN'")
    r = carol.cli("create", name, "--secret", "BROKEN", check=False)
    assert r.returncode != 0
    wait_until(lambda: state(carol, name) == "error", timeout=30, what="the error state")
    message = carol.http().get(f"/environments/{name}").json()["status_message"]
    assert "secret BROKEN cannot be decrypted" in message and "dev8 secrets set BROKEN" in message, message
    carol.cli("secrets", "set", "BROKEN", input="value-2\n")  # setting it again heals it
    carol.http().post(f"/environments/{name}/reconfigure")
    wait_until(lambda: state(carol, name) == "running", timeout=60, what="running once the secret is set again")
    assert carol.ssh(name, 'cat "$DEV8_RUN_DIR/secrets/BROKEN"').stdout.strip() == "value-2"
