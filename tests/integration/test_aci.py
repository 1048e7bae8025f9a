"""DEV8_RUNTIME=aci end to end against the Azure stand-in (tests/azure/arm_stub.py): the real
SDKs and azure-identity over HTTPS, every body validated against the published spec, and
each environment run for real on Docker from the local registry with its home's share
mounted as ACI mounts Azure Files. What only a real subscription shows is in the README."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from dev8.runtimes.aci import AciRuntime
from dev8.runtimes.aci import builders as b
from dev8.runtimes.aci.options import AciOptions
from dev8.runtimes.base import EnvSpec, NeedsUserAction, RuntimeUnavailable
from tests.support import Dev8Server, User, unique, vscode_answers, wait_until


@pytest.fixture(scope="module")
def aci_server(tmp_path_factory: pytest.TempPathFactory, arm_stub, keyvault, registry_base_image: str  # type: ignore[no-untyped-def]
               ) -> Iterator[Dev8Server]:
    """A dev8 server on aci whose secrets are sealed in (the stand-in of) Azure Key Vault, as
    the product plan has it: both Azure stand-ins take the same Entra credentials."""
    root = tmp_path_factory.mktemp("aci-server")
    key = unique("aci-kek-")
    keyvault.create(key)
    server = Dev8Server(root, extra_env={"DEV8_RUNTIME": "aci", "DEV8_DEFAULT_IMAGE": registry_base_image,
                                         "DEV8_IDLE_CHECK_INTERVAL": "1", **keyvault.settings_env(key),
                                         **arm_stub.env()}, wrap=arm_stub.resolving()).start()
    yield server
    server.kill()


def events(user: User, name: str) -> list[dict]:
    """The environment's last 200 events, oldest first."""
    return user.http().get(f"/environments/{name}/events", params={"follow": "false", "last": 200}).json()


def group_of(arm_stub, name: str, user: User):  # type: ignore[no-untyped-def]
    env_id = user.http().get(f"/environments/{name}").json()["id"]
    return next(g for g in arm_stub.groups.values() if g.body["tags"]["dev8.env-id"] == env_id)


def test_an_environment_on_aci_keeps_its_home_across_stop_start_and_a_group_deleted_behind_dev8s_back(
        aci_server: Dev8Server, arm_stub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alice = User(aci_server, f"{unique('alice')}@example.com", tmp_path / "alice")
    alice.cli("secrets", "set", "TOKEN", input="s3cr3t-value\n")
    name = unique("w")
    created = alice.cli("create", name, "--secret", "TOKEN", "--env", "GREETING=hello")
    assert "✓ start" in created.stdout and f"{name} is ready" in created.stdout, created.stdout
    group = group_of(arm_stub, name, alice)
    first_ip = group.ip
    # the endpoint is the group's FQDN (ACI's IP changes at every start), resolved through the
    # system's resolver (the stand-in's records are this server's /etc/hosts)
    fqdn = arm_stub.fqdn(group)
    assert fqdn and arm_stub.lookup(fqdn) == {first_ip}
    assert ("ready", f"ssh {fqdn}:22") in [(e["step"], e["message"]) for e in events(alice, name)]
    # the secret reached memory-backed storage, never the container group's spec
    r = alice.ssh(name, "cat /run/dev8/secrets/TOKEN; echo; stat -f -c %T /run/dev8/; echo $GREETING")
    assert r.returncode == 0 and r.stdout.split() == ["s3cr3t-value", "tmpfs", "hello"], (r.stdout, r.stderr)
    assert not any("s3cr3t" in json.dumps(body) for _, body in arm_stub.bodies)
    assert not (aci_server.data_dir / "keyring.json").exists()  # its key is in the vault
    # what breaks on a home that is the SMB share itself: modes, owners, symlinks, ~/.ssh
    work = ("cd ~/workspace && echo kept > a.txt && chmod 600 a.txt && ln -s a.txt link && "
            "mkdir -p ~/.ssh && chmod 700 ~/.ssh && ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519 && "
            "mkdir -p ~/.local/bin && printf '#!/bin/sh\\necho my tool\\n' > ~/.local/bin/mytool && "
            "chmod +x ~/.local/bin/mytool && mkdir -p node_modules/.bin && ln -s ../pkg/cli.js node_modules/.bin/cli")
    r = alice.ssh(name, work)
    assert r.returncode == 0, r.stderr

    # a preview through dev8's proxy, over the same SSH connection as on Docker
    alice.ssh(name, "cd ~/workspace && (setsid python3 -m http.server 8123 --bind 127.0.0.1 >/dev/null 2>&1 &)")
    wait_until(lambda: alice.script().get(f"/@{alice.username}/{name}/ports/8123/a.txt").status_code == 200,
               timeout=30, what="the preview")
    assert alice.script().get(f"/@{alice.username}/{name}/ports/8123/a.txt").text == "kept\n"

    alice.cli("stop", name)
    assert group.container_id is None and group.state == "Stopped"  # deallocated: no container, no IP
    arm_stub.dns_lag = 2.0  # the name still points at the old address for a while after the start
    try:
        started = alice.cli("start", name)
    finally:
        arm_stub.dns_lag = 0.0
    assert "✓ save" not in started.stdout  # the save happened at stop, not at start
    assert group.ip and group.ip != first_ip  # a new deployment, a new address
    assert arm_stub.lookup(fqdn) == {group.ip}
    check = ("cd ~/workspace && cat a.txt && stat -c %a:%U a.txt && readlink link && stat -c %a:%U ~/.ssh "
             "~/.ssh/id_ed25519 && mytool && readlink node_modules/.bin/cli && cat /run/dev8/secrets/TOKEN")
    r = alice.ssh(name, check)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["kept", "600:dev", "a.txt", "700:dev", "600:dev", "my", "tool", "../pkg/cli.js",
                                "s3cr3t-value"], r.stdout  # configured again on the new instance
    # the core saved the home over SSH before the stop
    assert ("save", "ok") in [(e["step"], e["status"]) for e in events(alice, name)]

    # someone deletes the container group in the portal: made again on the kept home
    alice.ssh(name, "echo second > ~/workspace/b.txt && sudo -n dev8-env save-home")
    with arm_stub.lock:
        arm_stub.deallocate(group)
        del arm_stub.groups[group.name]
    wait_until(lambda: alice.ssh(name, "cat ~/workspace/b.txt", timeout=20).stdout.strip() == "second",
               timeout=120, what="the group made again on the kept home")

    alice.cli("delete", name, "--yes")
    assert group.name not in arm_stub.groups
    assert b.azure_name(f"{group.name}-home") not in arm_stub.shares


def test_an_idle_environment_on_aci_is_stopped_with_its_home_saved(aci_server: Dev8Server, arm_stub,  # type: ignore[no-untyped-def]
                                                                    tmp_path: Path) -> None:
    carl = User(aci_server, f"{unique('carl')}@example.com", tmp_path / "carl")
    name = unique("idle")
    carl.cli("create", name, "--idle-timeout", "5s")
    assert carl.ssh(name, "echo unsaved-until-stop > ~/workspace/idle.txt").returncode == 0
    wait_until(lambda: carl.http().get(f"/environments/{name}").json()["state"] == "stopped", timeout=120,
               what="the idle environment to be stopped")
    env = carl.http().get(f"/environments/{name}").json()
    assert env["stop_reason"] == "stopped after 5 s idle", env
    group = group_of(arm_stub, name, carl)
    assert group.state == "Stopped" and group.container_id is None  # deallocated: no compute billed
    assert ("save", "ok") in [(e["step"], e["status"]) for e in events(carl, name)]
    carl.cli("start", name)  # auto-start on use works as on Docker; here the explicit start
    assert carl.ssh(name, "cat ~/workspace/idle.txt").stdout.strip() == "unsaved-until-stop"
    carl.cli("delete", name, "--yes")


@pytest.mark.timeout(1500)
def test_the_fullstack_installs_a_repository_with_symlinks_and_ssh_keys_survive_stop_and_start_on_aci(
        aci_server: Dev8Server, arm_stub, registry_fullstack_image: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """VS Code through the proxy, and the check that passes on Docker (test_installs.py: npm
    -g, bun, pip --user, pipx, go install, cargo install as dev, offline) on a home ACI keeps on an
    SMB share: installed, then a stop (the home saved to the share, the group deallocated)
    and a start on a new deployment (the home restored): every tool still answers, in plain
    and login shells, and a repository with symlinks and an SSH key are as they were."""
    from tests.integration.test_installs import INSTALL, every_tool_answers
    dora = User(aci_server, f"{unique('dora')}@example.com", tmp_path / "dora")
    name = unique("fs")
    dora.cli("create", name, "--image", registry_fullstack_image)
    r = dora.ssh(name, INSTALL, timeout=600)
    assert r.returncode == 0 and "installed" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    every_tool_answers(dora, name)
    repo = ("cd ~/workspace && git init -q -b main repo && cd repo && mkdir -p bin docs && "
            "printf '#!/bin/sh\necho linked\n' > bin/run.sh && chmod 755 bin/run.sh && ln -s ../bin/run.sh docs/run && "
            "ln -s bin current && git add -A && git -c user.email=d@e -c user.name=d commit -qm init && "
            "ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_work && echo done")
    assert dora.ssh(name, repo).stdout.strip() == "done"
    before = dora.ssh(name, "cat ~/.ssh/id_work.pub").stdout
    vscode_answers(dora, name)
    dora.cli("stop", name)
    dora.cli("start", name)
    every_tool_answers(dora, name)
    vscode_answers(dora, name)  # code-server on the new deployment, reached the same way
    check = ("cd ~/workspace/repo && git status --porcelain | wc -l && readlink docs/run current && docs/run && "
             "stat -c %a bin/run.sh ~/.ssh/id_work && cat ~/.ssh/id_work.pub")
    r = dora.ssh(name, check)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:7] == ["0", "../bin/run.sh", "bin", "linked", "755", "600", *before.split()[:1]], r.stdout
    assert before.strip() in r.stdout
    dora.cli("delete", name, "--yes")


def test_a_repositorys_devcontainer_on_aci_sets_variables_runs_its_commands_and_its_dockerfile_is_refused(  # type: ignore[no-untyped-def]
        arm_stub, registry_base_image: str, docker_client, tmp_path: Path) -> None:
    """devcontainer.json on aci: the clone with a token over SSH (a git host the groups reach,
    as through a VNet), containerEnv, postCreateCommand once per home (the home kept on the
    share across a stop and a new deployment), postStartCommand at every start; a Dockerfile
    is not built here (this runtime builds nothing) and says so, the environment keeping its image."""
    from tests.integration.test_git_providers import DEVCONTAINER
    from tests.support import GIT_HOST, GITLAB_HOST, make_tls_certs, start_git_server
    token = "tok-" + "ac1d" * 8
    network = docker_client.networks.create(unique("dev8-aci-git-"))
    ca = make_tls_certs(tmp_path / "tls", GIT_HOST, GITLAB_HOST)
    (tmp_path / "tls" / "devcontainer.json").write_text(DEVCONTAINER)
    (tmp_path / "tls" / "dockerfile.json").write_text('{"build": {"dockerfile": "Dockerfile"}}')
    (tmp_path / "tls" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    (tmp_path / "tls" / "prebuilt.json").write_text(json.dumps({
        "onCreateCommand": "mkdir -p deps && echo made > deps/f && echo oncreate >> ~/runs",
        "postCreateCommand": "echo postcreate >> ~/runs"}))
    git = start_git_server(docker_client, network.name, tmp_path / "tls", {"x-access-token": token})
    seed = ("set -e; for r in dc img pb; do d=/tmp/$r; git init -q -b main $d; mkdir $d/.devcontainer; done; "
            "cp /srv/tls/devcontainer.json /tmp/dc/.devcontainer/; "
            "cp /srv/tls/dockerfile.json /tmp/img/.devcontainer/devcontainer.json; cp /srv/tls/Dockerfile /tmp/img/.devcontainer/; "
            "cp /srv/tls/prebuilt.json /tmp/pb/.devcontainer/devcontainer.json; "
            "for r in dc img pb; do cd /tmp/$r; git add .; git -c user.name=t -c user.email=t@t commit -qm $r; "
            "git clone -q --bare /tmp/$r /srv/git/org/$r.git; done")
    assert git.exec_run(["sh", "-c", seed]).exit_code == 0
    arm_stub.extra_networks.append(network.name)
    server = Dev8Server(tmp_path / "server", extra_env={"DEV8_RUNTIME": "aci", "DEV8_DEFAULT_IMAGE": registry_base_image,
                                                        "DEV8_ENV_CA_BUNDLE": str(ca), **arm_stub.env()},
                        wrap=arm_stub.resolving()).start()
    try:
        erin = User(server, "erin@example.com", tmp_path / "erin")
        erin.cli("secrets", "set", "CORP_TOKEN", input=token)
        name = unique("dc")
        out = erin.cli("create", name, "--repo", f"https://{GIT_HOST}:8443/org/dc.git",
                       "--git", f"github@{GIT_HOST}:8443=CORP_TOKEN").stdout
        assert "✓ clone" in out and "✓ devcontainer (.devcontainer/devcontainer.json: 1 variables" in out, out
        assert "✓ lifecycle" in out and f"{name} is ready" in out, out
        assert erin.ssh(name, "echo $APP_ENV").stdout.strip() == "dev"
        erin.cli("stop", name)
        erin.cli("start", name)  # a new deployment on the saved home: created once, started twice
        assert erin.ssh(name, "cat ~/created.log ~/started.log").stdout.split() == ["created", "dev", "dev"]
        img = unique("img")
        out = erin.cli("create", img, "--repo", f"https://{GIT_HOST}:8443/org/img.git",
                       "--git", f"github@{GIT_HOST}:8443=CORP_TOKEN").stdout
        assert "! devcontainer-image" in out and "builds no images" in out and f"{img} is ready" in out, out
        assert erin.http().get(f"/environments/{img}").json()["image"] == registry_base_image
        # a prebuild: its run's home saved to its share; a new home's first deployment takes that archive
        login = f"github@{GIT_HOST}:8443=CORP_TOKEN"
        made = erin.cli("prebuilds", "set", f"https://{GIT_HOST}:8443/org/pb.git", "--git", login).stdout
        assert "prebuild ready at" in made, made
        pb = unique("pb")
        out = erin.cli("create", pb, "--repo", f"https://{GIT_HOST}:8443/org/pb.git", "--git", login).stdout
        assert "from the prebuild of" in out, out
        check = "cat ~/runs ~/workspace/pb/deps/f"
        assert erin.ssh(pb, check).stdout.split() == ["oncreate", "postcreate", "made"]
        erin.cli("stop", pb)
        erin.cli("start", pb)  # a new deployment on its own saved archive, not the prebuild's
        assert erin.ssh(pb, check).stdout.split() == ["oncreate", "postcreate", "made"]
    finally:
        server.kill()
        arm_stub.extra_networks.remove(network.name)
        git.remove(force=True)
        for c in docker_client.containers.list(all=True, filters={"network": network.name}):
            network.disconnect(c, force=True)
        network.remove()


def test_an_image_the_registry_does_not_have_is_refused_before_anything_is_made(
        aci_server: Dev8Server, arm_stub, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bob = User(aci_server, f"{unique('bob')}@example.com", tmp_path / "bob")
    before = len(arm_stub.requests)
    r = bob.http().post("/environments", json={"name": "x", "image": f"{registry.host}/dev8/nothing:latest"})
    assert r.status_code == 422 and "is not in its registry" in r.text, r.text
    assert not [p for m, p in arm_stub.requests[before:] if m == "PUT"]
    r = bob.http().post("/environments", json={"name": "y", "image": "dev8/fullstack:latest"})
    assert r.status_code == 422 and "dev8 image push" in r.text, r.text


# --- the runtime against the failures Azure answers with --------------------------------------

@pytest.fixture
def runtime(arm_stub, monkeypatch: pytest.MonkeyPatch) -> AciRuntime:  # type: ignore[no-untyped-def]
    for k, v in arm_stub.env().items():
        monkeypatch.setenv(k, v)
    return AciRuntime(AciOptions(operation_timeout=15))  # type: ignore[call-arg]


def spec_for(image: str) -> EnvSpec:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()
    return EnvSpec(env_id=unique("id"), owner_id=3, name=unique("f"), image=image, cpus=0.5,
                   memory_bytes=256 << 20, control_public_key=key, installation="faults1")


def test_throttling_and_server_errors_are_retried_as_azure_core_does(runtime: AciRuntime, arm_stub,  # type: ignore[no-untyped-def]
                                                                   registry_base_image: str) -> None:
    spec = spec_for(registry_base_image)
    path = f"containerGroups/{b.group_name(spec)}$"
    arm_stub.inject("GET", path, 429, {"error": {"code": "TooManyRequests", "message": "slow down"}},
                    {"Retry-After": "1"})
    arm_stub.inject("GET", path, 429, {"error": {"code": "TooManyRequests", "message": "slow down"}})
    arm_stub.inject("GET", path, 500, {"error": {"code": "InternalServerError", "message": "oops"}})
    before = len(arm_stub.requests)
    assert runtime.observe(spec).exists is False  # the fourth answer, a 404: no such group
    assert [m for m, p in arm_stub.requests[before:] if p.endswith(b.group_name(spec))] == ["GET"] * 4
    arm_stub.inject("GET", path, 503, {"error": {"code": "ServiceUnavailable", "message": "down"}}, times=10)
    with pytest.raises(RuntimeUnavailable, match="503"):
        runtime.observe(spec)
    arm_stub.injections.clear()


@pytest.mark.parametrize("code, says", [
    ("InaccessibleImage", "cannot pull its image"), ("ContainerGroupQuotaReached", "quota"),
    ("ServiceUnavailable", "no capacity"), ("ContainerGroupNameInvalid", "refused the name")])
def test_what_a_retry_cannot_heal_is_said_in_a_sentence(runtime: AciRuntime, arm_stub, registry_base_image: str,  # type: ignore[no-untyped-def]
                                                        code: str, says: str) -> None:
    spec = spec_for(registry_base_image)
    runtime.prepare(spec, lambda _m: None)
    arm_stub.inject("PUT", f"containerGroups/{b.group_name(spec)}$", 409 if code in ("ContainerGroupQuotaReached",
                                                                                     "ServiceUnavailable") else 400,
                    {"error": {"code": code, "message": f"Azure's own words for {code}"}})
    try:
        with pytest.raises(NeedsUserAction, match=says) as info:
            runtime.ensure_running(spec)
        assert f"Azure's own words for {code}" in str(info.value)
        assert runtime.observe(spec).exists is False
    finally:
        runtime.remove(spec, keep_storage=False)


def test_a_deployment_stuck_in_pending_fails_with_acis_events(runtime: AciRuntime, arm_stub, registry,  # type: ignore[no-untyped-def]
                                                              registry_base_image: str, docker_client) -> None:
    from dev8.runtimes.image_push import push
    stuck = push(docker_client, "dev8/base:latest", f"{registry.host}/stuck", lambda _m: None)
    arm_stub.stuck_images.add(stuck)
    spec = spec_for(stuck)
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=r"not running after 15 s \(ACI says: Pulling: pulling image"):
            runtime.ensure_running(spec)
        assert time.monotonic() - started < 60
    finally:
        runtime.remove(spec, keep_storage=False)


def test_a_new_deployment_is_reached_only_once_its_name_points_at_it(arm_stub, registry_base_image: str,  # type: ignore[no-untyped-def]
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each start gets a new IP, and Azure DNS may still answer with the previous one (an
    address since given to someone else's group): ensure_running returns the FQDN endpoint
    only once the name resolves to the IP ARM reports, and says so when it never does."""
    for k, v in arm_stub.env().items():
        monkeypatch.setenv(k, v)
    runtime = AciRuntime(AciOptions(operation_timeout=60), resolver=arm_stub.lookup)  # type: ignore[call-arg]
    spec = spec_for(registry_base_image)
    runtime.prepare(spec, lambda _m: None)
    try:
        first = runtime.ensure_running(spec)
        fqdn = first.host
        assert fqdn == f"{b.group_name(spec)}.westeurope.azurecontainer.io" and first.port == 22
        assert arm_stub.lookup(fqdn) == {first.state["ip"]}
        body = next(body for path, body in reversed(arm_stub.bodies) if path.endswith(b.group_name(spec)))
        assert body["properties"]["ipAddress"]["autoGeneratedDomainNameLabelScope"] == "TenantReuse"
        runtime.stop(spec)
        arm_stub.dns_lag = 3.0
        again = runtime.ensure_running(spec)
        assert again.host == fqdn and again.state["ip"] != first.state["ip"]
        assert arm_stub.lookup(fqdn) == {again.state["ip"]}  # not returned while the old answer stood
        assert arm_stub.published[-1][:2] == (fqdn, again.state["ip"])

        runtime.stop(spec)
        arm_stub.dns_lag = 30.0
        impatient = AciRuntime(AciOptions(operation_timeout=60, dns_timeout=1),  # type: ignore[call-arg]
                               resolver=arm_stub.lookup)
        with pytest.raises(RuntimeError, match=rf"the DNS name {fqdn} does not point at the environment's new "
                                               rf"address .* after 1 s \(it resolves to {again.state['ip']}\)"):
            impatient.ensure_running(spec)
    finally:
        arm_stub.dns_lag = 0.0
        runtime.remove(spec, keep_storage=False)
    assert arm_stub.lookup(fqdn) == set()  # deleted with its group


def test_credentials_azure_refuses_make_the_runtime_unavailable(arm_stub, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    for k, v in arm_stub.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "wrong")
    with pytest.raises(RuntimeUnavailable, match="credentials"):
        AciRuntime(AciOptions()).ping()  # type: ignore[call-arg]
