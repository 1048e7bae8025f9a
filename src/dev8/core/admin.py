"""What administrators do to other users, and their view of every environment. Every call
is recorded in the audit log, reads included: admin access is itself sensitive."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dev8.core import audit, auth, quotas
from dev8.core.errors import Forbidden, Invalid, NotFound
from dev8.store.models import AuditEntry, Environment, User


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise Forbidden("administrators only")


def list_users(s: Session, admin: User) -> list[User]:
    require_admin(admin)
    audit.record_view(s, admin, "users")
    return list(s.scalars(select(User).order_by(User.id)))


def create_user(s: Session, admin: User, *, email: str, password: str, is_admin: bool = False) -> User:
    require_admin(admin)
    user = auth.create_user(s, email=email, password=password, is_admin=is_admin)
    audit.record(s, admin, "admin.user.create", user.email, "admin" if is_admin else "")
    return user


def update_user(s: Session, admin: User, user_id: int, *, disabled: bool | None = None,
                is_admin: bool | None = None) -> User:
    """Disable/enable a user or grant/revoke admin. Admins cannot lock themselves out."""
    user = get_user(s, admin, user_id)
    if user.id == admin.id and (disabled or is_admin is False):
        raise Invalid("you cannot disable yourself or drop your own admin rights")
    if disabled is not None and disabled != user.disabled:
        user.disabled = disabled
        audit.record(s, admin, "admin.user.disable" if disabled else "admin.user.enable", user.email)
    if is_admin is not None and is_admin != user.is_admin:
        user.is_admin = is_admin
        audit.record(s, admin, "admin.user.grant_admin" if is_admin else "admin.user.revoke_admin", user.email)
    return user


def set_quota(s: Session, admin: User | None, user: User, caps: dict[str, object], default: quotas.Quota, *,
              actor_label: str | None = None) -> quotas.Quota:
    """Set ``user``'s own caps named in ``caps`` (None: the server's default); their caps
    now. ``admin`` None: the server host's `dev8 admin` (``actor_label``)."""
    if admin is not None:
        require_admin(admin)
    quotas.set_quota(s, user, caps)
    s.flush()
    now = quotas.quota_for(s, user, default)
    audit.record(s, admin, "admin.user.quota", user.email, quotas.describe(now), actor_label=actor_label)
    return now


def get_user(s: Session, admin: User, user_id: int) -> User:
    require_admin(admin)
    user = s.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    return user


def all_environments(s: Session, admin: User) -> list[tuple[Environment, User]]:
    require_admin(admin)
    audit.record_view(s, admin, "environments")
    rows = s.execute(select(Environment, User).join(User, User.id == Environment.owner_id)
                     .where(Environment.desired_state != "deleted").order_by(User.username, Environment.name))
    return [(env, owner) for env, owner in rows]


def audit_log(s: Session, admin: User, *, limit: int = 100, before: int | None = None,
              action: str | None = None) -> list[AuditEntry]:
    require_admin(admin)
    entries = audit.entries(s, limit=limit, before=before, action=action)
    audit.record_view(s, admin, "audit log")
    return entries


def set_user_password(s: Session, admin: User, user_id: int, password: str) -> User:
    """Reset a user's password from the admin page (their browser sessions end with it)."""
    user = get_user(s, admin, user_id)
    auth.set_password(s, user, password)
    audit.record(s, admin, "admin.user.set_password", user.email)
    return user
