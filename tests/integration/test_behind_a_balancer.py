"""Two dev8 servers on one PostgreSQL database behind a TCP load balancer (issue #24), on
the Docker runtime, in a real headless Chromium: the user logs in through replica A; A is
stopped under the live browser terminal and the page re-attaches, through B, to the same
shell with its history; `ssh` through the balancer keeps its pinned host key whichever
replica answers; VS Code opens through B, and after B dies it comes back through A with the
app session it had."""
from __future__ import annotations

import copy
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    Balancer,
    Dev8Server,
    Postgres,
    User,
    another_replica,
    log_in,
    set_web_password,
    shot,
    unique,
    wait_until,
)


@pytest.fixture
def front(tmp_path: Path, postgres: Postgres, fullstack_image: str) -> Iterator[tuple[Dev8Server, Dev8Server, Dev8Server,
                                                                                       Balancer, Balancer]]:
    """Replicas A and B, and ``front``: the address users have (the balancers' HTTP and SSH
    ports), as a server object for the test helpers."""
    web, ssh = Balancer(), Balancer()
    a = Dev8Server(tmp_path / "a", postgres.create_database(), {
        "DEV8_PUBLIC_URL": web.url, "DEV8_SSH_PUBLIC_ADDR": f"127.0.0.1:{ssh.port}", "DEV8_REPLICA_ID": "replica-a"})
    web.start()
    ssh.start()
    b: Dev8Server | None = None
    try:
        a.start()
        b = another_replica(a, tmp_path / "b", DEV8_REPLICA_ID="replica-b").start()
        web.backends, ssh.backends = [a.http_port, b.http_port], [a.ssh_port, b.ssh_port]
        users_view = copy.copy(a)
        users_view.url, users_view.http_port, users_view.ssh_port = web.url, web.port, ssh.port
        yield users_view, a, b, web, ssh
    finally:
        web.stop()
        ssh.stop()
        try:
            if b is not None:
                b.kill(check_loop=False)
        finally:
            a.shutdown()
        if b is not None:
            b.assert_loop_never_blocked()


def terminal_text(page) -> str:  # type: ignore[no-untyped-def]
    return page.inner_text(".xterm-rows")


def test_a_browser_session_outlives_the_replicas_that_served_it(page, front, fullstack_image: str) -> None:  # type: ignore[no-untyped-def]
    users_view, a, b, web, ssh = front
    user = User(users_view, "lb@example.com", users_view.root / "lb-user")
    set_web_password(user)
    # what `dev8 login` was told: the balancer's SSH address, pinned with the shared host key
    assert (user.config_dir / "known_hosts").read_text().startswith(f"[127.0.0.1]:{ssh.port} ")
    name = unique("lb")
    user.cli("create", name, "--image", fullstack_image)
    assert user.ssh(name, "echo via-a").stdout.strip() == "via-a"
    user.ssh(name, "mkdir -p ~/workspace/proj && echo 'kept across replicas' > ~/workspace/proj/notes.txt")

    # logged in through A (B is not even tried while A answers), a terminal open on A
    log_in(page, users_view, user, f"/@{user.username}/{name}/terminal/")
    page.wait_for_selector("#status:text('connected')")
    page.click("#terminal")
    page.keyboard.type("KEPT=shell-$((6*7)); echo marker-$((2+3)) pid=$$\n")
    wait_until(lambda: "marker-5" in terminal_text(page), timeout=30, what="output on A")
    pid = re.search(r"marker-5 pid=(\d+)", terminal_text(page)).group(1)  # type: ignore[union-attr]

    # A is stopped (a rolling upgrade): the page is told, reconnects through the balancer to
    # B and finds the same shell, its history repainted
    assert a.proc is not None
    a.proc.send_signal(signal.SIGTERM)
    assert a.wait_exit(30) == 0
    page.wait_for_selector("#status:text('connected')", timeout=30_000)
    wait_until(lambda: "marker-5" in terminal_text(page), timeout=30, what="the history repainted through B")
    page.click("#terminal")
    page.keyboard.type("echo $KEPT-$$\n")
    wait_until(lambda: f"shell-42-{pid}" in terminal_text(page), timeout=30, what="the same shell through B")
    shot(page, "balancer-terminal")

    # ssh through the balancer reaches B now, and the pinned host key still holds
    assert user.ssh(name, "echo via-b").stdout.strip() == "via-b"

    # VS Code through B: the app host's ticket and session are in the shared database
    page.goto(f"{users_view.url}/@{user.username}/{name}/apps/vscode/?folder=/home/dev/workspace/proj")
    assert page.url.startswith(f"http://vscode--{name}--{user.username}.localhost:{web.port}/"), page.url
    page.wait_for_selector(".explorer-folders-view :text('notes.txt')", timeout=120_000)

    # A is back; B dies with no warning: VS Code, reloaded, is served by A with the same app
    # session (no login asked for)
    a.start()
    b.kill(signal.SIGKILL, check_loop=False)
    page.reload()
    assert page.url.startswith(f"http://vscode--{name}--{user.username}.localhost:{web.port}/"), page.url
    page.wait_for_selector(".explorer-folders-view :text('notes.txt')", timeout=120_000)
    page.click(".explorer-folders-view :text('notes.txt')")
    page.wait_for_selector(".monaco-editor .view-lines:has-text('kept across replicas')", timeout=60_000)
    shot(page, "balancer-vscode")
    assert user.ssh(name, "echo via-a-again").stdout.strip() == "via-a-again"
