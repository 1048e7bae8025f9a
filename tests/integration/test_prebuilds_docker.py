"""Prebuilds on the Docker runtime, from a real git server over HTTPS with a token: the
prebuild's home volume is copied (owners, modes, links kept) into each new environment's,
concurrent creates from one prebuild each get their own home, the user's token works in the
copied clone, and deleting the prebuild leaves the homes made from it alone."""
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


def test_homes_copied_from_a_prebuild_volume_are_whole_and_each_their_own(setup, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                          docker_client) -> None:
    server, _git = setup
    alice = User(server, "alice@example.com", tmp_path / "alice")
    alice.cli("secrets", "set", "GITHUB_TOKEN", input=TOKEN)
    login = f"github@{GIT_HOST}:8443"
    made = alice.cli("prebuilds", "set", REPO_URL, "--git", login)
    assert "prebuild ready at" in made.stdout, made.stdout
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
    alice.ssh(first, "echo mine > ~/workspace/app/node_modules/m5")
    assert alice.ssh(second, "cat ~/workspace/app/node_modules/m5").stdout == "5\n"
    push = alice.ssh(second, "cd ~/workspace/app && echo x > X.md && git add X.md && git commit -qm x "
                             "&& git push -q origin main && echo pushed")
    assert push.stdout.strip() == "pushed", push.stderr  # the user's own login, in the copied clone

    # the prebuild goes: its volume with it, the homes made from it stay
    alice.cli("prebuilds", "delete", REPO_URL)
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(prebuild_volume.name)
    assert alice.ssh(first, "cat ~/workspace/app/node_modules/m5").stdout == "mine\n"
