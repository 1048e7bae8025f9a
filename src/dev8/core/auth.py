"""Users, API tokens (stored as SHA-256 hashes), passwords (argon2), SSH keys."""
from __future__ import annotations

import functools
import hashlib
import re
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dev8.core import audit
from dev8.core.errors import Conflict, Invalid, NotFound, TooManyAttempts, Unauthorized
from dev8.core.throttle import LoginThrottle
from dev8.names import username_from_email
from dev8.store.models import ApiToken, Meta, SshKey, User, as_utc, note_use, utcnow

if TYPE_CHECKING:
    import asyncssh

TOKEN_PREFIX = "dev8_"
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))
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


MIN_PASSWORD_LENGTH = 8


def check_password(password: str) -> None:
    """The one rule for a new password (setup, admin, CLI, set-password)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must have at least {MIN_PASSWORD_LENGTH} characters", field="password")


def create_user(s: Session, *, email: str, password: str | None = None, is_admin: bool = False) -> User:
    email = email.strip().lower()
    if not EMAIL_RE.fullmatch(email):
        raise Invalid(f"invalid email address {email!r}", field="email")
    if password is not None:
        check_password(password)
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


BROWSER_SESSION = "web-session"  # the name of the tokens browser logins get


def set_password(s: Session, user: User, password: str) -> None:
    """Set a new password; the user's browser sessions end with the old one (their live
    connections close within seconds). API tokens stay: they were never the password."""
    check_password(password)
    user.password_hash = _hasher.hash(password)
    for row in s.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.name == BROWSER_SESSION)):
        s.delete(row)


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
            # The same argon2 work as for a real account, so the time taken does not tell
            # which emails have one.
            _hasher.verify(_dummy_hash(), password)
            raise VerifyMismatchError
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        raise Unauthorized("wrong email or password") from None
    return user


def password_login(s: Session, throttle: LoginThrottle, *, email: str, password: str, client: str) -> User:
    """verify_password behind the login throttle, counted per email and per client address.
    Every outcome goes to the audit log, a lockout once when it starts; entries for a refusal
    are committed before the error propagates."""
    who = email.strip().lower()[:254]
    try:
        throttle.check(s, email, client)
    except TooManyAttempts as exc:
        if exc.first:
            audit.record(s, None, "login.throttled", detail=f"client {client}; {exc}", actor_label=who)
            s.commit()
        raise
    try:
        user = verify_password(s, email=email, password=password)
    except Unauthorized:
        throttle.failed(s, email, client)
        audit.record(s, None, "login.failed", detail=f"client {client}", actor_label=who)
        s.commit()
        raise
    throttle.succeeded(s, email)
    audit.record(s, user, "login", detail=f"client {client}")
    return user


def _new_token(s: Session, user: User, name: str, expires_in: timedelta | None) -> tuple[ApiToken, str]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name[:64], token_hash=hash_token(token),
                   expires_at=utcnow() + expires_in if expires_in else None)
    s.add(row)
    s.flush()
    return row, token


def create_token(s: Session, user: User, *, name: str = "cli", expires_in: timedelta | None = None) -> str:
    """Create an API token and return it; only its hash is stored."""
    return _new_token(s, user, name, expires_in)[1]


TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
MAX_TOKEN_LIFETIME = timedelta(days=366)


def issue_api_token(s: Session, user: User, *, name: str, expires_in: str) -> tuple[ApiToken, str]:
    """A named API token the user asked for (settings page, API), with an expiry of at
    most a year; the row and the token, which is shown once and never stored."""
    name = name.strip()
    if not TOKEN_NAME_RE.fullmatch(name):
        raise Invalid("token name: 1-64 letters, digits, spaces, '.', '_' or '-'", field="name")
    try:
        lifetime = parse_duration(expires_in)
    except Invalid as exc:
        raise Invalid(str(exc), field="expires_in") from None
    if not timedelta(minutes=1) <= lifetime <= MAX_TOKEN_LIFETIME:
        raise Invalid("expiry must be between 1 minute and 366 days", field="expires_in")
    row, token = _new_token(s, user, name, lifetime)
    audit.record(s, user, "token.create", name, f"expires {row.expires_at:%Y-%m-%d %H:%M} UTC")
    return row, token


def list_tokens(s: Session, user: User) -> list[ApiToken]:
    return list(s.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))


def revoke_token(s: Session, user: User, token_id: int) -> None:
    row = s.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        raise NotFound("no such token")
    audit.record(s, user, "token.revoke", row.name)
    s.delete(row)


def revoke_token_value(s: Session, token: str) -> None:
    """Forget a token by its value (logging out a browser session); unknown ones are ignored."""
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is not None:
        s.delete(row)


def user_for_token(s: Session, token: str) -> User:
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None:
        raise Unauthorized("invalid token")
    expires = row.expires_at
    if expires is not None and as_utc(expires) <= utcnow():
        raise Unauthorized("token expired")
    user = s.get(User, row.user_id)
    if user is None or user.disabled:
        raise Unauthorized("invalid token")
    note_use(row)  # not a write per request: every proxied asset would wait for the database
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
    check_password(password)
    s.delete(row)
    user = create_user(s, email=email, password=password, is_admin=True)
    audit.record(s, user, "setup", user.email, "first admin")
    return user


# --- SSH public keys ---------------------------------------------------------------

def parse_public_key(text: str) -> tuple[asyncssh.SSHKey, str]:
    import asyncssh  # here: the user and token commands of `dev8 admin` do without it (0.1 s)
    """Validate an OpenSSH public key line; returns the key and its comment."""
    text = text.strip()
    if not text or "\n" in text or len(text) > 16384:
        raise Invalid("expected exactly one OpenSSH public key line (e.g. the contents of id_ed25519.pub)")
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise Invalid(f"not a valid SSH public key: {exc}") from None
    if isinstance(key.pyca_key, rsa.RSAPublicKey) and key.pyca_key.key_size < 2048:
        raise Invalid("RSA keys must have at least 2048 bits")
    return key, (key.get_comment() or "")


def generate_ssh_key(s: Session, user: User, *, name: str | None = None) -> tuple[SshKey, str]:
    """Make an Ed25519 key pair, register its public half and return the private half in
    OpenSSH format: it is not kept anywhere, so the caller shows it exactly once."""
    import asyncssh
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{user.username}@dev8")
    row = add_ssh_key(s, user, public_key=key.export_public_key("openssh").decode(), name=name or "generated")
    return row, key.export_private_key("openssh").decode()


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
    audit.record(s, user, "ssh_key.add", row.name, fp)
    return row


def list_ssh_keys(s: Session, user: User) -> list[SshKey]:
    return list(s.scalars(select(SshKey).where(SshKey.user_id == user.id).order_by(SshKey.id)))


def delete_ssh_key(s: Session, user: User, key_id: int) -> None:
    row = s.get(SshKey, key_id)
    if row is None or row.user_id != user.id:
        raise NotFound("no such SSH key")
    audit.record(s, user, "ssh_key.delete", row.name, row.fingerprint)
    s.delete(row)


def user_for_ssh_key(s: Session, key: asyncssh.SSHKey) -> User | None:
    row = s.scalar(select(SshKey).where(SshKey.fingerprint == fingerprint(key)))
    if row is None:
        return None
    user = s.get(User, row.user_id)
    return None if user is None or user.disabled else user
