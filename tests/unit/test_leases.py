"""Environment leases (core.leases) on a SQLite file: who may reconcile what, when a lease
is free again, and what a replica alone on its database writes."""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from dev8.core.leases import Leases, live_replicas
from dev8.store.db import Database
from dev8.store.models import Environment, EnvLease, Replica, User, utcnow


def database(tmp_path: Path, *names: str) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'dev8.db'}")
    db.upgrade()
    with db.session() as s:
        user = User(email="l@example.com", username="l")
        s.add(user)
        s.flush()
        for name in names:
            s.add(Environment(id=name, owner_id=user.id, name=name, image="i", cpus=1, memory="1g",
                              control_public_key="k"))
    return db


def test_one_holder_at_a_time_until_it_hands_back_or_its_lease_runs_out(tmp_path: Path) -> None:
    db = database(tmp_path, "e1", "e2")
    a, b = Leases(db, "a", ttl=0.5), Leases(db, "b", ttl=0.5)
    assert a.claim("e1") and a.claim("e1")  # again: still its own
    assert not b.claim("e1")
    assert set(b.held_elsewhere()) == {"e1"} and a.held_elsewhere() == {}
    assert 0 < b.held_elsewhere()["e1"] <= 0.5  # seconds left
    assert b.claim("e2") and not a.claim("e2")
    a.release("e1")
    assert b.claim("e1") and not a.claim("e1")
    assert a.leads() and b.leads()  # no replica has beaten yet: each may run the pass
    b.heartbeat()  # renews both of b's; b is now a live replica, and the oldest
    assert b.leads() and not a.leads()
    time.sleep(0.3)
    b.heartbeat()
    time.sleep(0.3)
    assert not a.claim("e1") and not a.claim("e2")  # renewed: held past the first expiry
    time.sleep(0.6)  # b stopped renewing (dead): both are a's to take
    assert a.held_elsewhere() == {}
    assert a.claim("e1") and a.claim("e2")
    assert not b.fresh()  # b's own view: not renewed for a lease's length, so it stops working
    assert a.claim("gone")  # no such environment: nothing to hold
    a.heartbeat()
    assert b.leads() and not a.leads()  # b's row is fresh still; a waits its turn
    # b beat a second ago: listed still (a replica is live for a few heartbeats), holding none
    assert {r.id: held for r, held in live_replicas(db)} == {"a": ["e1", "e2"], "b": []}
    with db.session() as s:  # b's heartbeat is older than a live replica's: a runs the pass now
        s.execute(update(Replica).where(Replica.id == "b").values(seen_at=utcnow() - timedelta(seconds=60)))
    assert a.leads() and not b.leads()
    a.retire()
    assert b.claim("e1") and live_replicas(db) == [] and b.leads()


def test_a_server_alone_on_its_database_writes_no_lease(tmp_path: Path) -> None:
    db = database(tmp_path, "e1")
    alone, other = Leases.alone(db, "solo"), Leases(db, "other")
    assert alone.claim("e1") and alone.claim("e1") and alone.fresh()
    assert other.claim("e1")  # nothing was written by the first
    assert alone.claim("e1") and alone.held_elsewhere() == {}
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(EnvLease)) == 1
    alone.heartbeat()
    assert [r.id for r, _ in live_replicas(db)] == ["solo"]  # listed, for `dev8 admin replicas`
