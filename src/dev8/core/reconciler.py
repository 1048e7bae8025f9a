"""Level-triggered reconciler: drives each environment toward its desired state.

Each pass reads the runtime's actual state (never trusting the event that woke it) and
runs idempotent steps, each bounded by a timeout; failures are recorded as events and
retried with exponential backoff. Runtime calls are blocking and run in worker threads.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import posixpath
import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

import asyncssh
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dev8 import __version__
from dev8.core import devcontainer, envssh, failures, prebuilds
from dev8.core.connections import Endpoint, EnvConnections, KeyUnavailable, Unreachable
from dev8.core.crypto import Keyring
from dev8.core.environments import EMPTY_HOME_OK, add_event, installation_id, spec_of, workspace_folder
from dev8.core.faults import crash_point
from dev8.core.leases import Leases
from dev8.core.notify import EventNotifier, announce
from dev8.core.runtime_health import RuntimeHealth
from dev8.core.secrets import reveal_secrets
from dev8.core.states import Desired, State
from dev8.durations import human
from dev8.runtimes.base import EnvSpec, NeedsUserAction, Observed, Runtime, RuntimeUnavailable, StorageGone
from dev8.store.db import Database
from dev8.store.models import Environment, User, utcnow

log = logging.getLogger("dev8.reconciler")
T = TypeVar("T")

IMAGE_TIMEOUT = 1800.0
STEP_TIMEOUT = 120.0
SSHD_TIMEOUT = 60.0
BOOT_SLOTS_UNLIMITED = 1 << 30  # a runtime whose instances boot elsewhere (a cloud, a cluster)
SSHD_LOG_CHECK = 3.0  # seconds between looks at the log for an sshd that exited, while waiting for it
# What OpenSSH's sshd logs when it exits at start (no host key, a bad configuration).
SSHD_EXITS = re.compile(r"no hostkeys available|Missing privilege separation directory|Bad configuration option|"
                        r"terminating, \d+ bad configuration options|sshd(\[\d+\])?: fatal:")
OPTIONAL_STEP_TIMEOUT = 900.0
BEFORE_STOP_TIMEOUT = 300.0  # e.g. archiving a large home to a network share
MAX_BACKOFF = 60.0
# The backend being down is not this environment's fault: keep checking often, so
# everything converges soon after it is back.
UNAVAILABLE_BACKOFF = 3.0
# How often a runtime call in progress checks that the backend still answers.
HEALTH_EVERY = 2.0
# How soon to look again at an environment another replica is working on (it hands the
# lease back when done, or dies and its lease expires).
LEASE_RETRY = 1.0
# How often the periodic pass looks for scheduled prebuilds (an hour apart at least) and a
# queue no request or run's end dispatched: not at every pass of an idle server.
PREBUILD_CHECK_EVERY = 30.0


class LeaseLost(Exception):
    """This replica could not renew its leases for a lease's length: another may have taken
    its environments over, so it stops working on them."""


class StepFailed(Exception):
    """Step ``step`` failed: ``reason`` in a sentence fit to show, ``detail`` the raw text
    behind it (empty when the reason is all there is)."""

    def __init__(self, step: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason, self.detail = step, reason, detail

    @classmethod
    def of(cls, step: str, raw: str) -> StepFailed:
        return cls(step, *failures.explain(raw))


class Reconciler:
    def __init__(self, db: Database, keyring: Keyring, runtime: Runtime, connections: EnvConnections, *,
                 interval: float = 10.0, notifier: EventNotifier | None = None, ca_certificates: str | None = None,
                 extensions_gallery: str | None = None, leases: Leases | None = None,
                 prebuild_concurrency: int = prebuilds.CONCURRENT_RUNS) -> None:
        """``leases``: whom this server shares the database with (core.leases); by default
        it is the only server."""
        self.db, self.keyring, self.runtime, self.interval = db, keyring, runtime, interval
        self.leases = leases or Leases.alone(db)
        self.connections, self.notifier = connections, notifier
        self.ca_certificates, self.extensions_gallery = ca_certificates, extensions_gallery
        self.prebuild_concurrency = prebuild_concurrency
        self._prebuilds_checked = -math.inf
        self.health = RuntimeHealth(runtime)
        # Instances that boot on this machine (a local engine) compete for its CPUs: past a few
        # at once, a burst only makes every one of them slower, and the first asked no sooner.
        # Waiters are let in in the order they came (asyncio's semaphore is FIFO).
        self._boot_slots = asyncio.Semaphore(runtime.boot_slots or BOOT_SLOTS_UNLIMITED)
        with db.session() as s:
            self.installation = installation_id(s)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[str, asyncio.Task] = {}
        self._dirty: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._last_failure: dict[str, str] = {}  # env id → what its last try failed with, while retried
        self._passes = 0
        # A finished step's "ok" and fields set on the way (``_defer``), written with the
        # environment's next write (the next step's "running", the state it reaches) in one
        # transaction: half the writes of a start, and half the wake-ups of the event streams
        # following it.
        self._unsent: dict[str, list[tuple[str, str, str, datetime]]] = {}
        self._unsent_fields: dict[str, dict[str, object]] = {}
        # A pooled connection that closes by itself (a crashed or restarted environment):
        # look at that environment now instead of at the next pass.
        connections.on_drop(self._connection_dropped)

    def wake(self, env_id: str | None = None) -> None:
        """Reconcile ``env_id`` now, skipping any retry backoff (a user asked for something),
        or, without an id, every environment (a full pass). Thread-safe."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # from a worker thread (a sync route): hand it to the loop
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.wake, env_id)
            return
        if env_id is None:
            self._wake.set()
            return
        self._retry_at.pop(env_id, None)
        self._failures.pop(env_id, None)
        self._last_failure.pop(env_id, None)
        self.schedule(env_id)

    def schedule(self, env_id: str) -> None:
        """One reconcile of ``env_id``; if one is running, one more right after it (so the
        newest request is always seen), never two at once."""
        task = self._tasks.get(env_id)
        if task is not None and not task.done():
            self._dirty.add(env_id)
            return
        self._tasks[env_id] = asyncio.create_task(self._guarded(env_id))

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            try:  # with several replicas, one runs the pass; each reconciles what it is asked
                if await asyncio.to_thread(self.leases.leads):
                    await self.pass_once()
                    await self._prebuilds_due()
            except Exception:  # keep the loop alive whatever one pass hits
                log.exception("reconcile pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _prebuilds_due(self) -> None:
        """Scheduled prebuild runs queued, and queued runs started while the server's cap allows
        (a run's end starts the next at once; this catches a queue its dispatcher left)."""
        now = asyncio.get_running_loop().time()
        if now - self._prebuilds_checked < PREBUILD_CHECK_EVERY:
            return
        self._prebuilds_checked = now

        def due() -> list[str]:
            with self.db.session() as s:
                prebuilds.due(s)
                return prebuilds.dispatch(s, self.keyring, self.prebuild_concurrency)
        for env_id in await asyncio.to_thread(due):
            self.schedule(env_id)

    async def stop(self) -> None:
        """Cancel every reconcile in progress (the server is stopping; its leases are handed
        back next, and a step half done is taken up again by whoever reconciles next)."""
        running = [t for t in self._tasks.values() if not t.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def pass_once(self) -> None:
        """The periodic level-triggered pass. The first one after start reconciles every
        environment; later ones list the runtime once and reconcile only environments that
        are not settled: the listing disagrees with the store, a request is pending, or its
        pooled connection is gone (the instance may have died). Environments in backoff or
        being reconciled right now are left to that."""
        rows, elsewhere = await asyncio.to_thread(self._env_rows)
        listing: dict[str, Observed] | None = None
        if self._passes:
            try:
                await self.health.check()
                listing = await self.runtime_call(self.runtime.observe_all, self.installation)
            except RuntimeUnavailable:
                listing = None  # each reconcile records it on its environment
        self._passes += 1
        now = asyncio.get_running_loop().time()
        for row in rows:
            if self._retry_at.get(row.id, 0) > now:
                continue
            if row.id in elsewhere:  # look again when its lease runs out (its holder may be dead)
                self._look_again_soon(row.id, elsewhere[row.id] + LEASE_RETRY)
                continue
            if listing is not None and self._settled(row, listing.get(row.id)):
                continue
            task = self._tasks.get(row.id)
            if task is None or task.done():
                self._tasks[row.id] = asyncio.create_task(self._guarded(row.id))
        ids = {row.id for row in rows}
        for gone in set(self._tasks) - ids:
            if self._tasks[gone].done():
                del self._tasks[gone]
                self._retry_at.pop(gone, None)
                self._failures.pop(gone, None)
                self._last_failure.pop(gone, None)

    def _settled(self, env: Environment, listed: Observed | None) -> bool:
        if env.desired_state == Desired.STOPPED:
            return env.observed_state == State.STOPPED and (listed is None or not listed.running)
        if env.desired_state != Desired.RUNNING or listed is None or not listed.running:
            return False
        if (env.observed_state != State.RUNNING or env.restart_requested or env.configured_generation != env.generation
                or (listed.host, listed.port) != (env.ssh_host, env.ssh_port)):
            return False
        try:
            return self.connections.is_open(Endpoint.of(env))
        except Unreachable:
            return False

    def _env_rows(self) -> tuple[list[Environment], dict[str, float]]:
        """Every environment, and those another replica is working on now (with the seconds
        its lease has left)."""
        with self.db.session() as s:
            rows = list(s.scalars(select(Environment)))
        return rows, self.leases.held_elsewhere()

    def _look_again_soon(self, env_id: str, delay: float = LEASE_RETRY) -> None:
        loop = asyncio.get_running_loop()
        self._retry_at[env_id] = due = loop.time() + delay
        loop.call_later(delay, self._retry, env_id, due)

    async def _guarded(self, env_id: str) -> None:
        """One reconcile of ``env_id`` under its lease (another replica holding it: again
        soon), then the one more asked for meanwhile, if any."""
        shared = self.leases.shared  # else every claim succeeds: no need to leave the loop
        if shared:
            try:
                claimed = await asyncio.to_thread(self.leases.claim, env_id)
            except SQLAlchemyError as exc:
                log.warning("environment %s: cannot claim its lease: %s", env_id, str(exc).splitlines()[0])
                claimed = False
            if not claimed:  # its requests may have reached this replica: the holder may not know
                return self._look_again_soon(env_id)
        try:
            await self._reconcile_held(env_id)
        finally:
            if shared:
                try:
                    await asyncio.to_thread(self.leases.release, env_id)
                except SQLAlchemyError as exc:  # it expires by itself
                    log.warning("environment %s: cannot hand its lease back: %s", env_id,
                                str(exc).splitlines()[0])
        self._after(env_id)  # only now is this task done (schedule() looks at that)

    async def _reconcile_held(self, env_id: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self.reconcile(env_id)
            self._failures.pop(env_id, None)
            self._last_failure.pop(env_id, None)
            self._retry_at.pop(env_id, None)
        except LeaseLost:
            log.warning("environment %s: this replica's leases ran out; another replica may take it over", env_id)
            self._look_again_soon(env_id)
        except Exception as exc:  # recorded as an event; retried with backoff
            if isinstance(exc, NeedsUserAction) or isinstance(exc.__cause__, NeedsUserAction):
                self._retry_at[env_id] = math.inf  # until a user's request wakes it
                log.warning("environment %s: %s (not retried until its owner acts)", env_id, exc)
                return
            n = self._failures.get(env_id, 0) + 1
            self._failures[env_id] = n
            delay = UNAVAILABLE_BACKOFF if isinstance(exc, RuntimeUnavailable) else min(MAX_BACKOFF, 2.0 ** n)
            self._retry_at[env_id] = due = loop.time() + delay
            if isinstance(exc, StepFailed):  # the failure stays shown, and when dev8 tries again
                failed = f"{exc.step} failed: {failures.without_advice(exc.reason)}"
                self._last_failure[env_id] = failed
                await self._set(env_id,  # what matters first: a list shortens the rest
                                status_message=f"try {n} failed (trying again in {delay:.0f} s): {failed}")
            log.warning("environment %s: %s (retry in %.0fs)", env_id, exc, delay)
            loop.call_later(delay, self._retry, env_id, due)

    def _after(self, env_id: str) -> None:
        if env_id in self._dirty:
            self._dirty.discard(env_id)
            asyncio.get_running_loop().call_soon(self.schedule, env_id)  # after this task is done

    def _retry(self, env_id: str, due: float) -> None:
        if self._retry_at.get(env_id) == due:  # not reset by a user's request meanwhile
            self.schedule(env_id)

    def _connection_dropped(self, env_id: str) -> None:
        task = self._tasks.get(env_id)
        if task is not None and not task.done():
            return  # the reconcile running now dropped it (stop, restart, new instance) or reads the runtime itself
        if env_id not in self._retry_at:
            self.schedule(env_id)

    # --- store helpers (run in threads) ------------------------------------------------

    def _load(self, env_id: str) -> Environment | None:
        with self.db.session() as s:
            return s.get(Environment, env_id)

    def _write(self, env_id: str, events: list[tuple[str, str, str, datetime]], fields: dict[str, object]) -> None:
        """``events`` (step, status, message, when) and ``fields`` of the environment, in one
        transaction; nothing if the environment is gone (deleted meanwhile)."""
        try:
            with self.db.session() as s:
                if fields:
                    env = s.get(Environment, env_id)
                    if env is None:
                        return
                    for k, v in fields.items():
                        setattr(env, k, v)
                    env.updated_at = utcnow()
                for step, status, message, at in events:
                    add_event(s, env_id, step, status, message, at=at)
        except IntegrityError:  # its events refused: the environment was deleted meanwhile
            return
        if events and self.notifier is not None:
            self.notifier.notify(env_id)

    def _event(self, env_id: str, step: str, status: str, message: str = "") -> None:
        """An event now, from a worker thread (a step's progress)."""
        self._write(env_id, [(step, status, message, utcnow())], {})

    async def _emit(self, env_id: str, step: str, status: str, message: str = "", **fields: object) -> None:
        """An event (after what is unsent), with ``fields`` of the environment set."""
        await asyncio.to_thread(self._write, env_id, [*self._unsent.pop(env_id, []), (step, status, message, utcnow())],
                                {**self._unsent_fields.pop(env_id, {}), **fields})

    async def _set(self, env_id: str, **fields: object) -> None:
        """``fields`` of the environment set (with what is unsent)."""
        await asyncio.to_thread(self._write, env_id, self._unsent.pop(env_id, []),
                                {**self._unsent_fields.pop(env_id, {}), **fields})

    def _defer(self, env_id: str, **fields: object) -> None:
        """``fields`` set with the environment's next write (one the reconcile makes at once)."""
        self._unsent_fields.setdefault(env_id, {}).update(fields)

    async def _step(self, env_id: str, step: str, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        if not self.leases.fresh():
            raise LeaseLost(env_id)
        await self._emit(env_id, step, "running")
        try:
            result = await asyncio.wait_for(fn(), timeout)
        except RuntimeUnavailable:
            raise
        except TimeoutError:
            raise StepFailed.of(step, f"timed out after {timeout:.0f}s") from None
        except NeedsUserAction as exc:  # written to be shown
            raise StepFailed(step, str(exc)) from exc
        except Exception as exc:
            raise StepFailed.of(step, str(exc) or exc.__class__.__name__) from exc
        self._unsent.setdefault(env_id, []).append((step, "ok", "", utcnow()))
        return result

    # --- the reconcile step -----------------------------------------------------------------

    async def reconcile(self, env_id: str) -> None:
        env = await asyncio.to_thread(self._load, env_id)
        if env is None:
            return
        spec = spec_of(env, self.installation)
        try:
            await self._reconcile(env, spec)
        except LeaseLost:  # another replica reconciles it now: nothing unsent of this one's may land on its state
            self._unsent.pop(env_id, None)
            self._unsent_fields.pop(env_id, None)
            raise
        finally:
            task = asyncio.current_task()
            if (env_id in self._unsent or env_id in self._unsent_fields) \
                    and not (task is not None and task.cancelling()):
                await self._set(env_id)
            self._unsent.pop(env_id, None)
            self._unsent_fields.pop(env_id, None)

    async def _reconcile(self, env: Environment, spec: EnvSpec) -> None:
        env_id = env.id
        try:
            await self.health.check()  # a backend that does not answer: unreachable in seconds, one thread for all
            if env.desired_state == Desired.DELETED:
                await self._delete(env, spec)
            elif env.desired_state == Desired.STOPPED:
                await self._stop(env, spec)
            else:
                await self._run(env, spec)
        except RuntimeUnavailable as exc:
            await self._set(env_id, observed_state=State.UNREACHABLE, status_message=str(exc))
            raise
        except StepFailed as exc:
            await self._emit(env_id, exc.step, "error", exc.reason + (f" ({exc.detail})" if exc.detail else ""),
                             observed_state=State.ERROR, status_message=f"{exc.step} failed: {exc.reason}",
                             status_detail=exc.detail)
            if env.prebuild_id and env.desired_state == Desired.RUNNING:  # a failed prebuild run is not retried
                ended = await asyncio.to_thread(self._in_store, prebuilds.failed, env,
                                                f"{exc.step} failed: {exc.reason}", self.keyring,
                                                self.prebuild_concurrency)
                return await self.prebuild_ended(ended)
            raise

    async def runtime_call(self, fn: Callable[..., T], *args: object, timeout: float = STEP_TIMEOUT,
                           **kwargs: object) -> T:
        """A blocking runtime call in a worker thread, bounded by ``timeout``; while it
        runs the backend is pinged every few seconds (one ping for all callers), so a
        backend that wedges mid-call counts as unreachable at once instead of holding the
        environment (or the periodic pass) until the timeout."""
        loop = asyncio.get_running_loop()
        call = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
        call.add_done_callback(lambda f: f.cancelled() or f.exception())  # a call given up on may fail later
        deadline = loop.time() + timeout
        while True:
            done, _ = await asyncio.wait({call}, timeout=max(0.0, min(HEALTH_EVERY, deadline - loop.time())))
            if done:
                return call.result()
            if loop.time() >= deadline:
                raise RuntimeUnavailable(f"the {self.runtime.name} runtime did not answer within {timeout:.0f}s")
            await self.health.check()

    async def _delete(self, env: Environment, spec: EnvSpec) -> None:
        if env.keep_volume:
            await self._before_stop(env)
        self.connections.drop(env.id)
        await self._step(env.id, "remove", lambda: self.runtime_call(
            self.runtime.remove, spec, keep_storage=env.keep_volume), STEP_TIMEOUT)

        def drop() -> None:
            with self.db.session() as s:
                row = s.get(Environment, env.id)
                if row is not None and row.desired_state == Desired.DELETED:
                    s.delete(row)
                    announce(s, env.id)  # its streams on other replicas end now too
        await asyncio.to_thread(drop)
        if self.notifier is not None:
            self.notifier.notify(env.id)  # its event streams end now

    async def _stop(self, env: Environment, spec: EnvSpec) -> None:
        observed = await self.runtime_call(self.runtime.observe, spec)
        if observed.running:
            await self._before_stop(env)
        self.connections.drop(env.id)
        if observed.running:
            await self._set(env.id, observed_state=State.STOPPING)
            await self._step(env.id, "stop", lambda: self.runtime_call(self.runtime.stop, spec), STEP_TIMEOUT)
        if env.observed_state != State.STOPPED:
            await self._emit(env.id, "stopped", "ok", observed_state=State.STOPPED, ssh_host=None, ssh_port=None,
                             instance_id=None, status_message="", status_detail="")

    async def _run(self, env: Environment, spec: EnvSpec) -> None:
        observed = await self.runtime_call(self.runtime.observe, spec)
        if env.restart_requested:
            if observed.running:
                await self._before_stop(env)
            self.connections.drop(env.id)
            if observed.running:
                await self._step(env.id, "stop", lambda: self.runtime_call(self.runtime.stop, spec), STEP_TIMEOUT)
            await self._set(env.id, restart_requested=False)
            observed = Observed(exists=observed.exists)
        same_instance = (observed.reachable and observed.instance_id == env.instance_id
                         and (observed.host, observed.port) == (env.ssh_host, env.ssh_port) and bool(env.host_key))
        if same_instance and env.observed_state == State.RUNNING and env.configured_generation == env.generation:
            # Keep a pooled connection: its closing tells the periodic pass the instance died.
            message = env.status_message
            try:
                await self.connections.get(Endpoint.of(env))
                if message.startswith(KeyUnavailable.PREFIX):
                    message = ""  # the key service is back
            except KeyUnavailable as exc:  # it keeps running; its owner sees why dev8 cannot reach it
                message = str(exc)
            except (Unreachable, TimeoutError):
                pass
            if message != env.status_message:
                await self._set(env.id, status_message=message)
            return
        tries, last = self._failures.get(env.id, 0), self._last_failure.get(env.id)
        retrying = f"trying again after try {tries} failed: {last}" if tries and last else ""
        self._defer(env.id, observed_state=State.STARTING, status_detail="", status_message=retrying)
        if not same_instance:
            await self._prepare_instance(env, spec)
            if self._boot_slots.locked():  # its owner sees why nothing moves for a moment
                await self._emit(env.id, "start", "progress", f"waiting its turn: {self.runtime.boot_slots} "
                                 "environment(s) booting on this machine")
            async with self._boot_slots:  # boots that share this machine's CPUs: the first asked boot first
                observed = await self._start_instance(env, spec)
                host_key = await self._pin_host_key(env, spec, observed)
            endpoint = Endpoint(env.id, observed.host or "", observed.port or 0, host_key, observed.instance_id or "")
        else:
            endpoint = Endpoint(env.id, env.ssh_host or "", env.ssh_port or 0, env.host_key or "",
                                env.instance_id or "")
        # The document is made while sshd is waited for; awaited in the configure step, so a
        # secret that cannot be decrypted fails that step, naming the secret.
        document = asyncio.ensure_future(asyncio.to_thread(self._configuration, env))
        document.add_done_callback(lambda f: f.cancelled() or f.exception())  # read even if sshd fails
        conn = await self._step(env.id, "sshd", lambda: self._wait_sshd(spec, endpoint), SSHD_TIMEOUT + 5)
        sent: dict = {}

        async def configure() -> dict:
            sent.update(await document)
            return await envssh.configure(conn, sent)
        configured = await self._step(env.id, "configure", configure, STEP_TIMEOUT)
        options = env.options or {}
        if isinstance(configured.get("apps"), list) and configured["apps"] != options.get("apps"):
            options = {**options, "apps": configured["apps"]}  # what its image offers (VS Code or not)
            self._defer(env.id, options=options)
            env.options = options
        run = bool(env.prebuild_id)  # a prebuild run: what other environments let pass fails it
        cloned: dict = {}
        if options.get("repo"):
            cloned = await self._optional_step(env.id, "clone", conn, "dev8-env clone", required=run)
            options = await self._devcontainer(env, conn)
            if await self._devcontainer_image(env, conn):
                self.schedule(env.id)  # restart on it (this reconcile ends here)
                return
        if sent.get("dotfiles"):  # set at creation (or applied); once per home: dev8-env skips a home that has them
            await self._optional_step(env.id, "dotfiles", conn, "dev8-env dotfiles")
        plan = options.get("devcontainer") or {}
        if options.get("extensions") or plan.get("extensions") or plan.get("settings") \
                or (options.get("ai") or {}).get("copilot"):
            await self._optional_step(env.id, "extensions", conn, "dev8-env extensions")
        if plan.get("once") or plan.get("on_start") or run or options.get("prebuild"):
            await self._optional_step(env.id, "lifecycle", conn, "dev8-env lifecycle", required=run)
        if run:
            return await self._prebuild_ready(env, conn, cloned)
        await self._emit(env.id, "ready", "ok", f"ssh {endpoint.host}:{endpoint.port}", observed_state=State.RUNNING,
                         configured_generation=env.generation, started_at=utcnow(), status_message="",
                         status_detail="")

    async def _prepare_instance(self, env: Environment, spec: EnvSpec) -> None:
        """Image and storage, for a new instance."""
        self.connections.drop(env.id)

        def progress(message: str) -> None:
            self._event(env.id, "image", "progress", message)

        async def prepare() -> None:
            try:
                await self.runtime_call(self.runtime.prepare, spec, progress, timeout=IMAGE_TIMEOUT)
            except StorageGone as exc:
                if spec.seed:  # the prebuild went meanwhile: an ordinary create
                    await self._without_prebuild(env, f"its prebuild cannot be used ({exc}); made without it")
                    await self.runtime_call(self.runtime.prepare, replace(spec, seed=None), progress,
                                            timeout=IMAGE_TIMEOUT)
                    return
                raise StorageGone(f"{exc}: restore it, or start with an empty home: "
                                  f"`dev8 start {env.name} --empty-home`") from None
        prebuild = (env.options or {}).get("prebuild")
        if spec.seed and prebuild:
            old = (utcnow() - datetime.fromisoformat(prebuild["at"])).total_seconds()
            await self._emit(env.id, "prebuild", "ok",
                             f"from the prebuild of {prebuild['commit'][:7]}, {human(max(0.0, old))} old")
        await self._step(env.id, "image", prepare, IMAGE_TIMEOUT)
        if (env.options or {}).get(EMPTY_HOME_OK):  # the new, empty home exists now

            def agreed() -> None:
                with self.db.session() as s:
                    row = s.get(Environment, env.id)
                    if row is not None:
                        row.options = {k: v for k, v in (row.options or {}).items() if k != EMPTY_HOME_OK}
            await asyncio.to_thread(agreed)

    async def _start_instance(self, env: Environment, spec: EnvSpec) -> Observed:
        """The environment itself, on its prepared image and storage: where its new instance is."""
        timeout = self.runtime.start_timeout
        observed = await self._step(env.id, "start", lambda: self.runtime_call(
            self.runtime.ensure_running, spec, timeout=timeout), timeout + 5)
        crash_point("start")
        if not observed.reachable:
            raise StepFailed("start", f"it is {observed.detail or 'not running'}")
        return observed

    async def _without_prebuild(self, env: Environment, why: str) -> None:
        options = {k: v for k, v in (env.options or {}).items() if k != "prebuild"}
        env.options = options
        await self._emit(env.id, "prebuild", "warning", why, options=options)

    async def _prebuild_ready(self, env: Environment, conn: asyncssh.SSHClientConnection, cloned: dict) -> None:
        """The run in ``env`` did its work: its clone's commit (as ``dev8-env clone`` answered,
        or read in the folder it named: an image whose dev8-env predates the answer) becomes a
        prebuild, its environment is removed keeping its storage (the reconcile after this
        one), older prebuilds go."""
        commit = str(cloned.get("commit") or "")
        if not commit and cloned.get("path"):
            try:
                result = await conn.run(f"git -C {shlex.quote(str(cloned['path']))} rev-parse HEAD", check=True,
                                        timeout=60)
                commit = str(result.stdout).strip()
            except (TimeoutError, asyncssh.Error, OSError) as exc:
                raise StepFailed.of("prebuild", f"cannot read its clone's commit: {exc}") from None
        if not commit:
            raise StepFailed("prebuild", "its clone has no commit")
        await self._emit(env.id, "prebuild", "ok", f"ready at {commit[:7]}")
        ended = await asyncio.to_thread(self._in_store, prebuilds.finished, env, commit, self.keyring,
                                        self.prebuild_concurrency)
        await self.prebuild_ended(ended)

    def _in_store(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(session, *args)`` in one transaction (in a worker thread)."""
        with self.db.session() as s:
            return fn(s, *args)

    async def prebuild_ended(self, ended: prebuilds.RunEnded) -> None:
        for gone in ended.prune:  # older prebuilds: their storage is no longer needed
            spec = EnvSpec(env_id=gone.env_id, owner_id=gone.owner_id, name=gone.env_name, image="", cpus=0,
                           memory_bytes=0, control_public_key="", installation=self.installation)
            try:
                await self.runtime_call(self.runtime.remove, spec, keep_storage=False)
            except (RuntimeUnavailable, OSError, RuntimeError) as exc:
                log.warning("prebuild storage %s: cannot remove it: %s", spec.object_name, exc)
        for env_id in ended.wake:
            self.schedule(env_id)

    async def _wait_sshd(self, spec: EnvSpec, endpoint: Endpoint) -> asyncssh.SSHClientConnection:
        """The environment's sshd, once it accepts the control key; an sshd that exits at
        start (its services logged why: no host keys, a bad configuration) fails the wait
        with that line as soon as it is logged, not at the timeout."""
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(self.connections.wait(endpoint, deadline=loop.time() + SSHD_TIMEOUT))
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=SSHD_LOG_CHECK)
                if done:
                    return waiting.result()
                lines = await self.runtime_call(self.runtime.logs, spec, 50, timeout=STEP_TIMEOUT)
                fatal = next((line.strip() for line in reversed(lines) if SSHD_EXITS.search(line)), None)
                if fatal:
                    raise RuntimeError(f"sshd exits as it starts; the environment logged: {fatal}")
        finally:
            waiting.cancel()

    async def _pin_host_key(self, env: Environment, spec: EnvSpec, observed: Observed) -> str:
        """Read the new instance's host key from the runtime (an authenticated channel) and
        record it with the endpoint. The same instance presenting another key is refused."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SSHD_TIMEOUT

        async def read() -> str:
            # The entrypoint prints the key before sshd starts: once sshd shows its banner
            # the key is there to read, so the runtime is asked once, not polled (under a
            # burst of starts every call to the backend waits its turn). Without a banner it
            # is still asked every few seconds (an sshd that never listens).
            banner = asyncio.ensure_future(envssh.wait_banner(observed.host or "", observed.port or 0,
                                                              deadline=deadline))
            try:
                while True:
                    await asyncio.wait({banner}, timeout=SSHD_LOG_CHECK)
                    try:
                        return await self.runtime_call(self.runtime.host_key, spec, timeout=SSHD_TIMEOUT)
                    except RuntimeError:
                        if loop.time() > deadline:
                            raise
                        if banner.done():
                            await asyncio.sleep(0.1)
            finally:
                banner.cancel()
        key = await self._step(env.id, "host-key", read, SSHD_TIMEOUT + 5)
        if env.host_key and env.instance_id == observed.instance_id and env.host_key != key:
            raise StepFailed("host-key", "the environment's SSH host key changed without a new instance; refused")
        self._defer(env.id, ssh_host=observed.host, ssh_port=observed.port, host_key=key,
                    instance_id=observed.instance_id, runtime_state=observed.state)
        return key

    async def _before_stop(self, env: Environment) -> None:
        """The runtime's command before a stop (saving a home kept elsewhere), on the
        running instance dev8 last configured. A failure is a warning: the stop goes on,
        and what the runtime saved before is what the next start finds."""
        command = self.runtime.before_stop
        if not command or not env.ssh_host or not env.host_key or not env.instance_id:
            return
        await self._emit(env.id, "save", "running")
        try:
            conn = await asyncio.wait_for(self.connections.get(Endpoint.of(env)), SSHD_TIMEOUT)
            result = await conn.run(command, timeout=BEFORE_STOP_TIMEOUT, check=False)
        except (TimeoutError, Unreachable, OSError, asyncssh.Error) as exc:
            await self._emit(env.id, "save", "warning", f"{command}: {exc or 'timed out'}")
            return
        if result.exit_status != 0:
            await self._emit(env.id, "save", "warning", f"{command}: {str(result.stderr).strip()[-300:]}")
            return
        await self._emit(env.id, "save", "ok")

    async def _optional_step(self, env_id: str, step: str, conn, command: str,  # type: ignore[no-untyped-def]
                             *, required: bool = False) -> dict:
        """Clone, dotfiles, extensions: a failure is reported as a warning event, but the
        environment still becomes ready (the user can fix a token and retry by hand);
        ``required``: a failure fails the step. What the command answered ({} if it failed)."""
        await self._emit(env_id, step, "running")
        try:
            result = await envssh.run_json(conn, command, timeout=OPTIONAL_STEP_TIMEOUT)
        except (TimeoutError, RuntimeError, OSError) as exc:
            if required:
                raise StepFailed.of(step, str(exc) or "timed out") from None
            await self._emit(env_id, step, "warning", str(exc) or "timed out")
            return {}
        detail = result.get("path") if result.get("cloned") else result.get("reason", "")
        if result.get("installed"):
            detail = "installed " + ", ".join(result["installed"])
        await self._emit(env_id, step, "ok", detail or "")
        return result

    async def _devcontainer(self, env: Environment, conn) -> dict:  # type: ignore[no-untyped-def]
        """Read the cloned repository's devcontainer.json; when what it asks for changed,
        keep the new plan (its warnings as events) and send the configuration again, so
        its variables are in place before anything runs. The options now."""
        options = env.options or {}
        try:
            found = await envssh.run_json(conn, "dev8-env devcontainer", timeout=60)
            plan = devcontainer.parse(found["text"], found["path"]).to_options() if found.get("path") else None
        except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
            await self._emit(env.id, "devcontainer", "warning", str(exc) or "timed out")
            return options
        if plan == options.get("devcontainer"):
            return options
        options = ({**options, "devcontainer": plan} if plan
                   else {k: v for k, v in options.items() if k != "devcontainer"})
        await self._set(env.id, options=options)
        env.options = options
        if plan:
            summary = [f"{len(plan['env'])} variables", f"{len(plan['ports'])} forwarded ports",
                       f"{len(plan['extensions'])} extensions", f"{len(plan['once']) + len(plan['on_start'])} commands"]
            await self._emit(env.id, "devcontainer", "ok", f"{plan['path']}: " + ", ".join(summary))
            for warning in plan["warnings"]:
                await self._emit(env.id, "devcontainer", "warning", warning)
        await envssh.configure(conn, await asyncio.to_thread(self._configuration, env))
        return options

    async def _devcontainer_image(self, env: Environment, conn) -> bool:  # type: ignore[no-untyped-def]
        """When the devcontainer.json asks for an image (``image``, or a Dockerfile) not yet
        built for this environment: build it with dev8's layer on top (each step an event)
        and restart the environment on it. Whether a restart was asked for. A failed build
        is a warning, tried again when the file or the Dockerfile's context changes."""
        options = env.options or {}
        plan = options.get("devcontainer") or {}
        build, image = plan.get("build"), plan.get("image")
        if not build and not image:
            return False
        context = None
        digest = hashlib.sha256(json.dumps([build, image, __version__], sort_keys=True).encode())
        if build:
            folder = posixpath.join(workspace_folder(env), build["context"])
            try:
                result = await conn.run(f"tar -C {shlex.quote(folder)} --sort=name -cf - .", encoding=None,
                                        check=True, timeout=300)
            except (TimeoutError, asyncssh.Error, OSError) as exc:
                await self._emit(env.id, "devcontainer-image", "warning", f"cannot read the build context: {exc}")
                return False
            context = bytes(result.stdout)
            digest.update(context)
        key = digest.hexdigest()
        if (options.get("devcontainer_image") or {}).get("key") == key:
            return False
        tag = f"dev8-dc/{env.id[:12]}:{key[:12]}"
        await self._emit(env.id, "devcontainer-image", "running", f"building {tag}")

        def progress(line: str) -> None:
            self._event(env.id, "devcontainer-image", "running", line)
        try:
            built = await self.runtime_call(self.runtime.build_image, tag, progress, image=image, context=context,
                                            dockerfile=(build or {}).get("dockerfile", "Dockerfile"),
                                            args=(build or {}).get("args"), timeout=IMAGE_TIMEOUT)
        except (TimeoutError, NeedsUserAction) as exc:
            await self._emit(env.id, "devcontainer-image", "warning", f"{exc or 'timed out'}; it keeps its image",
                             options={**options, "devcontainer_image": {"key": key}})
            return False
        await self._emit(env.id, "devcontainer-image", "ok", f"restarting on {built}", image=built,
                         restart_requested=True, generation=env.generation + 1,
                         options={**options, "devcontainer_image": {"key": key, "tag": built}})
        return True

    def _configuration(self, env: Environment) -> dict:
        """The document ``dev8-env configure`` reads on stdin (the only way secrets travel)."""
        with self.db.session() as s:
            owner = s.get(User, env.owner_id)
            return {"environment": env.name,
                    "user": {"name": owner.username if owner else "", "email": owner.email if owner else ""},
                    **({"extensions_gallery": self.extensions_gallery} if self.extensions_gallery else {}),
                    **({"ca_certificates": self.ca_certificates} if self.ca_certificates else {}),
                    **(env.options or {}),  # its dotfiles too, as they were at its creation
                    "secrets": reveal_secrets(s, self.keyring, env.owner_id, list(env.secret_names or []))}
