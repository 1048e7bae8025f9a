"""Caps per user: running environments, environments in all, CPUs and memory of the running
ones. The server's settings give the defaults; an admin sets a user's own (``UserQuota``,
each cap None: the default). 0 is no cap. Checked before any write wherever an environment
is created or started (API, dashboard, CLI, auto-start on connect): exceeding a cap is a
Conflict (409) that names the cap, what is in use and what to do."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from dev8.core.errors import Conflict, Invalid
from dev8.store.models import Environment, User, UserQuota

if TYPE_CHECKING:
    from dev8.settings import Settings

CAPS = ("running", "environments", "cpus", "memory")
MEMORY_RE = re.compile(r"^(\d{1,6})([mg])$")


def _size(text: str) -> int | None:
    """``512m`` / ``4g`` to bytes; None when it is not that form."""
    m = MEMORY_RE.fullmatch(text.strip().lower())
    return None if m is None else int(m.group(1)) * (1 << 20 if m.group(2) == "m" else 1 << 30)


def parse_memory(text: str) -> int:
    """``512m`` / ``4g`` to bytes; between 128 MiB and 256 GiB."""
    n = _size(text)
    if n is None:
        raise Invalid(f"invalid memory {text!r}: use e.g. 512m or 4g", field="memory")
    if not (128 << 20) <= n <= (256 << 30):
        raise Invalid("memory must be between 128m and 256g", field="memory")
    return n


@dataclass(frozen=True)
class Quota:
    running: int = 0        # environments running (or starting) at once
    environments: int = 0   # environments in all
    cpus: float = 0         # CPUs of the running ones, together
    memory: str = ""        # memory of the running ones, together ("16g"); "" no cap


def default_quota(settings: Settings) -> Quota:
    """The server's caps for every user (its ``quota_*`` settings)."""
    return Quota(settings.quota_running, settings.quota_environments, settings.quota_cpus, settings.quota_memory)


def parse_caps(running: int | None = None, environments: int | None = None, cpus: float | None = None,
               memory: str | None = None) -> dict[str, object]:
    """Validated caps (None: leave to the default); Invalid names the one at fault."""
    for field, value in (("running", running), ("environments", environments)):
        if value is not None and not 0 <= value <= 10_000:
            raise Invalid(f"{field} must be 0 (no cap) to 10000", field=field)
    if cpus is not None and not (cpus == 0 or 0.1 <= cpus <= 100_000):
        raise Invalid("cpus must be 0 (no cap) or at least 0.1", field="cpus")
    if memory:
        memory = memory.strip().lower()
        if memory != "0" and _size(memory) is None:
            raise Invalid(f"invalid memory cap {memory!r}: use e.g. 64g, or 0 for no cap", field="memory")
    return {"running": running, "environments": environments, "cpus": cpus, "memory": memory}


def quota_for(s: Session, user: User, default: Quota) -> Quota:
    own = s.get(UserQuota, user.id)
    if own is None:
        return default
    return replace(default, **{cap: getattr(own, cap) for cap in CAPS if getattr(own, cap) is not None})


def set_quota(s: Session, user: User, caps: dict[str, object]) -> UserQuota:
    """Set the user's own caps named in ``caps`` (a None value: back to the server's
    default); the others stay as they are."""
    unknown = set(caps) - set(CAPS)
    if unknown:
        raise Invalid(f"unknown cap {sorted(unknown)[0]!r} ({', '.join(CAPS)})")
    checked = parse_caps(**caps)  # type: ignore[arg-type]
    row = s.get(UserQuota, user.id) or UserQuota(user_id=user.id)
    for cap in caps:
        setattr(row, cap, checked[cap])
    s.add(row)
    return row


def describe(quota: Quota) -> str:
    """``running 2, environments 5, cpus 8, memory 16g`` (caps that are set only)."""
    caps = [f"{cap} {getattr(quota, cap):g}" if cap == "cpus" else f"{cap} {getattr(quota, cap)}"
            for cap in CAPS if getattr(quota, cap) not in (0, "", "0")]
    return ", ".join(caps) or "no caps"


@dataclass(frozen=True)
class Usage:
    environments: int
    running: list[str]
    cpus: float
    memory_bytes: int


def usage(s: Session, user: User, *, leaving_out: str | None = None) -> Usage:
    envs = [e for e in s.scalars(select(Environment).where(Environment.owner_id == user.id,
                                                          Environment.desired_state != "deleted",
                                                          Environment.prebuild_id.is_(None)))
            if e.id != leaving_out]
    running = [e for e in envs if e.desired_state == "running"]
    return Usage(len(envs), sorted(e.name for e in running), sum(e.cpus for e in running),
                 sum(parse_memory(e.memory) for e in running))


def check(s: Session, user: User, quota: Quota, *, name: str, cpus: float, memory: str, new: bool) -> None:
    """Conflict if running ``name`` (with ``cpus`` and ``memory``; ``new``: also created
    now) would pass one of ``quota``'s caps."""
    used = usage(s, user, leaving_out=None if new else _id_of(s, user, name))
    if new and quota.environments and used.environments + 1 > quota.environments:
        raise Conflict(f"quota: at most {_count(quota.environments, 'environment')} for {user.email} (you have "
                       f"{used.environments}); delete one first", field="name")
    if quota.running and len(used.running) + 1 > quota.running:
        raise Conflict(f"quota: at most {_count(quota.running, 'running environment')} for {user.email} (running: "
                       f"{', '.join(used.running)}); stop one first", field="name")
    if quota.cpus and used.cpus + cpus > quota.cpus + 1e-9:
        raise Conflict(f"quota: at most {quota.cpus:g} CPUs in running environments for {user.email} "
                       f"({used.cpus:g} in use, {name} asks {cpus:g}); stop one or ask for fewer", field="cpus")
    cap = _size(quota.memory) or 0  # "" or "0": no cap
    if cap and used.memory_bytes + parse_memory(memory) > cap:
        raise Conflict(f"quota: at most {quota.memory} of memory in running environments for {user.email} "
                       f"({used.memory_bytes >> 20}m in use, {name} asks {memory}); stop one or ask for less",
                       field="memory")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _id_of(s: Session, user: User, name: str) -> str | None:
    return s.scalar(select(Environment.id).where(Environment.owner_id == user.id, Environment.name == name))
