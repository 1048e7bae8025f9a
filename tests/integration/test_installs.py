"""Installing tools inside a fullstack environment as `dev`, the way developers do: npm -g,
pip --user, pipx, go install, cargo install, bun add -g; each from a local package (tests
reach no registry from inside an environment), each on PATH in every kind of shell, and
each still there after `delete --keep-volume` + `create` and on a new image version."""
from __future__ import annotations

import io

import docker
import pytest

from tests.support import FULLSTACK, Dev8Server, User, unique

# Builds one tiny package per tool inside the environment and installs it as dev, offline.
INSTALL = r"""
set -e
cd /tmp
mkdir -p npmpkg && cd npmpkg
printf '{"name":"dev8-hello","version":"1.0.0","bin":{"dev8-hello-npm":"hello.js"}}' > package.json
printf '#!/usr/bin/env node\nconsole.log("hello from npm")\n' > hello.js
npm pack --silent >/dev/null
npm i -g --offline /tmp/npmpkg/dev8-hello-1.0.0.tgz >/dev/null
mkdir -p /tmp/bunpkg && cd /tmp/bunpkg
printf '{"name":"dev8-hello-bun","version":"1.0.0","bin":{"dev8-hello-bun":"hello.js"}}' > package.json
printf '#!/usr/bin/env node\nconsole.log("hello from bun")\n' > hello.js
npm pack --silent >/dev/null
bun add -g /tmp/bunpkg/dev8-hello-bun-1.0.0.tgz >/dev/null 2>&1
python3 - <<'PY'
import base64, hashlib, zipfile
for name in ("pip", "pipx"):
    mod, dist = f"dev8_hello_{name}", f"dev8_hello_{name}-1.0"
    files = {f"{mod}/__init__.py": f"def main():\n    print('hello from {name}')\n",
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: dev8-hello-{name}\nVersion: 1.0\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: dev8-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist}.dist-info/entry_points.txt": f"[console_scripts]\ndev8-hello-{name} = {mod}:main\n"}
    record = []
    with zipfile.ZipFile(f"/tmp/{dist}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(text)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        z.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
PY
pip install --user --no-index /tmp/dev8_hello_pip-1.0-py3-none-any.whl >/dev/null
pipx install --pip-args=--no-index /tmp/dev8_hello_pipx-1.0-py3-none-any.whl >/dev/null
mkdir -p /tmp/gomod && cd /tmp/gomod
printf 'module example.com/dev8hellogo\n\ngo 1.23\n' > go.mod
printf 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello from go") }\n' > main.go
GOPROXY=off GOTOOLCHAIN=local go install .
cd /tmp && cargo new --bin dev8-hello-cargo --vcs none -q
sed -i 's/Hello, world!/hello from cargo/' /tmp/dev8-hello-cargo/src/main.rs
cargo install --offline -q --path /tmp/dev8-hello-cargo
mkdir -p /tmp/deb/DEBIAN /tmp/deb/usr/local/bin
printf 'Package: dev8-hello-apt\nVersion: 1.0\nArchitecture: all\nMaintainer: dev8 tests <t@example.com>\nDescription: test\n' > /tmp/deb/DEBIAN/control
printf '#!/bin/sh\necho hello from apt\n' > /tmp/deb/usr/local/bin/dev8-hello-apt && chmod 0755 /tmp/deb/usr/local/bin/dev8-hello-apt
dpkg-deb --build -Zgzip /tmp/deb /tmp/dev8-hello-apt.deb >/dev/null
sudo -n apt-get install -y -q /tmp/dev8-hello-apt.deb >/dev/null 2>&1
echo installed
"""
TOOLS = {"dev8-hello-npm": "hello from npm", "dev8-hello-bun": "hello from bun", "dev8-hello-pip": "hello from pip",
         "dev8-hello-pipx": "hello from pipx", "dev8hellogo": "hello from go", "dev8-hello-cargo": "hello from cargo"}
RUN_ALL = "; ".join(f"echo \"@@{tool}@@$({tool} 2>&1)\"" for tool in TOOLS)


def every_tool_answers(user: User, name: str) -> None:
    for shell in (RUN_ALL, "bash -lc '" + RUN_ALL.replace("'", "'\\''") + "'"):  # non-login, then login
        out = user.ssh(name, shell, timeout=120).stdout
        for tool, greeting in TOOLS.items():
            assert f"@@{tool}@@{greeting}" in out, (shell[:20], tool, out)


@pytest.mark.timeout(900)
def test_user_installs_work_without_sudo_are_on_path_everywhere_and_survive_recreation(
        server: Dev8Server, alice: User, fullstack_image: str, docker_client: docker.DockerClient) -> None:
    name = unique("inst")
    alice.cli("create", name, "--image", fullstack_image)
    r = alice.ssh(name, INSTALL, timeout=600)
    assert r.returncode == 0 and "installed" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    every_tool_answers(alice, name)
    # VS Code's terminals and tasks inherit code-server's environment
    path = alice.ssh(name, "tr '\\0' '\\n' < /proc/$(pgrep -u dev -f 'code-server' | head -1)/environ "
                           "| grep '^PATH='").stdout
    for directory in ("/home/dev/.local/bin", "/home/dev/go/bin", "/home/dev/.cargo/bin", "/home/dev/.bun/bin"):
        assert directory in path, path
    assert "externally-managed" not in alice.ssh(name, "pip install --user --no-index nothing-here 2>&1").stdout

    assert alice.ssh(name, "dev8-hello-apt").stdout.strip() == "hello from apt"  # sudo apt-get works...

    alice.cli("delete", name, "--keep-volume", "--yes")  # a new container on the same home volume
    alice.cli("create", name, "--image", fullstack_image)
    every_tool_answers(alice, name)
    assert alice.ssh(name, "command -v dev8-hello-apt").returncode != 0  # ...and, as documented, does not last

    # a new image version (another image on the same home): the tools are in the home, not the image
    newer = f"dev8/fullstack:next-{unique('v')}"
    dockerfile = f"FROM {FULLSTACK}\nLABEL dev8.test=newer\nRUN touch /etc/dev8-newer-image\n".encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=newer, rm=True)
    try:
        alice.cli("delete", name, "--keep-volume", "--yes")
        alice.cli("create", name, "--image", newer)
        assert alice.ssh(name, "test -e /etc/dev8-newer-image && echo newer").stdout.strip() == "newer"
        every_tool_answers(alice, name)
    finally:
        alice.cli("delete", name, "--yes")
        docker_client.images.remove(newer, force=True)
