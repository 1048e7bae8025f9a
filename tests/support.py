"""Helpers shared by the tests: free ports, a real PostgreSQL, a real `dev8 server`."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import docker
import httpx
import websockets

REPO = Path(__file__).resolve().parents[1]
FULLSTACK = "dev8/fullstack:latest"
GIT_HOST = "git.corp.test"         # names of the test git server (tests/gitserver.py) on its network
GITLAB_HOST = "gitlab.corp.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 60, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Postgres:
    """A throwaway PostgreSQL cluster on a free loopback port (real server, trust auth);
    with ``trust_from`` (a CIDR, a Docker network's) it also listens beyond loopback and
    trusts that network (containers reach it at their gateway)."""

    def __init__(self, trust_from: str | None = None) -> None:
        self.trust_from = trust_from
        # Not under pytest's tmp dir: that is private to root, and postgres must not run as root.
        self.root = root = Path(tempfile.mkdtemp(prefix="dev8-pg-"))
        self.port = free_port()
        self.datadir = root / "pgdata"
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(root, "postgres")
        bindir = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
                      or "/usr/lib/postgresql/15/bin") if shutil.which("pg_config") else None
        self.bin = bindir if bindir and (bindir / "initdb").exists() else Path(shutil.which("initdb") or "initdb").parent

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, text=True)

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        listen = "127.0.0.1"
        if self.trust_from:
            with open(self.datadir / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.trust_from} trust\n")
            listen = "*"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.root / "pg.log"), "-w",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses={listen}", "start")

    def create_database(self) -> str:
        name = unique("db")
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c",
                        f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run([*self._as_user, str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


class Registry:
    """A real OCI registry on loopback: Debian's ``docker-registry`` (distribution 2.8)
    with its storage in a temporary folder. The Docker engine pushes to and pulls from a
    registry on 127.0.0.0/8 over plain HTTP without any daemon setting."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dev8-registry-"))
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Registry:
        config = self.root / "config.yml"
        config.write_text(f"""version: 0.1
log: {{level: warn}}
storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, delete: {{enabled: true}}}}
http: {{addr: {self.host}}}
""")
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "registry.log", "wb"))
        wait_until(lambda: self._answers(), timeout=30, what=f"the registry on {self.host}")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(self.root / 'registry.log').read_text()[-2000:]}")
        try:
            return httpx.get(f"http://{self.host}/v2/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


class Dev8Server:
    """A real `dev8 server` process with its own data dir, ports and CLI config dir."""

    def __init__(self, root: Path, database_url: str | None = None, extra_env: dict[str, str] | None = None,
                 wrap: list[str] | None = None) -> None:
        self.root = root
        self.wrap = list(wrap or [])  # a command prefix the server runs under (a namespace, say)
        root.mkdir(parents=True, exist_ok=True)
        self.data_dir = root / "data"
        self.config_dir = root / "cli"
        self.http_port = free_port()
        self.ssh_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.database_url = database_url
        self.extra_env = dict(extra_env or {})
        self.log_path = root / "server.log"
        self.proc: subprocess.Popen | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEV8_")}
        env.update(DEV8_DATA_DIR=str(self.data_dir), DEV8_HTTP_ADDR=f"127.0.0.1:{self.http_port}",
                   DEV8_SSH_ADDR=f"127.0.0.1:{self.ssh_port}", DEV8_CONFIG_DIR=str(self.config_dir),
                   DEV8_RECONCILE_INTERVAL="1", DEV8_DEFAULT_IMAGE="dev8/base:latest",
                   DEV8_LOOP_WATCHDOG_MS="100",
                   DEV8_IDLE_TIMEOUT="0")  # idle auto-stop only where a test asks for it
        if self.database_url:
            env["DEV8_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start(self, **extra_env: str) -> Dev8Server:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*self.wrap, sys.executable, "-m", "dev8.cli.main", "server"],
                                     env=self.env(**extra_env),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._healthy, timeout=60, what=f"dev8 server on {self.url}")
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
        return httpx.get(self.url + "/healthz", timeout=2).status_code == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL, *, check_loop: bool = True) -> None:
        """Stop the server; fails if its event loop was ever blocked ≥ 100 ms (the watchdog's
        warnings in its log name where), so every test guards the loop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        if check_loop:
            self.assert_loop_never_blocked()

    def shutdown(self) -> None:
        """Kill, remove its containers and volumes, then check the loop (cleanup first)."""
        try:
            self.kill(check_loop=False)
        finally:
            self.cleanup_docker()
        self.assert_loop_never_blocked()

    def assert_loop_never_blocked(self) -> None:
        from dev8.server.watchdog import MARK
        log = self.log()
        if MARK in log:
            at = log.index(MARK)
            raise AssertionError(f"the server's event loop was blocked:\n{log[max(0, at - 200):at + 3000]}")

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def cli(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 600,
            **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "dev8.cli.main", *args], env=self.env(**env), input=input,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"dev8 {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                                 f"stderr: {proc.stderr}\nserver log tail:\n{self.log()[-3000:]}")
        return proc

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def installation(self) -> str:
        db = self.database_url or f"sqlite:///{self.data_dir / 'dev8.db'}"
        from sqlalchemy import create_engine, text
        engine = create_engine(db)
        with engine.connect() as c:
            value = c.execute(text("select value from meta where key='installation_id'")).scalar_one()
        engine.dispose()
        return value

    def cleanup_docker(self) -> None:
        try:
            inst = self.installation()
        except Exception:  # noqa: BLE001 - the server never got as far as a database
            return
        client = docker.from_env()
        # The killed server may have left a removal running in the engine (409 "already in
        # progress", or a volume still in use): retry until everything of it is gone.
        def gone() -> bool:
            for obj in [*client.containers.list(all=True, filters={"label": f"dev8.installation={inst}"}),
                        *client.volumes.list(filters={"label": f"dev8.installation={inst}"})]:
                try:
                    obj.remove(force=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:
                        raise
                    return False
            return True
        wait_until(gone, timeout=60, interval=0.5, what="the server's containers and volumes removed")


def another_replica(of: Dev8Server, root: Path, **extra_env: str) -> Dev8Server:
    """A second server (not started) on ``of``'s database with its settings, given its
    keyring, as an operator gives every replica (README: Several servers); the gateway's host
    key it finds in the database."""
    assert of.database_url, "replicas share a PostgreSQL database"
    srv = Dev8Server(root, of.database_url, {**of.extra_env, **extra_env})
    srv.data_dir.mkdir(parents=True, mode=0o700)
    shutil.copy2(of.data_dir / "keyring.json", srv.data_dir / "keyring.json")
    return srv


async def open_terminal(srv: Dev8Server, user: User, env: str, cookie: str, *, origin: str | None = None,
                        session: str | None = None) -> tuple[websockets.ClientConnection, dict]:
    """A browser terminal's WebSocket on ``srv`` (as the page opens it, with dev8's session
    cookie), and its hello."""
    query = f"?session={session}" if session else ""
    ws = await websockets.connect(f"{srv.url.replace('http://', 'ws://')}/@{user.username}/{env}/terminal/ws{query}",
                                  additional_headers={"cookie": f"dev8_session={cookie}"}, origin=origin or srv.url)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 20))
    assert hello["t"] == "hello", hello
    return ws, hello


def trust_gateway_of(user: User, srv: Dev8Server) -> None:
    """Let ``user``'s ssh trust ``srv``'s gateway with the host key it trusted at login (so a
    login through another replica proves the key is the same)."""
    known = user.config_dir / "known_hosts"
    key = known.read_text().splitlines()[0].split(None, 1)[1]
    known.write_text(known.read_text() + f"[127.0.0.1]:{srv.ssh_port} {key}\n")


class User:
    """A user of a running server with a logged-in CLI config dir and an SSH key."""

    def __init__(self, server: Dev8Server, email: str, root: Path) -> None:
        self.server = server
        self.email = email
        root.mkdir(parents=True, exist_ok=True)
        self.config_dir = root / "cli"
        self.key = root / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        server.cli("admin", "create-user", email, input="")
        self.token = server.cli("admin", "create-token", email).stdout.strip()
        self.cli("login", server.url, "--token", self.token)
        self.cli("keys", "add", str(self.key) + ".pub")
        self.username = json.loads(self.http().get("/me").text)["username"]

    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        return self.server.cli(*args, DEV8_CONFIG_DIR=str(self.config_dir), **kw)

    def http(self) -> httpx.Client:
        return self.server.api(self.token)

    def script(self) -> httpx.Client:
        """A script's client for dev8's own URLs (path-mode apps ``/@user/env/…``): bearer token."""
        return httpx.Client(base_url=self.server.url, timeout=30, headers={"authorization": f"Bearer {self.token}"})

    @staticmethod
    def server_cli_argv(*args: str) -> list[str]:
        return [sys.executable, "-m", "dev8.cli.main", *args]

    def ssh_args(self, login: str) -> list[str]:
        return ["ssh", "-p", str(self.server.ssh_port), "-i", str(self.key), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.config_dir / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", f"{login}@127.0.0.1"]

    def ssh(self, login: str, command: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.ssh_args(login), command], input=input, capture_output=True,
                              text=True, timeout=timeout)


class DumbGitServer:
    """A repository served over git's dumb HTTP by a static file server on loopback (for the
    fake runtime's environments, local processes); ``commit`` adds a commit and publishes it."""

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        import functools
        import threading
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
        self.work, self.served = root / "work", root / "served"
        subprocess.run(["git", "init", "-q", "-b", "main", str(self.work)], check=True)
        self.served.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.served / "proj.git")], check=True)
        self.commit(files)
        handler = functools.partial(SimpleHTTPRequestHandler, directory=str(self.served))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/proj.git"

    def commit(self, files: dict[str, str]) -> str:
        """Write ``files``, commit and publish them; the new commit."""
        git = ["git", "-C", str(self.work), "-c", "user.name=t", "-c", "user.email=t@t"]
        for name, text in files.items():
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            (self.work / name).write_text(text)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "change"], check=True)
        subprocess.run([*git, "push", "-q", str(self.served / "proj.git"), "main"], check=True)
        subprocess.run(["git", "-C", str(self.served / "proj.git"), "update-server-info"], check=True)
        return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    def stop(self) -> None:
        self._httpd.shutdown()


class Relay:
    """Relays each accepted connection to a new upstream one, byte for byte, on threads;
    a subclass says where it listens and what it connects to."""

    def __init__(self) -> None:
        import threading
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self.flowing = threading.Event()
        self.flowing.set()

    def _listen(self) -> socket.socket:
        raise NotImplementedError

    def _connect(self) -> socket.socket:
        raise NotImplementedError

    def start(self) -> Self:
        import threading
        self._server = self._listen()
        self._server.listen(64)
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()
        return self

    def _accept(self, server: socket.socket) -> None:
        import threading
        while True:
            try:
                down, _ = server.accept()
            except OSError:
                return
            try:
                up = self._connect()
            except OSError:
                down.close()
                continue
            self._conns += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self._conns.clear()


class SocketRelay(Relay):
    """A unix-socket relay in front of the Docker engine's socket, which a test can cut
    and restore (from dev8's side the daemon really goes away and comes back), or wedge:
    connections are accepted and requests read, but nothing is answered until unwedged."""

    def __init__(self, path: Path, upstream: str = "/var/run/docker.sock") -> None:
        super().__init__()
        self.path, self.upstream = path, upstream

    def wedge(self) -> None:
        self.flowing.clear()

    def unwedge(self) -> None:
        self.flowing.set()

    def _listen(self) -> socket.socket:
        if self.path.exists():
            self.path.unlink()
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(self.path))
        return server

    def _connect(self) -> socket.socket:
        up = socket.socket(socket.AF_UNIX)
        up.connect(self.upstream)
        return up

    def stop(self) -> None:
        super().stop()
        if self.path.exists():
            self.path.unlink()


class Balancer(Relay):
    """A TCP load balancer on loopback in front of several servers' ports, as a cloud's is:
    each new connection goes to the preferred backend (``prefer``), or to the next one that
    accepts when it does not (a replica that is gone); no stickiness. A backend is a port on
    loopback or a (host, port) address."""

    def __init__(self, *backends: int | tuple[str, int], bind: str = "127.0.0.1") -> None:
        super().__init__()
        self.bind = bind  # where it listens (a Docker network's gateway, for containers)
        self.port = free_port()
        self.url = f"http://{bind}:{self.port}"
        self.backends = list(backends)

    def prefer(self, port: int | tuple[str, int]) -> None:
        """Send new connections to ``port`` first (the connections open stay where they are)."""
        self.backends.remove(port)
        self.backends.insert(0, port)

    def _listen(self) -> socket.socket:
        server = socket.socket(socket.AF_INET)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.bind, self.port))
        return server

    def _connect(self) -> socket.socket:
        for backend in list(self.backends):
            try:
                up = socket.create_connection(backend if isinstance(backend, tuple) else ("127.0.0.1", backend), timeout=5)
            except OSError:
                continue
            up.settimeout(None)  # a long-lived WebSocket or SSH session may be idle
            return up
        raise ConnectionRefusedError("no backend accepts")


def _san(name: str):  # type: ignore[no-untyped-def]
    import ipaddress

    from cryptography import x509
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_tls_certs(directory: Path, hostname: str, *more_names: str) -> Path:
    """A test CA and a server certificate for ``hostname`` and ``more_names`` (cert.pem,
    key.pem, ca.pem)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev8 test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in (hostname, *more_names)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    os.chmod(directory / "key.pem", 0o644)  # read by the server in its container
    return directory / "ca.pem"


def make_vsix(path: Path, publisher: str = "dev8test", name: str = "hello", version: str = "0.0.1") -> Path:
    """A minimal valid VS Code extension package (.vsix is a zip with a manifest)."""
    import zipfile
    manifest = f"""<?xml version="1.0" encoding="utf-8"?>
<PackageManifest Version="2.0.0" xmlns="http://schemas.microsoft.com/developer/vsx-schema/2011">
  <Metadata><Identity Language="en-US" Id="{name}" Version="{version}" Publisher="{publisher}"/>
    <DisplayName>{name}</DisplayName><Description xml:space="preserve">test</Description>
    <Properties><Property Id="Microsoft.VisualStudio.Code.Engine" Value="^1.60.0"/></Properties></Metadata>
  <Installation><InstallationTarget Id="Microsoft.VisualStudio.Code"/></Installation><Dependencies/>
  <Assets><Asset Type="Microsoft.VisualStudio.Code.Manifest" Path="extension/package.json" Addressable="true"/></Assets>
</PackageManifest>"""
    types = """<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension=".json" ContentType="application/json"/><Default Extension=".vsixmanifest" ContentType="text/xml"/></Types>"""
    package = json.dumps({"name": name, "publisher": publisher, "version": version, "displayName": name,
                          "engines": {"vscode": "^1.60.0"}, "contributes": {}})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("extension.vsixmanifest", manifest)
        z.writestr("[Content_Types].xml", types)
        z.writestr("extension/package.json", package)
    return path


def start_git_server(docker_client: docker.DockerClient, network: str, tls: Path, users: dict[str, str]):  # type: ignore[no-untyped-def]
    """tests/gitserver.py in a container on ``network`` as GIT_HOST and GITLAB_HOST, port 8443,
    with the certificate in ``tls`` (make_tls_certs) and ``users`` ({username: token})."""
    container = docker_client.containers.run(
        "dev8/base:latest", ["python3", "/srv/gitserver.py"], entrypoint=[], detach=True, network=network,
        environment={"GIT_USERS": json.dumps(users)}, user="root",
        volumes={str(REPO / "tests" / "gitserver.py"): {"bind": "/srv/gitserver.py", "mode": "ro"},
                 str(tls): {"bind": "/srv/tls", "mode": "ro"}})
    docker_client.networks.get(network).disconnect(container)
    docker_client.networks.get(network).connect(container, aliases=[GIT_HOST, GITLAB_HOST])
    wait_until(lambda: "app.git" in container.exec_run("ls /srv/git/org").output.decode(), timeout=30,
               what="git server repository")
    # and listening (the repository is made first: under load the server came up later)
    listening = ["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 8443), 2).close()"]
    wait_until(lambda: container.exec_run(listening).exit_code == 0, timeout=30, what="git server listening")
    return container


def publish_to_git_server(container, files: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    """Commit ``files`` to org/app.git's main inside the test git server's container; the commit."""
    writes = " && ".join(f"mkdir -p $(dirname {name}) && printf %s {shlex.quote(text)} > {name}"
                         for name, text in files.items())
    script = ("set -e; rm -rf /tmp/w; git clone -q /srv/git/org/app.git /tmp/w; cd /tmp/w; " + writes +
              "; git add -A; git -c user.name=t -c user.email=t@t commit -qm change; git push -q origin main"
              "; git rev-parse HEAD")
    result = container.exec_run(["sh", "-c", script], user="root")
    assert result.exit_code == 0, result.output.decode()
    return result.output.decode().split()[-1]


def github_push(server: Dev8Server, url: str, branch: str, commit: str, secret: str) -> httpx.Response:
    """GitHub's push webhook for ``url``'s ``branch`` at ``commit`` to ``server``, signed
    (HMAC-SHA256 of the body) with ``secret``."""
    body = json.dumps({"ref": f"refs/heads/{branch}", "after": commit, "deleted": False,
                       "repository": {"clone_url": url, "html_url": url.removesuffix(".git"),
                                      "default_branch": "main"}}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(f"{server.url}/api/v1/prebuilds/hooks/github", content=body, timeout=30, headers={
        "content-type": "application/json", "x-github-event": "push", "x-hub-signature-256": signature})


PASSWORD = "correct horse battery"  # the web password tests give users (admin set-password)


def web_login(server: Dev8Server, email: str, next_url: str = "/") -> httpx.Client:
    """Log in through /login like a browser: a client holding dev8's session cookie."""
    client = httpx.Client(base_url=server.url, timeout=30)
    r = client.post("/login", data={"email": email, "password": PASSWORD, "next": next_url})
    assert r.status_code == 303, r.text
    return client


def set_web_password(user: User) -> None:
    user.server.cli("admin", "set-password", user.email, "--password-stdin", input=PASSWORD + "\n")


def start_envapps(user: User, env: str) -> None:
    """Run tests/envapps.py in ``env``: HTTP echo on 127.0.0.1:8100, WebSocket echo on :8101."""
    ssh = user.ssh_args(env)
    subprocess.run(["scp", "-P", ssh[2], *ssh[3:-1], str(REPO / "tests" / "envapps.py"), f"{ssh[-1]}:envapps.py"],
                   check=True, capture_output=True, timeout=60)
    user.ssh(env, "nohup python3 envapps.py >/dev/null 2>&1 &")
    wait_until(lambda: user.ssh(env, "python3 -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:8100/')\"")
               .returncode == 0, timeout=30, what="apps in the environment")


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
# Without the background-networking flags Chromium keeps trying Google's hosts, which this
# closed network refuses (see the machine notes).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def accessibility_problems(page) -> list[str]:  # type: ignore[no-untyped-def]
    """axe-core's serious and critical findings on the page as it is now, one line each
    (rule, what it found, where)."""
    from axe_playwright_python.sync_playwright import Axe
    found = Axe().run(page).response["violations"]
    return [f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in found if v["impact"] in ("serious", "critical")]


def trust_questions(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Every time VS Code asks in ``page`` whether to trust the folder (at a moment of its
    choosing: seconds after the workbench shows on a busy machine), noted and answered so
    the test goes on; the test then says whether it was asked at all."""
    asked: list[str] = []
    button = page.locator("a.monaco-button:has-text('Yes, I trust the authors')")

    def answer(found) -> None:  # type: ignore[no-untyped-def]
        asked.append(page.url)
        found.click()
    page.add_locator_handler(button, answer)
    return asked


def restricted_mode_shown(page) -> bool:  # type: ignore[no-untyped-def]
    """VS Code's status bar says Restricted Mode (an untrusted folder), or a trust question is open."""
    return page.locator(".statusbar-item:has-text('Restricted Mode'), .monaco-dialog-box:has-text('trust')").count() > 0


def log_in(page, server: Dev8Server, user: User, target: str) -> None:  # type: ignore[no-untyped-def]
    """Open ``target`` and log in on the form it sends us to; back at ``target`` after."""
    page.goto(server.url + target)
    assert "/login" in page.url  # sent to log in first
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button")
    page.wait_for_url(server.url + (target.split("next=")[1] if target.startswith("/login?") else target))


@contextmanager
def fake_server(root: Path, **extra_env: str) -> Iterator[Dev8Server]:
    """A real dev8 server on the fake runtime (its environments are local processes under
    ``root/runtime``, also as ``server.runtime_root``); afterwards stopped (which checks its
    event loop) and its environments killed."""
    runtime = root / "runtime"
    srv = Dev8Server(root / "server", extra_env={"DEV8_RUNTIME": "fake", "DEV8_RUNTIME_ROOT": str(runtime),
                                                 **extra_env}).start()
    srv.runtime_root = runtime  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        try:
            srv.kill()
        finally:
            kill_fake_environments(runtime)


def kill_fake_environments(runtime_root: Path) -> None:
    """Whatever the fake runtime left running under ``runtime_root`` (its environments are
    processes of their own, like containers, and outlive a killed server)."""
    for pid_file in runtime_root.glob("*/pid"):
        try:
            os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    for terms in runtime_root.glob("*/run/terms"):  # browser terminals' holders end without their sockets
        shutil.rmtree(terms, ignore_errors=True)


def vscode_answers(user: User, name: str) -> None:
    """VS Code's workbench and an asset of it through dev8's proxy, over the environment's SSH."""
    client = user.script()
    client.timeout, client.follow_redirects = httpx.Timeout(60), True
    def workbench() -> httpx.Response | None:  # dev8's "Starting…" page until code-server answers
        page = client.get(f"/@{user.username}/{name}/apps/vscode/", headers={"accept": "text/html"})
        return page if page.status_code == 200 and "workbench" in page.text.lower() else None
    page = wait_until(workbench, timeout=90, interval=0.5, what="VS Code's workbench through the proxy")
    assets = re.findall(r'(?:src|href)="(\./[^"]+\.(?:js|css|png))"', page.text)
    assert assets and client.get(str(page.url.join(assets[0]))).status_code == 200
