"""SSH gateway (asyncssh): users reach their environments with ``ssh NAME@host``.

A user authenticates with one of their registered public keys; the login name picks the
environment (``NAME`` or ``USER--NAME``). The gateway then relays every channel over the
control plane's pooled connection to that environment's sshd (core.connections: its own
control-plane key, its pinned host key): shell and exec sessions (with PTY, window changes, signals
and exit status), the sftp subsystem (so scp/sftp work), and ``direct-tcpip`` forwards
(``ssh -L``, VS Code Remote-SSH). An environment that is not the user's is refused exactly
like a key that is not registered. Connecting to a stopped environment starts it: the
client sees a banner, then the start's steps on stderr, and its session once it is ready.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import cast

import asyncssh
from asyncssh.forward import SSHForwarder
from sqlalchemy import select

from dev8.core import auth
from dev8.core import environments as envs
from dev8.core.connections import Endpoint, Unreachable
from dev8.core.errors import Dev8Error
from dev8.core.states import State
from dev8.names import ENV_NAME_RE
from dev8.server.context import ServerContext
from dev8.server.gatewaykey import load_host_key
from dev8.server.live import Live
from dev8.server.starting import NotReady, until_ready
from dev8.store.models import Environment, User, note_use

log = logging.getLogger("dev8.sshgateway")

# AES-GCM only: one OpenSSL AEAD call per packet. Clients pick by their own order
# (OpenSSH: chacha20, then aes-ctr with a separate MAC), and in asyncssh those cost
# much more CPU in the relay; every OpenSSH since 6.2 has AES-GCM.
CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
WINDOW = 8 * 1024 * 1024


@dataclass(frozen=True)
class Target:
    env_id: str
    name: str
    user_id: int
    notice: str = ""  # shown to the client before the session (an environment in error)


class GatewayServer(asyncssh.SSHServer):
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.conn: asyncssh.SSHServerConnection | None = None
        self.target: Target | None = None
        self._upstream: asyncio.Task[asyncssh.SSHClientConnection] | None = None
        self._live: Live | None = None
        self.sessions: set[ProxySession] = set()  # open on this connection

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def auth_completed(self) -> None:
        # ends with its user's account (disabled): every session and forward on it with it
        if self.ctx.live is not None and self.target is not None and self.conn is not None:
            conn = self.conn
            self._live = self.ctx.live.add(self.target.user_id, None, "ssh",
                                           lambda reason: conn.disconnect(asyncssh.DISC_BY_APPLICATION, reason),
                                           env_id=self.target.env_id, tell=self._tell)

    def _tell(self, message: str) -> None:
        for session in list(self.sessions):
            session.notice(message)

    def touch(self) -> None:
        """Traffic on this connection: use of the environment (idle auto-stop)."""
        if self.target is not None:
            self.ctx.activity.touch(self.target.env_id)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ctx.live is not None:
            self.ctx.live.remove(self._live)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        target = await asyncio.to_thread(self._authorize, username, key)
        if target is None:
            return False
        if target.notice and self.target is None and self.conn is not None:
            self.conn.send_auth_banner(target.notice + "\r\n")
        self.target = target
        return True

    def _authorize(self, login: str, key: asyncssh.SSHKey) -> Target | None:
        with self.ctx.db.session() as s:
            user: User | None = auth.user_for_ssh_key(s, key)
            if user is None:
                return None
            names = [login] + ([login[len(user.username) + 2:]] if login.startswith(user.username + "--") else [])
            for name in names:
                if not ENV_NAME_RE.fullmatch(name):
                    continue
                env = s.scalar(select(Environment).where(Environment.owner_id == user.id, Environment.name == name))
                if env is not None and env.desired_state != "deleted":
                    notice = ""
                    refusal = envs.start_refusal(s, env, self.ctx.limits) if env.desired_state == "stopped" else None
                    if refusal:
                        notice = f"dev8: {env.name} is stopped and cannot start: {refusal}"
                    elif env.desired_state == "stopped":
                        notice = f"dev8: {env.name} is stopped: starting it; connected once it is ready"
                    elif env.observed_state == State.ERROR and env.status_message:
                        notice = (f"dev8: {env.name} is in error: {env.status_message}\r\n"
                                  f"dev8: connecting anyway; `dev8 restart {env.name}` tries again")
                    return Target(env.id, env.name, user.id, notice)
            return None

    def upstream(self) -> asyncio.Task[asyncssh.SSHClientConnection]:
        """The environment's pooled connection (shared with the rest of the control plane,
        so a new gateway login costs no upstream handshake); looked up once per client
        connection, again after a failure or once that connection closed (a new instance)."""
        task = self._upstream
        if task is None or (task.done() and (task.exception() is not None or task.result().is_closed())):
            task = self._upstream = asyncio.ensure_future(self._connect_upstream())
        return task

    async def _connect_upstream(self) -> asyncssh.SSHClientConnection:
        assert self.target is not None
        env_id = self.target.env_id

        def lookup() -> tuple[Environment | None, bool, int]:
            with self.ctx.db.session() as s:
                env = s.get(Environment, env_id)
                last = envs.recent_events(s, env_id, 1)
                started = env is not None and envs.start_on_connect(s, env, "SSH", self.ctx.limits)
                if env is not None and env.observed_state == State.RUNNING:
                    note_use(env)  # an SSH session of its owner
                s.commit()
                return env, started, last[-1].id if last else 0
        try:
            env, started, seen = await asyncio.to_thread(lookup)
        except Dev8Error as exc:  # the start was refused (a quota)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
        if started:
            self.ctx.reconciler.wake(env_id)
        if env is not None and envs.ready_or_failed(env) is None:
            env = await self._wait_ready(env_id, seen)
        try:
            if env is None:
                raise Unreachable(f"environment {self.target.name} was deleted")
            endpoint = Endpoint.of(env)
        except Unreachable as exc:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
        try:
            return await self.ctx.connections.get(endpoint)
        except Unreachable as exc:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED, f"environment {self.target.name} is not reachable: {exc}") from None

    async def _wait_ready(self, env_id: str, seen: int) -> Environment:
        """Until it is ready, each step after event ``seen`` to the waiting sessions
        (stderr); ChannelOpenError when it fails, stops or takes longer than START_WAIT."""
        assert self.target is not None
        try:
            return await until_ready(self.ctx, env_id, self.target.name, seen, self._progress)
        except NotReady as exc:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None

    def _progress(self, line: str) -> None:
        for session in list(self.sessions):
            session.progress(line)

    def session_requested(self) -> tuple[asyncssh.SSHServerChannel, ProxySession]:
        assert self.conn is not None
        return self.conn.create_server_channel(encoding=None), ProxySession(self)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> Awaitable[asyncssh.SSHTCPSession]:
        return self._tunnel(dest_host, dest_port)

    async def _tunnel(self, dest_host: str, dest_port: int) -> asyncssh.SSHTCPSession:
        upstream = await self.upstream()
        # asyncssh's own forwarder is a TCP session in all but its declared type
        _, peer = await upstream.create_connection(SSHForwarder, dest_host, dest_port)  # type: ignore[arg-type]
        return cast(asyncssh.SSHTCPSession, _UsersForwarder(cast(SSHForwarder, peer), self.touch))


class _UsersForwarder(SSHForwarder):
    """The user's side of a forward (``ssh -L``, Remote-SSH): what the user sends is use."""

    def __init__(self, peer: SSHForwarder, touch: Callable[[], None]) -> None:
        super().__init__(peer)
        self._touch = touch

    def data_received(self, data: bytes, datatype: int | None = None) -> None:
        self._touch()
        super().data_received(data, datatype)


class _UpstreamSession(asyncssh.SSHClientSession[bytes]):
    """The environment side of a relayed session."""

    def __init__(self, down: ProxySession) -> None:
        self.down = down
        self.exit_status: int | None = None
        self.exit_signal: tuple | None = None

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.down.write(data, datatype)

    def eof_received(self) -> bool:
        self.down.write_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = (signal, core_dumped, msg, lang)

    def pause_writing(self) -> None:
        self.down.pause_reading()

    def resume_writing(self) -> None:
        self.down.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.upstream_closed(self)


class ProxySession(asyncssh.SSHServerSession[bytes]):
    """The user side of a relayed session: waits for the request and the environment's
    connection (showing a start's progress meanwhile), then mirrors it upstream."""

    def __init__(self, gateway: GatewayServer) -> None:
        self.gateway = gateway
        self.chan: asyncssh.SSHServerChannel | None = None
        self.up_chan: asyncssh.SSHClientChannel | None = None
        self.request: dict = {}
        self.pending: list[tuple[str, tuple]] = []

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self.chan = chan
        self.gateway.sessions.add(self)

    def notice(self, message: str) -> None:
        """A line for the person at a terminal (PTY sessions only: the output of a command
        or of sftp is not ours to add to)."""
        if self.chan is not None and "term_type" in self.request and not self.chan.is_closing():
            self.chan.write_stderr(f"\r\ndev8: {message}\r\n".encode())

    def progress(self, line: str) -> None:
        """A step of the start this session waits for (not into sftp's byte stream)."""
        if self.chan is not None and self.up_chan is None and "subsystem" not in self.request \
                and not self.chan.is_closing():
            self.chan.write_stderr(f"dev8: {line}\r\n".encode())

    def pty_requested(self, term_type: str, term_size: tuple, term_modes: Mapping[int, int]) -> bool:
        self.request.update(term_type=term_type, term_size=term_size, term_modes=term_modes)
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.request["command"] = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            return False
        self.request["subsystem"] = subsystem
        return True

    def session_started(self) -> None:
        assert self.chan is not None
        self.chan.pause_reading()
        asyncio.ensure_future(self._open_upstream())

    async def _open_upstream(self) -> None:
        assert self.chan is not None
        env: dict[str | bytes, str | bytes] = {k: v for k, v in (self.chan.get_environment() or {}).items()
               if k in {"LANG", "TERM", "COLORTERM"} or k.startswith("LC_")}
        try:
            upstream = await self.gateway.upstream()
        except Exception as exc:  # noqa: BLE001 - told to the user, whatever it was
            reason = exc.reason if isinstance(exc, asyncssh.ChannelOpenError) else f"{exc.__class__.__name__}: {exc}"
            self.chan.write_stderr(f"dev8: {reason}\r\n".encode())
            self.chan.exit(255)
            return
        try:
            self.up_chan, _ = await upstream.create_session(
                lambda: _UpstreamSession(self), encoding=None, env=env or (), **self.request)
        except (asyncssh.Error, OSError) as exc:
            self.chan.write_stderr(f"dev8: cannot open a session in the environment: {exc}\r\n".encode())
            self.chan.exit(255)
            return
        for method, args in self.pending:
            getattr(self.up_chan, method)(*args)
        self.pending.clear()
        self.chan.resume_reading()

    def _upcall(self, method: str, *args: object) -> None:
        if self.up_chan is None:
            self.pending.append((method, args))
        else:
            getattr(self.up_chan, method)(*args)

    # user -> environment
    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.gateway.touch()
        self._upcall("write", data)

    def eof_received(self) -> bool:
        self._upcall("write_eof")
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._upcall("change_terminal_size", width, height, pixwidth, pixheight)

    def signal_received(self, signal: str) -> None:
        self._upcall("send_signal", signal)

    def break_received(self, msec: int) -> bool:
        self._upcall("send_break", msec)
        return True

    def pause_writing(self) -> None:
        if self.up_chan is not None:
            self.up_chan.pause_reading()

    def resume_writing(self) -> None:
        if self.up_chan is not None:
            self.up_chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway.sessions.discard(self)
        if self.up_chan is not None:
            self.up_chan.close()

    # environment -> user (a command's output is use too: a build printing its progress)
    def write(self, data: bytes, datatype: int | None) -> None:
        assert self.chan is not None
        self.gateway.touch()
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.chan.write_stderr(data)
        else:
            self.chan.write(data)

    def write_eof(self) -> None:
        assert self.chan is not None
        self.chan.write_eof()

    def pause_reading(self) -> None:
        assert self.chan is not None
        self.chan.pause_reading()

    def resume_reading(self) -> None:
        assert self.chan is not None
        self.chan.resume_reading()

    def upstream_closed(self, up: _UpstreamSession) -> None:
        assert self.chan is not None
        if up.exit_signal is not None:
            self.chan.exit_with_signal(*up.exit_signal)
        elif up.exit_status is not None:
            self.chan.exit(up.exit_status)
        else:
            self.chan.close()


async def start_gateway(ctx: ServerContext, host: str, port: int) -> asyncssh.SSHAcceptor:
    host_key = await asyncio.to_thread(load_host_key, ctx.db, ctx.keyring, ctx.settings.data_dir)
    ctx.gateway_host_key = host_key.export_public_key("openssh").decode().strip()
    return await asyncssh.create_server(
        lambda: GatewayServer(ctx), host, port, server_host_keys=[host_key],
        server_version="dev8", allow_scp=False, agent_forwarding=False, x11_forwarding=False,
        encryption_algs=CIPHERS, window=WINDOW,
        line_editor=False,  # bytes go through untouched: the environment's own PTY does the editing
        keepalive_interval=30, login_timeout=30,
    )
