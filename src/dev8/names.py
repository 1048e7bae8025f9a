"""Validation of the names users choose (environments, secrets, image references)."""
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


# The image reference grammar of distribution/reference (reference.go, regexp.go), which
# Docker, containerd and registries implement: [domain[:port]/]path[:tag][@digest].
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REF_RE = re.compile(rf"^(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")
DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}


def check_image_reference(ref: str) -> str:
    """A valid image reference (``debian:bookworm``, ``ghcr.io/o/img@sha256:…``), else
    ValueError saying what is wrong."""
    match = IMAGE_REF_RE.fullmatch(ref)
    if match is None or len(match["name"]) > 255:
        raise ValueError(f"invalid image reference {ref!r}: expected [REGISTRY[:PORT]/]NAME[:TAG][@DIGEST], "
                         "the name in lowercase letters, digits and . _ - separators, e.g. dev8/fullstack:latest")
    if match["digest"]:
        algorithm, _, hexpart = match["digest"].partition(":")
        if algorithm in DIGEST_HEX and len(hexpart) != DIGEST_HEX[algorithm]:
            raise ValueError(f"invalid image digest in {ref!r}: {algorithm} takes {DIGEST_HEX[algorithm]} hex digits")
    return ref


def username_from_email(email: str) -> str:
    """A URL- and SSH-safe handle derived from an email's local part."""
    local = email.split("@", 1)[0].lower()
    handle = re.sub(r"[^a-z0-9-]+", "-", local).strip("-")[:32].strip("-")
    return handle or "user"
