"""The audit log: who did what sensitive thing, when. Entries are written in the same
transaction as the change they describe, so a rolled-back change leaves no entry."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dev8.store.models import AuditEntry, User, utcnow


def record(s: Session, actor: User | None, action: str, target: str = "", detail: str = "",
           *, actor_label: str | None = None) -> None:
    """Add an entry; ``actor_label`` names an actor that is no user (e.g. an unknown email
    at a failed login)."""
    s.add(AuditEntry(actor_id=actor.id if actor else None,
                     actor=(actor.email if actor else actor_label or "-")[:254],
                     action=action, target=target[:300], detail=detail[:2000]))


def record_view(s: Session, actor: User, target: str, *, within: timedelta = timedelta(minutes=10)) -> None:
    """An admin looking at ``target``: once per ``within``, not once per page refresh (a
    look at every list at each visit would drown the log)."""
    since = utcnow() - within
    seen = s.scalar(select(AuditEntry.id).where(AuditEntry.actor_id == actor.id, AuditEntry.action == "admin.view",
                                                AuditEntry.target == target, AuditEntry.ts >= since).limit(1))
    if seen is None:
        record(s, actor, "admin.view", target)


def entries(s: Session, *, limit: int = 100, before: int | None = None, action: str | None = None) -> list[AuditEntry]:
    """Newest first; ``before`` (an entry id) pages back; ``action`` keeps the actions that
    start with it (``env.``, ``admin.user``)."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        q = q.where(AuditEntry.id < before)
    if action:
        q = q.where(AuditEntry.action.startswith(action, autoescape=True))
    return list(s.scalars(q))
