"""Prebuilds: a repository's home made ahead of time, copied into each new environment.

A configuration is a user's repository and branch, with the image, size, git logins and
secrets a create of theirs would use. A run works in a short-lived environment of its
owner's (``Environment.prebuild_id`` set: not in their list, not in their quota): the clone
at the branch's head, devcontainer.json's ``onCreateCommand`` and ``updateContentCommand``
(``dev8-env lifecycle`` with ``prebuild_run``). When it is ready, the reconciler records the
commit and removes that environment keeping its storage: the storage is the prebuild. A create
of the owner's with the same repository, branch and image starts from the newest ready
prebuild's home (``EnvSpec.seed``, on runtimes that ``copies_storage``: a copy, a clone or a
copy-on-write layer, the runtime's business), moves its clone to the branch's head and runs
``postCreateCommand``: the home is its own from then on.

Prebuilds belong to their configuration's owner, and only the owner's creates use them: a
prebuild's home holds the repository (and whatever the commands fetched with the owner's git
login), which another user may not be allowed to read.

Runs wait in a queue (``queued``) and start while fewer than ``concurrent`` run on the server;
a run asked for while one of the same configuration waits is that one. Of the ready prebuilds,
the newest ``keep`` of a configuration are kept, the older removed (``pruned``) once no create
still copies from them.
"""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dev8.core import audit, prebuild_hooks
from dev8.core.crypto import Keyring, prebuild_hook_aad
from dev8.core.environments import (
    Limits,
    build_options,
    check_cpus,
    check_image,
    check_secrets_exist,
    create_environment,
    events_after,
    parse_memory,
)
from dev8.core.errors import Conflict, Invalid, NotFound, Unauthorized
from dev8.core.secrets import sealed_of, store_sealed
from dev8.store.models import Environment, Prebuild, PrebuildConfig, PrebuildHookKey, User, utcnow

CONCURRENT_RUNS = 2
MAX_KEEP = 10
MAX_LOG = 64 * 1024
MIN_EVERY, MAX_EVERY = 3600, 30 * 86400
# Which prebuilds are done with: a create made from one has it in its options until its first
# start copied the home (``started_at``).
READY, RUNNING, QUEUED, FAILED, REMOVED, SKIPPED = "ready", "running", "queued", "failed", "removed", "skipped"


@dataclass(frozen=True)
class Storage:
    """A prebuild's storage: that of its run's environment (deleted, its storage kept)."""
    env_id: str
    owner_id: int
    env_name: str


@dataclass(frozen=True)
class RunEnded:
    """What a run's end leaves to do outside the transaction: environments to reconcile (the
    run's own, being removed; runs started in its place) and prebuilds' storage to remove."""
    wake: list[str]
    prune: list[Storage]


def set_config(s: Session, keyring: Keyring, user: User, limits: Limits, *, repo: str, branch: str | None = None,
               image: str | None = None, cpus: float | None = None, memory: str | None = None,
               git: list[dict] | None = None, secret_names: list[str] | None = None,
               keep: int = 2, every: int = 0) -> tuple[PrebuildConfig, str | None]:
    """Make or replace the user's configuration for ``repo`` at ``branch`` (validated as a
    create's values are); a new one's webhook secret (to show once), None when it existed."""
    if not 1 <= keep <= MAX_KEEP:
        raise Invalid(f"keep must be 1 to {MAX_KEEP} prebuilds", field="keep")
    if every and not MIN_EVERY <= every <= MAX_EVERY:
        raise Invalid("a schedule must be 0 (none) or 1 hour to 30 days, in seconds", field="every")
    options, referenced = build_options(repo=repo, branch=branch, git=git)
    image = check_image((image or limits.default_image).strip())
    cpus = check_cpus(limits.default_cpus if cpus is None else cpus)
    memory = (memory or limits.default_memory).strip().lower()
    parse_memory(memory)
    names = sorted(set(secret_names or []) | set(referenced))
    check_secrets_exist(s, user, names)
    config = find_config(s, user, repo, branch)
    new = config is None
    if config is None:
        config = PrebuildConfig(owner_id=user.id, repo_url=repo, branch=branch or "")
        s.add(config)
    config.image, config.cpus, config.memory, config.keep, config.every = image, cpus, memory, keep, every
    config.options, config.secret_names = options, names
    try:
        s.flush()
    except IntegrityError:  # made by a concurrent request since the lookup above
        raise Conflict(f"the prebuild of {repo} is being set by another request; try again") from None
    audit.record(s, user, "prebuild.set", repo + (f"@{branch}" if branch else ""), image)
    return config, (new_hook_secret(s, keyring, config) if new else None)


def find_config(s: Session, user: User, repo: str, branch: str | None) -> PrebuildConfig | None:
    return s.scalar(select(PrebuildConfig).where(PrebuildConfig.owner_id == user.id, PrebuildConfig.repo_url == repo,
                                                 PrebuildConfig.branch == (branch or "")))


def get_config(s: Session, user: User, config_id: str) -> PrebuildConfig:
    """The user's configuration; anyone else's answers exactly like a missing one."""
    config = s.get(PrebuildConfig, config_id)
    if config is None or config.owner_id != user.id:
        raise NotFound(f"no prebuild configuration {config_id!r}")
    return config


def list_configs(s: Session, user: User) -> list[PrebuildConfig]:
    return list(s.scalars(select(PrebuildConfig).where(PrebuildConfig.owner_id == user.id)
                          .order_by(PrebuildConfig.repo_url, PrebuildConfig.branch)))


def runs(s: Session, config: PrebuildConfig, limit: int = 10) -> list[Prebuild]:
    """Its runs, newest first (removed ones too: what happened to them)."""
    return list(s.scalars(select(Prebuild).where(Prebuild.config_id == config.id)
                          .order_by(Prebuild.created_at.desc(), Prebuild.id).limit(limit)))


def request_run(s: Session, user: User, config: PrebuildConfig, commit: str = "") -> Prebuild:
    """Queue a run of ``config`` (the one already waiting, if there is one: it clones the
    branch's head when it starts, so a newer push is in it). ``commit``: the pushed commit a
    webhook names; a run for a commit already prebuilt is skipped when its turn comes."""
    waiting = s.scalar(select(Prebuild).where(Prebuild.config_id == config.id, Prebuild.state == QUEUED))
    if waiting is not None:
        waiting.commit = commit  # the newer push's (or none: a run on demand)
        return waiting
    run = Prebuild(config_id=config.id, env_id="", env_name="", state=QUEUED, commit=commit)
    s.add(run)
    s.flush()
    audit.record(s, user, "prebuild.run", config.repo_url, run.id)
    return run


def due(s: Session) -> int:
    """Queue a run of every configuration on a schedule whose latest run began ``every``
    seconds ago or more (or that never ran); how many."""
    queued = 0
    for config in s.scalars(select(PrebuildConfig).where(PrebuildConfig.every > 0)):
        last = s.scalar(select(func.max(Prebuild.created_at)).where(Prebuild.config_id == config.id))
        owner = s.get(User, config.owner_id)
        if owner is not None and (last is None or (utcnow() - last).total_seconds() >= config.every):
            request_run(s, owner, config)
            queued += 1
    return queued


def dispatch(s: Session, keyring: Keyring, concurrent: int = CONCURRENT_RUNS) -> list[str]:
    """Start queued runs, oldest first, while fewer than ``concurrent`` run; the ids of the
    environments made for them (to reconcile). A configuration runs once at a time."""
    for run in s.scalars(select(Prebuild).where(Prebuild.state == RUNNING)):
        if s.get(Environment, run.env_id) is None:  # its environment was deleted by hand
            run.state, run.finished_at, run.message = FAILED, utcnow(), "its environment was deleted"
    running = s.scalar(select(func.count()).select_from(Prebuild).where(Prebuild.state == RUNNING)) or 0
    busy = set(s.scalars(select(Prebuild.config_id).where(Prebuild.state == RUNNING)))
    started: list[str] = []
    queued = s.scalars(select(Prebuild).where(Prebuild.state == QUEUED).order_by(Prebuild.created_at)
                       .with_for_update(skip_locked=True))
    for run in list(queued):
        if running >= concurrent:
            break
        if run.config_id in busy:
            continue
        config = s.get(PrebuildConfig, run.config_id)
        owner = s.get(User, config.owner_id) if config else None
        if config is None or owner is None:
            continue
        newest = _newest(s, config.id)
        if run.commit and newest is not None and newest.commit == run.commit:
            run.state, run.finished_at, run.message = SKIPPED, utcnow(), f"{run.commit[:7]} is prebuilt already"
            continue
        name = f"pb-{run.id[:12]}"
        env = create_environment(
            s, keyring, owner, name=name, limits=Limits(config.image, config.cpus, config.memory),
            secret_names=list(config.secret_names or []), repo=config.repo_url, branch=config.branch or None,
            git=(config.options or {}).get("git", {}).get("providers"), prebuild_id=run.id,
            idle_timeout=0)  # busy without anyone using it: never stopped as idle
        run.state, run.env_id, run.env_name = RUNNING, env.id, name
        running += 1
        busy.add(run.config_id)
        started.append(env.id)
    return started


def _newest(s: Session, config_id: str) -> Prebuild | None:
    return s.scalar(select(Prebuild).where(Prebuild.config_id == config_id, Prebuild.state == READY)
                    .order_by(Prebuild.finished_at.desc()).limit(1))


def new_hook_secret(s: Session, keyring: Keyring, config: PrebuildConfig) -> str:
    """A new secret for ``config``'s push webhooks (the old one stops working), to show once."""
    secret = secrets.token_urlsafe(32)
    row = s.get(PrebuildHookKey, config.id) or PrebuildHookKey(config_id=config.id)
    store_sealed(row, keyring.seal(secret.encode(), prebuild_hook_aad(config.id)))
    s.add(row)
    return secret


def hook(s: Session, keyring: Keyring, provider: str, headers: Mapping[str, str], body: bytes) -> list[Prebuild]:
    """Runs asked for by a push webhook of ``provider``: each configuration of the pushed
    repository and branch whose owner's hook secret the request proves (any of that owner's
    configurations of the repository: one webhook serves all its branches). Unauthorized
    when no configuration of the repository accepts the proof, so an unknown repository and a
    forged hook look the same; nothing runs then."""
    push = prebuild_hooks.parse(provider, headers, body)
    if push is None:
        return []  # not a push to a branch: nothing to build, and nothing told
    candidates = [c for c in s.scalars(select(PrebuildConfig))
                  if prebuild_hooks.normal(c.repo_url) in push.urls]
    owners = {c.owner_id for c in candidates if _proves(s, keyring, c, provider, headers, body)}
    if not owners:
        raise Unauthorized(f"no prebuild of this repository accepts this {provider} hook's signature")
    runs = []
    for config in candidates:
        wanted = config.branch or push.default_branch
        owner = s.get(User, config.owner_id)
        if config.owner_id in owners and wanted == push.branch and owner is not None:
            runs.append(request_run(s, owner, config, push.commit))
    return runs


def _proves(s: Session, keyring: Keyring, config: PrebuildConfig, provider: str, headers: Mapping[str, str],
            body: bytes) -> bool:
    row = s.get(PrebuildHookKey, config.id)
    if row is None:
        return False
    secret = keyring.open(sealed_of(row), prebuild_hook_aad(config.id)).decode()
    return prebuild_hooks.proven(provider, headers, body, secret)


def newest_ready(s: Session, owner_id: int, repo: str, branch: str | None, image: str) -> Prebuild | None:
    """The prebuild a create of ``owner_id``'s with these values starts from, if any (the
    repository's URL compared as a webhook's is: ``…/app`` and ``…/app.git`` are one)."""
    configs = [c.id for c in s.scalars(select(PrebuildConfig).where(
        PrebuildConfig.owner_id == owner_id, PrebuildConfig.branch == (branch or ""), PrebuildConfig.image == image))
        if prebuild_hooks.normal(c.repo_url) == prebuild_hooks.normal(repo)]
    return s.scalar(select(Prebuild).where(Prebuild.config_id.in_(configs), Prebuild.state == READY)
                    .order_by(Prebuild.finished_at.desc()).limit(1)) if configs else None


def seed_option(prebuild: Prebuild) -> dict:
    """What an environment made from ``prebuild`` keeps in its options (``prebuild``)."""
    return {"id": prebuild.id, "env_name": prebuild.env_name, "commit": prebuild.commit,
            "at": (prebuild.finished_at or utcnow()).isoformat()}


def finished(s: Session, env: Environment, commit: str, keyring: Keyring,
             concurrent: int = CONCURRENT_RUNS) -> RunEnded:
    """The run in ``env`` is ready at ``commit``: it becomes the newest prebuild, its
    environment is removed keeping its storage, older prebuilds beyond the configuration's
    ``keep`` are pruned, and queued runs start in its place."""
    run = s.get(Prebuild, env.prebuild_id)
    row = s.get(Environment, env.id)
    if row is not None:
        row.desired_state, row.keep_volume = "deleted", True
    if run is None:
        return RunEnded([env.id], [])
    run.state, run.commit, run.finished_at, run.message = READY, commit, utcnow(), ""
    run.log = _log(s, env.id)
    s.flush()
    return RunEnded([env.id, *dispatch(s, keyring, concurrent)], _prune(s, run.config_id))


def failed(s: Session, env: Environment, message: str, keyring: Keyring, concurrent: int = CONCURRENT_RUNS) -> RunEnded:
    """The run in ``env`` failed (``message``, the failing step's): its environment and
    storage go, the prebuilds before it stay in use."""
    run = s.get(Prebuild, env.prebuild_id)
    row = s.get(Environment, env.id)
    if row is not None:
        row.desired_state, row.keep_volume = "deleted", False
    if run is not None:
        run.state, run.message, run.finished_at = FAILED, message[:4000], utcnow()
        run.log = _log(s, env.id)
    s.flush()
    return RunEnded([env.id, *dispatch(s, keyring, concurrent)], [])


def _log(s: Session, env_id: str) -> str:
    """The run's events as lines of text (they go with its environment)."""
    lines = [f"{e.ts:%H:%M:%S} {e.step} {e.status}" + (f": {e.message}" if e.message else "")
             for e in events_after(s, env_id, 0, limit=5000)]
    return "\n".join(lines)[-MAX_LOG:]


def _prune(s: Session, config_id: str) -> list[Storage]:
    """Ready prebuilds of ``config_id`` beyond its ``keep`` that no create still copies from,
    marked removed: their storage is the caller's to remove."""
    config = s.get(PrebuildConfig, config_id)
    ready = list(s.scalars(select(Prebuild).where(Prebuild.config_id == config_id, Prebuild.state == READY)
                           .order_by(Prebuild.finished_at.desc())))
    surplus = ready[config.keep if config else 0:]
    owner = config.owner_id if config else 0
    return [Storage(p.env_id, owner, p.env_name) for p in surplus if _release(s, p)]


def _release(s: Session, prebuild: Prebuild) -> bool:
    """Mark ``prebuild`` removed unless a create of its owner's still has to copy it."""
    config = s.get(PrebuildConfig, prebuild.config_id)
    if config is not None:
        waiting = s.scalars(select(Environment).where(Environment.owner_id == config.owner_id,
                                                      Environment.started_at.is_(None)))
        if any(((e.options or {}).get("prebuild") or {}).get("id") == prebuild.id for e in waiting):
            return False
    prebuild.state = REMOVED
    return True


def delete_config(s: Session, user: User, config: PrebuildConfig) -> list[Storage]:
    """Delete ``config`` and its prebuilds (environments made from them keep their homes);
    the storage the caller removes. Refused while a run works or a create still copies."""
    if s.scalar(select(Prebuild.id).where(Prebuild.config_id == config.id, Prebuild.state == RUNNING)):
        raise Conflict("a prebuild of it is running; delete it when the run has ended")
    ready = list(s.scalars(select(Prebuild).where(Prebuild.config_id == config.id, Prebuild.state == READY)))
    if not all(_release(s, p) for p in ready):
        raise Conflict("an environment is being made from one of its prebuilds; delete it in a moment")
    audit.record(s, user, "prebuild.delete", config.repo_url, config.branch)
    gone = [Storage(p.env_id, config.owner_id, p.env_name) for p in ready]
    s.delete(config)
    return gone

