"""Which dev8 server (replica) works on which environment, when several share one database.

Each replica has an id (``DEV8_REPLICA_ID``, or one made at start), a row in ``replicas``
renewed by its heartbeat, and a lease per environment it is reconciling: a row in
``env_leases`` claimed with one conditional upsert (taken when free, expired or already
ours), renewed with every heartbeat, handed back when the reconcile ends or the server
stops. A replica that dies (SIGKILL, a lost host) stops renewing; its leases expire after
``LEASE_SECONDS`` and another replica's next look takes them over.

Expiry is read on the database's own clock where it has one (PostgreSQL), so replicas whose
clocks disagree still agree on who holds what. A holder that cannot renew for a lease's
length stops working on its environments (``fresh``): by then another may have taken over.

On SQLite there is one server (``store.serverlock`` refuses a second), so its leases are
``alone``: every claim succeeds and no lease is written.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dev8.store.db import Database
from dev8.store.models import Environment, EnvLease, Replica, utcnow

log = logging.getLogger("dev8.leases")

# How long a replica that stopped renewing keeps its environments: the takeover time after
# a crash. Renewed every HEARTBEAT_SECONDS, so a few slow heartbeats in a row are survived.
LEASE_SECONDS = 6.0
HEARTBEAT_SECONDS = 1.5
# A replica is listed as live while its heartbeat is at most this old.
LIVE_SECONDS = 3 * HEARTBEAT_SECONDS


def db_now(db: Database, ahead: float = 0.0) -> ColumnElement[Any]:
    """Now (plus ``ahead`` seconds) on the database's clock where it has one (PostgreSQL),
    else on this host's."""
    if db.engine.dialect.name == "postgresql":
        return func.now() + timedelta(seconds=ahead)
    return literal(utcnow() + timedelta(seconds=ahead), EnvLease.expires_at.type)


def new_replica_id() -> str:
    """Host name and a random suffix: two servers on one host (or a restarted pod with the
    same name) never share an id by accident."""
    return f"{socket.gethostname()[:48]}-{secrets.token_hex(3)}"


class Leases:
    def __init__(self, db: Database, replica: str, *, shared: bool = True, http_addr: str = "",
                 ttl: float = LEASE_SECONDS) -> None:
        self.db, self.replica, self.shared, self.http_addr, self.ttl = db, replica, shared, http_addr, ttl
        # Monotonic time until which what this replica holds is surely still its own.
        self._valid_until = time.monotonic() + ttl

    @classmethod
    def alone(cls, db: Database, replica: str | None = None) -> Leases:
        """The only server on its database (SQLite): claims always succeed, nothing is written."""
        return cls(db, replica or new_replica_id(), shared=False)

    def _now(self) -> ColumnElement[Any]:
        return db_now(self.db)

    def _until(self) -> ColumnElement[Any]:
        return db_now(self.db, ahead=self.ttl)

    # --- leases (blocking: call them in a worker thread) ---------------------------------------

    def claim(self, env_id: str) -> bool:
        """Whether this replica now holds ``env_id``'s lease (free, expired, or ours already).
        An environment that no longer exists needs none: True."""
        if not self.shared:
            return True
        insert = postgresql.insert if self.db.engine.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(EnvLease).values(env_id=env_id, replica=self.replica, expires_at=self._until())
        stmt = stmt.on_conflict_do_update(
            index_elements=[EnvLease.env_id], set_={"replica": self.replica, "expires_at": self._until()},
            where=(EnvLease.replica == self.replica) | (EnvLease.expires_at < self._now()))
        try:
            with self.db.session() as s:  # a row comes back when inserted or taken over, none when held
                return s.execute(stmt.returning(EnvLease.env_id)).first() is not None
        except IntegrityError:  # deleted meanwhile: its row and lease are gone
            return True

    def release(self, env_id: str) -> None:
        if self.shared:
            with self.db.session() as s:
                s.execute(delete(EnvLease).where(EnvLease.env_id == env_id, EnvLease.replica == self.replica))

    def held_elsewhere(self) -> dict[str, float]:
        """Environments another replica holds now (unexpired leases), each with the seconds
        until its lease runs out unless renewed: a pass leaves them be until then."""
        if not self.shared:
            return {}
        with self.db.session() as s:
            postgres = self.db.engine.dialect.name == "postgresql"
            now = (s.scalar(select(func.now())) if postgres else None) or utcnow()
            rows = s.execute(select(EnvLease.env_id, EnvLease.expires_at).where(
                EnvLease.replica != self.replica, EnvLease.expires_at >= self._now()))
            return {env_id: max(0.0, (expires - now).total_seconds()) for env_id, expires in rows}

    def leads(self) -> bool:
        """Whether this replica runs the periodic pass now: the longest-running live one, so
        the pass runs on one replica at a time, and on the next in line within
        ``LIVE_SECONDS`` of the leader's death (blocking: call it in a worker thread)."""
        if not self.shared:
            return True
        with self.db.session() as s:
            first = s.scalar(alive(Replica.id).limit(1))
        return first in (None, self.replica)

    def fresh(self) -> bool:
        """Whether this replica's leases are surely still its own (its last renewal is recent
        enough). A reconcile checks it before each step."""
        return not self.shared or time.monotonic() < self._valid_until

    def heartbeat(self) -> None:
        """Renew every lease this replica holds and its own row (made on the first beat; a
        server alone on its database keeps one too, for `dev8 admin replicas`)."""
        started = time.monotonic()
        with self.db.session() as s:
            if self.shared:
                s.execute(update(EnvLease).where(EnvLease.replica == self.replica).values(expires_at=self._until()))
            row = s.get(Replica, self.replica)
            if row is None:
                s.add(Replica(id=self.replica, host=socket.gethostname()[:255], pid=os.getpid(),
                              http_addr=self.http_addr[:255]))
            else:
                row.seen_at = utcnow()
        # Counted from before the renewal was sent: the database may have applied it at once.
        self._valid_until = started + self.ttl - HEARTBEAT_SECONDS

    def retire(self) -> None:
        """Hand every lease back and leave the list of replicas (a clean stop)."""
        with self.db.session() as s:
            s.execute(delete(EnvLease).where(EnvLease.replica == self.replica))
            s.execute(delete(Replica).where(Replica.id == self.replica))

    async def run(self) -> None:
        """The heartbeat, until cancelled; a failed beat is logged and tried again. It has a
        thread of its own: a burst that keeps every worker thread busy must not delay it
        past a lease's length (others would take over environments this replica works on).
        Only for a shared database: alone, there is nothing to renew (its beat at start stands)."""
        loop = asyncio.get_running_loop()
        beats = ThreadPoolExecutor(1, thread_name_prefix="dev8-heartbeat")
        while True:
            try:
                await loop.run_in_executor(beats, self.heartbeat)
            except SQLAlchemyError as exc:
                log.warning("replica %s: heartbeat failed: %s", self.replica, str(exc).splitlines()[0])
            await asyncio.sleep(HEARTBEAT_SECONDS)


def alive(what: Any = Replica) -> Select:
    """A query for ``what`` of the replicas whose heartbeat is recent, oldest first (the first
    runs the periodic pass)."""
    since = utcnow() - timedelta(seconds=LIVE_SECONDS)
    return select(what).where(Replica.seen_at >= since).order_by(Replica.started_at, Replica.id)


def live_replicas(db: Database, *, alone_alive: bool = False) -> list[tuple[Replica, list[str]]]:
    """Replicas whose heartbeat is recent, each with the names of the environments it holds
    now, oldest replica (the one that runs the periodic pass) first. ``alone_alive``: the
    database serves one server, known to be running (it does not beat: its newest row is it)."""
    if alone_alive:
        with db.session() as s:
            newest = s.scalar(select(Replica).order_by(Replica.started_at.desc()).limit(1))
        return [(newest, [])] if newest is not None else []
    with db.session() as s:
        replicas = list(s.scalars(alive()))
        held: dict[str, list[str]] = {}
        rows = s.execute(select(EnvLease.replica, Environment.name).join(Environment, Environment.id == EnvLease.env_id)
                         .where(EnvLease.expires_at >= db_now(db)).order_by(Environment.name))
        for replica, name in rows:
            held.setdefault(replica, []).append(name)
    return [(r, held.get(r.id, [])) for r in replicas]
