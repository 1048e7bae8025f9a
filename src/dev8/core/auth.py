"""Users, API tokens (stored as SHA-256 hashes), passwords (argon2), SSH keys."""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta, timezone

import asyncssh
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dev8.core.errors import Conflict, Invalid, NotFound, Unauthorized
from dev8.core.throttle import LoginThrottle
from dev8.names import username_from_email
from dev8.store.models import ApiToken, Meta, SshKey, User, utcnow

TOKEN_PREFIX = "dev8_"
_hasher = PasswordHasher()
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")
_DURATION_RE = re.compile(r"^(\d{1,5})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def hash_token(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough (unlike passwords).
    return hashlib.sha256(token.encode()).hexdigest()


def parse_duration(text: str) -> timedelta:
    m = _DURATION_RE.fullmatch(text.strip())
    if not m:
        raise Invalid(f"invalid duration {text!r}: use e.g. 90m, 12h, 30d, 2w")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def create_user(s: Session, *, email: str, password: str | None = None, is_admin: bool = False) -> User:
    email = email.strip().lower()
    if not EMAIL_RE.fullmatch(email):
        raise Invalid(f"invalid email address {email!r}")
    if s.scalar(select(User).where(User.email == email)):
        raise Conflict(f"user {email} already exists")
    base = username_from_email(email)
    username, n = base, 1
    while s.scalar(select(User.id).where(User.username == username)):
        n += 1
        username = f"{base[:28]}-{n}"
    user = User(email=email, username=username, is_admin=is_admin,
                password_hash=_hasher.hash(password) if password else None)
    s.add(user)
    s.flush()
    return user


def set_password(s: Session, user: User, password: str) -> None:
    if len(password) < 8:
        raise Invalid("password must have at least 8 characters")
    user.password_hash = _hasher.hash(password)


def get_user_by_email(s: Session, email: str) -> User:
    user = s.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"no user {email}")
    return user


def verify_password(s: Session, *, email: str, password: str) -> User:
    """The user if the password matches; one generic error otherwise."""
    user = s.scalar(select(User).where(User.email == email.strip().lower()))
    try:
        if user is None or user.disabled or not user.password_hash:
            raise VerifyMismatchError
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        raise Unauthorized("wrong email or password") from None
    return user


def password_login(s: Session, throttle: LoginThrottle, *, email: str, password: str, client: str) -> User:
    """verify_password behind the login throttle, counted per email and per client address."""
    throttle.check(email, client)
    try:
        user = verify_password(s, email=email, password=password)
    except Unauthorized:
        throttle.failed(email, client)
        raise
    throttle.succeeded(email)
    return user


def create_token(s: Session, user: User, *, name: str = "cli", expires_in: timedelta | None = None) -> str:
    """Create an API token and return it; only its hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    s.add(ApiToken(user_id=user.id, name=name[:64], token_hash=hash_token(token),
                   expires_at=utcnow() + expires_in if expires_in else None))
    s.flush()
    return token


LAST_USED_PRECISION = timedelta(minutes=1)


def user_for_token(s: Session, token: str) -> User:
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    now = datetime.now(timezone.utc)
    if row is None:
        raise Unauthorized("invalid token")
    expires = row.expires_at
    if expires is not None and expires.replace(tzinfo=expires.tzinfo or timezone.utc) <= now:
        raise Unauthorized("token expired")
    user = s.get(User, row.user_id)
    if user is None or user.disabled:
        raise Unauthorized("invalid token")
    last = row.last_used_at
    # A write per request would make every proxied asset wait for the database; a minute's
    # precision is plenty for "last used".
    if last is None or last.replace(tzinfo=last.tzinfo or timezone.utc) < now - LAST_USED_PRECISION:
        row.last_used_at = now
    return user


# --- first-run setup --------------------------------------------------------------

SETUP_KEY = "setup_token_hash"


def has_users(s: Session) -> bool:
    return s.scalar(select(User.id).limit(1)) is not None


def issue_setup_token(s: Session) -> str:
    token = secrets.token_urlsafe(24)
    row = s.get(Meta, SETUP_KEY)
    if row is None:
        s.add(Meta(key=SETUP_KEY, value=hash_token(token)))
    else:
        row.value = hash_token(token)
    return token


def complete_setup(s: Session, *, token: str, email: str, password: str) -> User:
    row = s.get(Meta, SETUP_KEY)
    if row is None or has_users(s) or not secrets.compare_digest(row.value, hash_token(token)):
        raise Unauthorized("invalid or used setup token")
    if len(password) < 8:
        raise Invalid("password must have at least 8 characters")
    s.delete(row)
    return create_user(s, email=email, password=password, is_admin=True)


# --- SSH public keys ---------------------------------------------------------------

def parse_public_key(text: str) -> tuple[asyncssh.SSHKey, str]:
    """Validate an OpenSSH public key line; returns the key and its comment."""
    text = text.strip()
    if not text or "\n" in text or len(text) > 16384:
        raise Invalid("expected exactly one OpenSSH public key line (e.g. the contents of id_ed25519.pub)")
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise Invalid(f"not a valid SSH public key: {exc}") from None
    if key.algorithm.startswith(b"ssh-rsa") and key.pyca_key.key_size < 2048:
        raise Invalid("RSA keys must have at least 2048 bits")
    return key, (key.get_comment() or "")


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256").split(":", 1)[1]


def add_ssh_key(s: Session, user: User, *, public_key: str, name: str | None = None) -> SshKey:
    key, comment = parse_public_key(public_key)
    fp = fingerprint(key)
    if s.scalar(select(SshKey.id).where(SshKey.fingerprint == fp)):
        raise Conflict("this SSH key is already registered")
    row = SshKey(user_id=user.id, name=(name or comment or key.get_algorithm())[:128],
                 public_key=key.export_public_key("openssh").decode().strip(), fingerprint=fp)
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict("this SSH key is already registered") from None
    return row


def list_ssh_keys(s: Session, user: User) -> list[SshKey]:
    return list(s.scalars(select(SshKey).where(SshKey.user_id == user.id).order_by(SshKey.id)))


def delete_ssh_key(s: Session, user: User, key_id: int) -> None:
    row = s.get(SshKey, key_id)
    if row is None or row.user_id != user.id:
        raise NotFound("no such SSH key")
    s.delete(row)


def user_for_ssh_key(s: Session, key: asyncssh.SSHKey) -> User | None:
    row = s.scalar(select(SshKey).where(SshKey.fingerprint == fingerprint(key)))
    if row is None:
        return None
    user = s.get(User, row.user_id)
    return None if user is None or user.disabled else user
