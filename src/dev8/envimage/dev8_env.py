#!/usr/bin/env python3
"""dev8-env: the helper inside every dev8 environment (stdlib only).

The control plane runs it over SSH as user ``dev``:

    dev8-env configure    < JSON   write configuration and secrets to the tmpfs
    dev8-env status                print what is configured (names only) as JSON
    dev8-env clone                 clone the configured repository (once) into ~/workspace
    dev8-env dotfiles              clone the user's dotfiles (once) into ~/.dotfiles, run its
                                   install script, else link its dotfiles into the home
    dev8-env devcontainer          the cloned repository's devcontainer.json, as text (JSON)
    dev8-env lifecycle             its create commands (once per home), then its start commands
    dev8-env health                per-service state from the supervisor (runit) as JSON
    dev8-env extensions            install the configured VS Code extensions that are missing
    dev8-env ports                 TCP ports listening inside the environment, as JSON
    dev8-env stats                 uptime, CPU and memory use (its cgroup), home size and free disk
    dev8-env work                  git repositories in ~/workspace with changes or commits not pushed
    dev8-env save-home             (as root) archive the home to $DEV8_HOME_ARCHIVE, where the home
                                   is kept on storage that is no POSIX file system (ACI's share)
    dev8-env term ID COLS ROWS KEEP  attach stdin/stdout to browser terminal ID (a shell on a PTY
                                   of its own that outlives this command and the server that ran it)
    dev8-env version

Secrets arrive on stdin, never on a command line or in the container's environment,
and are written to ``$DEV8_RUN_DIR/secrets/<name>`` (a tmpfs, mode 0600), so they stay
out of ``docker inspect``, image layers and the persistent volume. ``configure`` refuses
to write them unless that folder is memory-backed (tmpfs or ramfs, asked with statfs).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (mypy knows the name)
if TYPE_CHECKING:  # imported where a process is started: most commands start none, and its import
    import subprocess  # is a fifth of every command's start

VERSION = "1"
# The environment images' layout. The control plane imports these (dev8.envimage.dev8_env)
# so the core, the runtimes and this helper agree on one set of paths.
USER = "dev"
HOME = "/home/dev"
DEFAULT_RUN_DIR = "/run/dev8"  # a tmpfs: lost whenever the environment's instance is
VSCODE_PORT = 13337  # code-server, on 127.0.0.1 inside the environment
IMAGE_TARGETS = ("base", "fullstack")  # the images dev8 builds (images/Dockerfile targets)
RUN_DIR = os.environ.get("DEV8_RUN_DIR", DEFAULT_RUN_DIR)


def image_tag(target: str) -> str:
    """The tag dev8 gives the image it builds from ``target``."""
    return f"dev8/{target}:latest"

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
WORKSPACE = os.environ.get("DEV8_WORKSPACE", os.path.expanduser("~/workspace"))
SERVICE_DIR = "/etc/dev8/service"
# The username each provider expects with a token over HTTPS (overridable per provider).
PROVIDER_USERNAMES = {"github": "x-access-token", "gitlab": "oauth2", "bitbucket": "x-token-auth"}
# Environment variables each AI CLI reads its key from.
AI_VARIABLES = {
    "claude": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY",),
    "copilot": ("COPILOT_GITHUB_TOKEN", "GH_TOKEN"),
}
AI_SECRETS = {"claude": "anthropic", "gemini": "gemini", "copilot": "copilot"}


def _write_private(path: str, data: bytes) -> None:
    """Write atomically with 0600 from the first byte (no window with wider permissions).

    The temporary file is made as ``tempfile.mkstemp`` makes one (a random name, O_EXCL, no
    link followed): importing tempfile pulls in shutil, lzma and bz2, half of the start of
    every dev8-env command, and configure runs at every start of an environment."""
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.urandom(8).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


HOME_ARCHIVE_FILE = "/etc/dev8/home-archive"  # written by the entrypoint from DEV8_HOME_ARCHIVE
# statfs(2) f_type of the file systems that keep their files in memory only.
MEMORY_FILESYSTEMS = {0x01021994: "tmpfs", 0x858458F6: "ramfs"}


def filesystem_type(path: str) -> int:
    """``statfs(path).f_type`` (the first field of struct statfs on Linux)."""
    import ctypes  # here: every dev8-env command would pay for its import, few need it
    libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded (find_library runs ldconfig)
    buf = ctypes.create_string_buffer(256)  # larger than struct statfs on every Linux ABI
    if libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def require_memory_backed(path: str) -> None:
    """Secrets never reach a disk: refuse unless ``path`` is on tmpfs or ramfs."""
    kind = filesystem_type(path)
    if kind not in MEMORY_FILESYSTEMS:
        raise ValueError(f"{path} is not memory-backed (file system type {kind:#x}, not tmpfs): refusing to "
                         "write secrets to a disk")


def configure(doc: dict) -> dict:
    try:
        return _configure(doc)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, _full_message(doc.get("secrets") or {})) from None


def _full_message(secrets: dict) -> str:
    """Why the tmpfs is full, naming what takes its space (never a value)."""
    st = os.statvfs(RUN_DIR)
    sizes = sorted(((len(str(v).encode()), k) for k, v in secrets.items()), reverse=True)
    largest = ", ".join(f"{k} {n // 1024} KiB" for n, k in sizes[:3]) or "none"
    return (f"{RUN_DIR} is full ({st.f_blocks * st.f_frsize // 1024} KiB, where secrets and configuration live): "
            f"the secrets take {sum(n for n, _ in sizes) // 1024} KiB (largest: {largest}); the rest is files "
            f"someone put there: remove them (`du -a {RUN_DIR}`) or make secrets smaller, then reconfigure")


def _configure(doc: dict) -> dict:
    secrets = doc.get("secrets") or {}
    if not isinstance(secrets, dict):
        raise ValueError("secrets must be an object")
    for name, value in secrets.items():
        if not NAME_RE.match(name) or not isinstance(value, str):
            raise ValueError(f"invalid secret entry {name!r}")
    extra_ca = doc.get("ca_certificates") or ""
    if not isinstance(extra_ca, str) or (extra_ca and "-----BEGIN CERTIFICATE-----" not in extra_ca):
        raise ValueError("ca_certificates must be PEM certificates")
    require_memory_backed(RUN_DIR)
    secrets_dir = os.path.join(RUN_DIR, "secrets")
    os.makedirs(secrets_dir, mode=0o700, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    for name, value in secrets.items():
        _write_private(os.path.join(secrets_dir, name), value.encode())
    for stale in set(os.listdir(secrets_dir)) - set(secrets):
        if not stale.startswith(".tmp-"):
            os.unlink(os.path.join(secrets_dir, stale))
    config = {k: v for k, v in doc.items() if k != "secrets"}
    config["secret_names"] = sorted(secrets)
    _write_private(os.path.join(RUN_DIR, "config.json"), json.dumps(config).encode())
    _write_git_config(config)
    _write_ai_env(config, secrets)
    _write_cli_auth(config, secrets)
    _write_ca_bundle(config)
    _write_env_vars(config)
    _write_code_server_env(config)
    _write_machine_settings(config)
    return {"configured": True, "secrets": sorted(secrets), "apps": apps()}


# VS Code opens straight into the work, as Codespaces does: no welcome page or walkthroughs,
# no chat panel taking half the screen, no telemetry, and no trust question. Written into
# the user's own settings (User/settings.json) once per home, under what they set already:
# theirs to change after (machine settings would override theirs). Workspace trust is off because everything
# in the environment's home is its owner's (the repository they asked for, their dotfiles,
# what they clone) and a repository's devcontainer commands have already run in it, so
# Restricted Mode would guard nothing here; Codespaces trusts a codespace the same way.
# Trust is a user setting (application scope) and per-folder trust lives in the browser's
# storage, out of dev8's reach: it is the whole environment or nothing.
USER_DEFAULTS = {
    "workbench.startupEditor": "none",
    "workbench.welcomePage.walkthroughs.openOnInstall": False,
    "workbench.tips.enabled": False,
    "telemetry.telemetryLevel": "off",
    "chat.commandCenter.enabled": False,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "security.workspace.trust.enabled": False,
}


def _write_machine_settings(config: dict) -> None:
    """A devcontainer.json's VS Code settings, as Codespaces applies them (machine settings)."""
    if not os.path.exists(CODE_SERVER):
        return
    _write_json(os.path.join(CODE_SERVER_DATA, "Machine", "settings.json"),
                (config.get("devcontainer") or {}).get("settings") or {})
    _seed_user_settings()


def _seed_user_settings() -> None:
    """USER_DEFAULTS into the user's settings, once per home (a marker file says it was
    done, so a default the user removes later stays removed). What the user already set
    wins; a file json cannot read (VS Code allows comments) is left as it is."""
    marker = os.path.join(CODE_SERVER_DATA, "User", ".dev8-defaults")
    if os.path.exists(marker):
        return
    path, settings = _user_settings()
    if settings is not None:
        _write_json(path, {**USER_DEFAULTS, **settings})
    with open(marker, "w", encoding="utf-8") as f:
        f.write("VS Code's defaults from dev8 were written into settings.json once; they are yours to change.\n")


def apps() -> list[str]:
    """What this image offers in the browser besides the terminal (the control plane shows
    "Open VS Code" only where it is)."""
    return ["vscode"] if os.path.exists(CODE_SERVER) else []


ENV_VARS_FILE = "env.sh"  # in the run dir; every kind of shell sources it (images/base/env-hooks)


def _env_exports(config: dict) -> str:
    """The devcontainer.json's variables, then the environment's own (which win)."""
    variables = {**((config.get("devcontainer") or {}).get("env") or {}), **(config.get("env") or {})}
    return "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in sorted(variables.items())
                   if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k))


def _write_env_vars(config: dict) -> None:
    """The environment's variables (not secret) for its shells, or none."""
    path = os.path.join(RUN_DIR, ENV_VARS_FILE)
    body = _env_exports(config)
    if body:
        _write_private(path, body.encode())
        os.chmod(path, 0o644)
    elif os.path.exists(path):
        os.unlink(path)


SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _write_ca_bundle(config: dict) -> None:
    """The bundle TLS clients trust ($RUN_DIR/ca-bundle.crt, which SSL_CERT_FILE & co.
    name): the system's CAs plus the operator's extra ones, if any."""
    extra = config.get("ca_certificates") or ""
    try:
        with open(SYSTEM_CA_BUNDLE, encoding="utf-8") as f:
            system = f.read()
    except FileNotFoundError:
        system = ""
    path = os.path.join(RUN_DIR, "ca-bundle.crt")
    _write_private(path, (system.rstrip("\n") + "\n" + extra).encode())
    os.chmod(path, 0o644)


def _write_code_server_env(config: dict) -> None:
    """code-server's marketplace (EXTENSIONS_GALLERY) and the environment's variables for its
    service (sourced by the runit run script) and for the installs below; the service
    restarts when it changes."""
    path = os.path.join(RUN_DIR, "code-server.env")
    gallery = config.get("extensions_gallery")
    body = f"export EXTENSIONS_GALLERY={shlex.quote(gallery)}\n" if gallery else ""
    body += _env_exports(config)  # VS Code's terminals and tasks inherit them
    if config.get("ca_certificates"):  # Node reads NODE_EXTRA_CA_CERTS at start: restart on a change
        import hashlib
        body += f"# extra CAs: {hashlib.sha256(config['ca_certificates'].encode()).hexdigest()[:16]}\n"
    try:
        with open(path, encoding="utf-8") as f:
            before = f.read()
    except FileNotFoundError:
        before = ""
    if body == before:
        return
    if body:
        _write_private(path, body.encode())
        os.chmod(path, 0o644)  # read by the service's run script before it drops to dev
    else:
        os.unlink(path)
    if os.path.exists(CODE_SERVER_SERVICE):
        import subprocess
        subprocess.run(["sudo", "-n", "sv", "restart", CODE_SERVER_SERVICE], capture_output=True, timeout=30)


def _gitconfig_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _write_git_config(config: dict) -> None:
    """The user's name and email, and a credential helper for each configured git host
    (exactly those): a shell function that prints the token from the tmpfs, so a token is
    never in a file on the volume, and a fetch starts no Python to get it."""
    user = config.get("user") or {}
    lines = ["[user]"]
    if user.get("name"):
        lines.append(f"\tname = {_gitconfig_value(user['name'])}")
    if user.get("email"):
        lines.append(f"\temail = {_gitconfig_value(user['email'])}")
    for p in providers(config):
        secret = os.path.join(RUN_DIR, "secrets", p["secret"])
        helper = (f"!f() {{ [ \"$1\" = get ] && t=$(cat {shlex.quote(secret)} 2>/dev/null) && [ -n \"$t\" ] "
                  "&& printf 'password=%s\\n' \"$t\"; }; f")
        for scheme in ("https", "http"):
            lines += [f'[credential "{scheme}://{p["host"]}"]', f"\tusername = {_gitconfig_value(p['username'])}",
                      f"\thelper = {_gitconfig_value(helper)}"]
    _write_private(os.path.join(RUN_DIR, "gitconfig"), ("\n".join(lines) + "\n").encode())


def _write_ai_env(config: dict, secrets: dict) -> None:
    """One file per AI CLI, read by its wrapper only: keys are not in every process's env."""
    ai = config.get("ai") or {}
    ai_dir = os.path.join(RUN_DIR, "ai")
    os.makedirs(ai_dir, mode=0o700, exist_ok=True)
    for tool, variables in AI_VARIABLES.items():
        path = os.path.join(ai_dir, f"{tool}.env")
        secret = ai.get(AI_SECRETS[tool])
        if secret and secret in secrets:
            text = "".join(f"{v}={shlex.quote(secrets[secret])}\n" for v in variables)
            _write_private(path, text.encode())
        elif os.path.exists(path):
            os.unlink(path)


def _write_cli_auth(config: dict, secrets: dict) -> None:
    """gh and glab configs in the tmpfs (GH_CONFIG_DIR / GLAB_CONFIG_DIR point there)."""
    gh_hosts, glab_hosts = [], []
    for p in providers(config):
        token = secrets.get(p["secret"])
        if not token:
            continue
        if p["kind"] == "github":
            gh_hosts.append(f"{p['host']}:\n    oauth_token: {json.dumps(token)}\n"
                            f"    user: {json.dumps(p['username'])}\n    git_protocol: https\n")
        elif p["kind"] == "gitlab":
            glab_hosts.append(f"    {p['host']}:\n        token: {json.dumps(token)}\n"
                              f"        api_protocol: https\n        git_protocol: https\n")
    for directory, name, body in (("gh", "hosts.yml", "".join(gh_hosts)),
                                  ("glab", "config.yml", "hosts:\n" + "".join(glab_hosts) if glab_hosts else "")):
        path = os.path.join(RUN_DIR, directory)
        os.makedirs(path, mode=0o700, exist_ok=True)
        target = os.path.join(path, name)
        if body:
            _write_private(target, body.encode())
        elif os.path.exists(target):
            os.unlink(target)


def _load_config() -> dict:
    try:
        with open(os.path.join(RUN_DIR, "config.json"), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def providers(config: dict) -> list[dict]:
    out = []
    for p in (config.get("git") or {}).get("providers") or []:
        kind = p.get("kind")
        if kind not in PROVIDER_USERNAMES or not p.get("host") or not p.get("secret"):
            continue
        out.append({"kind": kind, "host": p["host"].lower(), "secret": p["secret"],
                    "username": p.get("username") or PROVIDER_USERNAMES[kind]})
    return out


def clone_folder(url: str) -> str:
    """The folder under the workspace a repository is cloned into (its last path part)."""
    return re.sub(r"\.git$", "", url.rstrip("/").rsplit("/", 1)[-1]) or "repo"


def clone() -> dict:
    """Clone the configured repository into the workspace, once; later starts skip it."""
    config = _load_config()
    repo = config.get("repo") or {}
    url, target = repo.get("url"), _repo_dir(config)
    if not url or target is None:
        return {"cloned": False, "reason": "no repository configured"}
    with _one_at_a_time("clone"):
        if os.path.exists(target):
            if os.path.exists(PREBUILT_MARKER) and not os.path.exists(CREATED_MARKER) \
                    and not config.get("prebuild_run"):
                return _update_prebuilt(target)
            return {"cloned": False, "path": target, "reason": "already present", "commit": _head(target)}
        _git_clone(url, target, repo.get("branch"), "git clone failed")
    return {"cloned": True, "path": target, "commit": _head(target)}


def _head(repo: str) -> str:
    """The commit checked out in ``repo`` (empty if it has none)."""
    import subprocess
    return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                          timeout=60).stdout.strip()


def _update_prebuilt(target: str) -> dict:
    """A new home copied from a prebuild: its clone goes forward to the branch's head (the
    prebuild may be hours old); when that changed anything, updateContentCommand runs again."""
    import subprocess
    before = _head(target)
    pull = subprocess.run(["git", "-C", target, "pull", "--ff-only", "--quiet"], capture_output=True, text=True,
                          env=_no_prompt_env(), timeout=600)
    if pull.returncode != 0:
        raise ValueError(f"git pull in the prebuild's clone failed: {pull.stderr.strip()[-500:]}")
    after = _head(target)
    if after == before:
        return {"cloned": False, "path": target, "reason": f"from the prebuild, at {after[:7]}", "commit": after}
    os.makedirs(os.path.dirname(CONTENT_CHANGED_MARKER), exist_ok=True)
    with open(CONTENT_CHANGED_MARKER, "w", encoding="utf-8") as f:
        f.write(f"{before} {after}\n")
    return {"cloned": False, "path": target, "reason": f"from the prebuild, updated {before[:7]}..{after[:7]}",
            "commit": after}


@contextlib.contextmanager
def _one_at_a_time(step: str) -> Iterator[None]:
    """Run a once-per-home step alone in this instance. A dev8 server that dies while the step
    runs leaves it running (its SSH session is gone, the process is not); the server that
    takes over runs the step again, which waits here for the first run and then finds it done."""
    os.makedirs(RUN_DIR, exist_ok=True)
    with open(os.path.join(RUN_DIR, f".{step}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _no_prompt_env() -> dict[str, str]:
    """Git asks nobody for a login: a missing or wrong token fails at once."""
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0"}


def _git_clone(url: str, target: str, branch: str | None, failed: str, *options: str) -> None:
    """Clone into ``target`` all at once: beside it first, then renamed, so a clone cut half
    way (its instance stopped) never passes for a finished one."""
    import shutil
    import subprocess
    partial = target + ".dev8-partial"
    shutil.rmtree(partial, ignore_errors=True)  # a cut clone's
    cmd = ["git", "clone", "--quiet", *options] + (["--branch", branch] if branch else [])
    proc = subprocess.run([*cmd, "--", url, partial], capture_output=True, text=True, env=_no_prompt_env(), timeout=600)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise ValueError(f"{failed}: {proc.stderr.strip()[-500:].replace(partial, target)}")
    os.rename(partial, target)


# What Codespaces looks for, in its order; without any, the repository's dotfiles are linked.
INSTALL_SCRIPTS = ("install.sh", "install", "bootstrap.sh", "bootstrap", "script/bootstrap",
                   "setup.sh", "setup", "script/setup")


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())[-500:]


def dotfiles() -> dict:
    """Clone the user's dotfiles repository into ~/.dotfiles once (a home that has it keeps
    it: restarts and new images do not run it again), then run its first install script
    (output also in ~/.dotfiles.log), else link its top-level dotfiles into the home where
    nothing of that name exists yet."""
    spec = _load_config().get("dotfiles") or {}
    url = spec.get("url")
    if not url:
        return {"reason": "no dotfiles repository"}
    with _one_at_a_time("dotfiles"):
        return _install_dotfiles(url, spec.get("branch"))


def _install_dotfiles(url: str, branch: str | None) -> dict:
    import subprocess
    target = os.path.expanduser("~/.dotfiles")
    if os.path.exists(target):
        return {"reason": "already installed in ~/.dotfiles"}
    _git_clone(url, target, branch, f"git clone of {url} failed", "--depth", "1")
    for script in INSTALL_SCRIPTS:
        path = os.path.join(target, script)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            shebang = f.read(2) == b"#!"
        # as a shell would: its own interpreter where it names one, else sh
        argv = [path] if shebang and os.access(path, os.X_OK) else ["sh", path]
        run = subprocess.run(argv, cwd=target, capture_output=True, text=True, env=_no_prompt_env(), timeout=600)
        output = run.stdout + run.stderr
        with open(os.path.expanduser("~/.dotfiles.log"), "w", encoding="utf-8") as log:
            log.write(output)
        if run.returncode != 0:
            raise ValueError(f"{script} failed (exit {run.returncode}): {_tail(output)}")
        return {"reason": f"ran {script}" + (f": {_tail(output)}" if output.strip() else "")}
    linked, kept = [], []
    for entry in sorted(os.listdir(target)):
        if not entry.startswith(".") or entry in {".git", ".github", ".gitignore", ".gitmodules"}:
            continue
        home_path = os.path.expanduser(f"~/{entry}")
        if os.path.lexists(home_path):
            kept.append(entry)
            continue
        os.symlink(os.path.join(target, entry), home_path)
        linked.append(entry)
    return {"reason": (f"linked {', '.join(linked)}" if linked else "nothing to link")
                      + (f"; kept the home's own {', '.join(kept)}" if kept else "")}


DEVCONTAINER_FILES = (".devcontainer/devcontainer.json", ".devcontainer.json")
CREATED_MARKER = os.path.expanduser("~/.local/share/dev8/devcontainer-created")  # ~/.dev8 is root's (host keys)
# A prebuild ran onCreateCommand and updateContentCommand in this home (it was copied from one).
PREBUILT_MARKER = os.path.expanduser("~/.local/share/dev8/devcontainer-prebuilt")
# The clone moved past the prebuild's commit: updateContentCommand runs again.
CONTENT_CHANGED_MARKER = os.path.expanduser("~/.local/share/dev8/content-changed-since-prebuild")


def _repo_dir(config: dict) -> str | None:
    """Where ``clone`` put the configured repository, if there is one."""
    url = (config.get("repo") or {}).get("url")
    return os.path.join(WORKSPACE, clone_folder(url)) if url else None


def devcontainer() -> dict:
    """The cloned repository's devcontainer.json (the control plane parses it)."""
    repo = _repo_dir(_load_config())
    for name in DEVCONTAINER_FILES if repo else ():
        path = os.path.join(repo, name)  # type: ignore[arg-type]
        if os.path.isfile(path):
            if os.path.getsize(path) > 256 * 1024:
                raise ValueError(f"{name} is larger than 256 KiB")
            with open(path, encoding="utf-8") as f:
                return {"path": name, "text": f.read()}
    return {"path": None}


def lifecycle() -> dict:
    """devcontainer.json's create commands once per home (a marker file remembers),
    then its start commands, each in the repository's folder; the first failure stops."""
    with _one_at_a_time("lifecycle"):
        return _run_lifecycle(_load_config())


def _once_commands(config: dict) -> tuple[list[str], str]:
    """The once-per-home commands still to run here, and the marker that says they ran.
    A prebuild runs onCreateCommand and updateContentCommand; a home copied from it runs
    postCreateCommand (and updateContentCommand again if its clone moved on); any other
    home all three."""
    plan = config.get("devcontainer") or {}
    once = list(plan.get("once") or [])
    on_create = int(plan.get("on_create") or 0)
    ahead = on_create + int(plan.get("update_content") or 0)
    if config.get("prebuild_run"):
        return ([] if os.path.exists(PREBUILT_MARKER) else once[:ahead]), PREBUILT_MARKER
    if os.path.exists(CREATED_MARKER):
        return [], CREATED_MARKER
    if os.path.exists(PREBUILT_MARKER):
        again = once[on_create:ahead] if os.path.exists(CONTENT_CHANGED_MARKER) else []
        return again + once[ahead:], CREATED_MARKER
    return once, CREATED_MARKER


def _run_lifecycle(config: dict) -> dict:
    import subprocess
    plan = config.get("devcontainer") or {}
    commands, marker = _once_commands(config)
    # a prebuild, and a home made from one, say so even without commands: the clone of a home
    # copied from a prebuild goes forward once, at its first start
    first_time = not os.path.exists(marker) and (bool(plan.get("once")) or bool(config.get("prebuild_run"))
                                                 or os.path.exists(PREBUILT_MARKER))
    if not config.get("prebuild_run"):  # a prebuild leaves the services a start runs to each home
        commands += plan.get("on_start") or []
    cwd = _repo_dir(config) or WORKSPACE
    output = ""
    for command in commands:
        run = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=600,
                             env=_no_prompt_env())
        output += run.stdout + run.stderr
        if run.returncode != 0:
            raise ValueError(f"`{command}` failed (exit {run.returncode}): {_tail(run.stdout + run.stderr)}")
    if first_time:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w", encoding="utf-8") as f:
            f.write("\n".join(plan.get("once") or []) + "\n")
    if not commands:
        return {"reason": "nothing to run"}
    return {"reason": f"ran {len(commands)} command(s)" + (f": {_tail(output)}" if output.strip() else "")}


CODE_SERVER = "/opt/dev8/node/bin/code-server"
CODE_SERVER_SERVICE = "/etc/dev8/service/code-server"
CODE_SERVER_DATA = os.path.expanduser("~/.local/share/code-server")


def _code_server(*args: str) -> subprocess.CompletedProcess:
    import subprocess
    gallery = _load_config().get("extensions_gallery")
    env = {**os.environ, "EXTENSIONS_GALLERY": gallery} if gallery else None
    return subprocess.run([CODE_SERVER, "--user-data-dir", CODE_SERVER_DATA, *args],
                          capture_output=True, text=True, timeout=300, env=env)


def extensions() -> dict:
    """Install each configured extension (marketplace id or VSIX path) not yet installed;
    turn Copilot on in the user settings when a Copilot token was given and it is installed."""
    config = _load_config()
    plan = config.get("devcontainer") or {}
    wanted = list(dict.fromkeys((config.get("extensions") or []) + (plan.get("extensions") or [])))
    if not os.path.exists(CODE_SERVER):
        return {"installed": [], "reason": "this image has no code-server"}
    have = {e.lower() for e in _code_server("--list-extensions").stdout.split()}
    installed: list[str] = []
    failed: list[str] = []
    for ext in wanted:
        path = os.path.expanduser(ext) if ext.endswith(".vsix") else None
        if path and not os.path.isabs(path):
            path = os.path.join(WORKSPACE, path)
        if not path and ext.lower() in have:
            continue
        proc = _code_server("--install-extension", path or ext, "--force")
        (installed if proc.returncode == 0 else failed).append(ext)
    if (config.get("ai") or {}).get("copilot"):
        _enable_copilot(have | {e.lower() for e in _code_server("--list-extensions").stdout.split()})
    if failed:
        raise ValueError(f"could not install: {', '.join(failed)}")
    return {"installed": installed}


def _enable_copilot(installed: set[str]) -> None:
    if "github.copilot" not in installed:
        return
    path, settings = _user_settings()
    if settings is not None:
        settings.setdefault("github.copilot.enable", {"*": True})
        _write_json(path, settings)


def _user_settings() -> tuple[str, dict | None]:
    """The user's VS Code settings file and what it holds: {} when there is none, None when
    json cannot read it (VS Code allows comments and trailing commas): then it stays as it is."""
    path = os.path.join(CODE_SERVER_DATA, "User", "settings.json")
    try:
        with open(path, encoding="utf-8") as f:
            settings = json.load(f)
    except FileNotFoundError:
        return path, {}
    except ValueError:
        return path, None
    return path, settings if isinstance(settings, dict) else None


def _write_json(path: str, doc: object) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)


# Docker's embedded DNS resolver listens on 127.0.0.11 (a random TCP port) in every
# container on a user-defined network: the runtime's, never a user's port.
RUNTIME_RESOLVER = "0B00007F"  # 127.0.0.11 as /proc/net/tcp writes it (little-endian hex)


def _is_loopback(addr: str) -> bool:
    """An address from /proc/net/tcp{,6}: all of 127.0.0.0/8 (the first octet is the last
    byte), ::1 and IPv4-mapped ::ffff:127.x.x.x."""
    if len(addr) == 8:
        return addr[6:8] == "7F"
    return addr == "00000000000000000000000001000000" or (
        addr[:24] == "0000000000000000FFFF0000" and addr[30:32] == "7F")


def listening_ports(proc_net: str = "/proc/net") -> dict:
    """Listening TCP ports from /proc/net/tcp{,6} (state 0A), without sshd's 22 and the
    runtime's DNS resolver."""
    ports: dict[int, set[str]] = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc_net, name), encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":
                addr, port_hex = fields[1].rsplit(":", 1)
                if addr == RUNTIME_RESOLVER:
                    continue
                ports.setdefault(int(port_hex, 16), set()).add("loopback" if _is_loopback(addr) else "all")
    return {"ports": [{"port": p, "bind": "loopback" if kinds == {"loopback"} else "all"}
                      for p, kinds in sorted(ports.items()) if p != 22]}


def health(service_dir: str = SERVICE_DIR) -> dict:
    """Each service's state as runit's supervisor records it in ``supervise/stat`` (the
    entrypoint makes those folders readable: no sudo, which a no-new-privileges container,
    as on Kubernetes, refuses); ``sv status`` through sudo where that file cannot be read."""
    import subprocess
    services = {}
    for name in sorted(os.listdir(service_dir)) if os.path.isdir(service_dir) else []:
        stat = _read(os.path.join(service_dir, name, "supervise", "stat"))
        if stat is not None:
            services[name] = "up" if stat.startswith("run") else "down"
            continue
        proc = subprocess.run(["sudo", "-n", "sv", "status", os.path.join(service_dir, name)],
                              capture_output=True, text=True)
        out = proc.stdout.strip()
        services[name] = "up" if out.startswith("run:") else ("down" if out else "unknown")
    return {"services": services}


CGROUP = "/sys/fs/cgroup"
HOME_SIZE_EVERY = 60.0  # seconds a measured home size is reused: du walks every file
HOME_SIZE_TIMEOUT = 10.0


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _cpu_usage_usec() -> int | None:
    """CPU time the environment's cgroup has used (cgroup v2, else v1)."""
    for line in (_read(f"{CGROUP}/cpu.stat") or "").splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return _number(value)
    ns = _number(_read(f"{CGROUP}/cpuacct/cpuacct.usage"))
    return None if ns is None else ns // 1000


def _cpu_limit() -> float | None:
    quota, _, period = (_read(f"{CGROUP}/cpu.max") or "").partition(" ")
    if quota.isdigit() and period.isdigit():
        return int(quota) / int(period)
    quota_us, period_us = _read(f"{CGROUP}/cpu/cpu.cfs_quota_us"), _number(_read(f"{CGROUP}/cpu/cpu.cfs_period_us"))
    if quota_us and quota_us.isdigit() and period_us:
        return int(quota_us) / period_us
    return None


def _memory() -> tuple[int | None, int | None]:
    """Memory in use (without the page cache the kernel can drop, as `docker stats` counts
    it) and the limit, or None where unknown or unlimited."""
    current, limit = _number(_read(f"{CGROUP}/memory.current")), _number(_read(f"{CGROUP}/memory.max"))
    stat_file = f"{CGROUP}/memory.stat"
    if current is None:  # cgroup v1
        current = _number(_read(f"{CGROUP}/memory/memory.usage_in_bytes"))
        limit = _number(_read(f"{CGROUP}/memory/memory.limit_in_bytes"))
        stat_file = f"{CGROUP}/memory/memory.stat"
        if limit is not None and limit >= 1 << 60:  # v1 says "unlimited" with a huge number
            limit = None
    if current is not None:
        for line in (_read(stat_file) or "").splitlines():
            key, _, value = line.partition(" ")
            if key in ("inactive_file", "total_inactive_file") and value.isdigit():
                current = max(0, current - int(value))
                break
    return current, limit


def _uptime() -> int | None:
    """Seconds since the environment's first process (PID 1 of its namespace) started."""
    since_boot, stat = _read("/proc/uptime"), _read("/proc/1/stat")
    if not since_boot or not stat:
        return None
    start_ticks = int(stat.rpartition(")")[2].split()[19])  # field 22: starttime, after the command's name
    return max(0, round(float(since_boot.split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")))


def _home_size() -> int | None:
    """Bytes under the home (du, at most every HOME_SIZE_EVERY s; None if it took too long)."""
    import subprocess
    cache = os.path.join(RUN_DIR, "home-size.json")
    try:
        with open(cache, encoding="utf-8") as f:
            known = json.load(f)
        if time.time() - known["at"] < HOME_SIZE_EVERY:
            return known["bytes"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        out = subprocess.run(["nice", "du", "-sxb", os.path.expanduser("~")], capture_output=True, text=True,
                             timeout=HOME_SIZE_TIMEOUT).stdout
    except subprocess.TimeoutExpired:
        return None
    size = _number(out.split("\t")[0]) if out else None
    if size is not None:
        with contextlib.suppress(OSError):
            _write_json(cache, {"at": time.time(), "bytes": size})
    return size


def _git(repo: str, *args: str) -> str | None:
    import subprocess
    try:
        proc = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def unpushed_work(workspace: str = WORKSPACE) -> dict:
    """The git repositories at ~/workspace and one level below with work a delete would lose:
    changed or untracked files, and commits no remote has (on any branch)."""
    candidates = [workspace] + sorted(os.path.join(workspace, d) for d in
                                      (os.listdir(workspace) if os.path.isdir(workspace) else []))
    repos = []
    for path in candidates:
        if not os.path.exists(os.path.join(path, ".git")):
            continue
        status = _git(path, "status", "--porcelain")
        local = _git(path, "rev-list", "--count", "--branches", "--not", "--remotes")
        changes = len(status.splitlines()) if status is not None else 0
        unpushed = int(local.strip() or 0) if local is not None else 0
        if changes or unpushed:
            repos.append({"path": os.path.relpath(path, os.path.dirname(workspace)), "changes": changes,
                          "unpushed": unpushed})
    return {"repos": repos}


def stats(sample: float = 0.5) -> dict:
    """What the environment uses: CPU over ``sample`` seconds (100 = one CPU busy), memory,
    home size and the free space where the home lives; None where this machine cannot say."""
    before, started = _cpu_usage_usec(), time.monotonic()
    time.sleep(sample)
    after, elapsed = _cpu_usage_usec(), time.monotonic() - started
    disk = os.statvfs(os.path.expanduser("~"))
    memory, memory_limit = _memory()
    return {
        "uptime_seconds": _uptime(),
        "cpu_percent": None if before is None or after is None else round((after - before) / 1e4 / elapsed, 1),
        "cpu_limit": _cpu_limit(),
        "memory_bytes": memory,
        "memory_limit_bytes": memory_limit,
        "home_bytes": _home_size(),
        "disk_free_bytes": disk.f_bavail * disk.f_frsize,
        "disk_total_bytes": disk.f_blocks * disk.f_frsize,
    }


def status() -> dict:
    try:
        with open(os.path.join(RUN_DIR, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        return {"configured": False}
    return {"configured": True, "secret_names": config.get("secret_names", [])}


def save_home() -> dict:
    """Archive the home to ``$DEV8_HOME_ARCHIVE`` (gzip, owners and modes kept): written
    beside it and renamed over it, so the archive is always a whole one, the last save or
    this. One save at a time (a lock in the run dir)."""
    import subprocess
    archive = os.environ.get("DEV8_HOME_ARCHIVE", "")
    if not archive and os.path.exists(HOME_ARCHIVE_FILE):  # over SSH: as the entrypoint found it
        with open(HOME_ARCHIVE_FILE, encoding="utf-8") as f:
            archive = f.read().strip()
    if not archive:
        raise ValueError("this environment's home is not kept as an archive (no DEV8_HOME_ARCHIVE)")
    started = time.monotonic()
    with open(os.path.join(RUN_DIR, "home-save.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tmp = f"{archive}.tmp-{os.getpid()}"
        try:
            # gzip -1: the save's time is mostly compression; exit 1 is "a file changed as we
            # read it" (someone is working), which still makes a whole archive
            proc = subprocess.run(["tar", "--numeric-owner", "-I", "gzip -1", "-cpf", tmp, "-C", HOME, "."],
                                  capture_output=True, text=True)
            if proc.returncode not in (0, 1):
                raise OSError(f"tar failed: {proc.stderr.strip()[-500:]}")
            os.replace(tmp, archive)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return {"saved": archive, "bytes": os.path.getsize(archive), "seconds": round(time.monotonic() - started, 2)}


# --- browser terminals that outlive the server ----------------------------------------------
#
# A holder process per terminal owns the PTY and its shell, keeps the recent output, and
# listens on a unix socket in the run dir; `dev8-env term` relays between that socket and
# its own stdin/stdout (the SSH channel from dev8). When dev8 goes away (restarted, or a
# replica lost), the relay ends and the shell runs on; whichever server the browser
# reconnects to runs `dev8-env term` with the same ID and gets the recent output first.
#
# Frames on stdin: kind (1 byte) + length (4 bytes, big-endian) + payload; kinds: b"i" input,
# b"r" resize ("COLS ROWS"), b"k" end the shell. Stdout: TERM_HELLO, then the output.

TERM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,80}$")
TERM_HELLO = b"dev8-term 1\n"
TERM_REPLAY = 256 * 1024
TERM_BACKLOG = 256 * 1024  # output waiting for a relay before the holder stops reading the PTY
TERM_FRAME = 5


def _term_dir() -> str:
    path = os.path.join(RUN_DIR, "terms")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _set_winsize(fd: int, cols: int, rows: int) -> None:
    import struct
    import termios
    if 0 < cols <= 1000 and 0 < rows <= 1000:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _term_holder(listener: object, cols: int, rows: int, keep: float) -> None:
    """Run the shell on a new PTY and serve it to one attached relay at a time, until the
    shell exits, a relay asks to end it, or nobody was attached for ``keep`` seconds.

    Never blocks on a relay: output waits in a buffer, and while more than ``TERM_BACKLOG``
    waits the PTY is not read (so a slow browser slows the program, as on any terminal),
    while a newer relay is still accepted at once."""
    import pty
    import selectors
    import signal
    import socket
    assert isinstance(listener, socket.socket)
    path = os.path.abspath(listener.getsockname())  # bound by a name relative to the terms dir
    shell = os.environ.get("SHELL") or "/bin/bash"
    pid, master = pty.fork()
    if pid == 0:  # the shell: a login shell in the home, as an SSH login would give
        listener.close()
        # Ignored signals stay ignored across exec: Python ignores SIGPIPE and SIGXFSZ, and a
        # dev8-env started under nohup ignores SIGHUP, which is how the shell is ended.
        for sig in (signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(os.path.expanduser("~"))
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        os.execvpe(shell, ["-" + os.path.basename(shell)], env)
    _set_winsize(master, cols, rows)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    replay, pending, out = bytearray(), bytearray(), bytearray()
    client: socket.socket | None = None
    reading_pty = False
    alone_since: float | None = time.monotonic()
    waited = max(keep, 30.0)  # for the relay that started it, which connects within moments

    def drop() -> None:
        nonlocal client, alone_since
        if client is not None:
            sel.unregister(client)
            client.close()
            client, alone_since = None, time.monotonic()
        out.clear()

    def watch() -> None:  # what to wait for, from what is buffered
        nonlocal reading_pty
        want = len(out) < TERM_BACKLOG
        if want != reading_pty:
            (sel.register(master, selectors.EVENT_READ, "pty") if want else sel.unregister(master))
            reading_pty = want
        if client is not None:
            sel.modify(client, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0), "client")
    try:
        while True:
            watch()
            if alone_since is not None and time.monotonic() - alone_since > waited:
                break
            events = sel.select(timeout=5)
            if not events and not os.path.exists(path):
                break  # the run dir was emptied: a new instance
            for key, mask in events:
                if key.data == "accept":
                    conn, _ = listener.accept()
                    drop()  # a newer viewer wins
                    conn.setblocking(False)
                    client, alone_since, pending, waited = conn, None, bytearray(), keep
                    sel.register(conn, selectors.EVENT_READ, "client")
                    out += replay  # repaint first
                elif key.data == "pty":
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        return  # the shell exited
                    replay += data
                    del replay[:max(0, len(replay) - TERM_REPLAY)]
                    if client is not None:
                        out += data
                elif client is not None and key.fileobj is client:
                    if mask & selectors.EVENT_WRITE and out:
                        try:
                            del out[:client.send(out)]
                        except BlockingIOError:
                            pass
                        except OSError:
                            drop()
                            continue
                    if not mask & selectors.EVENT_READ:
                        continue
                    try:
                        data = client.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        drop()
                        continue
                    pending += data
                    while len(pending) >= TERM_FRAME:
                        size = int.from_bytes(pending[1:TERM_FRAME], "big")
                        if len(pending) < TERM_FRAME + size:
                            break
                        kind, payload = pending[:1], bytes(pending[TERM_FRAME:TERM_FRAME + size])
                        del pending[:TERM_FRAME + size]
                        if kind == b"i":
                            while payload:
                                payload = payload[os.write(master, payload):]
                        elif kind == b"r":
                            with contextlib.suppress(ValueError):
                                c, r = (int(v) for v in payload.split())
                                _set_winsize(master, c, r)
                        elif kind == b"k":
                            return
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGHUP)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
        with contextlib.suppress(ChildProcessError):
            for _ in range(50):  # a shell that ignores the hangup is killed after 5 s
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
                os.waitpid(pid, 0)


def _term_start(path: str, cols: int, rows: int, keep: float) -> None:
    """Start the holder of the terminal at socket ``path`` in a session of its own (it
    outlives this command); a holder started at the same moment by another relay wins the
    bind, and this one goes."""
    import socket
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a holder that died left it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        listener.bind(path)
    except OSError:
        listener.close()
        return
    finally:
        os.umask(old)
    listener.listen(4)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            keep_fd = listener.fileno()  # nothing else of the relay's (its SSH channel's pipes)
            os.closerange(3, keep_fd)
            os.closerange(keep_fd + 1, 1024)
            try:
                _term_holder(listener, cols, rows, keep)
            finally:
                os._exit(0)
        os._exit(0)
    listener.close()
    os.wait()


def term(argv: list[str]) -> int:
    """Relay between stdin/stdout and terminal ``ID`` (started when it does not exist)."""
    import selectors
    import socket
    if len(argv) != 4 or not TERM_ID_RE.match(argv[0]) or not all(a.isdigit() for a in argv[1:]):
        raise ValueError("usage: dev8-env term ID COLS ROWS KEEP_SECONDS")
    tid, cols, rows, keep = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    # A socket's path is capped at 107 bytes: it is named relative to the terms dir, which
    # may lie deep (a run dir outside /run, as on the fake runtime).
    os.chdir(_term_dir())
    path = tid + ".sock"
    for attempt in range(100):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # made after the holder: not its to inherit
        try:
            conn.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            conn.close()
            if attempt == 0:
                _term_start(path, cols, rows, keep)
            time.sleep(0.02)
    else:
        raise OSError(f"terminal {tid} did not start")
    os.write(1, TERM_HELLO)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "in")
    sel.register(conn, selectors.EVENT_READ, "term")
    while True:
        for key, _ in sel.select():
            if key.data == "in":
                data = os.read(0, 65536)
                if not data:
                    return 0  # dev8 went away: the shell runs on
                conn.sendall(data)
            else:
                data = conn.recv(65536)
                if not data:
                    return 0  # the shell exited
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    cmd = argv[0]
    if cmd == "term":  # a stream, not one JSON answer
        try:
            return term(argv[1:])
        except (ValueError, OSError) as exc:
            print(f"dev8-env term: {exc}", file=sys.stderr)
            return 1
    try:
        if cmd == "configure":
            result = configure(json.load(sys.stdin))
        elif cmd == "status":
            result = status()
        elif cmd == "version":
            result = {"version": VERSION}
        elif cmd == "clone":
            result = clone()
        elif cmd == "dotfiles":
            result = dotfiles()
        elif cmd == "devcontainer":
            result = devcontainer()
        elif cmd == "lifecycle":
            result = lifecycle()
        elif cmd == "health":
            result = health()
        elif cmd == "extensions":
            result = extensions()
        elif cmd == "ports":
            result = listening_ports()
        elif cmd == "stats":
            result = stats()
        elif cmd == "work":
            result = unpushed_work()
        elif cmd == "save-home":
            result = save_home()
        else:
            print(f"dev8-env: unknown command {cmd!r}", file=sys.stderr)
            return 2
    except Exception as exc:
        if not isinstance(exc, (ValueError, OSError, *_process_errors())):
            raise
        print(f"dev8-env {cmd}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def _process_errors() -> tuple[type[Exception], ...]:
    """subprocess's errors, if a command imported it (only then can they occur)."""
    module = sys.modules.get("subprocess")
    return (module.SubprocessError,) if module is not None else ()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
