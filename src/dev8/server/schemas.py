"""Request and response bodies of the REST API."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from dev8.durations import MAX_IDLE_TIMEOUT

MAX_ROW_ID = 2**63 - 1  # the largest id a database integer column holds


def _check_text(value: object) -> object:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("is not valid Unicode text (it holds a lone surrogate)") from None
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_text(item)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k)
            _check_text(v)
    return value


class ValidationIssue(BaseModel):
    type: str
    loc: list[str | int]
    msg: str


class ErrorOut(BaseModel):
    """Every error the API answers: a sentence and the request field at fault when there is
    one; a malformed request also lists every issue it has."""
    detail: str
    field: str | None = None
    issues: list[ValidationIssue] | None = None


ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorOut, "description": text} for code, text in {
        400: "The body is not valid JSON", 401: "No token, or an invalid or expired one",
        403: "Not allowed (not an admin, a missing CSRF token)", 404: "No such thing, or not yours",
        409: "Conflicts with what exists (a name taken, a concurrent change)", 413: "The body is too large",
        422: "Invalid input: `detail` says what, `field` names it", 429: "Too many attempts: see Retry-After",
        503: "The runtime (Docker engine…) does not answer: `detail` says why",
    }.items()}


class RequestBody(BaseModel):
    """A request body: every text in it must be storable (valid Unicode)."""

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, value: object) -> object:
        return _check_text(value)


class SetupIn(RequestBody):
    token: str = Field(max_length=200)
    email: str = Field(max_length=254)
    password: str = Field(min_length=8, max_length=1024)


class LoginIn(RequestBody):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)


class TokenOut(BaseModel):
    token: str


class UserOut(BaseModel):
    email: str
    username: str
    is_admin: bool


class KeyIn(RequestBody):
    public_key: str = Field(max_length=16384)
    name: str | None = Field(default=None, max_length=128)


class KeyOut(BaseModel):
    id: int
    name: str
    fingerprint: str
    created_at: datetime


class GeneratedKeyIn(RequestBody):
    name: str | None = Field(default=None, max_length=128)


class GeneratedKeyOut(BaseModel):
    key: KeyOut
    private_key: str = Field(description="OpenSSH private key; dev8 keeps no copy")


class ApiTokenIn(RequestBody):
    name: str = Field(max_length=64)
    expires_in: str = Field(default="30d", max_length=16, description="e.g. 12h, 30d, 2w (at most 366d)")


class ApiTokenOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    current: bool = Field(default=False, description="the token (or browser session) of this very request")


class NewApiTokenOut(ApiTokenOut):
    token: str = Field(description="shown once; only its hash is stored")


class AdminUserOut(BaseModel):
    id: int
    email: str
    username: str
    is_admin: bool
    disabled: bool
    created_at: datetime


class AdminUserIn(RequestBody):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    is_admin: bool = False


class PasswordIn(RequestBody):
    password: str = Field(max_length=1024)


class AdminUserPatch(RequestBody):
    disabled: bool | None = None
    is_admin: bool | None = None


class DotfilesIn(RequestBody):
    url: str = Field(max_length=2048, description="https://host/owner/dotfiles.git")
    branch: str | None = Field(default=None, max_length=200)


class DotfilesOut(BaseModel):
    url: str | None = Field(description="cloned into each new environment's ~/.dotfiles; null: none")
    branch: str | None


class QuotaIn(RequestBody):
    """A user's own caps; null: the server's default; 0 (or "0"): no cap."""
    running: int | None = Field(default=None, ge=0, le=10_000, description="environments running at once")
    environments: int | None = Field(default=None, ge=0, le=10_000, description="environments in all")
    cpus: float | None = Field(default=None, ge=0, le=100_000, description="CPUs of the running ones together")
    memory: str | None = Field(default=None, max_length=16, description="memory of the running ones together, e.g. 64g")


class QuotaUsed(BaseModel):
    environments: int
    running: list[str]
    cpus: float
    memory: str


class QuotaOut(BaseModel):
    """Caps in effect (0 / "": none) and what is in use."""
    running: int
    environments: int
    cpus: float
    memory: str
    used: QuotaUsed


class AuditOut(BaseModel):
    id: int
    ts: datetime
    actor: str
    action: str
    target: str
    detail: str


class SecretIn(RequestBody):
    value: str


class SecretOut(BaseModel):
    name: str
    created_at: datetime
    updated_at: datetime


class GitProviderIn(RequestBody):
    kind: str = Field(max_length=16, description="github, gitlab or bitbucket")
    host: str | None = Field(default=None, max_length=260, description="self-hosted host; default: the public one")
    secret: str | None = Field(default=None, max_length=64,
                               description="secret holding the token; default GITHUB_TOKEN…")
    username: str | None = Field(default=None, max_length=100,
                                 description="e.g. a Bitbucket username for app passwords")


class EnvironmentIn(RequestBody):
    name: str = Field(max_length=64)
    image: str | None = Field(default=None, max_length=255)
    cpus: float | None = None
    memory: str | None = Field(default=None, max_length=16)
    secrets: list[str] = Field(default_factory=list, max_length=64)
    repo: str | None = Field(default=None, max_length=2048)
    branch: str | None = Field(default=None, max_length=200)
    git: list[GitProviderIn] = Field(default_factory=list, max_length=16)
    ai: dict[str, str] = Field(default_factory=dict, description="anthropic/gemini/copilot → secret name")
    extensions: list[str] = Field(default_factory=list, max_length=50,
                                  description="VS Code extensions: publisher.name or a .vsix path")
    new_secrets: dict[str, str] = Field(default_factory=dict, max_length=16,
                                        description="secrets to set (or replace) together with the environment, "
                                                    "e.g. a token typed into the create form: name → value")
    idle_timeout: int | None = Field(default=None, ge=0, le=MAX_IDLE_TIMEOUT,
                                     description="seconds without use before dev8 stops it: 0 never, 60 to 30 "
                                                 "days; unset: the server's default")
    env: dict[str, str] = Field(default_factory=dict, max_length=64,
                                description="environment variables (not secret) in every shell and in VS Code")
    template: str | None = Field(default=None, max_length=32,
                                 description="a template (GET /templates) whose values are the defaults; a value it "
                                             "does not let users change may not be given")
    prebuild: bool = Field(default=True, description="start from your newest ready prebuild of the repository, branch "
                                                     "and image (GET /prebuilds), if there is one")


class PrebuildIn(RequestBody):
    repo: str = Field(max_length=2048)
    branch: str | None = Field(default=None, max_length=200, description="default: the repository's default branch")
    image: str | None = Field(default=None, max_length=255, description="default: the server's default image")
    cpus: float | None = None
    memory: str | None = Field(default=None, max_length=16)
    git: list[GitProviderIn] = Field(default_factory=list, max_length=16)
    secrets: list[str] = Field(default_factory=list, max_length=64,
                               description="your secrets the run may use (a git login's token is added by itself)")
    keep: int = Field(default=2, ge=1, le=10, description="how many ready prebuilds to keep, newest first")
    every: int = Field(default=0, ge=0, le=30 * 86400,
                       description="seconds between scheduled runs: 0 (none) or 3600 to 30 days")


class PrebuildRunOut(BaseModel):
    id: str
    state: str = Field(description="queued, running, ready, failed or removed")
    commit: str
    message: str = Field(description="why it failed (the failing step's output); empty otherwise")
    environment: str = Field(description="the environment the run works in: follow "
                                         "/environments/{environment}/events while it runs")
    log: str = Field(description="its steps, once it has ended")
    created_at: datetime
    finished_at: datetime | None


class PrebuildOut(BaseModel):
    id: str
    repo: str
    branch: str | None
    image: str
    cpus: float
    memory: str
    git_hosts: list[str]
    secrets: list[str]
    keep: int
    every: int
    created_at: datetime
    runs: list[PrebuildRunOut] = Field(description="its latest runs, newest first")
    webhook_secret: str | None = Field(default=None, description="the secret its push webhooks prove themselves "
                                                                 "with: only in the answer that made it")


class HookOut(BaseModel):
    runs: list[str] = Field(description="the prebuild runs the push queued (or the ones already waiting)")


class ImageJobOut(BaseModel):
    state: str = Field(description="running, done or failed")
    progress: str = Field(description="the latest progress line, e.g. 'step 24 of 34 (RUN), 3 min 10 s so far'")
    error: str
    started_at: datetime
    finished_at: datetime | None


class ImageOut(BaseModel):
    name: str
    description: str
    status: str = Field(description="ready, buildable (dev8's own, built on first use), pullable or unavailable")
    note: str = Field(description="the status in a sentence")
    default: bool
    built_here: bool = Field(description="one of dev8's own images, built from images/Dockerfile (others are pulled)")
    job: ImageJobOut | None = Field(default=None, description="the latest build or pull an admin started here")
    push_job: ImageJobOut | None = Field(default=None, description=(
        "the latest push to a registry an admin started here; when done, its progress names what was pushed"))


class ImageFetchIn(RequestBody):
    image: str = Field(max_length=255, description="dev8's own image (built) or any other (pulled)")


class ImagePushIn(RequestBody):
    image: str = Field(max_length=255, description="an image on this server's Docker engine, e.g. dev8/base:latest")
    registry: str = Field(max_length=255, description="HOST[:PORT][/PREFIX], e.g. myacr.azurecr.io/dev8; the image "
                                                      "keeps its path and tag under it")
    username: str = Field(default="", max_length=255, description="e.g. an ACR token's name; empty: the engine's "
                                                                  "own `docker login`")
    password: str = Field(default="", max_length=4096, description="the token's password; used for this push only, "
                                                                   "never stored or shown")


class TemplateIn(RequestBody):
    description: str = Field(default="", max_length=500)
    image: str | None = Field(default=None, max_length=255)
    cpus: float | None = None
    memory: str | None = Field(default=None, max_length=16)
    idle_timeout: int | None = Field(default=None, ge=0, le=MAX_IDLE_TIMEOUT)
    repo: str | None = Field(default=None, max_length=2048)
    branch: str | None = Field(default=None, max_length=200)
    git: list[GitProviderIn] = Field(default_factory=list, max_length=16)
    extensions: list[str] = Field(default_factory=list, max_length=50)
    env: dict[str, str] = Field(default_factory=dict, max_length=64)
    editable: list[str] = Field(default_factory=list, max_length=16,
                                description="the fields users may change (image, cpus, memory, idle_timeout, repo, "
                                            "branch, git, extensions, env); the others are fixed where set")


class TemplateOut(BaseModel):
    name: str
    description: str
    image: str | None = None
    cpus: float | None = None
    memory: str | None = None
    idle_timeout: int | None = None
    repo: str | None = None
    branch: str | None = None
    git: list[dict] = Field(default_factory=list)
    extensions: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    editable: list[str]


class ValidationOut(BaseModel):
    valid: bool
    detail: str | None = None
    field: str | None = Field(default=None, description="the request field at fault, e.g. name or git.0.host")


class EnvironmentEdit(RequestBody):
    """Fields left out stay as they are."""
    image: str | None = Field(default=None, max_length=255)
    cpus: float | None = None
    memory: str | None = Field(default=None, max_length=16)
    idle_timeout: int | None = Field(default=None, ge=0, le=MAX_IDLE_TIMEOUT,
                                     description="seconds without use before dev8 stops it: 0 never; null: the "
                                                 "server's default")


class ShareIn(RequestBody):
    level: str = Field(max_length=16, description="private, authenticated or public")


class EnvironmentOut(BaseModel):
    id: str
    name: str
    owner: str
    state: str
    desired_state: str
    status_message: str
    status_detail: str = Field(description="the raw text behind a failure's status_message (the runtime's own "
                                           "words); empty otherwise")
    image: str
    cpus: float
    memory: str
    secrets: list[str]
    repo: str | None
    git_hosts: list[str]
    created_at: datetime
    started_at: datetime | None
    last_used_at: datetime | None
    idle_timeout: int = Field(description="seconds without use before dev8 stops it (0: never), its own or the "
                                          "server's default")
    stop_reason: str = Field(description="why dev8 stopped it by itself (idle, session limit); empty otherwise")
    template: str | None = Field(description="the template it was created from")
    apps: list[str] | None = Field(description="what its image offers in the browser besides the terminal "
                                               "(\"vscode\" or nothing); null until it has started once")
    env: dict[str, str] = Field(description="its environment variables (not secret)")
    prebuild: str | None = Field(default=None, description="the commit of the prebuild its home was copied from")
    ssh_command: str
    vscode_url: str
    terminal_url: str


class EventOut(BaseModel):
    id: int
    ts: datetime
    step: str
    status: str
    message: str


class SshInfo(BaseModel):
    host: str
    port: int
    host_key: str
