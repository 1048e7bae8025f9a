"""The images a user can choose from: dev8's own, the server's default and the templates',
each with what it offers and whether it is ready to start in seconds."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter

from dev8.core import templates
from dev8.envimage.dev8_env import IMAGE_TARGETS, image_tag
from dev8.runtimes.base import NeedsUserAction
from dev8.server.api.environments import image_status
from dev8.server.deps import Ctx, CurrentUser, StoreRoute
from dev8.server.schemas import ERROR_RESPONSES, ImageOut

router = APIRouter(prefix="/api/v1/images", tags=["images"], responses=ERROR_RESPONSES, route_class=StoreRoute)
DESCRIPTIONS = {
    image_tag("base"): "Debian with OpenSSH, git and Python: SSH and the browser terminal, no VS Code",
    image_tag("fullstack"): "VS Code in the browser, Node.js and Bun, Python, Go, Rust, gh and glab, "
                            "Claude, Gemini and Copilot CLIs",
}
BUILD_MINUTES = {image_tag("base"): 2, image_tag("fullstack"): 12}  # what a first build took here


@router.get("", response_model=list[ImageOut], summary="Images to create from, and whether each is ready")
async def list_images(ctx: Ctx, _user: CurrentUser) -> list[ImageOut]:
    def names() -> list[str]:
        with ctx.db.session() as s:
            used = [t.spec.get("image") for t in templates.list_templates(s)]
        known = [ctx.settings.default_image, *(image_tag(t) for t in IMAGE_TARGETS), *used]
        return list(dict.fromkeys(n for n in known if n))
    out = []
    for name in await asyncio.to_thread(names):
        try:
            status = await image_status(ctx, name)
            note = {"ready": "ready: starts in seconds",
                    "buildable": f"not built yet: the first environment builds it (about {BUILD_MINUTES.get(name, 10)} "
                                 "min), or an admin runs `dev8 image build` ahead",
                    "pullable": "not on this machine yet: pulled on first use"}.get(status, status)
        except NeedsUserAction as exc:
            status, note = "unavailable", str(exc)
        out.append(ImageOut(name=name, description=DESCRIPTIONS.get(name, ""), status=status, note=note,
                            default=name == ctx.settings.default_image))
    return out
