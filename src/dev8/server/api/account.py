"""Setup, login, the current user, SSH keys and secrets."""
from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Body, Request, status
from sqlalchemy.orm import Session

from dev8.core import auth, dotfiles, environments, quotas, secrets
from dev8.server.apps.auth import request_token
from dev8.server.deps import Ctx, CurrentUser, RowId, SessionDep, StoreRoute
from dev8.server.schemas import (
    ERROR_RESPONSES,
    ApiTokenIn,
    ApiTokenOut,
    DotfilesIn,
    DotfilesOut,
    GeneratedKeyIn,
    GeneratedKeyOut,
    KeyIn,
    KeyOut,
    LoginIn,
    NewApiTokenOut,
    QuotaOut,
    QuotaUsed,
    SecretIn,
    SecretOut,
    SetupIn,
    SshInfo,
    TokenOut,
    UserOut,
)
from dev8.store.models import User

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES, route_class=StoreRoute)
LOGIN_TOKEN_LIFETIME = timedelta(days=30)


@router.post("/setup", response_model=TokenOut, summary="Create the first admin with the one-time setup token")
def setup(body: SetupIn, s: SessionDep) -> TokenOut:
    user = auth.complete_setup(s, token=body.token, email=body.email, password=body.password)
    return TokenOut(token=auth.create_token(s, user, name="setup", expires_in=LOGIN_TOKEN_LIFETIME))


@router.post("/auth/login", response_model=TokenOut, summary="Exchange email and password for an API token")
def login(body: LoginIn, request: Request, ctx: Ctx, s: SessionDep) -> TokenOut:
    user = auth.password_login(s, ctx.login_throttle, email=body.email, password=body.password,
                               client=request.client.host if request.client else "")
    return TokenOut(token=auth.create_token(s, user, name="login", expires_in=LOGIN_TOKEN_LIFETIME))


@router.get("/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return UserOut(email=user.email, username=user.username, is_admin=user.is_admin)


def quota_out(s: Session, user: User, caps: quotas.Quota) -> QuotaOut:
    used = quotas.usage(s, user)
    return QuotaOut(running=caps.running, environments=caps.environments, cpus=caps.cpus, memory=caps.memory,
                    used=QuotaUsed(environments=used.environments, running=used.running, cpus=used.cpus,
                                   memory=f"{used.memory_bytes >> 20}m"))


@router.get("/quota", response_model=QuotaOut, summary="Your caps (0: none) and what you use of them")
def my_quota(ctx: Ctx, user: CurrentUser, s: SessionDep) -> QuotaOut:
    return quota_out(s, user, quotas.quota_for(s, user, ctx.limits.quota))


@router.get("/dotfiles", response_model=DotfilesOut, summary="Your dotfiles repository")
def get_dotfiles(user: CurrentUser) -> DotfilesOut:
    return DotfilesOut(url=user.dotfiles_url, branch=user.dotfiles_branch)


@router.put("/dotfiles", response_model=DotfilesOut, summary="Set your dotfiles repository: each new environment "
            "clones it with its git logins and runs its install script (install.sh, bootstrap.sh, setup.sh…), "
            "else links its dotfiles into the home")
def set_dotfiles(body: DotfilesIn, user: CurrentUser, s: SessionDep) -> DotfilesOut:
    dotfiles.set_dotfiles(s, user, body.url, body.branch)
    return DotfilesOut(url=user.dotfiles_url, branch=user.dotfiles_branch)


@router.delete("/dotfiles", status_code=status.HTTP_204_NO_CONTENT, summary="Remove your dotfiles repository")
def clear_dotfiles(user: CurrentUser, s: SessionDep) -> None:
    dotfiles.set_dotfiles(s, user, None)


@router.get("/ssh-info", response_model=SshInfo, summary="Where the SSH gateway listens and its host key")
def ssh_info(ctx: Ctx, _user: CurrentUser) -> SshInfo:
    host, port = ctx.settings.ssh_endpoint
    return SshInfo(host=host, port=port, host_key=ctx.gateway_host_key)


@router.get("/keys", response_model=list[KeyOut])
def list_keys(user: CurrentUser, s: SessionDep) -> list[KeyOut]:
    return [KeyOut.model_validate(k, from_attributes=True) for k in auth.list_ssh_keys(s, user)]


@router.post("/keys", response_model=KeyOut, status_code=status.HTTP_201_CREATED)
def add_key(body: KeyIn, user: CurrentUser, s: SessionDep) -> KeyOut:
    row = auth.add_ssh_key(s, user, public_key=body.public_key, name=body.name)
    return KeyOut.model_validate(row, from_attributes=True)


@router.post("/keys/generate", response_model=GeneratedKeyOut, status_code=status.HTTP_201_CREATED,
             summary="Generate an Ed25519 key pair, register the public key, return the private key once")
def generate_key(body: GeneratedKeyIn, user: CurrentUser, s: SessionDep) -> GeneratedKeyOut:
    row, private_key = auth.generate_ssh_key(s, user, name=body.name)
    return GeneratedKeyOut(key=KeyOut.model_validate(row, from_attributes=True), private_key=private_key)


@router.delete("/keys/{key_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_key(key_id: RowId, user: CurrentUser, s: SessionDep) -> None:
    auth.delete_ssh_key(s, user, key_id)


@router.get("/secrets", response_model=list[SecretOut], summary="Secret names and dates (never values)")
def list_secrets(user: CurrentUser, s: SessionDep) -> list[SecretOut]:
    return [SecretOut.model_validate(r, from_attributes=True) for r in secrets.list_secrets(s, user)]


@router.put("/secrets/{name}", response_model=SecretOut, summary="Set or replace a secret (write-only)")
def set_secret(name: str, ctx: Ctx, user: CurrentUser, s: SessionDep, body: SecretIn = Body()) -> SecretOut:
    row = secrets.set_secret(s, ctx.keyring, user, name=name, value=body.value,
                             max_bytes=ctx.settings.max_secret_bytes)
    out = SecretOut.model_validate(row, from_attributes=True)
    if environments.secret_changed(s, user, name):
        s.commit()
        ctx.reconciler.wake()  # running environments get the new value without a restart
    return out


@router.delete("/secrets/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_secret(name: str, user: CurrentUser, s: SessionDep) -> None:
    secrets.delete_secret(s, user, name)


@router.get("/tokens", response_model=list[ApiTokenOut], summary="Your API tokens and browser sessions (never values)")
def list_tokens(request: Request, user: CurrentUser, s: SessionDep) -> list[ApiTokenOut]:
    mine = auth.hash_token(request_token(request)[0] or "")
    return [ApiTokenOut.model_validate(r, from_attributes=True).model_copy(update={"current": r.token_hash == mine})
            for r in auth.list_tokens(s, user)]


@router.post("/tokens", response_model=NewApiTokenOut, status_code=status.HTTP_201_CREATED,
             summary="Create a named API token with an expiry; the value is shown only in this response")
def create_api_token(body: ApiTokenIn, user: CurrentUser, s: SessionDep) -> NewApiTokenOut:
    row, token = auth.issue_api_token(s, user, name=body.name, expires_in=body.expires_in)
    return NewApiTokenOut(**ApiTokenOut.model_validate(row, from_attributes=True).model_dump(), token=token)


@router.delete("/tokens/{token_id:int}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke a token")
def revoke_api_token(token_id: RowId, user: CurrentUser, s: SessionDep) -> None:
    auth.revoke_token(s, user, token_id)
