"""Pure guards in front of dev8's routes, run as ASGI apps without a server: the body
limit, trusted-proxy headers and who may open a shared port."""
from __future__ import annotations

import asyncio
import ipaddress

from dev8.core.sharing import may_open
from dev8.server.app import BodyLimit
from dev8.server.apps.forwarded import TrustedProxyHeaders
from dev8.store.models import User


def call(app, scope: dict, bodies: list[bytes]) -> tuple[list[dict], dict]:  # type: ignore[no-untyped-def]
    """Run ``app`` on one request; what it sent back and the scope the inner app saw."""
    sent: list[dict] = []
    seen: dict = {}
    chunks = [{"type": "http.request", "body": b, "more_body": i < len(bodies) - 1} for i, b in enumerate(bodies)]

    async def inner(scope, receive, send):  # type: ignore[no-untyped-def]
        seen["scope"] = scope
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen["body"] = body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict:
        return chunks.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)
    asyncio.run(app(inner, scope, receive, send))
    return sent, seen


def http_scope(path: str = "/api/v1/x", headers: list | None = None, client: str = "127.0.0.1") -> dict:
    return {"type": "http", "path": path, "headers": headers or [], "client": (client, 1234), "scheme": "http"}


def limited(limit: int):  # type: ignore[no-untyped-def]
    return lambda inner, scope, receive, send: BodyLimit(inner, limit)(scope, receive, send)


def test_body_limit_refuses_oversized_bodies_with_or_without_length():
    sent, seen = call(limited(10), http_scope(headers=[(b"content-length", b"11")]), [b"x" * 11])
    assert sent[0]["status"] == 413 and "scope" not in seen
    sent, seen = call(limited(10), http_scope(), [b"x" * 6, b"y" * 6])  # chunked, no length
    assert sent[0]["status"] == 413 and "scope" not in seen
    sent, seen = call(limited(10), http_scope(), [b"x" * 5, b"y" * 5])
    assert sent[0]["status"] == 200 and seen["body"] == b"x" * 5 + b"y" * 5  # replayed whole
    sent, seen = call(limited(10), http_scope(path="/@alice/web/ports/8000/upload"), [b"z" * 50])
    assert sent[0]["status"] == 200 and seen["body"] == b"z" * 50  # environment traffic is not dev8's to judge


def forwarded(trusted: str):  # type: ignore[no-untyped-def]
    nets = [ipaddress.ip_network(trusted)]
    return lambda inner, scope, receive, send: TrustedProxyHeaders(inner, nets)(scope, receive, send)


def test_forwarded_headers_are_believed_from_trusted_proxies_only():
    headers = [(b"host", b"dev8.internal"), (b"x-forwarded-host", b"dev8.example.com, inner"),
               (b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"203.0.113.9"), (b"forwarded", b"for=x")]
    _, seen = call(forwarded("10.0.0.0/8"), http_scope(headers=headers, client="10.1.2.3"), [b""])
    scope = seen["scope"]
    assert dict(scope["headers"])[b"host"] == b"dev8.example.com" and scope["scheme"] == "https"
    assert scope["client"][0] == "203.0.113.9" and b"forwarded" not in dict(scope["headers"])
    _, seen = call(forwarded("10.0.0.0/8"), http_scope(headers=headers, client="192.0.2.1"), [b""])
    scope = seen["scope"]
    assert dict(scope["headers"])[b"host"] == b"dev8.internal" and scope["scheme"] == "http"
    assert scope["client"][0] == "192.0.2.1"
    assert not {b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-for"} & set(dict(scope["headers"]))


def test_who_may_open_a_shared_port():
    owner, other = User(id=1, email="o@x", username="o"), User(id=2, email="b@x", username="b")
    assert may_open("private", owner, 1) and not may_open("private", other, 1) and not may_open("private", None, 1)
    assert may_open("authenticated", other, 1) and not may_open("authenticated", None, 1)
    assert may_open("public", None, 1) and may_open("public", other, 1)
