"""SQLAlchemy 2 models. Schema changes go through an Alembic migration in ``migrations/``."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(ts: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; they are UTC."""
    return ts.replace(tzinfo=ts.tzinfo or UTC)


class UTCDateTime(TypeDecorator):
    """A point in time, always read back with its zone (UTC): SQLite stores none, and an
    API time without an offset is read as local time by browsers."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return value if value is None else as_utc(value)


USE_PRECISION = timedelta(minutes=1)


def note_use(row: ApiToken | Environment) -> None:
    """Set ``row.last_used_at`` to now, with a minute's precision: a burst of requests (a page
    load, a proxied app) writes to the database once, not once each."""
    now = utcnow()
    if row.last_used_at is None or as_utc(row.last_used_at) < now - USE_PRECISION:
        row.last_used_at = now


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A dotfiles repository installed into each new environment (dev8-env dotfiles).
    dotfiles_url: Mapped[str | None] = mapped_column(String(2048))
    dotfiles_branch: Mapped[str | None] = mapped_column(String(200))


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SshKey(Base):
    __tablename__ = "ssh_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(Text)
    # Globally unique: the gateway maps a presented key to exactly one user.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SealedColumns:
    """Envelope-encrypted value: data key wrapped by key ``key_id`` (a local keyring's id or
    an Azure Key Vault key identifier with its version; see core/crypto.py)."""
    key_id: Mapped[str] = mapped_column(String(255), index=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class Secret(SealedColumns, Base):
    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def new_env_id() -> str:
    return uuid.uuid4().hex


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_env_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    image: Mapped[str] = mapped_column(String(255))
    cpus: Mapped[float] = mapped_column(Float)
    memory: Mapped[str] = mapped_column(String(16))
    secret_names: Mapped[list] = mapped_column(JSON, default=list)
    # repo/branch, git providers, AI key choices: validated by core.environments.build_options.
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    desired_state: Mapped[str] = mapped_column(String(16), default="running")
    observed_state: Mapped[str] = mapped_column(String(16), default="pending")
    status_message: Mapped[str] = mapped_column(Text, default="")
    # The raw text behind a failure's status_message (core.failures), empty otherwise.
    status_detail: Mapped[str] = mapped_column(Text, default="", server_default="")
    keep_volume: Mapped[bool] = mapped_column(Boolean, default=False)
    restart_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Where its sshd is reached, the host key pinned for it, and the instance they belong
    # to (see runtimes.base.Observed); runtime_state is the runtime's own, opaque.
    ssh_host: Mapped[str | None] = mapped_column(String(255))
    ssh_port: Mapped[int | None] = mapped_column(Integer)
    host_key: Mapped[str | None] = mapped_column(Text)
    instance_id: Mapped[str | None] = mapped_column(String(200))
    runtime_state: Mapped[dict | None] = mapped_column(JSON)
    control_public_key: Mapped[str] = mapped_column(Text)
    # Bumped by the API on every start/restart so the reconciler configures again.
    generation: Mapped[int] = mapped_column(Integer, default=1)
    configured_generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Last use by its owner: an SSH session, app or terminal opened (note_use), or traffic
    # through any of them (core.activity).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Seconds without use before dev8 stops it; None: the server's default, 0: never.
    idle_timeout: Mapped[int | None] = mapped_column(Integer)
    # Why dev8 stopped it by itself ("stopped after 30 min idle"); cleared by a start.
    stop_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Set on the short-lived environment a prebuild run works in (core.prebuilds): not in its
    # owner's list, not counted in their quota.
    prebuild_id: Mapped[str | None] = mapped_column(String(32), index=True)


class PrebuildConfig(Base):
    """What a prebuild is made of (core.prebuilds): its owner's repository and branch, with
    the image, git logins and secrets a create of theirs with them would have."""
    __tablename__ = "prebuild_configs"
    __table_args__ = (UniqueConstraint("owner_id", "repo_url", "branch"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_env_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    repo_url: Mapped[str] = mapped_column(String(2048))
    branch: Mapped[str] = mapped_column(String(255), default="")  # "": the repository's default branch
    image: Mapped[str] = mapped_column(String(255))
    cpus: Mapped[float] = mapped_column(Float)
    memory: Mapped[str] = mapped_column(String(16))
    secret_names: Mapped[list] = mapped_column(JSON, default=list)
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    keep: Mapped[int] = mapped_column(Integer, default=2)  # ready prebuilds kept, newest first
    every: Mapped[int] = mapped_column(Integer, default=0)  # seconds between scheduled runs; 0: none
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PrebuildHookKey(SealedColumns, Base):
    """The secret a configuration's push webhooks prove themselves with (core.prebuild_hooks),
    sealed like a secret: GitHub and Bitbucket sign with it, so it is kept, not hashed."""
    __tablename__ = "prebuild_hook_keys"
    config_id: Mapped[str] = mapped_column(ForeignKey("prebuild_configs.id", ondelete="CASCADE"), primary_key=True)


class Prebuild(Base):
    """One run of a prebuild configuration and, once ready, the home it left: the storage
    of its (deleted) environment ``env_name``, which new homes are copied from."""
    __tablename__ = "prebuilds"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_env_id)
    config_id: Mapped[str] = mapped_column(ForeignKey("prebuild_configs.id", ondelete="CASCADE"), index=True)
    env_id: Mapped[str] = mapped_column(String(32))
    env_name: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="running")  # running, ready, failed, removed
    commit: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    log: Mapped[str] = mapped_column(Text, default="")  # its environment's events, kept when the run ends
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UserQuota(Base):
    """A user's own caps (core.quotas); a None cap is the server's default, 0 no cap."""
    __tablename__ = "user_quotas"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    running: Mapped[int | None] = mapped_column(Integer)
    environments: Mapped[int | None] = mapped_column(Integer)
    cpus: Mapped[float | None] = mapped_column(Float)
    memory: Mapped[str | None] = mapped_column(String(16))


class Template(Base):
    """An admin's starting point for environments (core.templates)."""
    __tablename__ = "templates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict] = mapped_column(JSON, default=dict)       # field → value (templates.FIELDS)
    editable: Mapped[list] = mapped_column(JSON, default=list)   # fields users may change
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PortShare(Base):
    """Who besides the owner may open a port's preview: ``authenticated`` (any dev8 user) or
    ``public`` (anyone). No row means private. Honoured on app subdomains only."""
    __tablename__ = "port_shares"
    env_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EnvironmentKey(SealedColumns, Base):
    """The environment's control-plane private key, sealed like a secret."""
    __tablename__ = "environment_keys"
    env_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True)


class GatewayKey(SealedColumns, Base):
    """The SSH gateway's host key, the same for every replica (server.sshgateway): its
    private half sealed like a secret, its public half in the clear (to tell, without
    unsealing, whether a replica's cached copy is this key)."""
    __tablename__ = "gateway_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1: one key per installation
    public_key: Mapped[str] = mapped_column(Text)


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    env_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    step: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")


class AppGrant(Base):
    """A one-time ticket from dev8's host to an app host, or the app-host session it became
    (server.apps.sessions); ``key_hash`` is a hash of the value the browser holds, and
    ``minted_by`` the hash of the dev8 session token that asked for it."""
    __tablename__ = "app_grants"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # "ticket" or "session"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(255))
    minted_by: Mapped[str] = mapped_column(String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class LoginFailure(Base):
    """A failed password check (core.throttle): one row per key it counts against
    (``email:…``, ``client:…``), ``at`` in seconds since the epoch."""
    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(300), index=True)
    at: Mapped[float] = mapped_column(Float, index=True)


class ImageJobRow(Base):
    """An image build, pull or push an admin started (core.image_jobs), seen by every replica;
    ``replica`` runs it."""
    __tablename__ = "image_jobs"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    image: Mapped[str] = mapped_column(String(255))
    replica: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # running, done, failed
    progress: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Replica(Base):
    """A dev8 server sharing this database (core.leases); ``seen_at`` is its heartbeat."""
    __tablename__ = "replicas"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    http_addr: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EnvLease(Base):
    """Which replica reconciles an environment now, and until when unless it renews."""
    __tablename__ = "env_leases"
    env_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True)
    replica: Mapped[str] = mapped_column(String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """A sensitive action: logins, secret changes, environment lifecycle, admin actions.
    ``actor`` keeps the email as it was, so entries outlive renamed or deleted users."""
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
