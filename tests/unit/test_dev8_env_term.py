"""dev8-env term: the holder that keeps a browser terminal's shell in the environment while
the relays in front of it (one per server that shows it) come and go."""
from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dev8.envimage.dev8_env as helper
from dev8.server.apps.ptysessions import frame


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dev8-test-term-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Relay:
    """One `dev8-env term` process, as dev8 runs it over SSH (pipes, no PTY)."""

    def __init__(self, run_dir: Path, tid: str = "u1-test-terminal-1", keep: str = "60",
                 under_nohup: bool = False) -> None:
        env = {**os.environ, "DEV8_RUN_DIR": str(run_dir), "SHELL": "/bin/sh", "HOME": str(run_dir)}
        # nohup's mark: SIGHUP ignored, which exec keeps
        nohup = (lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if under_nohup else None
        self.proc = subprocess.Popen([sys.executable, helper.__file__, "term", tid, "80", "24", keep],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     preexec_fn=nohup)
        self.out = b""

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def until(self, needle: bytes, timeout: float = 20) -> bytes:
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        while needle not in self.out:
            assert time.monotonic() < end, f"no {needle!r} in {self.out!r}"
            if select.select([self.proc.stdout], [], [], 0.2)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"ended before {needle!r}: {self.out!r}"
                self.out += chunk
        return self.out

    def leave(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(20)


def test_the_shell_outlives_its_relay_and_the_next_one_gets_its_recent_output(run_dir: Path) -> None:
    first = Relay(run_dir)
    assert first.until(helper.TERM_HELLO).startswith(helper.TERM_HELLO)
    first.send(frame(b"i", b"KEPT=shell-$((6*7)); echo pid=$$ mark-$((2+3))\n"))
    out = first.until(b" mark-5")
    pid = out.split(b"pid=")[-1].split()[0]
    assert first.leave() == 0  # dev8 went away: the relay ends, the shell does not
    second = Relay(run_dir)
    second.until(b"pid=" + pid + b" mark-5")  # repainted first
    second.send(frame(b"r", b"100 30") + frame(b"i", b"stty size; echo $KEPT-$$\n"))
    second.until(b"30 100")
    second.until(b"shell-42-" + pid)  # the same shell
    third = Relay(run_dir)  # a newer viewer (another server) takes over; the older one is let go
    third.until(b"shell-42-" + pid)
    assert second.proc.wait(20) == 0
    third.send(frame(b"k"))  # a logout: the shell ends, and its socket with it
    assert third.proc.wait(20) == 0
    assert list((run_dir / "terms").iterdir()) == []


def test_a_shell_nobody_looks_at_ends_after_keep_and_a_bad_id_is_refused(run_dir: Path) -> None:
    relay = Relay(run_dir, keep="0")
    relay.until(helper.TERM_HELLO)
    assert relay.leave() == 0
    deadline = time.monotonic() + 20
    while list((run_dir / "terms").iterdir()):  # the holder checks every few seconds
        assert time.monotonic() < deadline, "the holder kept a shell nobody was attached to"
        time.sleep(0.2)
    bad = Relay(run_dir, tid="../../etc")
    assert bad.proc.wait(20) == 1
    assert bad.proc.stderr is not None and b"usage: dev8-env term" in bad.proc.stderr.read()


def test_a_run_dir_deeper_than_a_socket_path_may_be_still_holds_terminals(run_dir: Path) -> None:
    """A unix socket's path is capped at 107 bytes; a run dir outside /run (the fake runtime's,
    under a test's temporary directory) with a long terminal id goes past it."""
    deep = run_dir / ("deep-" * 16) / "run"
    tid = "u12-" + "x" * 60
    assert len(str(deep / "terms" / f"{tid}.sock")) > 107
    first = Relay(deep, tid=tid)
    first.send(frame(b"i", b"echo held-$((40+2))\n"))
    first.until(b"held-42")
    assert first.leave() == 0
    second = Relay(deep, tid=tid)
    second.until(b"held-42")  # the same holder, found again by its relative name
    second.send(frame(b"k"))
    assert second.proc.wait(20) == 0
    assert list((deep / "terms").iterdir()) == []


def test_the_shell_starts_with_no_signal_ignored_and_a_logout_ends_it_under_nohup(run_dir: Path) -> None:
    """The shell gets default signal handling whatever dev8-env inherited (Python ignores
    SIGPIPE and SIGXFSZ; nohup, SIGHUP): a pipe into `head` ends quietly, and the hangup
    that ends the shell at a logout is not ignored."""
    relay = Relay(run_dir, under_nohup=True)
    relay.send(frame(b"i", b"grep SigIgn /proc/self/status; echo end-$((1+1))\n"))
    found = re.search(rb"SigIgn:\s+([0-9a-f]{16})", relay.until(b"end-2"))
    assert found, relay.out
    ignored = int(found.group(1), 16)
    assert not ignored & (1 << (signal.SIGHUP - 1) | 1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)), hex(ignored)
    relay.send(frame(b"k"))
    assert relay.proc.wait(20) == 0
    assert list((run_dir / "terms").iterdir()) == []
