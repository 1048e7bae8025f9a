"""The subset of a repository's devcontainer.json (containers.dev) that fits dev8, as a
plan the environment applies (pure: parsing and deciding, no I/O).

Honoured: ``image`` or ``build`` (``dockerfile``, ``context``, ``args``: the environment
moves to that image with dev8's layer on top, on runtimes that build), ``containerEnv``/
``remoteEnv`` (variables in every shell), ``forwardPorts`` and ``portsAttributes`` labels
(shown in the ports list), ``onCreateCommand``, ``updateContentCommand`` and
``postCreateCommand`` (once per home, in that order; a prebuild runs the first two ahead of
time), ``postStartCommand`` (every start),
``customizations.vscode.extensions`` and ``.settings``. Everything else is reported as a
warning, never silently ignored: ``features``, Docker Compose, mounts and run arguments,
and a ``remoteUser`` other than dev8's ``dev``.
"""
from __future__ import annotations

import posixpath
import shlex
from dataclasses import asdict, dataclass, field

import json5

from dev8.core.environments import ENV_VAR_RE, RESERVED_VARS

LOCATIONS = (".devcontainer/devcontainer.json", ".devcontainer.json")
ONCE = ("onCreateCommand", "updateContentCommand", "postCreateCommand")
HONOURED = {"name", "containerEnv", "remoteEnv", "forwardPorts", "portsAttributes", *ONCE, "postStartCommand",
            "customizations", "remoteUser", "containerUser", "$schema", "otherPortsAttributes", "workspaceFolder",
            "image", "build", "dockerFile", "context"}
WHY_NOT = {
    "features": "dev container features come from OCI registries, which dev8 does not install",
    "dockerComposeFile": "Docker Compose is not supported", "service": "Docker Compose is not supported",
    "runServices": "Docker Compose is not supported", "mounts": "the home volume is the environment's storage",
    "runArgs": "dev8 runs the container itself", "appPort": "use forwardPorts (previews) instead",
    "postAttachCommand": "runs on every attach in VS Code's dev containers; dev8 has no attach step",
    "initializeCommand": "would run on dev8's own host, which repositories may not do",
}


class DevcontainerError(ValueError):
    """devcontainer.json cannot be read (not JSON with comments, or not an object)."""


@dataclass
class Plan:
    path: str
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[int, str] = field(default_factory=dict)       # forwarded port → label ("" for none)
    once: list[str] = field(default_factory=list)              # shell commands, once per home
    # How many of ``once`` are onCreateCommand's, then updateContentCommand's (the rest are
    # postCreateCommand's): a prebuild runs those two, each new home the rest.
    on_create: int = 0
    update_content: int = 0
    on_start: list[str] = field(default_factory=list)          # shell commands, every start
    extensions: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    image: str | None = None     # an image to run (with dev8's layer added)
    build: dict | None = None    # {"context": repo-relative folder, "dockerfile": path in it, "args": {…}}

    def to_options(self) -> dict:
        """What the environment's options keep (JSON: ports by string)."""
        doc = asdict(self)
        doc["ports"] = {str(k): v for k, v in self.ports.items()}
        return doc


def _commands(value: object, key: str, warnings: list[str]) -> list[str]:
    """A lifecycle command: a string (a shell), an array (one command and its arguments)
    or an object of named commands (run one after another here, not in parallel)."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list) and all(isinstance(a, str) for a in value):
        return [shlex.join(value)] if value else []
    if isinstance(value, dict):
        return [c for v in value.values() for c in _commands(v, key, warnings)]
    warnings.append(f"{key}: expected a string, an array of strings or an object of them")
    return []


def parse(text: str, path: str) -> Plan:
    try:
        doc = json5.loads(text)
    except ValueError as exc:
        raise DevcontainerError(f"{path} is not valid JSON with comments: {exc}") from None
    if not isinstance(doc, dict):
        raise DevcontainerError(f"{path}: expected an object")
    plan = Plan(path=path)
    warn = plan.warnings.append
    for key in sorted(doc):
        if key in WHY_NOT:
            warn(f"{key} is not used: {WHY_NOT[key]}")
        elif key not in HONOURED:
            warn(f"{key} is not supported by dev8 and is ignored")
    for key in ("containerEnv", "remoteEnv"):
        for var, value in (doc.get(key) or {}).items():
            if not isinstance(value, str) or "${" in value:
                warn(f"{key}.{var}: only plain text values are supported (no ${{…}} references)")
            elif not ENV_VAR_RE.fullmatch(var) or var in RESERVED_VARS or var.startswith("DEV8_"):
                warn(f"{key}.{var}: dev8 sets this variable itself")
            else:
                plan.env[var] = value
    attributes = doc.get("portsAttributes") or {}
    for port in doc.get("forwardPorts") or []:
        if isinstance(port, int) and 1 <= port <= 65535:
            label = (attributes.get(str(port)) or {}).get("label", "")
            plan.ports[port] = label if isinstance(label, str) else ""
        else:
            warn(f"forwardPorts: {port!r} is not a port of this environment (only numbers are)")
    for key in ONCE:
        commands = _commands(doc.get(key), key, plan.warnings) if key in doc else []
        plan.once += commands
        if key == "onCreateCommand":
            plan.on_create = len(commands)
        elif key == "updateContentCommand":
            plan.update_content = len(commands)
    if "postStartCommand" in doc:
        plan.on_start = _commands(doc["postStartCommand"], "postStartCommand", plan.warnings)
    vscode = ((doc.get("customizations") or {}).get("vscode") or {})
    plan.extensions = [e for e in vscode.get("extensions") or [] if isinstance(e, str) and not e.startswith("-")]
    settings = vscode.get("settings")
    plan.settings = settings if isinstance(settings, dict) else {}
    _image(doc, plan)
    for key in ("remoteUser", "containerUser"):
        if doc.get(key) not in (None, "dev"):
            warn(f"{key} {doc[key]!r} is not used: dev8 environments run as dev (with sudo)")
    return plan


def _inside(base: str, relative: object) -> str | None:
    """``relative`` (to ``base``, a folder of the repository) as a repository path, or None
    when it is no string or leaves the repository."""
    if not isinstance(relative, str) or posixpath.isabs(relative):
        return None
    joined = posixpath.normpath(posixpath.join(base, relative))
    return None if joined == ".." or joined.startswith("../") else joined


def _image(doc: dict, plan: Plan) -> None:
    """``build`` (or the older top-level ``dockerFile``/``context``), else ``image``."""
    build = doc.get("build") if isinstance(doc.get("build"), dict) else None
    if build is None and "dockerFile" in doc:
        build = {"dockerfile": doc["dockerFile"], "context": doc.get("context", ".")}
    base = posixpath.dirname(plan.path)
    if build is not None:
        context = _inside(base, build.get("context", "."))
        dockerfile = _inside(base, build.get("dockerfile", "Dockerfile"))
        args = build.get("args") or {}
        if context is None or dockerfile is None:
            plan.warnings.append("build: the Dockerfile and its context must be inside the repository")
        elif posixpath.relpath(dockerfile, context).startswith(".."):
            plan.warnings.append("build: the Dockerfile must be inside its context")
        elif not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
            plan.warnings.append("build.args: expected an object of strings")
        else:
            plan.build = {"context": context, "dockerfile": posixpath.relpath(dockerfile, context), "args": args}
            for key in ("target", "cacheFrom", "options"):
                if key in build:
                    plan.warnings.append(f"build.{key} is not supported by dev8 and is ignored")
        if "image" in doc:
            plan.warnings.append("image is not used: build is")
    elif isinstance(doc.get("image"), str):
        plan.image = doc["image"]
