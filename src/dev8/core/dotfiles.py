"""A user's dotfiles repository: cloned into each environment created while it is set (as
Codespaces does: at creation, recorded in the environment's options, never into older
ones unasked; ``apply_dotfiles`` for those), with the environment's git logins, then its
install script run, else its dotfiles linked into the home (``dev8-env dotfiles``)."""
from __future__ import annotations

from sqlalchemy.orm import Session

from dev8.core import audit
from dev8.core.environments import BRANCH_RE, REPO_RE, dotfiles_snapshot, request_reconfigure
from dev8.core.errors import Invalid
from dev8.store.models import Environment, User


def set_dotfiles(s: Session, user: User, url: str | None, branch: str | None = None) -> None:
    """Set (``url`` None: remove) the user's dotfiles repository; new environments get it."""
    if url is None:
        if branch:
            raise Invalid("a branch needs a repository", field="branch")
        user.dotfiles_url = user.dotfiles_branch = None
        audit.record(s, user, "dotfiles.clear")
        return
    url = url.strip()
    if len(url) > 2048 or not REPO_RE.fullmatch(url):
        raise Invalid(f"invalid repository URL {url!r}: use https://host/owner/dotfiles.git", field="url")
    if branch is not None and not BRANCH_RE.fullmatch(branch):
        raise Invalid(f"invalid branch name {branch!r}", field="branch")
    user.dotfiles_url, user.dotfiles_branch = url, branch or None
    audit.record(s, user, "dotfiles.set", url, branch or "")


def apply_dotfiles(s: Session, user: User, env: Environment) -> bool:
    """Give an existing environment the user's dotfiles (new ones get them at creation):
    installed at once when it runs (a reconfigure; a home that has ~/.dotfiles keeps it),
    else at its next start. Whether it runs now."""
    snapshot = dotfiles_snapshot(user)
    if not snapshot:
        raise Invalid("you have no dotfiles repository: dev8 dotfiles set URL first", field="url")
    env.options = {**(env.options or {}), **snapshot}
    audit.record(s, user, "dotfiles.apply", env.name, snapshot["dotfiles"]["url"])
    if env.desired_state == "running":
        request_reconfigure(s, env)
        return True
    return False
