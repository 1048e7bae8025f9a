"""What the Azure stand-ins share: an HTTPS server with the test CA, JSON answers in
Azure's error shape, Microsoft Entra's token endpoint (so azure-identity and the SDKs'
bearer-token policies run for real) and failures injected on request."""
from __future__ import annotations

import json
import re
import secrets
import ssl
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TENANT = "00000000-0000-0000-0000-00000000dev8"
CLIENT_ID = "dev8-test-client"
CLIENT_SECRET = "dev8-test-secret"
# One Microsoft Entra tenant for every stand-in in a process: a token any of them issued is
# accepted by all, as Entra's tokens are by every Azure service (for its audience).
ISSUED: set[str] = set()


@dataclass
class Injection:
    method: str
    path: re.Pattern
    status: int
    body: dict | None
    headers: dict[str, str]
    times: int
    skip: int = 0  # matching requests served normally before this one answers


class Stub:
    """A stand-in's state the shared handler needs: its tokens and injected failures."""

    def __init__(self, cert_dir: Path) -> None:
        self.cert_dir = cert_dir
        self.tenant = TENANT
        self.tokens = ISSUED
        self.injections: list[Injection] = []
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    @property
    def ca(self) -> Path:
        return self.cert_dir / "ca.pem"

    def serve(self, handler: type[JsonHandler], port: int = 0) -> None:
        """Serve ``handler`` (a subclass bound to this stand-in) over HTTPS on ``port`` (0: a free one)."""
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_dir / "cert.pem", self.cert_dir / "key.pem")
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def credential_env(self) -> dict[str, str]:
        """The variables azure-identity's EnvironmentCredential reads, pointed at this stand-in."""
        return {"AZURE_TENANT_ID": self.tenant, "AZURE_CLIENT_ID": CLIENT_ID,
                "AZURE_CLIENT_SECRET": CLIENT_SECRET, "AZURE_AUTHORITY_HOST": self.url}

    def inject(self, method: str, path: str, status: int, body: dict | None = None,
               headers: dict[str, str] | None = None, times: int = 1, skip: int = 0) -> None:
        """Answer the next ``times`` ``method`` requests whose path matches ``path`` (a regex)
        with ``status``, ``body`` and ``headers`` instead of serving them, after serving
        ``skip`` of them normally."""
        with self.lock:
            self.injections.append(Injection(method, re.compile(path), status, body, headers or {}, times, skip))

    def injected(self, method: str, path: str) -> Injection | None:
        with self.lock:
            for inj in self.injections:
                if inj.method == method and inj.path.search(path) and inj.times > 0:
                    if inj.skip > 0:
                        inj.skip -= 1
                        return None
                    inj.times -= 1
                    return inj
        return None


class JsonHandler(BaseHTTPRequestHandler):
    stub: Stub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 — the base class's name
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
               inner: str | None = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if inner:
            error["innererror"] = {"code": inner}
        self._send(status, {"error": error}, headers)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw or "json" not in (self.headers.get("Content-Type") or ""):
            return raw or None  # the token endpoint's form, or nothing
        return json.loads(raw)

    def do_GET(self) -> None:
        self._route("GET")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        raise NotImplementedError

    def _request(self, bad_json: str) -> tuple[str, dict[str, list[str]], Any] | None:
        """The request's path, query and body (JSON, a form, or None); None after answering
        400 with error code ``bad_json`` when the body is not JSON."""
        url = urlsplit(self.path)
        try:
            body = self._body()
        except ValueError:
            self._error(400, bad_json, "the body is not JSON")
            return None
        return url.path, parse_qs(url.query), body

    def _entra(self, method: str, path: str, body: Any) -> bool:
        """Answer Microsoft Entra's OpenID configuration and client-credential token
        requests; whether ``path`` was one of them."""
        stub = self.stub
        if path.endswith("/.well-known/openid-configuration"):
            base = f"{stub.url}/{stub.tenant}"
            self._send(200, {"token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                             "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                             "token_endpoint_auth_methods_supported": ["client_secret_post"],
                             "response_types_supported": ["code", "token"], "tenant_region_scope": "EU"})
            return True
        if path.endswith("/oauth2/v2.0/token") and method == "POST":
            form = parse_qs((body or b"").decode())
            if form.get("client_secret") != [CLIENT_SECRET] or form.get("grant_type") != ["client_credentials"]:
                self._send(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid "
                                 "client secret provided."})
                return True
            token = secrets.token_urlsafe(24)
            with stub.lock:
                stub.tokens.add(token)
            self._send(200, {"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                             "access_token": token})
            return True
        return False

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.stub.tokens
