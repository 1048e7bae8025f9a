"""Image builds, pulls and pushes an admin starts (the dashboard's Images section).

One job per image at a time across every replica: a job is a row (``image_jobs``) claimed
in a transaction, so a build started twice, on one replica or two, runs once. The replica
that claimed it runs it as a runtime call (a worker thread under the reconciler's timeout)
and writes its progress (the runtime's latest line, at most every ``PROGRESS_EVERY``
seconds) and outcome there, so every replica shows it. A job whose replica stopped
heartbeating is shown as failed, and may be started again.

The blocking methods (``all``, ``claim``) touch the database: call them in a worker thread.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dev8.core import failures
from dev8.core.errors import Conflict
from dev8.core.leases import alive
from dev8.runtimes.base import NeedsUserAction, Progress
from dev8.store.db import Database
from dev8.store.models import ImageJobRow, Replica, utcnow

PROGRESS_EVERY = 0.5
GONE = "the dev8 server running it stopped; start it again"


@dataclass
class ImageJob:
    image: str
    state: str = "running"  # running, done, failed
    progress: str = ""
    error: str = ""
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None


class ImageJobs:
    def __init__(self, db: Database, replica: str) -> None:
        self.db, self.replica = db, replica
        self._tasks: set[asyncio.Task] = set()

    def all(self) -> dict[str, ImageJob]:
        """Every job's latest run, by key; one whose replica is gone mid-run as failed."""
        with self.db.session() as s:
            live = self._live(s)
            return {row.key: self._of(row, live) for row in s.scalars(select(ImageJobRow))}

    def _live(self, s: Session) -> set[str]:
        return {self.replica, *s.scalars(alive(Replica.id))}

    @staticmethod
    def _of(row: ImageJobRow, live: set[str]) -> ImageJob:
        if row.state == "running" and row.replica not in live:
            return ImageJob(row.image, "failed", row.progress, GONE, row.started_at, None)
        return ImageJob(row.image, row.state, row.progress, row.error, row.started_at, row.finished_at)

    def claim(self, key: str, image: str, doing: str) -> ImageJob:
        """Job ``key`` is this replica's to run now; Conflict while it runs anywhere."""
        try:
            with self.db.session() as s:
                row = s.get(ImageJobRow, key, with_for_update=True)  # PostgreSQL: one claimant at a time
                if row is not None and self._of(row, self._live(s)).state == "running":
                    raise Conflict(f"{image} is being {doing} already ({row.progress or 'starting'})", field="image")
                if row is None:
                    row = ImageJobRow(key=key)
                    s.add(row)
                row.image, row.replica, row.state, row.progress, row.error = image, self.replica, "running", "", ""
                row.started_at, row.finished_at = utcnow(), None
                s.flush()
                return self._of(row, {self.replica})
        except IntegrityError:  # the same new job, claimed by another replica at the same moment
            raise Conflict(f"{image} is being {doing} already (starting)", field="image") from None

    def recover(self) -> int:
        """At start: jobs this replica id was running when its process ended are failed."""
        with self.db.session() as s:
            rows = list(s.scalars(select(ImageJobRow).where(ImageJobRow.replica == self.replica,
                                                            ImageJobRow.state == "running")))
            for row in rows:
                row.state, row.error, row.finished_at = "failed", GONE, utcnow()
            return len(rows)

    def _save(self, key: str, **fields: object) -> None:
        with self.db.session() as s:
            row = s.get(ImageJobRow, key)
            if row is not None and row.replica == self.replica:
                for name, value in fields.items():
                    setattr(row, name, value)

    async def start(self, image: str, work: Callable[[Progress], Awaitable[None]],
                    on_done: Callable[[ImageJob], Awaitable[None]] | None = None, *, key: str | None = None,
                    doing: str = "fetched") -> ImageJob:
        """Run ``work(progress)`` for ``image`` in the background as job ``key`` (default: the
        image); Conflict while that job runs. ``on_done`` is awaited with the finished job."""
        key = key or image
        job = await asyncio.to_thread(self.claim, key, image, doing)
        latest, saved = "", 0.0
        lock = threading.Lock()

        def progress(line: str) -> None:  # called from the runtime's worker thread
            nonlocal latest, saved
            with lock:
                latest, now = line, time.monotonic()
                if now - saved < PROGRESS_EVERY:
                    return
                saved = now
            self._save(key, progress=line[:2000])

        async def run() -> None:
            try:
                await work(progress)
                job.state = "done"
            except NeedsUserAction as exc:
                job.state, job.error = "failed", str(exc)
            except Exception as exc:  # anything else: in a sentence, as an environment's failure would be
                job.state, job.error = "failed", failures.explain(str(exc) or exc.__class__.__name__)[0]
            job.progress, job.finished_at = latest[:2000], utcnow()
            await asyncio.to_thread(self._save, key, state=job.state, error=job.error, progress=job.progress,
                                    finished_at=job.finished_at)
            if on_done is not None:
                await on_done(job)
        task = asyncio.ensure_future(run())
        self._tasks.add(task)  # kept referenced until it ends
        task.add_done_callback(self._tasks.discard)
        return job
