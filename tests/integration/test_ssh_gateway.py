"""The SSH gateway with real OpenSSH clients (ssh, scp, sftp, ssh -L) and asyncssh for PTY resizes."""
from __future__ import annotations

import asyncio
import os
import subprocess

import asyncssh
import httpx
import pytest

from tests.support import Dev8Server, User, free_port, unique, wait_until


@pytest.fixture
def env(alice: User) -> str:
    name = unique("g")
    alice.cli("create", name)
    return name


def test_interactive_shell_with_pty_and_exit_status(alice: User, env: str):
    proc = subprocess.run([*alice.ssh_args(env)[:-1], "-tt", alice.ssh_args(env)[-1]],
                          input="tty; echo TERM=$TERM; exit 5\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 5
    assert "/dev/pts/" in proc.stdout


def test_window_change_reaches_the_environment(server: Dev8Server, alice: User, env: str):
    async def run() -> tuple[str, str]:
        key = asyncssh.read_private_key(str(alice.key))
        async with asyncssh.connect("127.0.0.1", server.ssh_port, username=env, client_keys=[key],
                                    known_hosts=None, agent_path=None, config=[]) as conn:
            proc = await conn.create_process(term_type="xterm", term_size=(80, 24))
            proc.stdin.write("stty size; echo MARK$((0+1))\n")
            first = await _read_until(proc, "MARK1")
            proc.change_terminal_size(132, 43)
            await asyncio.sleep(0.3)
            proc.stdin.write("stty size; echo MARK$((0+2))\n")
            second = await _read_until(proc, "MARK2")
            proc.stdin.write("exit\n")
            await proc.wait(timeout=10)
            return first, second
    first, second = asyncio.run(run())
    assert "24 80" in first
    assert "43 132" in second


async def _read_until(proc, marker: str) -> str:  # type: ignore[no-untyped-def]
    buf = ""
    while marker not in buf:  # the command echoes as MARK$((0+N)); only its output has MARKN
        buf += await asyncio.wait_for(proc.stdout.read(4096), 10)
    return buf


def test_scp_and_sftp_through_the_gateway(alice: User, env: str, tmp_path):
    payload = os.urandom(3 * 1024 * 1024)
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    ssh_opts = alice.ssh_args(env)[:-1]
    scp_opts = ["-P" if o == "-p" else o for o in ssh_opts[1:]]
    target = alice.ssh_args(env)[-1]
    subprocess.run(["scp", *scp_opts, str(src), f"{target}:workspace/blob.bin"], check=True, capture_output=True, timeout=60)
    back = tmp_path / "back.bin"
    batch = tmp_path / "batch"
    batch.write_text(f"get workspace/blob.bin {back}\nls workspace\n")
    r = subprocess.run(["sftp", *scp_opts, "-b", str(batch), target], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert back.read_bytes() == payload
    assert alice.ssh(env, "sha256sum workspace/blob.bin").stdout.split()[0] == __import__("hashlib").sha256(payload).hexdigest()


def test_local_port_forward_reaches_a_loopback_only_service(alice: User, env: str):
    alice.ssh(env, "nohup python3 -m http.server 8765 --bind 127.0.0.1 --directory /etc >/dev/null 2>&1 &")
    local = free_port()
    fwd = subprocess.Popen([*alice.ssh_args(env)[:-1], "-N", "-L", f"{local}:127.0.0.1:8765", alice.ssh_args(env)[-1]],
                           stderr=subprocess.PIPE)
    try:
        r = wait_until(lambda: httpx.get(f"http://127.0.0.1:{local}/hostname", timeout=2), timeout=30,
                       what="forwarded port")
        assert r.status_code == 200 and r.text.strip() == env
    finally:
        fwd.terminate()
        fwd.wait(10)


def test_other_users_environment_is_refused_like_a_missing_one(server: Dev8Server, alice: User, bob: User, env: str):
    def denied(user: User, login: str) -> str:
        r = user.ssh(login, "echo in")
        assert r.returncode == 255 and r.stdout == ""
        return r.stderr.strip().splitlines()[-1]
    theirs = denied(bob, env)
    missing = denied(bob, "nosuchenv")
    assert "Permission denied (publickey)" in theirs
    assert theirs.replace(env, "X") == missing.replace("nosuchenv", "X")
    denied(bob, f"alice--{env}")
    denied(alice, f"bob--{env}")
    assert alice.ssh(f"alice--{env}", "echo in").stdout.strip() == "in"
    # unregistered key: refused too
    r = subprocess.run(["ssh", "-p", str(server.ssh_port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", "-o", "PasswordAuthentication=no",
                        "-i", "/nonexistent", f"{env}@127.0.0.1", "true"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 255


def test_config_ssh_block_lets_plain_ssh_connect(alice: User, env: str, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host example\n  User me\n")
    alice.cli("config-ssh", "--ssh-config", str(config))
    alice.cli("config-ssh", "--ssh-config", str(config))
    text = config.read_text()
    assert text.startswith("Host example\n") and text.count(f"Host dev8.{env}\n") == 1
    r = subprocess.run(["ssh", "-F", str(config), "-i", str(alice.key), "-o", "BatchMode=yes", f"dev8.{env}",
                        "echo via-config"], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "via-config", r.stderr
