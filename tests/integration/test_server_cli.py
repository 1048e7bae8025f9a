"""`dev8 server` start-up, admin commands and the image build path."""
from __future__ import annotations

import subprocess
import sys

import docker

from tests.support import Dev8Server, User, unique


def test_server_without_docker_says_so_in_one_line(tmp_path):  # type: ignore[no-untyped-def]
    srv = Dev8Server(tmp_path / "s", extra_env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    proc = subprocess.run([sys.executable, "-m", "dev8.cli.main", "server"], env=srv.env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Docker engine unreachable" in lines[0] and "dockerd" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_invalid_listen_address_is_a_clear_error(tmp_path):  # type: ignore[no-untyped-def]
    srv = Dev8Server(tmp_path / "s")
    proc = subprocess.run([sys.executable, "-m", "dev8.cli.main", "server", "--http-addr", "nonsense"],
                          env=srv.env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "expected HOST:PORT" in proc.stderr and "Traceback" not in proc.stderr


def test_rotate_keys_keeps_secrets_usable_in_new_environments(server: Dev8Server, alice: User):
    alice.cli("secrets", "set", "ROT", input="before-rotation\n")
    before = (server.data_dir / "keyring.json").read_text()
    out = server.cli("admin", "rotate-keys").stdout
    assert "rewrapped 2 data key" in out.replace("(s)", "")  # the secret and the gateway's host key
    assert (server.data_dir / "keyring.json").read_text() != before
    server.kill()
    server.start()
    name = unique("r")
    alice.cli("create", name, "--secret", "ROT")
    assert alice.ssh(name, "cat /run/dev8/secrets/ROT").stdout == "before-rotation"


def test_missing_default_image_is_built_on_create_with_progress(server: Dev8Server, alice: User,
                                                                 docker_client: docker.DockerClient):
    # noprune keeps the layer cache, so the rebuild is quick but still a real build
    docker_client.images.remove("dev8/base:latest", noprune=True, force=True)
    created = alice.cli("create", unique("b"))
    assert "image dev8/base:latest not present: building it" in created.stdout
    assert "✓ ready" in created.stdout
    docker_client.images.get("dev8/base:latest")


def test_image_build_command(server: Dev8Server):
    out = server.cli("image", "build", "base").stdout
    assert "built dev8/base:latest" in out
    bad = server.cli("image", "build", "nope", check=False)
    assert bad.returncode == 1 and "unknown image target" in bad.stderr
