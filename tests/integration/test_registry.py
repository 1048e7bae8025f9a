"""dev8's images into a real OCI registry (Debian's docker-registry on loopback) with
`dev8 image push`, and the distribution API's manifest HEAD that ACI and Kubernetes
runtimes ask before a create."""
from __future__ import annotations

import subprocess
import sys

import docker
import pytest

from dev8.runtimes.registry import RegistryError, has_manifest, parse_ref
from tests.support import Dev8Server, Registry, User, free_port, wait_until


def dev8(*args: str, input: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dev8.cli.main", *args], capture_output=True, text=True,
                          input=input, timeout=600)


def test_push_shows_each_layer_and_the_registry_then_has_the_image(registry: Registry, base_image: str,
                                                                   docker_client: docker.DockerClient) -> None:
    r = dev8("image", "push", base_image, "--registry", f"{registry.host}/team")
    assert r.returncode == 0, r.stderr
    pushed = f"{registry.host}/team/dev8/base:latest"
    assert f"pushed {pushed}" in r.stdout
    layers = {line.split(":")[0].strip() for line in r.stdout.splitlines() if line.startswith("  ")}
    assert len(layers) >= 3, r.stdout  # one line per layer state, each named by its layer
    done = ("Pushed", "Layer already exists", "Mounted from")  # a layer another repository has is mounted
    assert all(any(f"{layer}: {d}" in r.stdout for d in done) for layer in layers), r.stdout

    assert has_manifest(parse_ref(pushed))
    assert not has_manifest(parse_ref(f"{registry.host}/team/dev8/base:no-such-tag"))
    assert not has_manifest(parse_ref(f"{registry.host}/team/dev8/nothing:latest"))
    # what the registry holds is the image itself: pulled back under its pushed name
    local = docker_client.images.get(base_image)
    docker_client.images.remove(pushed)
    assert docker_client.images.pull(pushed).id == local.id

    again = dev8("image", "push", base_image, "--registry", f"{registry.host}/team")
    assert again.returncode == 0 and "already exists" in again.stdout, again.stdout


def test_push_refuses_what_it_cannot_do_in_a_sentence(registry: Registry) -> None:
    r = dev8("image", "push", "dev8/no-such-image:latest", "--registry", registry.host)
    assert r.returncode == 1 and "is not on this machine" in r.stderr, r.stderr
    r = dev8("image", "push", "dev8/base:latest", "--registry", "https://example.test")
    assert r.returncode == 1 and "invalid registry" in r.stderr, r.stderr
    r = dev8("image", "push", "dev8/base:latest", "--registry", registry.host, "--password-stdin")
    assert r.returncode == 1 and "--password-stdin needs --username" in r.stderr, r.stderr


def test_a_registry_that_does_not_answer_is_said_so() -> None:
    with pytest.raises(RegistryError, match="cannot be reached"):
        has_manifest(parse_ref(f"127.0.0.1:{free_port()}/dev8/base:latest"))


def test_admins_push_through_the_api_and_the_password_is_used_once(server: Dev8Server, registry: Registry,  # type: ignore[no-untyped-def]
                                                                   base_image: str, tmp_path) -> None:
    server.cli("admin", "create-user", "ops@example.com", "--admin", input="")
    ops = server.api(server.cli("admin", "create-token", "ops@example.com").stdout.strip())
    bob = User(server, "bob@example.com", tmp_path / "bob")
    target = f"{registry.host}/api"
    assert bob.http().post("/images/push", json={"image": base_image, "registry": target}).status_code == 403
    bad = ops.post("/images/push", json={"image": base_image, "registry": "https://example.test"})
    assert bad.status_code == 422 and bad.json()["field"] == "registry" and "invalid registry" in bad.json()["detail"]
    half = ops.post("/images/push", json={"image": base_image, "registry": target, "username": "dev8-pull"})
    assert half.status_code == 422 and half.json()["field"] == "password", half.text

    def push_job(image: str) -> dict:
        return next((i.get("push_job") or {} for i in ops.get("/images").json() if i["name"] == image), {})
    # a token's name and password (this registry asks for none; the engine sends them as given)
    password = "acr-token-" + "7" * 20
    started = ops.post("/images/push", json={"image": base_image, "registry": target, "username": "dev8-pull",
                                             "password": password})
    assert started.status_code == 202, started.text
    wait_until(lambda: push_job(base_image).get("state") in ("done", "failed"), timeout=300, what="the push")
    assert push_job(base_image)["progress"] == f"pushed {target}/dev8/base:latest", push_job(base_image)
    assert has_manifest(parse_ref(f"{target}/dev8/base:latest"))
    # an image this machine does not have: the job fails with the reason (a template lists it)
    assert ops.put("/templates/ghost", json={"image": "dev8/no-such-image:latest"}).status_code == 200
    ops.post("/images/push", json={"image": "dev8/no-such-image:latest", "registry": target})
    wait_until(lambda: push_job("dev8/no-such-image:latest").get("state") == "failed", timeout=60, what="failed")
    assert "is not on this machine" in push_job("dev8/no-such-image:latest")["error"]
    audit = ops.get("/admin/audit").json()
    actions = {(e["action"], e["target"]) for e in audit}
    assert {("admin.image.push", base_image), ("admin.image.push.done", base_image),
            ("admin.image.push.failed", "dev8/no-such-image:latest")} <= actions, actions
    # the password was used for that push only: not in the audit, the API's answers or the log
    assert password not in str(audit) + ops.get("/images").text + server.log()
