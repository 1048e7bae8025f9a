"""Environments service: what users ask for (desired state) and what they see.

Functions here only write the store; the reconciler does the runtime work. Every check
happens before the first write, so a rejected request leaves nothing behind.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import asyncssh
from sqlalchemy import select
from sqlalchemy.orm import Session

from dev8.core.crypto import Keyring
from dev8.core.errors import Conflict, Invalid, NotFound
from dev8.core.secrets import check_secrets_exist, seal_env_key
from dev8.names import check_env_name
from dev8.runtimes.base import EnvSpec
from dev8.store.models import Environment, Event, Meta, User, utcnow

MEMORY_RE = re.compile(r"^(\d{1,6})([mg])$")
MAX_EVENTS_PER_ENV = 500


@dataclass(frozen=True)
class Limits:
    default_image: str
    default_cpus: float
    default_memory: str


def parse_memory(text: str) -> int:
    """``512m`` / ``4g`` to bytes; between 128 MiB and 256 GiB."""
    m = MEMORY_RE.fullmatch(text.strip().lower())
    if not m:
        raise Invalid(f"invalid memory {text!r}: use e.g. 512m or 4g")
    n = int(m.group(1)) * (1 << 20 if m.group(2) == "m" else 1 << 30)
    if not (128 << 20) <= n <= (256 << 30):
        raise Invalid("memory must be between 128m and 256g")
    return n


def spec_of(env: Environment, installation: str) -> EnvSpec:
    return EnvSpec(env_id=env.id, owner_id=env.owner_id, name=env.name, image=env.image, cpus=env.cpus,
                   memory=env.memory, control_public_key=env.control_public_key, installation=installation)


INSTALLATION_KEY = "installation_id"


def installation_id(s: Session) -> str:
    """A short random id of this dev8 installation (database), made on first use."""
    row = s.get(Meta, INSTALLATION_KEY)
    if row is None:
        row = Meta(key=INSTALLATION_KEY, value=secrets.token_hex(3))
        s.add(row)
        s.flush()
    return row.value


def create_environment(
    s: Session, keyring: Keyring, user: User, *, name: str, limits: Limits,
    image: str | None = None, cpus: float | None = None, memory: str | None = None,
    secret_names: list[str] | None = None,
) -> Environment:
    try:
        check_env_name(name)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    image = (image or limits.default_image).strip()
    if not image or len(image) > 255 or any(c.isspace() for c in image):
        raise Invalid(f"invalid image reference {image!r}")
    cpus = limits.default_cpus if cpus is None else cpus
    if not 0.1 <= cpus <= 64:
        raise Invalid("cpus must be between 0.1 and 64")
    memory = (memory or limits.default_memory).strip().lower()
    parse_memory(memory)
    secret_names = sorted(set(secret_names or []))
    check_secrets_exist(s, user, secret_names)
    if s.scalar(select(Environment.id).where(Environment.owner_id == user.id, Environment.name == name)):
        raise Conflict(f"environment {name!r} already exists")
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"dev8-control-{name}")
    env = Environment(owner_id=user.id, name=name, image=image, cpus=cpus, memory=memory,
                      secret_names=secret_names, desired_state="running", observed_state="pending",
                      control_public_key=key.export_public_key("openssh").decode().strip())
    s.add(env)
    s.flush()
    s.add(seal_env_key(keyring, env.id, key.export_private_key("openssh")))
    add_event(s, env.id, "request", "ok", "environment requested")
    return env


def list_environments(s: Session, user: User) -> list[Environment]:
    return list(s.scalars(select(Environment).where(Environment.owner_id == user.id).order_by(Environment.name)))


def get_environment(s: Session, user: User, name: str, *, include_deleting: bool = False) -> Environment:
    """The user's environment; anyone else's answers exactly like a missing one.
    One being deleted counts as gone unless ``include_deleting`` (to follow its events)."""
    env = s.scalar(select(Environment).where(Environment.owner_id == user.id, Environment.name == name))
    if env is None or (env.desired_state == "deleted" and not include_deleting):
        raise NotFound(f"no environment {name!r}")
    return env


def request_start(s: Session, env: Environment) -> None:
    env.desired_state = "running"
    env.generation += 1
    env.updated_at = utcnow()
    add_event(s, env.id, "request", "ok", "start requested")


def request_stop(s: Session, env: Environment) -> None:
    env.desired_state = "stopped"
    env.updated_at = utcnow()
    add_event(s, env.id, "request", "ok", "stop requested")


def request_restart(s: Session, env: Environment) -> None:
    env.desired_state = "running"
    env.restart_requested = True
    env.generation += 1
    env.updated_at = utcnow()
    add_event(s, env.id, "request", "ok", "restart requested")


def request_delete(s: Session, env: Environment, *, keep_volume: bool) -> None:
    env.desired_state = "deleted"
    env.keep_volume = keep_volume
    env.updated_at = utcnow()
    add_event(s, env.id, "request", "ok", "delete requested" + (" (volume kept)" if keep_volume else ""))


def add_event(s: Session, env_id: str, step: str, status: str, message: str = "") -> Event:
    ev = Event(env_id=env_id, step=step, status=status, message=message[:2000])
    s.add(ev)
    s.flush()
    return ev


def events_after(s: Session, env_id: str, after: int = 0, limit: int = 200) -> list[Event]:
    return list(s.scalars(select(Event).where(Event.env_id == env_id, Event.id > after)
                          .order_by(Event.id).limit(limit)))
