"""A user's dotfiles repository: cloned into each new environment with the environment's
git logins, then its install script run, else its dotfiles linked into the home (as
Codespaces does; the work happens in ``dev8-env dotfiles``)."""
from __future__ import annotations

from sqlalchemy.orm import Session

from dev8.core import audit
from dev8.core.environments import BRANCH_RE, REPO_RE
from dev8.core.errors import Invalid
from dev8.store.models import User


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


def dotfiles_config(user: User | None) -> dict:
    """What ``dev8-env configure`` gets: ``{"dotfiles": {"url", "branch"}}``, or nothing."""
    if user is None or not user.dotfiles_url:
        return {}
    return {"dotfiles": {"url": user.dotfiles_url, "branch": user.dotfiles_branch}}
