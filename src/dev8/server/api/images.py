"""The images a user can choose from: dev8's own, the server's default and the templates',
each with what it offers and whether it is ready to start in seconds."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, status

from dev8.core import audit, templates
from dev8.core.admin import require_admin
from dev8.core.environments import check_image
from dev8.core.errors import Invalid
from dev8.core.image_jobs import ImageJob
from dev8.core.reconciler import IMAGE_TIMEOUT
from dev8.envimage.dev8_env import IMAGE_TARGETS, image_tag
from dev8.runtimes.base import NeedsUserAction, Progress
from dev8.runtimes.image_push import local_engine, push, target_name
from dev8.server.api.environments import image_status
from dev8.server.deps import Ctx, CurrentUser, StoreRoute
from dev8.server.schemas import ERROR_RESPONSES, ImageFetchIn, ImageJobOut, ImageOut, ImagePushIn
from dev8.settings import Settings
from dev8.store.models import User

router = APIRouter(prefix="/api/v1/images", tags=["images"], responses=ERROR_RESPONSES, route_class=StoreRoute)
DESCRIPTIONS = {
    image_tag("base"): "Debian with OpenSSH, git and Python: SSH and the browser terminal, no VS Code",
    image_tag("fullstack"): "VS Code in the browser, Node.js and Bun, Python, Go, Rust, gh and glab, "
                            "Claude, Gemini and Copilot CLIs",
}
OWN = {image_tag(t) for t in IMAGE_TARGETS}
PUSH = "push "  # the job key of an image's push, beside its build or pull
BUILD_MINUTES = {image_tag("base"): 2, image_tag("fullstack"): 12}  # what a first build took here


def builtin_images(settings: Settings) -> list[str]:
    """The server's default image, then dev8's own."""
    return list(dict.fromkeys([settings.default_image, *sorted(OWN)]))


@router.get("", response_model=list[ImageOut], summary="Images to create from, and whether each is ready")
async def list_images(ctx: Ctx, _user: CurrentUser) -> list[ImageOut]:
    def names() -> list[str]:
        with ctx.db.session() as s:
            used = [t.spec.get("image") for t in templates.list_templates(s)]
        known = [*builtin_images(ctx.settings), *used]
        return list(dict.fromkeys(n for n in known if n))
    out = []
    jobs = await asyncio.to_thread(ctx.image_jobs.all)
    for name in await asyncio.to_thread(names):
        try:
            status = await image_status(ctx, name)
            note = {"ready": "ready: starts in seconds",
                    "buildable": f"not built yet: the first environment builds it (about {BUILD_MINUTES.get(name, 10)} "
                                 "min), or an admin builds it ahead (Admin page, or `dev8 image build`)",
                    "pullable": "not on this machine yet: pulled on first use"}.get(status, status)
        except NeedsUserAction as exc:
            status, note = "unavailable", str(exc)
        out.append(ImageOut(name=name, description=DESCRIPTIONS.get(name, ""), status=status, note=note,
                            default=name == ctx.settings.default_image, built_here=name in OWN,
                            job=_job_out(jobs.get(name)), push_job=_job_out(jobs.get(PUSH + name))))
    return out


def _job_out(job: ImageJob | None) -> ImageJobOut | None:
    return None if job is None else ImageJobOut(state=job.state, progress=job.progress, error=job.error,
                                                started_at=job.started_at, finished_at=job.finished_at)


@router.post("/fetch", response_model=ImageJobOut, status_code=status.HTTP_202_ACCEPTED,
             summary="Admins: build dev8's own image (again) or pull another now, ahead of the environments that "
                     "use it; follow its job in GET /images")
async def fetch_image(body: ImageFetchIn, ctx: Ctx, user: CurrentUser) -> ImageJobOut:
    require_admin(user)
    image = check_image(body.image.strip())
    await ctx.reconciler.health.check(reuse=False)  # a backend that is down: 503 now, not a failed job

    async def work(progress: Progress) -> None:
        await ctx.reconciler.runtime_call(ctx.runtime.fetch_image, image, progress, timeout=IMAGE_TIMEOUT)

    async def finished(job: ImageJob) -> None:
        ctx.image_checks.pop(image, None)  # its status changed: ask the runtime again
        await asyncio.to_thread(_audit, ctx, user.id, f"admin.image.{job.state}", image, job.error)
    job = await ctx.image_jobs.start(image, work, finished)
    await asyncio.to_thread(_audit, ctx, user.id, "admin.image.fetch", image, "")
    return _job_out(job)  # type: ignore[return-value]


@router.post("/push", response_model=ImageJobOut, status_code=status.HTTP_202_ACCEPTED,
             summary="Admins: push an image from this server's Docker engine to a registry (ACR included), for "
                     "runtimes that pull (aci, kubernetes); progress per layer in GET /images (push_job)")
async def push_image(body: ImagePushIn, ctx: Ctx, user: CurrentUser) -> ImageJobOut:
    require_admin(user)
    image = check_image(body.image.strip())
    try:
        target = target_name(image, body.registry)
    except ValueError as exc:
        raise Invalid(str(exc), field="registry") from None
    if bool(body.username) != bool(body.password):
        raise Invalid("give a username and its password (an ACR token's name and password) together, or neither "
                      "to use the engine's own `docker login`", field="password" if body.username else "username")
    auth = (body.username, body.password) if body.username else None

    async def work(progress: Progress) -> None:
        def run() -> None:
            push(local_engine(), image, body.registry, progress, auth)
            progress(f"pushed {target}")
        await asyncio.wait_for(asyncio.to_thread(run), IMAGE_TIMEOUT)

    async def finished(job: ImageJob) -> None:
        await asyncio.to_thread(_audit, ctx, user.id, f"admin.image.push.{job.state}", image, job.error or target)
    job = await ctx.image_jobs.start(image, work, finished, key=PUSH + image, doing="pushed")
    await asyncio.to_thread(_audit, ctx, user.id, "admin.image.push", image, target)
    return _job_out(job)  # type: ignore[return-value]


def _audit(ctx: Ctx, user_id: int, action: str, image: str, detail: str) -> None:
    with ctx.db.session() as s:
        audit.record(s, s.get(User, user_id), action, image, detail)
