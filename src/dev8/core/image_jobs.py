"""Image builds, pulls and pushes an admin starts (the dashboard's Images section).

One job per image at a time, run as a runtime call on the event loop's behalf (a worker
thread under the reconciler's timeout); its progress is the runtime's latest line. Jobs
live in the memory of the server (replica) that runs them: the image they make is the
runtime's, so every replica sees the result through ``image_status``.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from dev8.core import failures
from dev8.core.errors import Conflict
from dev8.runtimes.base import NeedsUserAction, Progress
from dev8.store.models import utcnow


@dataclass
class ImageJob:
    image: str
    state: str = "running"  # running, done, failed
    progress: str = ""
    error: str = ""
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None


class ImageJobs:
    def __init__(self) -> None:
        self.jobs: dict[str, ImageJob] = {}
        self._tasks: set[asyncio.Task] = set()

    def get(self, image: str) -> ImageJob | None:
        return self.jobs.get(image)

    def start(self, image: str, work: Callable[[Progress], Awaitable[None]],
              on_done: Callable[[ImageJob], Awaitable[None]] | None = None, *, key: str | None = None,
              doing: str = "fetched") -> ImageJob:
        """Run ``work(progress)`` for ``image`` in the background as job ``key`` (default: the
        image); Conflict while that job runs. ``on_done`` is awaited with the finished job."""
        key = key or image
        running = self.jobs.get(key)
        if running is not None and running.state == "running":
            raise Conflict(f"{image} is being {doing} already ({running.progress or 'starting'})", field="image")
        job = self.jobs[key] = ImageJob(image=image)

        def progress(line: str) -> None:  # called from the runtime's worker thread
            job.progress = line

        async def run() -> None:
            try:
                await work(progress)
                job.state = "done"
            except NeedsUserAction as exc:
                job.state, job.error = "failed", str(exc)
            except Exception as exc:  # anything else: in a sentence, as an environment's failure would be
                job.state, job.error = "failed", failures.explain(str(exc) or exc.__class__.__name__)[0]
            job.finished_at = utcnow()
            if on_done is not None:
                await on_done(job)
        task = asyncio.ensure_future(run())
        self._tasks.add(task)  # kept referenced until it ends
        task.add_done_callback(self._tasks.discard)
        return job
