"""Prebuilds on the Docker runtime, from a real git server over HTTPS with a token: each new
environment's home is an overlay on the prebuild's volume (owners, modes, links as they were),
concurrent creates from one prebuild each get their own home, the user's token works in the
prebuild's clone, a signed push webhook makes a prebuild of the pushed commit (a forged one
nothing), and deleting the prebuilds leaves the homes made from them alone: their volumes are
kept until the last of those homes is deleted."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import docker
import pytest
from sqlalchemy import select

from dev8.store.db import Database
from dev8.store.models import Environment
from tests.support import (
    GIT_HOST,
    Dev8Server,
    User,
    github_push,
    make_tls_certs,
    publish_to_git_server,
    start_git_server,
    unique,
    wait_until,
)

TOKEN = "tok-" + "f00dfeed" * 4
REPO_URL = f"https://{GIT_HOST}:8443/org/app.git"
DEVCONTAINER = {
    "onCreateCommand": "mkdir -p node_modules/.bin && for i in $(seq 1 2000); do echo $i > node_modules/m$i; done "
                       "&& ln -s ../m1 node_modules/.bin/tool && chmod 600 node_modules/m2 "
                       "&& echo oncreate >> \"$HOME/runs\"",
    "postCreateCommand": "echo postcreate >> \"$HOME/runs\"",
}


@pytest.fixture
def setup(tmp_path: Path, test_network: str, base_image: str, docker_client):  # type: ignore[no-untyped-def]
    ca = make_tls_certs(tmp_path / "tls", GIT_HOST)
    server = Dev8Server(tmp_path / "server", extra_env={"DEV8_RUNTIME_NETWORK": test_network,
                                                        "DEV8_ENV_CA_BUNDLE": str(ca)}).start()
    git = start_git_server(docker_client, test_network, tmp_path / "tls", {"x-access-token": TOKEN})
    try:
        publish_to_git_server(git, {".devcontainer/devcontainer.json": json.dumps(DEVCONTAINER)})
        yield server, git
    finally:
        try:
            server.shutdown()
        finally:
            git.remove(force=True)


def test_homes_layered_on_a_prebuild_volume_are_whole_and_each_their_own(setup, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                          docker_client) -> None:
    server, git = setup
    alice = User(server, "alice@example.com", tmp_path / "alice")
    alice.cli("secrets", "set", "GITHUB_TOKEN", input=TOKEN)
    login = f"github@{GIT_HOST}:8443"
    made = alice.cli("prebuilds", "set", REPO_URL, "--git", login)
    assert "prebuild ready at" in made.stdout, made.stdout
    secret = made.stdout.split("secret", 1)[1].split()[0]
    [config] = alice.http().get("/prebuilds").json()
    run = config["runs"][0]
    inst = server.installation()
    prebuild_volume = next(v for v in docker_client.volumes.list(filters={"label": f"dev8.installation={inst}"})
                           if v.name.endswith(f"-{run['environment']}-home"))
    wait_until(lambda: not docker_client.containers.list(all=True, filters={"name": run["environment"]}),
               timeout=60, what="the run's container removed (its home is what is left)")
    ran = docker_client.containers.run("dev8/base:latest", ["cat", "/h/runs"], entrypoint=[], remove=True,
                                       volumes={prebuild_volume.name: {"bind": "/h", "mode": "ro"}})
    assert ran.decode().split() == ["oncreate"]  # postCreateCommand is each home's own

    # two creates at once from the one prebuild
    names = [unique("pb"), unique("pb")]
    creates = [subprocess.Popen(User.server_cli_argv("create", n, "--repo", REPO_URL, "--git", login),
                                env=server.env(DEV8_CONFIG_DIR=str(alice.config_dir)), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for n in names]
    for proc in creates:
        said, complaint = proc.communicate(timeout=300)
        assert proc.returncode == 0, (said, complaint)
        assert "from the prebuild of " + run["commit"][:7] in said, said
    first, second = names
    check = ("stat -c '%U' ~ && cd ~/workspace/app && cat ~/runs && ls node_modules | wc -l "
             "&& readlink node_modules/.bin/tool && stat -c '%U %a' node_modules/m2 && git pull -q && echo pulled")
    for name in names:
        r = alice.ssh(name, check)
        assert r.stdout.split() == ["dev", "oncreate", "postcreate", "2000", "../m1", "dev", "600", "pulled"], \
            r.stdout + r.stderr
    # each home is its own, with its own SSH host key (not the prebuild's)
    db = Database(f"sqlite:///{server.data_dir / 'dev8.db'}")
    with db.session() as s:
        keys = {e.name: e.host_key for e in s.scalars(select(Environment).where(Environment.name.in_(names)))}
    db.dispose()
    prebuild_key = docker_client.containers.run(
        "dev8/base:latest", ["cat", "/h/.dev8/hostkeys/ssh_host_ed25519_key.pub"], entrypoint=[], remove=True,
        volumes={prebuild_volume.name: {"bind": "/h", "mode": "ro"}}).decode().split()[1]
    assert len({k.split()[1] for k in keys.values()} | {prebuild_key}) == 3, keys
    homes = [v for v in docker_client.volumes.list(filters={"label": f"dev8.installation={inst}"})
             if v.name.endswith(tuple(f"-{n}-home" for n in names))]
    assert [v.attrs["Labels"].get("dev8.layered-on") for v in homes] == [prebuild_volume.name] * 2
    alice.ssh(first, "echo mine > ~/workspace/app/node_modules/m5")
    assert alice.ssh(second, "cat ~/workspace/app/node_modules/m5").stdout == "5\n"
    push = alice.ssh(second, "cd ~/workspace/app && echo x > X.md && git add X.md && git commit -qm x "
                             "&& git push -q origin main && echo pushed")
    assert push.stdout.strip() == "pushed", push.stderr  # the user's own login, in the copied clone

    # a push: a forged hook runs nothing, a signed one makes a prebuild of the pushed commit, used by the next create
    pushed = publish_to_git_server(git, {"NEWS.md": "v2\n"})
    assert github_push(server, REPO_URL, "main", pushed, "a guess").status_code == 401
    assert [r["state"] for r in alice.http().get(f"/prebuilds/{config['id']}").json()["runs"]] == ["ready"]
    assert github_push(server, REPO_URL, "main", pushed, secret).status_code == 202

    def newest() -> dict:
        return alice.http().get(f"/prebuilds/{config['id']}").json()["runs"][0]
    wait_until(lambda: newest()["state"] in ("ready", "failed"), timeout=300, what="the pushed commit prebuilt")
    assert (newest()["state"], newest()["commit"]) == ("ready", pushed), newest()
    third = unique("pb")
    said = alice.cli("create", third, "--repo", REPO_URL, "--git", login).stdout
    assert "from the prebuild of " + pushed[:7] in said, said
    assert alice.ssh(third, "cd ~/workspace/app && git rev-parse HEAD && cat NEWS.md ~/runs").stdout.split() == [
        pushed, "v2", "oncreate", "postcreate"]
    names.append(third)

    # the prebuilds go: the homes made from them stay, through a restart; their volumes go with the last of the homes
    alice.cli("prebuilds", "delete", REPO_URL)
    assert docker_client.volumes.get(prebuild_volume.name)
    alice.cli("restart", first)
    assert alice.ssh(first, "cat ~/workspace/app/node_modules/m5 ~/workspace/app/node_modules/m6").stdout == "mine\n6\n"
    for name in names:
        alice.cli("delete", name, "--yes")
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(prebuild_volume.name)
    assert not [v.name for v in docker_client.volumes.list(filters={"label": f"dev8.installation={inst}"})]
