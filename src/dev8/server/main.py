"""``dev8 server``: HTTP API, SSH gateway and reconciler in one asyncio process."""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import anyio.to_thread
import httpx
import uvicorn
from fastapi import FastAPI

from dev8.core import auth
from dev8.core.activity import IdleStopper, Policy
from dev8.core.connections import EnvConnections
from dev8.core.leases import Leases, new_replica_id
from dev8.core.notify import EventNotifier, PgEventFeed
from dev8.core.reconciler import Reconciler
from dev8.runtimes import load_runtime
from dev8.runtimes.base import RuntimeUnavailable
from dev8.server.app import create_app
from dev8.server.apps.ptysessions import PtySessions
from dev8.server.apps.tunnels import Tunnels
from dev8.server.context import ServerContext
from dev8.server.live import LiveConnections
from dev8.server.sshgateway import start_gateway
from dev8.server.watchdog import LoopWatchdog
from dev8.settings import Settings, parse_addr
from dev8.store.db import Database
from dev8.store.opening import StartupError, open_store
from dev8.store.serverlock import lock_sqlite

log = logging.getLogger("dev8.server")


def check_runtime(settings: Settings) -> object:
    try:
        runtime = load_runtime(settings.runtime, settings.data_dir)
    except ValueError as exc:
        raise StartupError(f"DEV8_RUNTIME={settings.runtime}: {exc}") from None
    try:
        runtime.ping()
    except RuntimeUnavailable as exc:
        if settings.runtime == "docker" and shutil.which("dockerd") is None and shutil.which("docker") is None:
            raise StartupError("Docker is not installed: install it with `apt-get install -y docker.io`") from None
        raise StartupError(f"{exc}. Start it (e.g. `dockerd >/var/log/dockerd.log 2>&1 &`) "
                           "or set DOCKER_HOST") from None
    return runtime


def announce_setup(db: Database, settings: Settings) -> None:
    with db.session() as s:
        if auth.has_users(s):
            return
        token = auth.issue_setup_token(s)
    print(f"dev8: no users yet. Create the first admin at {settings.base_url}/setup?token={token}\n"
          f"      or: curl -X POST {settings.base_url}/api/v1/setup -H 'content-type: application/json' "
          f"-d '{{\"token\":\"{token}\",\"email\":\"you@example.com\",\"password\":\"...\"}}'", flush=True)


async def _warm_up(app: FastAPI) -> None:
    """FastAPI builds a router's routes (their schemas, ~0.1 s) on the first request that
    walks them, and the OpenAPI document (~0.2 s) on the first that asks for it: both now,
    before serving (the document in a worker thread), not on a user's request."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dev8.invalid") as client:
        await client.get("/api/v1/-warm-up-")
    await asyncio.to_thread(app.openapi)  # kept by the app: /api/v1/openapi.json serves it


async def serve(settings: Settings) -> None:
    if settings.env_ca_bundle and not settings.env_ca_bundle.is_file():
        raise StartupError(f"DEV8_ENV_CA_BUNDLE: {settings.env_ca_bundle} is not a file")
    loop = asyncio.get_running_loop()
    # Blocking work leaves the loop through these threads: asyncio.to_thread (the loop's
    # default executor, 6 threads on 2 cores otherwise) and Starlette's sync handlers and
    # dependencies (anyio's limiter, 40 otherwise) get the same, configurable size.
    loop.set_default_executor(ThreadPoolExecutor(settings.worker_threads, thread_name_prefix="dev8-worker"))
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
    runtime = check_runtime(settings)
    ca_certificates = settings.env_ca_bundle.read_text() if settings.env_ca_bundle else None
    lock_sqlite(settings.db_url)
    db, keyring = open_store(settings)
    replica = settings.replica_id or new_replica_id()
    leases = Leases(db, replica, shared=db.engine.dialect.name != "sqlite", http_addr=settings.http_addr)
    leases.heartbeat()  # listed among the replicas before it serves
    notifier = EventNotifier(asyncio.get_running_loop())
    connections = EnvConnections(db, keyring)
    reconciler = Reconciler(db, keyring, runtime, connections, interval=settings.reconcile_interval,  # type: ignore[arg-type]
                            notifier=notifier, ca_certificates=ca_certificates,
                            extensions_gallery=settings.extensions_gallery, leases=leases,
                            prebuild_concurrency=settings.prebuild_concurrency)
    ctx = ServerContext(settings=settings, db=db, keyring=keyring, runtime=runtime,  # type: ignore[arg-type]
                        reconciler=reconciler, connections=connections, tunnels=Tunnels(connections),
                        terminals=PtySessions(keep_detached=settings.terminal_keep_detached))
    ctx.live = LiveConnections(db, ctx.app_sessions)
    ctx.image_jobs.recover()  # before serving: a job of this replica id's last life is over
    idle = IdleStopper(db, ctx.activity, Policy(settings.idle_timeout, settings.max_session),
                       interval=settings.idle_check_interval, warn=ctx.live.tell, stopped=reconciler.wake)
    announce_setup(db, settings)
    http_host, http_port = parse_addr(settings.http_addr)
    ssh_host, ssh_port = parse_addr(settings.ssh_addr)
    gateway = await start_gateway(ctx, ssh_host, ssh_port)
    app = create_app(ctx)
    await _warm_up(app)
    config = uvicorn.Config(app, host=http_host, port=http_port, log_level="warning", access_log=False,
                            lifespan="off", proxy_headers=False,  # forwarded.py decides whom to believe
                            timeout_keep_alive=settings.http_keep_alive,
                            timeout_graceful_shutdown=5)  # a stream still open then is cut
    config.load()  # imports its protocol modules now, not on the loop once serving
    server = uvicorn.Server(config)
    # uvicorn records SIGINT/SIGTERM with signal.signal while it serves; the loop's handlers
    # below still run (the signal wakes the loop through its wakeup fd) and stop everything.
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Started once serving begins: opening the store above blocks, but serves nobody yet.
    watchdog = LoopWatchdog(loop, settings.loop_watchdog_ms / 1000).start() if settings.loop_watchdog_ms > 0 else None
    tasks = [asyncio.create_task(server.serve()), asyncio.create_task(reconciler.run()),
             asyncio.create_task(ctx.live.run()), asyncio.create_task(idle.run())]
    if leases.shared:  # renewing its leases; other replicas' events waking this one's streams
        tasks += [asyncio.create_task(leases.run()), asyncio.create_task(PgEventFeed(settings.db_url, notifier).run())]
    print(f"dev8 server: http {settings.base_url}  ssh {ssh_host}:{ssh_port}  data {settings.data_dir}"
          f"  replica {replica}", flush=True)
    log.info("replica %s serving (%s)", replica, "shares its database" if leases.shared else "the only server")
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if watchdog is not None:
        watchdog.stop()
    gateway.close()  # no new SSH logins; then every live connection is told to reconnect elsewhere
    drained = await ctx.live.drain()
    if drained:
        log.info("replica %s: %d live connection(s) told to reconnect", replica, drained)
    server.should_exit = True
    ctx.terminals.close()
    ctx.tunnels.close()
    connections.close()
    for t in tasks[1:]:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await reconciler.stop()
    try:  # another replica takes its environments over at once, not when the leases expire
        await asyncio.wait_for(asyncio.to_thread(leases.retire), 10)
    except Exception as exc:  # they expire by themselves
        log.warning("replica %s: could not hand its leases back: %s", replica, exc)
    db.dispose()


def run(settings: Settings) -> None:
    # The event loop's thread shares the GIL with the worker threads; when they are busy it
    # waits up to the switch interval (5 ms by default) each time it wants the GIL back,
    # once per worker in turn. 1 ms keeps the loop's callbacks prompt under a burst.
    sys.setswitchinterval(0.001)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # two lines per start otherwise
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per proxied request otherwise
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every request's headers at INFO
    asyncio.new_event_loop().run_until_complete(serve(settings))
    # Stopped cleanly (serve closed the gateway, connections and the database). Worker
    # threads may still be inside a runtime call, e.g. a ten-minute image build; waiting
    # for them (asyncio.run and the interpreter's exit both would) would make SIGTERM take
    # as long. Nothing they hold outlives the process: a transaction not committed is not.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
