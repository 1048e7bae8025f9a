"""Templates on a real server (fake runtime): admins write them, everyone reads them; an
environment created from one gets its values, may change only what it lets users change,
and a bad template or a refused value changes nothing."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import Dev8Server, User, unique, wait_until
from tests.support import fake_server as support_fake_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev8Server]:
    with support_fake_server(tmp_path_factory.mktemp("templates")) as srv:
        yield srv


def admin_client(server: Dev8Server) -> tuple[httpx.Client, str]:
    server.cli("admin", "create-user", "root@example.com", "--admin", input="")
    token = server.cli("admin", "create-token", "root@example.com").stdout.strip()
    return httpx.Client(base_url=server.url + "/api/v1", timeout=30, headers={"authorization": "Bearer " + token}), token


def test_environments_from_a_template_take_its_values_and_change_only_what_it_allows(server: Dev8Server,
                                                                                    tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, root_token = admin_client(server)
    fay = User(server, "fay@example.com", tmp_path / "fay")
    spec = {"description": "Python API service", "image": "dev8/base:latest", "cpus": 1.5, "memory": "2g",
            "idle_timeout": 3600, "env": {"APP_ENV": "dev", "GREETING": "hello world"},
            "extensions": ["ms-python.python"], "editable": ["memory", "env"]}
    assert fay.http().put("/templates/python-api", json=spec).status_code == 403  # admins only
    for bad, field in (({"image": "Bad Image"}, "image"), ({"env": {"PATH": "/evil"}}, "env.PATH"),
                       ({"editable": ["owner"]}, "editable"), ({"cpus": 500}, "cpus")):
        r = root.put("/templates/broken", json={**spec, **bad})
        assert r.status_code == 422 and r.json()["field"] == field, (bad, r.text)
    assert root.put("/templates/Not_A_Name", json=spec).status_code == 422
    saved = root.put("/templates/python-api", json=spec)
    assert saved.status_code == 200 and saved.json()["editable"] == ["env", "memory"], saved.text
    images = {i["name"]: i for i in fay.http().get("/images").json()}
    assert images["dev8/base:latest"]["status"] == "ready" and images["dev8/base:latest"]["default"]
    assert "VS Code in the browser" in images["dev8/fullstack:latest"]["description"]
    listed = fay.cli("templates", "list").stdout
    assert "python-api" in listed and "Python API service" in listed and "broken" not in listed
    # created from it: its values
    name = unique("t")
    out = fay.cli("create", name, "--template", "python-api", "--memory", "3g", "--env", "EXTRA=1").stdout
    assert f"{name} is ready" in out
    env = fay.http().get(f"/environments/{name}").json()
    assert (env["template"], env["image"], env["cpus"], env["memory"], env["idle_timeout"]) == \
        ("python-api", "dev8/base:latest", 1.5, "3g", 3600)
    assert env["env"] == {"EXTRA": "1"}  # env is editable: the user's replace the template's
    plain = fay.http().post("/environments/validate", json={"name": unique("t"), "template": "python-api"}).json()
    assert plain == {"valid": True, "detail": None, "field": None}
    # what it does not let users change is refused, naming the field; nothing is created
    for field, value in (("image", "dev8/fullstack:latest"), ("cpus", 4), ("idle_timeout", 0)):
        r = fay.http().post("/environments", json={"name": unique("t"), "template": "python-api", field: value})
        assert r.status_code == 422 and r.json()["field"] == field and "python-api" in r.json()["detail"], r.text
    missing = fay.http().post("/environments", json={"name": unique("t"), "template": "nope"})
    assert missing.status_code == 422 and missing.json()["field"] == "template"
    assert [e["name"] for e in fay.http().get("/environments").json()] == [name]
    # the CLI round trip for admins: what `show` prints, `set` reads back
    shown = fay.cli("templates", "show", "python-api").stdout
    assert '"GREETING": "hello world"' in shown and '"editable"' in shown
    as_root = {"DEV8_CONFIG_DIR": str(tmp_path / "root-cli")}
    server.cli("login", server.url, "--token", root_token, **as_root)
    copied = server.cli("templates", "set", "python-copy", "-", input=shown, **as_root)
    assert "users may change: env, memory" in copied.stdout
    assert {k: v for k, v in root.get("/templates/python-copy").json().items() if k != "name"} == \
        {k: v for k, v in root.get("/templates/python-api").json().items() if k != "name"}
    refused = fay.cli("templates", "set", "mine", "-", input="{}", check=False)
    assert refused.returncode == 1 and "administrators only" in refused.stderr
    # editing one made from it: what it locks stays locked, what it lets users change changes
    fay.cli("stop", name)
    locked = fay.http().patch(f"/environments/{name}", json={"cpus": 4})
    assert locked.status_code == 422 and locked.json()["field"] == "cpus" and "python-api" in locked.text, locked.text
    assert fay.http().patch(f"/environments/{name}", json={"memory": "1g"}).json()["memory"] == "1g"
    # deleting one: environments created from it keep their values, and nothing is locked any more
    assert root.delete("/templates/python-api").status_code == 204
    assert fay.http().get(f"/environments/{name}").json()["template"] == "python-api"
    assert fay.http().patch(f"/environments/{name}", json={"cpus": 2}).json()["cpus"] == 2
    assert [t["name"] for t in fay.http().get("/templates").json()] == ["python-copy"]
    audit = [e["action"] for e in root.get("/admin/audit").json()]
    assert "admin.template.save" in audit and "admin.template.delete" in audit


def test_admins_fetch_images_ahead_and_see_each_jobs_outcome(server: Dev8Server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server.cli("admin", "create-user", "ops@example.com", "--admin", input="")
    token = server.cli("admin", "create-token", "ops@example.com").stdout.strip()
    ops = httpx.Client(base_url=server.url + "/api/v1", timeout=30, headers={"authorization": "Bearer " + token})
    gus = User(server, "gus@example.com", tmp_path / "gus")
    refused = gus.http().post("/images/fetch", json={"image": "dev8/base:latest"})
    assert refused.status_code == 403  # admins only
    assert ops.post("/images/fetch", json={"image": "Not An Image"}).status_code == 422

    def job(image: str) -> dict | None:
        return next((i["job"] for i in ops.get("/images").json() if i["name"] == image), None)
    started = ops.post("/images/fetch", json={"image": "dev8/base:latest"})
    assert started.status_code == 202 and started.json()["state"] in ("running", "done"), started.text
    wait_until(lambda: (job("dev8/base:latest") or {}).get("state") == "done", timeout=30, what="the job done")
    assert "nothing to fetch" in job("dev8/base:latest")["progress"]  # type: ignore[index]
    # one no registry has: the job fails with the reason; a template names it so it is listed
    assert ops.put("/templates/ghost", json={"image": "missing/ghost:1"}).status_code == 200
    ops.post("/images/fetch", json={"image": "missing/ghost:1"})
    wait_until(lambda: (job("missing/ghost:1") or {}).get("state") == "failed", timeout=30, what="the job failed")
    assert "does not exist" in job("missing/ghost:1")["error"]  # type: ignore[index]
    actions = [(e["action"], e["target"]) for e in ops.get("/admin/audit").json()]
    assert {("admin.image.fetch", "dev8/base:latest"), ("admin.image.done", "dev8/base:latest"),
            ("admin.image.failed", "missing/ghost:1")} <= set(actions), actions
