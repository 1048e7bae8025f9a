"""Administration: users, every environment, the audit log (admins only: 403 otherwise)."""
from __future__ import annotations

from fastapi import APIRouter, Query, status

from dev8.core import admin, quotas
from dev8.server.api.account import quota_out
from dev8.server.api.environments import environment_out
from dev8.server.deps import Ctx, CurrentUser, RowId, SessionDep, StoreRoute
from dev8.server.schemas import (
    ERROR_RESPONSES,
    MAX_ROW_ID,
    AdminUserIn,
    AdminUserOut,
    AdminUserPatch,
    AuditOut,
    EnvironmentOut,
    PasswordIn,
    QuotaIn,
    QuotaOut,
)

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], responses=ERROR_RESPONSES, route_class=StoreRoute)


@router.get("/users", response_model=list[AdminUserOut])
def list_users(user: CurrentUser, s: SessionDep) -> list[AdminUserOut]:
    return [AdminUserOut.model_validate(u, from_attributes=True) for u in admin.list_users(s, user)]


@router.post("/users", response_model=AdminUserOut, status_code=status.HTTP_201_CREATED)
def create_user(body: AdminUserIn, user: CurrentUser, s: SessionDep) -> AdminUserOut:
    created = admin.create_user(s, user, email=body.email, password=body.password, is_admin=body.is_admin)
    return AdminUserOut.model_validate(created, from_attributes=True)


@router.patch("/users/{user_id:int}", response_model=AdminUserOut, summary="Disable/enable, grant/revoke admin")
def update_user(user_id: RowId, body: AdminUserPatch, user: CurrentUser, s: SessionDep) -> AdminUserOut:
    changed = admin.update_user(s, user, user_id, disabled=body.disabled, is_admin=body.is_admin)
    return AdminUserOut.model_validate(changed, from_attributes=True)


@router.get("/users/{user_id:int}/quota", response_model=QuotaOut, summary="A user's caps and use")
def get_quota(user_id: RowId, ctx: Ctx, user: CurrentUser, s: SessionDep) -> QuotaOut:
    target = admin.get_user(s, user, user_id)
    return quota_out(s, target, quotas.quota_for(s, target, ctx.limits.quota))


@router.put("/users/{user_id:int}/quota", response_model=QuotaOut,
            summary="Set a user's caps (null: the server's default, 0: none)")
def set_quota(user_id: RowId, body: QuotaIn, ctx: Ctx, user: CurrentUser, s: SessionDep) -> QuotaOut:
    target = admin.get_user(s, user, user_id)
    caps = admin.set_quota(s, user, target, body.model_dump(), ctx.limits.quota)
    return quota_out(s, target, caps)


@router.get("/environments", response_model=list[EnvironmentOut], summary="Every user's environments")
def all_environments(ctx: Ctx, user: CurrentUser, s: SessionDep) -> list[EnvironmentOut]:
    return [environment_out(ctx, env, owner) for env, owner in admin.all_environments(s, user)]


@router.get("/audit", response_model=list[AuditOut], summary="Audit log, newest first")
def audit_log(user: CurrentUser, s: SessionDep, limit: int = Query(100, ge=1, le=500),
              before: int | None = Query(None, ge=1, le=MAX_ROW_ID),
              action: str | None = Query(None, max_length=48, description="actions starting with this, e.g. env.")
              ) -> list[AuditOut]:
    return [AuditOut.model_validate(e, from_attributes=True)
            for e in admin.audit_log(s, user, limit=limit, before=before, action=action)]


@router.post("/users/{user_id:int}/password", response_model=AdminUserOut,
             summary="Set a user's password (their browser sessions end)")
def set_password(user_id: RowId, body: PasswordIn, user: CurrentUser, s: SessionDep) -> AdminUserOut:
    return AdminUserOut.model_validate(admin.set_user_password(s, user, user_id, body.password), from_attributes=True)
