"""Caps per user on a real server (fake runtime): the server's defaults, an admin's caps for
one user, every path that starts an environment (create, start, restart, SSH auto-start)
refused with a 409 naming the cap, and nothing changed by a refusal."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import Dev8Server, User, unique, wait_until
from tests.support import fake_server as support_fake_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev8Server]:
    with support_fake_server(tmp_path_factory.mktemp("quota"), DEV8_QUOTA_RUNNING="2",
                             DEV8_QUOTA_ENVIRONMENTS="3") as srv:
        yield srv


def names(user: User) -> list[str]:
    return sorted(e["name"] for e in user.http().get("/environments").json())


def test_caps_hold_on_every_path_and_an_admin_can_raise_them(server: Dev8Server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    erin = User(server, "erin@example.com", tmp_path / "erin")
    a, b, c, d = (unique(x) for x in "abcd")
    erin.cli("create", a)
    erin.cli("create", b)
    api = erin.http()
    over = api.post("/environments", json={"name": c})
    assert over.status_code == 409 and "at most 2 running environments" in over.json()["detail"], over.text
    assert a in over.json()["detail"] and b in over.json()["detail"]  # says which are running
    assert names(erin) == sorted([a, b])  # nothing created
    refused = erin.cli("create", c, check=False)
    assert refused.returncode == 1 and "at most 2 running environments" in refused.stderr
    erin.cli("stop", a)
    erin.cli("create", c)  # a stopped one does not count as running
    too_many = api.post("/environments", json={"name": d})
    assert too_many.status_code == 409 and "at most 3 environments" in too_many.json()["detail"]
    for path in (f"/environments/{a}/start", f"/environments/{a}/restart"):
        r = api.post(path)
        assert r.status_code == 409 and "stop one first" in r.json()["detail"], (path, r.text)
    assert api.get(f"/environments/{a}").json()["desired_state"] == "stopped"  # unchanged
    # connecting over SSH would start it: refused the same way, with the reason
    ssh = erin.ssh(a, "true")
    assert ssh.returncode != 0 and "at most 2 running environments" in ssh.stderr, ssh.stderr
    # the caps are checked before anything is announced: no "starting it" first
    assert f"dev8: {a} is stopped and cannot start: quota" in ssh.stderr and "starting it" not in ssh.stderr
    quota = api.get("/quota").json()
    assert quota["running"] == 2 and quota["environments"] == 3
    assert sorted(quota["used"]["running"]) == sorted([b, c]) and quota["used"]["environments"] == 3
    # an admin raises erin's running cap and caps her memory instead
    set_by_cli = server.cli("admin", "set-quota", erin.email, "--running", "3", "--memory", "100g")
    assert "running 3" in set_by_cli.stdout and "memory 100g" in set_by_cli.stdout
    assert api.post(f"/environments/{a}/start").status_code == 202
    wait_until(lambda: api.get(f"/environments/{a}").json()["state"] == "running", timeout=60, what="start")
    # through the API: only admins, bad values change nothing
    server.cli("admin", "create-user", "root@example.com", "--admin", input="")
    root = httpx.Client(base_url=server.url + "/api/v1", timeout=30, headers={
        "authorization": "Bearer " + server.cli("admin", "create-token", "root@example.com").stdout.strip()})
    erin_id = next(u["id"] for u in root.get("/admin/users").json() if u["email"] == erin.email)
    assert api.put(f"/admin/users/{erin_id}/quota", json={"running": 100}).status_code == 403
    assert root.put(f"/admin/users/{erin_id}/quota", json={"memory": "lots"}).status_code == 422
    assert root.put(f"/admin/users/{erin_id}/quota", json={"running": -1}).status_code == 422
    assert api.get("/quota").json()["running"] == 3
    # PUT replaces all: memory back to the default (none), environments capped at 4
    put = root.put(f"/admin/users/{erin_id}/quota", json={"environments": 4, "running": 4, "cpus": 0.5})
    assert put.status_code == 200 and put.json()["environments"] == 4 and put.json()["memory"] == ""
    erin.cli("stop", a)
    cpus = api.post(f"/environments/{a}/start")
    assert cpus.status_code == 409 and "at most 0.5 CPUs" in cpus.json()["detail"], cpus.text
    audit = [e for e in root.get("/admin/audit").json() if e["action"] == "admin.user.quota"]
    assert {e["target"] for e in audit} == {erin.email} and len(audit) == 2


def test_a_cap_of_one_is_said_in_the_singular(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with support_fake_server(tmp_path / "one", DEV8_QUOTA_RUNNING="1", DEV8_QUOTA_ENVIRONMENTS="1") as srv:
        fay = User(srv, "fay@example.com", tmp_path / "fay")
        first = unique("q")
        fay.cli("create", first)
        over = fay.http().post("/environments", json={"name": unique("q")}).json()["detail"]
        assert "at most 1 environment for" in over, over
        srv.cli("admin", "set-quota", fay.email, "--environments", "2")
        over = fay.http().post("/environments", json={"name": unique("q")}).json()["detail"]
        assert "at most 1 running environment for" in over, over
