"""Validation of the names users choose (environments, secrets)."""
from __future__ import annotations

import re

ENV_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
USERNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def check_env_name(name: str) -> str:
    if not ENV_NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid environment name {name!r}: use 1-32 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def check_secret_name(name: str) -> str:
    if not SECRET_NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid secret name {name!r}: use letters, digits and '_', starting with a letter or '_' (max 64)"
        )
    return name


def username_from_email(email: str) -> str:
    """A URL- and SSH-safe handle derived from an email's local part."""
    local = email.split("@", 1)[0].lower()
    handle = re.sub(r"[^a-z0-9-]+", "-", local).strip("-")[:32].strip("-")
    return handle or "user"
