"""The audit log: who did what sensitive thing, when. Entries are written in the same
transaction as the change they describe, so a rolled-back change leaves no entry."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dev8.store.models import AuditEntry, User


def record(s: Session, actor: User | None, action: str, target: str = "", detail: str = "",
           *, actor_label: str | None = None) -> None:
    """Add an entry; ``actor_label`` names an actor that is no user (e.g. an unknown email
    at a failed login)."""
    s.add(AuditEntry(actor_id=actor.id if actor else None,
                     actor=(actor.email if actor else actor_label or "-")[:254],
                     action=action, target=target[:300], detail=detail[:2000]))


def entries(s: Session, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
    """Newest first; ``before`` (an entry id) pages back."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        q = q.where(AuditEntry.id < before)
    return list(s.scalars(q))
