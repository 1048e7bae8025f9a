"""Browser terminal sessions: a shell in an environment that outlives the WebSocket it is
shown on, and the server that showed it.

The shell runs under a holder inside the environment (``dev8-env term``: its own PTY, the
recent output, a unix socket); a session here is an SSH channel relaying to it. It keeps
the shell running for ``keep_detached`` seconds after its browser goes away and remembers
the most recent output (``REPLAY_BYTES``), so a reload or a dropped connection re-attaches
to the same shell and repaints what was on screen. When this server stops (restarted, or
one replica of several lost), the holder keeps the shell: the page reconnects to any server
with its session id, and that server attaches to the same holder, which repaints first.
An environment whose image predates the holder gets a shell on an SSH PTY, as before.

Flow control, end to end: the browser acknowledges the bytes xterm.js has rendered; with
more than ``HIGH_WATER`` unacknowledged the session stops reading the SSH channel, whose
small window then stops the program in the environment (``cat`` of a huge file blocks
instead of filling the server's memory or freezing the page). While no browser is attached
output is read and only the replay tail is kept, as tmux would.
"""
from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable

import asyncssh

from dev8.envimage.dev8_env import TERM_FRAME, TERM_HELLO

REPLAY_BYTES = 256 * 1024
HIGH_WATER = 512 * 1024
LOW_WATER = 128 * 1024
CHANNEL_WINDOW = 256 * 1024
READ_CHUNK = 64 * 1024

HELLO_TIMEOUT = 15.0
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,40}$")  # what this module makes: token_urlsafe(18)

Sender = Callable[[bytes], Awaitable[None]]


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """A message to the holder (dev8-env term): input, resize or end."""
    return kind + len(payload).to_bytes(TERM_FRAME - 1, "big") + payload


class PtySession:
    def __init__(self, session_id: str, env_id: str, user_id: int, process: asyncssh.SSHClientProcess,
                 held: bool = True) -> None:
        """``held``: the shell runs under dev8-env's holder (else on this SSH channel's PTY)."""
        self.id, self.env_id, self.user_id, self.process, self.held = session_id, env_id, user_id, process, held
        self.replay = bytearray()
        self.detached_at: float | None = time.monotonic()
        self.exited = asyncio.Event()
        self._send: Sender | None = None
        self._unacked = 0
        self._window = asyncio.Event()
        self._window.set()
        self._pump = asyncio.create_task(self._read_loop())

    def attach(self, send: Sender) -> bytes:
        """Show this session's output through ``send`` from now on (a previous viewer is
        dropped); returns the recent output to repaint first."""
        # the replay counts as sent: the browser acknowledges it like any output
        self._send, self._unacked, self.detached_at = send, len(self.replay), None
        self._window.set()
        return bytes(self.replay)

    def detach(self, send: Sender) -> None:
        if self._send is send:
            self._send, self.detached_at = None, time.monotonic()
            self._window.set()

    def ack(self, nbytes: int) -> None:
        self._unacked = max(0, self._unacked - max(0, nbytes))
        if self._unacked <= LOW_WATER:
            self._window.set()

    def write(self, data: str) -> None:
        if not self.process.stdin.is_closing():
            self.process.stdin.write(frame(b"i", data.encode()) if self.held else data.encode())

    def resize(self, cols: int, rows: int) -> None:
        if 0 < cols <= 1000 and 0 < rows <= 1000:
            if not self.held:
                self.process.change_terminal_size(cols, rows)
            elif not self.process.stdin.is_closing():
                self.process.stdin.write(frame(b"r", f"{cols} {rows}".encode()))

    def close(self, end_shell: bool = True) -> None:
        """Stop showing this session here; ``end_shell`` also ends its shell (a logout, a
        session detached too long), else the holder keeps it for another server."""
        if end_shell and self.held and not self.process.stdin.is_closing():
            self.process.stdin.write(frame(b"k"))
        self.process.close()
        self._pump.cancel()

    async def _read_loop(self) -> None:
        try:
            while True:
                await self._window.wait()
                chunk = await self.process.stdout.read(READ_CHUNK)
                if not chunk:
                    break
                self.replay += chunk
                if len(self.replay) > REPLAY_BYTES:
                    del self.replay[:len(self.replay) - REPLAY_BYTES]
                send = self._send
                if send is None:
                    continue
                self._unacked += len(chunk)
                if self._unacked > HIGH_WATER:
                    self._window.clear()
                try:
                    await send(chunk)
                except Exception:  # the viewer went away mid-send; keep the shell
                    self.detach(send)
        except (asyncssh.Error, OSError):
            pass
        finally:
            self.exited.set()


class PtySessions:
    """All terminal sessions of this server, by id; the reaper ends detached ones."""

    def __init__(self, keep_detached: float = 300, per_user: int = 20) -> None:
        self.keep_detached, self.per_user = keep_detached, per_user
        self._sessions: dict[str, PtySession] = {}
        self._reaper: asyncio.Task | None = None

    def find(self, session_id: str | None, env_id: str, user_id: int) -> PtySession | None:
        s = self._sessions.get(session_id or "")
        if s is None or s.env_id != env_id or s.user_id != user_id or s.exited.is_set():
            return None
        return s

    async def open(self, conn: asyncssh.SSHClientConnection, env_id: str, user_id: int,
                   cols: int, rows: int, session_id: str | None = None) -> PtySession:
        """A session showing terminal ``session_id`` of this user in this environment: the
        shell another server showed (its holder repaints it first), or a new one when it
        is gone; without an id, a new one."""
        mine = [s for s in self._sessions.values() if s.user_id == user_id]
        if len(mine) >= self.per_user:  # the oldest detached one makes room
            detached = sorted((s for s in mine if s.detached_at is not None), key=lambda s: s.detached_at or 0)
            if not detached:
                raise RuntimeError(f"too many open terminals (at most {self.per_user})")
            self._end(detached[0])
        # The page's id, shown by another server before; one this server shows under someone
        # else (find() said no) is not taken over: a new one.
        adopt = bool(session_id and session_id not in self._sessions and SESSION_ID_RE.match(session_id))
        sid = session_id if adopt and session_id else secrets.token_urlsafe(18)
        cols, rows = max(1, min(cols, 1000)), max(1, min(rows, 1000))
        # The holder's name carries the user: an id leaked to another user (an admin who may
        # open this environment) names another holder, never this user's shell.
        process = await conn.create_process(
            f"dev8-env term u{user_id}-{sid} {cols} {rows} {int(self.keep_detached)}", encoding=None,
            window=CHANNEL_WINDOW)
        held = True
        try:
            hello = await asyncio.wait_for(process.stdout.readexactly(len(TERM_HELLO)), HELLO_TIMEOUT)
        except asyncio.IncompleteReadError as exc:  # an image from before the holder
            hello = exc.partial
        if hello != TERM_HELLO:
            process.close()
            held = False
            process = await conn.create_process(
                term_type="xterm-256color", term_size=(cols, rows), encoding=None, env={"COLORTERM": "truecolor"},
                window=CHANNEL_WINDOW)
        session = PtySession(sid, env_id, user_id, process, held)
        self._sessions[session.id] = session
        asyncio.ensure_future(session.exited.wait()).add_done_callback(lambda _f: self._sessions.pop(session.id, None))
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap())
        return session

    def _end(self, session: PtySession) -> None:
        self._sessions.pop(session.id, None)
        session.close()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, max(1.0, self.keep_detached / 4)))
            now = time.monotonic()
            for s in list(self._sessions.values()):
                if s.detached_at is not None and now - s.detached_at > self.keep_detached:
                    self._end(s)

    def close(self) -> None:
        """This server stops: its sessions end here, their shells live on in their holders."""
        for s in list(self._sessions.values()):
            self._sessions.pop(s.id, None)
            s.close(end_shell=False)
        if self._reaper is not None:
            self._reaper.cancel()
