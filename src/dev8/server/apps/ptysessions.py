"""Browser terminal sessions: a shell on an SSH PTY in an environment that outlives the
WebSocket it is shown on.

A session keeps its shell running for ``keep_detached`` seconds after its browser goes
away and remembers the most recent output (``REPLAY_BYTES``), so a reload or a dropped
connection re-attaches to the same shell and repaints what was on screen.

Flow control, end to end: the browser acknowledges the bytes xterm.js has rendered; with
more than ``HIGH_WATER`` unacknowledged the session stops reading the SSH channel, whose
small window then stops the program in the environment (``cat`` of a huge file blocks
instead of filling the server's memory or freezing the page). While no browser is attached
output is read and only the replay tail is kept, as tmux would.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

import asyncssh

REPLAY_BYTES = 256 * 1024
HIGH_WATER = 512 * 1024
LOW_WATER = 128 * 1024
CHANNEL_WINDOW = 256 * 1024
READ_CHUNK = 64 * 1024

Sender = Callable[[bytes], Awaitable[None]]


class PtySession:
    def __init__(self, session_id: str, env_id: str, user_id: int, process: asyncssh.SSHClientProcess) -> None:
        self.id, self.env_id, self.user_id, self.process = session_id, env_id, user_id, process
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
            self.process.stdin.write(data.encode())

    def resize(self, cols: int, rows: int) -> None:
        if 0 < cols <= 1000 and 0 < rows <= 1000:
            self.process.change_terminal_size(cols, rows)

    def close(self) -> None:
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
                   cols: int, rows: int) -> PtySession:
        mine = [s for s in self._sessions.values() if s.user_id == user_id]
        if len(mine) >= self.per_user:  # the oldest detached one makes room
            detached = sorted((s for s in mine if s.detached_at is not None), key=lambda s: s.detached_at or 0)
            if not detached:
                raise RuntimeError(f"too many open terminals (at most {self.per_user})")
            self._end(detached[0])
        process = await conn.create_process(
            term_type="xterm-256color", term_size=(max(1, min(cols, 1000)), max(1, min(rows, 1000))),
            encoding=None, env={"COLORTERM": "truecolor"}, window=CHANNEL_WINDOW)
        session = PtySession(secrets.token_urlsafe(18), env_id, user_id, process)
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
        for s in list(self._sessions.values()):
            self._end(s)
        if self._reaper is not None:
            self._reaper.cancel()
