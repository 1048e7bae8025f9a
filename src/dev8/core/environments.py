"""Environments service: what users ask for (desired state) and what they see.

Functions here only write the store; the reconciler does the runtime work. Every check
happens before the first write, so a rejected request leaves nothing behind.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncssh
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dev8.core import audit, quotas
from dev8.core.crypto import Keyring
from dev8.core.errors import Conflict, Invalid, NotFound
from dev8.core.notify import announce
from dev8.core.quotas import Quota, parse_memory
from dev8.core.secrets import check_secrets_exist, seal_env_key, set_secret
from dev8.durations import IDLE_TIMEOUT_RULE, idle_timeout_ok
from dev8.envimage import dev8_env as layout
from dev8.names import check_env_name, check_image_reference, check_secret_name
from dev8.runtimes.base import EnvSpec, object_name
from dev8.store.models import Environment, Event, Meta, Template, User, utcnow

PROVIDER_HOSTS = {"github": "github.com", "gitlab": "gitlab.com", "bitbucket": "bitbucket.org"}
DEFAULT_PROVIDER_SECRETS = {"github": "GITHUB_TOKEN", "gitlab": "GITLAB_TOKEN", "bitbucket": "BITBUCKET_TOKEN"}
AI_KINDS = ("anthropic", "gemini", "copilot")
HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?$")
BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$")
REPO_RE = re.compile(r"^https?://[^\s@/]+(:\d+)?/[^\s]+$")
GIT_USERNAME_RE = re.compile(r"^[A-Za-z0-9._@+-]{1,100}$")
# A marketplace id (publisher.name[@version]) or a .vsix path inside the environment.
EXTENSION_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*\.[A-Za-z0-9][A-Za-z0-9._-]*(@[0-9A-Za-z.+-]+)?"  # publisher.name
                          r"|[~/A-Za-z0-9._-]{1,300}\.vsix)$")  # or a .vsix path
MAX_EVENTS_PER_ENV = 500
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Variables dev8 or the system set and a template must not replace.
RESERVED_VARS = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "BASH_ENV", "ENV", "LD_PRELOAD", "LD_LIBRARY_PATH",
                 "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "GH_CONFIG_DIR",
                 "GLAB_CONFIG_DIR", "DEV8_RUN_DIR", "DEV8_WORKSPACE"}


def check_cpus(cpus: float) -> float:
    if not 0.1 <= cpus <= 64:
        raise Invalid("cpus must be between 0.1 and 64", field="cpus")
    return cpus


def check_image(image: str) -> str:
    try:
        check_image_reference(image)
    except ValueError as exc:
        raise Invalid(str(exc), field="image") from None
    return image


def check_idle_timeout(seconds: int | None) -> int | None:
    """None (the server's default), or what :func:`dev8.durations.idle_timeout_ok` allows."""
    if seconds is not None and not idle_timeout_ok(seconds):
        raise Invalid(f"idle timeout must be {IDLE_TIMEOUT_RULE}", field="idle_timeout")
    return seconds


@dataclass(frozen=True)
class Limits:
    default_image: str
    default_cpus: float
    default_memory: str
    max_secret_bytes: int = 65536
    quota: Quota = Quota()  # the server's default caps per user


def workspace_folder(env: Environment) -> str:
    """The folder VS Code opens: the cloned repository's (as `dev8-env clone` names it),
    else ~/workspace."""
    url = ((env.options or {}).get("repo") or {}).get("url")
    if not url:
        return f"{layout.HOME}/workspace"
    return f"{layout.HOME}/workspace/{layout.clone_folder(url)}"


# In an environment's options while its owner has agreed to start with an empty home
# (the old one is gone); cleared once the new storage is made.
EMPTY_HOME_OK = "empty_home_ok"


def spec_of(env: Environment, installation: str) -> EnvSpec:
    # Once it has been ready, its storage exists: finding none means it was lost.
    expected = env.started_at is not None and not (env.options or {}).get(EMPTY_HOME_OK)
    prebuild = (env.options or {}).get("prebuild")
    seed = object_name(installation, env.owner_id, prebuild["env_name"]) if prebuild and not expected else None
    return EnvSpec(env_id=env.id, owner_id=env.owner_id, name=env.name, image=env.image, cpus=env.cpus,
                   memory_bytes=parse_memory(env.memory), control_public_key=env.control_public_key,
                   installation=installation, storage_expected=expected, seed=seed)


INSTALLATION_KEY = "installation_id"


def installation_id(s: Session) -> str:
    """A short random id of this dev8 installation (database), made on first use."""
    row = s.get(Meta, INSTALLATION_KEY)
    if row is None:
        row = Meta(key=INSTALLATION_KEY, value=secrets.token_hex(3))
        s.add(row)
        s.flush()
    return row.value


def build_options(
    *, repo: str | None = None, branch: str | None = None, git: list[dict] | None = None,
    ai: dict[str, str] | None = None, extensions: list[str] | None = None, env: dict[str, str] | None = None,
) -> tuple[dict, list[str]]:
    """Validate the repository, git providers, AI key choices, extensions and environment
    variables (not secret: in every shell); returns the options to store and the secret
    names they refer to. Pure: raises Invalid, touches nothing."""
    options: dict = {}
    referenced: list[str] = []
    if repo:
        if len(repo) > 2048 or not REPO_RE.fullmatch(repo):
            raise Invalid(f"invalid repository URL {repo!r}: use https://host/owner/repo.git", field="repo")
        if branch is not None and not BRANCH_RE.fullmatch(branch):
            raise Invalid(f"invalid branch name {branch!r}", field="branch")
        options["repo"] = {"url": repo, "branch": branch}
    elif branch:
        raise Invalid("a branch needs a repository", field="branch")
    providers: list[dict[str, object]] = []
    for i, p in enumerate(git or []):
        kind = str(p.get("kind", "")).lower()
        if kind not in PROVIDER_HOSTS:
            raise Invalid(f"unknown git provider {kind!r} (github, gitlab, bitbucket)", field=f"git.{i}.kind")
        host = str(p.get("host") or PROVIDER_HOSTS[kind]).lower()
        if not HOST_RE.fullmatch(host):
            raise Invalid(f"invalid git host {host!r}", field=f"git.{i}.host")
        port = host.rpartition(":")[2] if ":" in host else None
        if port is not None and not 1 <= int(port) <= 65535:
            raise Invalid(f"invalid port {port} in git host {host!r}: a port is 1 to 65535", field=f"git.{i}.host")
        secret = str(p.get("secret") or DEFAULT_PROVIDER_SECRETS[kind])
        try:
            check_secret_name(secret)
        except ValueError as exc:
            raise Invalid(str(exc), field=f"git.{i}.secret") from None
        username = p.get("username")
        if username is not None and not GIT_USERNAME_RE.fullmatch(str(username)):
            raise Invalid(f"invalid git username {username!r}", field=f"git.{i}.username")
        if any(q["host"] == host for q in providers):
            raise Invalid(f"git host {host} given twice", field=f"git.{i}.host")
        providers.append({"kind": kind, "host": host, "secret": secret, "username": username})
        referenced.append(secret)
    if providers:
        options["git"] = {"providers": providers}
    chosen = {}
    for kind, secret in (ai or {}).items():
        if kind not in AI_KINDS:
            raise Invalid(f"unknown AI key {kind!r} ({', '.join(AI_KINDS)})", field="ai")
        if secret:
            try:
                check_secret_name(secret)
            except ValueError as exc:
                raise Invalid(str(exc), field=f"ai.{kind}") from None
            chosen[kind] = secret
            referenced.append(secret)
    if chosen:
        options["ai"] = chosen
    for ext in extensions or []:
        if not EXTENSION_RE.fullmatch(ext) or ".." in ext:
            raise Invalid(f"invalid extension {ext!r}: use publisher.name[@version] or a path to a .vsix",
                          field="extensions")
    if extensions:
        options["extensions"] = list(dict.fromkeys(extensions))
    for var, value in (env or {}).items():
        if not ENV_VAR_RE.fullmatch(var) or var in RESERVED_VARS or var.startswith("DEV8_"):
            raise Invalid(f"invalid environment variable name {var!r}" + (" (dev8 sets it)" if ENV_VAR_RE.fullmatch(var)
                          else ": letters, digits and _"), field=f"env.{var}")
        if not isinstance(value, str) or len(value) > 4096 or any(c in value for c in "\0\n\r"):
            raise Invalid(f"invalid value for {var}: one line of text, at most 4096 characters", field=f"env.{var}")
    if env:
        options["env"] = dict(sorted(env.items()))
    return options, referenced


def create_environment(
    s: Session, keyring: Keyring, user: User, *, name: str, limits: Limits,
    image: str | None = None, cpus: float | None = None, memory: str | None = None,
    secret_names: list[str] | None = None, repo: str | None = None, branch: str | None = None,
    git: list[dict] | None = None, ai: dict[str, str] | None = None, extensions: list[str] | None = None,
    new_secrets: dict[str, str] | None = None, idle_timeout: int | None = None, env: dict[str, str] | None = None,
    template: str | None = None, from_prebuild: bool = False, prebuild_id: str | None = None,
) -> Environment:
    """Validate everything, then write the environment row, its sealed control key and the
    ``new_secrets`` (name → value, set or replaced first, e.g. a token typed into the create
    form) in the caller's transaction: an error anywhere leaves none of it behind.
    ``template`` names the template the values came from (core.templates.resolve).
    ``from_prebuild``: start from the newest ready prebuild of the repository, if the user
    has one (core.prebuilds). ``prebuild_id``: the environment a prebuild run works in."""
    try:
        check_env_name(name)
    except ValueError as exc:
        raise Invalid(str(exc), field="name") from None
    image = check_image((image or limits.default_image).strip())
    cpus = check_cpus(limits.default_cpus if cpus is None else cpus)
    memory = (memory or limits.default_memory).strip().lower()
    parse_memory(memory)
    check_idle_timeout(idle_timeout)
    options, referenced = build_options(repo=repo, branch=branch, git=git, ai=ai, extensions=extensions, env=env)
    if prebuild_id:  # the user's dotfiles go to each home made from it, not into the prebuild
        options["prebuild_run"] = True
    else:
        options.update(dotfiles_snapshot(user))  # the owner's dotfiles as they are now: this environment's
    if from_prebuild and repo:
        from dev8.core import prebuilds  # it makes environments with this function
        ahead = prebuilds.newest_ready(s, user.id, repo, branch, image)
        if ahead is not None:
            options["prebuild"] = prebuilds.seed_option(ahead)
    if template:
        options["template"] = template
    secret_names = sorted(set(secret_names or []) | set(referenced))
    for secret, value in (new_secrets or {}).items():
        try:
            set_secret(s, keyring, user, name=secret, value=value, max_bytes=limits.max_secret_bytes)
        except Invalid as exc:
            raise Invalid(str(exc), field=f"new_secrets.{secret}") from None
        secret_changed(s, user, secret)
    check_secrets_exist(s, user, secret_names)
    if s.scalar(select(Environment.id).where(Environment.owner_id == user.id, Environment.name == name)):
        raise Conflict(f"environment {name!r} already exists", field="name")
    if not prebuild_id:  # prebuild runs count against the server's cap of runs, not their owner's quota
        quotas.check(s, user, quotas.quota_for(s, user, limits.quota), name=name, cpus=cpus, memory=memory, new=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"dev8-control-{name}")
    created = Environment(owner_id=user.id, name=name, image=image, cpus=cpus, memory=memory,
                          secret_names=secret_names, options=options, desired_state="running",
                          observed_state="pending", idle_timeout=idle_timeout, prebuild_id=prebuild_id,
                          control_public_key=key.export_public_key("openssh").decode().strip())
    s.add(created)
    try:
        s.flush()
    except IntegrityError:  # created by a concurrent request since the check above
        raise Conflict(f"environment {name!r} already exists", field="name") from None
    s.add(seal_env_key(keyring, created.id, key.export_private_key("openssh")))
    add_event(s, created.id, "request", "ok", "environment requested")
    audit.record(s, user, "env.create", name, image)
    return created


def dotfiles_snapshot(user: User) -> dict:
    """The user's dotfiles repository as an environment's option (what ``dev8-env configure``
    reads): ``{"dotfiles": {"url", "branch"}}``, or nothing."""
    if not user.dotfiles_url:
        return {}
    return {"dotfiles": {"url": user.dotfiles_url, "branch": user.dotfiles_branch}}


def list_environments(s: Session, user: User) -> list[Environment]:
    """The user's environments (not the ones prebuild runs work in)."""
    return list(s.scalars(select(Environment).where(Environment.owner_id == user.id, Environment.prebuild_id.is_(None))
                          .order_by(Environment.name)))


def get_environment(s: Session, user: User, name: str, *, include_deleting: bool = False) -> Environment:
    """The user's environment; anyone else's answers exactly like a missing one.
    One being deleted counts as gone unless ``include_deleting`` (to follow its events)."""
    env = s.scalar(select(Environment).where(Environment.owner_id == user.id, Environment.name == name))
    if env is None or (env.desired_state == "deleted" and not include_deleting):
        raise NotFound(f"no environment {name!r}")
    return env


def _check_quota(s: Session, env: Environment, limits: Limits) -> None:
    """Starting a stopped ``env`` must fit its owner's caps (a running one is counted)."""
    if env.desired_state != "running":
        owner = s.get(User, env.owner_id)
        assert owner is not None
        quotas.check(s, owner, quotas.quota_for(s, owner, limits.quota), name=env.name, cpus=env.cpus,
                     memory=env.memory, new=False)


def start_refusal(s: Session, env: Environment, limits: Limits) -> str | None:
    """Why starting ``env`` now would be refused (a quota), before anything is announced;
    None when it may start."""
    try:
        _check_quota(s, env, limits)
    except Conflict as exc:
        return str(exc)
    return None


def request_start(s: Session, env: Environment, *, limits: Limits, empty_home: bool = False) -> None:
    """Start it; ``empty_home``: its home storage is gone and the owner agrees to start
    with an empty one (otherwise that is an error asking for exactly this)."""
    _check_quota(s, env, limits)
    env.desired_state = "running"
    env.generation += 1
    env.updated_at = utcnow()
    env.stop_reason = ""
    if empty_home:
        env.options = {**(env.options or {}), EMPTY_HOME_OK: True}
    add_event(s, env.id, "request", "ok", "start requested" + (" with an empty home" if empty_home else ""))
    _audit(s, env, "env.start", "empty home" if empty_home else "")


def start_on_connect(s: Session, env: Environment, how: str, limits: Limits) -> bool:
    """Its owner connects (``how``: "SSH", "VS Code", "a preview") to a stopped
    environment: start it, as ``dev8 start`` would. Whether a start was requested now."""
    if env.desired_state != "stopped":
        return False
    request_start(s, env, limits=limits)
    add_event(s, env.id, "request", "ok", f"started by a connection ({how})")
    return True


def ready_or_failed(env: Environment) -> str | None:
    """For a connection waiting on a start: None while it starts, "" once it is ready, else
    why it will not be (an error, stopped again, deleted)."""
    if env.desired_state != "running":
        return f"{env.name} was {'deleted' if env.desired_state == 'deleted' else 'stopped'} meanwhile"
    if env.observed_state == "running" and env.configured_generation == env.generation:
        return ""
    if env.observed_state == "error":
        return f"{env.name} failed to start: {env.status_message}"
    if env.observed_state == "unreachable":  # not starting: its backend is down (tried as it is)
        return f"{env.name} is unreachable: {env.status_message}"
    return None


def request_reconfigure(s: Session, env: Environment) -> None:
    """Push configuration and secrets again, without a restart."""
    env.generation += 1
    env.updated_at = utcnow()
    add_event(s, env.id, "request", "ok", "reconfigure requested")
    _audit(s, env, "env.reconfigure")


def secret_changed(s: Session, user: User, name: str) -> list[str]:
    """Reconfigure the user's running environments that use secret ``name``; their names."""
    changed = []
    for env in list_environments(s, user):
        if env.desired_state == "running" and name in (env.secret_names or []):
            request_reconfigure(s, env)
            changed.append(env.name)
    return changed


def request_stop(s: Session, env: Environment, *, reason: str = "") -> None:
    """Stop it: asked by its owner, or (``reason``, e.g. "stopped after 30 min idle") by
    dev8 itself, whose caller records that in the audit log."""
    env.desired_state = "stopped"
    env.updated_at = utcnow()
    env.stop_reason = reason
    add_event(s, env.id, "request", "ok", reason or "stop requested")
    if not reason:
        _audit(s, env, "env.stop")


def request_restart(s: Session, env: Environment, *, limits: Limits) -> None:
    _check_quota(s, env, limits)
    env.desired_state = "running"
    env.restart_requested = True
    env.generation += 1
    env.updated_at = utcnow()
    env.stop_reason = ""
    add_event(s, env.id, "request", "ok", "restart requested")
    _audit(s, env, "env.restart")


KEEP = object()  # edit_environment: this field stays as it is


def edit_environment(s: Session, env: Environment, *, limits: Limits, image: str | None = None,
                     cpus: float | None = None, memory: str | None = None, idle_timeout: object = KEEP) -> list[str]:
    """Change what ``env`` runs on; the names of the fields that changed. The image, CPUs
    and memory change only while it is stopped or in error (they take effect when it
    starts: one in error that should run is retried at once, as Retry would); the idle
    timeout (None: the server's default) any time. A field its template does not let users
    change stays as the template set it. Everything is checked before anything is written."""
    wanted: dict[str, Any] = {}
    if image is not None:
        wanted["image"] = check_image(image.strip())
    if cpus is not None:
        wanted["cpus"] = check_cpus(cpus)
    if memory is not None:
        parse_memory(memory.strip().lower())
        wanted["memory"] = memory.strip().lower()
    if idle_timeout is not KEEP:
        wanted["idle_timeout"] = check_idle_timeout(idle_timeout)  # type: ignore[arg-type]
    changed = {k: v for k, v in wanted.items() if getattr(env, k) != v}
    template = _template_of(s, env)
    for field in changed:
        if template is not None and field in template.spec and field not in template.editable:
            raise Invalid(f"template {template.name} sets {field} and does not let it be changed", field=field)
    runs_on = set(changed) - {"idle_timeout"}
    in_error = env.observed_state == "error"
    if runs_on and env.desired_state != "stopped" and not in_error:
        field = sorted(runs_on)[0]
        raise Conflict(f"{env.name} is {env.observed_state}: stop it first ({', '.join(sorted(runs_on))} change when "
                       "it starts)", field=field)
    if runs_on and env.desired_state == "running":
        owner = s.get(User, env.owner_id)
        assert owner is not None
        quotas.check(s, owner, quotas.quota_for(s, owner, limits.quota), name=env.name,
                     cpus=float(changed.get("cpus", env.cpus)), memory=str(changed.get("memory", env.memory)),
                     new=False)
    if not changed:
        return []
    for field, value in changed.items():
        setattr(env, field, value)
    env.updated_at = utcnow()
    summary = ", ".join(f"{k} {_shown(k, v)}" for k, v in changed.items())
    add_event(s, env.id, "request", "ok", f"edited: {summary}")
    _audit(s, env, "env.edit", summary)
    if runs_on and env.desired_state == "running":  # in error: every step again, on what it runs on now
        request_restart(s, env, limits=limits)
    return list(changed)


def _shown(field: str, value: object) -> str:
    if field == "idle_timeout":
        return "server default" if value is None else "never" if value == 0 else f"{value}s"
    return str(value)


def _template_of(s: Session, env: Environment) -> Template | None:
    name = (env.options or {}).get("template")
    return s.scalar(select(Template).where(Template.name == name)) if name else None


def request_delete(s: Session, env: Environment, *, keep_volume: bool) -> None:
    env.desired_state = "deleted"
    env.keep_volume = keep_volume
    env.updated_at = utcnow()
    add_event(s, env.id, "request", "ok", "delete requested" + (" (volume kept)" if keep_volume else ""))
    _audit(s, env, "env.delete", "volume kept" if keep_volume else "volume removed")


def _audit(s: Session, env: Environment, action: str, detail: str = "") -> None:
    audit.record(s, s.get(User, env.owner_id), action, env.name, detail)


def add_event(s: Session, env_id: str, step: str, status: str, message: str = "",
              at: datetime | None = None) -> Event:
    """``at``: when it happened, if earlier than now (an event written with a later one)."""
    ev = Event(env_id=env_id, step=step, status=status, message=message[:2000], ts=at or utcnow())
    s.add(ev)
    s.flush()
    announce(s, env_id)  # other replicas' streams hear of it when this commits
    return ev


EVENTS_BATCH = 200  # events read at once


def events_after(s: Session, env_id: str, after: int = 0, limit: int = EVENTS_BATCH) -> list[Event]:
    return list(s.scalars(select(Event).where(Event.env_id == env_id, Event.id > after)
                          .order_by(Event.id).limit(limit)))


def recent_events(s: Session, env_id: str, limit: int) -> list[Event]:
    """The last ``limit`` events, oldest first."""
    newest = s.scalars(select(Event).where(Event.env_id == env_id).order_by(Event.id.desc()).limit(limit))
    return list(reversed(list(newest)))
