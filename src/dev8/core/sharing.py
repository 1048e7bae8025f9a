"""Port sharing: who besides an environment's owner may open one of its port previews."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dev8.core.errors import Invalid
from dev8.store.models import Environment, PortShare, User, utcnow

LEVELS = ("private", "authenticated", "public")


def check_port(port: int) -> int:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise Invalid("port must be an integer 1-65535")
    return port


def set_share(s: Session, env: Environment, port: int, level: str) -> None:
    """``private`` removes the share; ``authenticated``: any logged-in dev8 user; ``public``: anyone."""
    check_port(port)
    if level not in LEVELS:
        raise Invalid(f"unknown sharing level {level!r}: use {', '.join(LEVELS)}")
    row = s.get(PortShare, (env.id, port))
    if level == "private":
        if row is not None:
            s.delete(row)
        return
    if row is None:
        s.add(PortShare(env_id=env.id, port=port, level=level))
    else:
        row.level, row.updated_at = level, utcnow()


def shares(s: Session, env_id: str) -> dict[int, str]:
    return {r.port: r.level for r in s.scalars(select(PortShare).where(PortShare.env_id == env_id))}


def share_level(s: Session, env_id: str, port: int) -> str:
    row = s.get(PortShare, (env_id, port))
    return row.level if row is not None else "private"


def may_open(level: str, viewer: User | None, owner_id: int) -> bool:
    """Whether ``viewer`` (None: not logged in) may open a port shared at ``level``."""
    if viewer is not None and viewer.id == owner_id:
        return True
    return level == "public" or (level == "authenticated" and viewer is not None)
