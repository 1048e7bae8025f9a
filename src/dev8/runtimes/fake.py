"""The ``fake`` runtime: each environment is a local process speaking SSH, no containers.

Good enough for the core's tests without a Docker engine (the reconciler, the connection
pool, the gateway, configure over SSH), and the reference for the runtime contract
(``tests/contract``). Per environment, under the runtime's root folder:

    <object name>/home     its storage (kept by stop, removed unless kept)
    <object name>/run      the instance's scratch dir (the image's tmpfs): emptied each start
    <object name>/meta     the labels it was made with (env id), its image and control key
    <object name>/pid      the running instance's process; instance = the pid's start token

What it cannot prove: isolation, resource limits, images, a real sshd or network; commands
run as the server's own user on this host. ``DEV8_RUNTIME_ROOT`` chooses the folder
(default: ``fake-runtime`` in the data dir); a file ``UNAVAILABLE`` in it makes every call
raise RuntimeUnavailable, as a backend that is down would; a file ``HUNG`` makes every call
wait, without an answer or a timeout of its own, until it is removed (a wedged backend).
Images whose name starts with ``missing/`` do not exist (a mistyped image); with
``nospace/`` making its storage fails as a full disk does (errno 28, the raw OSError); a
fetch of ``slow/`` takes three seconds, with progress (a pull to watch).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from dev8.runtimes.base import (
    DEFAULT_START_TIMEOUT,
    LABEL_INSTALLATION,
    EnvSpec,
    NeedsUserAction,
    Observed,
    Progress,
    RuntimeUnavailable,
    StorageGone,
)

START_TIMEOUT = 10.0
MEMORY_DIR = "/dev/shm"  # a tmpfs on Linux: each instance's run dir is made in it


def _clear_run_dir(d: Path) -> None:
    run = d / "run"
    if run.is_symlink():
        shutil.rmtree(run.resolve(), ignore_errors=True)
        run.unlink()
    else:
        shutil.rmtree(run, ignore_errors=True)


class FakeOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEV8_RUNTIME_", extra="ignore")

    root: Path | None = None
    boot_slots: int = Field(default=0, ge=0)  # 0: no limit


class FakeRuntime:
    name = "fake"
    before_stop: str | None = None  # its storage is the live home
    start_timeout = DEFAULT_START_TIMEOUT
    copies_storage = True

    def __init__(self, root: Path, boot_slots: int = 0) -> None:
        self.root = root
        self.boot_slots: int | None = boot_slots or None

    @classmethod
    def from_settings(cls, data_dir: Path) -> FakeRuntime:
        opts = FakeOptions()
        return cls(opts.root or data_dir / "fake-runtime", boot_slots=opts.boot_slots)

    def _check(self) -> None:
        while (self.root / "HUNG").exists():
            time.sleep(0.05)
        if (self.root / "UNAVAILABLE").exists():
            raise RuntimeUnavailable(f"fake runtime unavailable ({self.root / 'UNAVAILABLE'} exists)")

    def _dir(self, spec: EnvSpec) -> Path:
        return self.root / spec.object_name

    def _meta(self, spec: EnvSpec) -> dict:
        try:
            return json.loads((self._dir(spec) / "meta").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _pid(self, spec: EnvSpec) -> tuple[int, str] | None:
        return _live(self._dir(spec))

    def ping(self) -> None:
        self._check()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def prepare(self, spec: EnvSpec, progress: Progress) -> None:
        self.ping()
        if spec.image.startswith(("missing/", "vanishing/")):  # vanishing/: gone after the create checked it
            raise NeedsUserAction(f"image {spec.image} does not exist; choose another image")
        d = self._dir(spec)
        if self._meta(spec).get("env_id") not in (None, spec.env_id):
            # Left behind by an earlier environment of the same name: its storage is kept,
            # its process is not ours to adopt.
            self._kill(spec)
        if spec.storage_expected and not (d / "home").is_dir():
            raise StorageGone(f"its home storage {d / 'home'} is gone")
        if spec.image.startswith(("nospace/", "slownospace/")):  # slownospace/: a failure that takes its time
            if spec.image.startswith("slow"):
                time.sleep(3)
            raise OSError(28, "No space left on device", str(d / "home"))
        if spec.seed and not (d / "home").is_dir():
            self._copy_home(self.root / spec.seed / "home", d / "home", progress)
        (d / "home").mkdir(parents=True, exist_ok=True)
        meta = {"env_id": spec.env_id, "labels": spec.labels, "image": spec.image}
        (d / "meta").write_text(json.dumps(meta))
        (d / "authorized_keys").write_text(spec.control_public_key + "\n")

    @staticmethod
    def _copy_home(seed: Path, home: Path, progress: Progress) -> None:
        """A copy of the prebuild's home, beside the new one and then renamed: whole or none."""
        if not seed.is_dir():
            raise StorageGone(f"the prebuild's home {seed} is gone")
        progress(f"copying the prebuild's home ({seed.parent.name})")
        partial = home.with_name("home.partial")
        shutil.rmtree(partial, ignore_errors=True)
        home.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(seed, partial, symlinks=True)
        partial.rename(home)

    def ensure_running(self, spec: EnvSpec) -> Observed:
        self._check()
        if self._meta(spec).get("env_id") != spec.env_id:
            self.prepare(spec, lambda _m: None)
        if self._pid(spec) is None:
            self._start(spec)
        return self.observe(spec)

    def _start(self, spec: EnvSpec) -> None:
        d = self._dir(spec)
        _clear_run_dir(d)  # a new instance starts with an empty tmpfs
        memory = Path(tempfile.mkdtemp(prefix=f"dev8-fake-{spec.object_name}-", dir=MEMORY_DIR))
        (d / "run").symlink_to(memory)  # dev8-env writes secrets only where memory holds them
        with contextlib.suppress(FileNotFoundError):
            (d / "port").unlink()
        log = open(d / "log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "dev8.runtimes.fake_sshd", str(d)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        (d / "pid").write_text(f"{proc.pid} {uuid.uuid4().hex}")
        deadline = time.monotonic() + START_TIMEOUT
        while not (d / "port").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the fake environment did not start (see {d / 'log'})")
            time.sleep(0.02)
        # Reaped by a thread of ours; a restarted control plane adopts it by its pid file.
        threading.Thread(target=proc.wait, daemon=True).start()

    def observe(self, spec: EnvSpec) -> Observed:
        self._check()
        if self._meta(spec).get("env_id") != spec.env_id:
            return Observed(exists=False)
        return _observed(self._dir(spec))

    def observe_all(self, installation: str) -> dict[str, Observed]:
        self._check()
        found: dict[str, Observed] = {}
        for meta in self.root.glob("*/meta"):
            try:
                doc = json.loads(meta.read_text())
            except (FileNotFoundError, ValueError):
                continue
            if (doc.get("labels") or {}).get(LABEL_INSTALLATION) == installation:
                found[doc["env_id"]] = _observed(meta.parent)
        return found

    def stop(self, spec: EnvSpec) -> None:
        self._check()
        self._kill(spec)

    def _kill(self, spec: EnvSpec) -> None:
        live = self._pid(spec)
        if live is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(live[0], signal.SIGTERM)
            deadline = time.monotonic() + 5
            while self._pid(spec) is not None and time.monotonic() < deadline:
                time.sleep(0.02)
        for name in ("pid", "port"):
            with contextlib.suppress(FileNotFoundError):
                (self._dir(spec) / name).unlink()
        _clear_run_dir(self._dir(spec))

    def remove(self, spec: EnvSpec, *, keep_storage: bool) -> None:
        self._check()
        if self._meta(spec).get("env_id") not in (None, spec.env_id):
            return  # another environment's now
        self._kill(spec)
        d = self._dir(spec)
        if keep_storage:
            with contextlib.suppress(FileNotFoundError):
                (d / "meta").unlink()
        else:
            shutil.rmtree(d, ignore_errors=True)

    def image_status(self, image: str) -> str:
        self._check()
        if image.startswith("missing/"):
            raise NeedsUserAction(f"image {image} does not exist; choose another image")
        return "ready"

    def fetch_image(self, image: str, progress: Progress) -> None:
        self.image_status(image)  # missing/ images: NeedsUserAction, as a registry without them
        if image.startswith("slow/"):
            for step in range(1, 31):
                progress(f"{image}: step {step} of 30")
                time.sleep(0.1)
        progress(f"{image}: nothing to fetch (the fake runtime's environments are local processes)")

    def build_image(self, tag: str, progress: Progress, *, image: str | None = None, context: bytes | None = None,
                    dockerfile: str = "Dockerfile", args: dict[str, str] | None = None) -> str:
        raise NeedsUserAction("the fake runtime cannot build images: its environments are local processes")

    def logs(self, spec: EnvSpec, tail: int) -> list[str]:
        self._check()
        if self._meta(spec).get("env_id") != spec.env_id:
            return []
        try:
            return (self._dir(spec) / "log").read_text(errors="replace").splitlines()[-tail:]
        except FileNotFoundError:
            return []

    def host_key(self, spec: EnvSpec) -> str:
        self._check()
        path = self._dir(spec) / "home" / ".dev8" / "hostkeys" / "ssh_host_ed25519_key.pub"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise RuntimeError("the environment has no SSH host key yet") from None


def _live(d: Path) -> tuple[int, str] | None:
    """The live process of the environment in folder ``d`` and its instance token, if any."""
    try:
        pid_text, instance = (d / "pid").read_text().split()
        pid = int(pid_text)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    if str(d).encode() not in cmdline or state == "Z":
        return None  # the pid was reused by something else, or it died
    return pid, instance


def _observed(d: Path) -> Observed:
    live = _live(d)
    if live is None:
        return Observed(exists=True, running=False, detail="exited")
    try:
        port = int((d / "port").read_text())
    except (FileNotFoundError, ValueError):
        return Observed(exists=True, running=False, detail="starting")
    return Observed(exists=True, running=True, host="127.0.0.1", port=port, instance_id=live[1],
                    state={"pid": live[0]}, detail="running")
