"""X-Forwarded-Host/-Proto/-For from trusted reverse proxies only.

Behind a TLS-terminating proxy, dev8 must see the host and scheme the browser used (for
Origin checks, redirects and app subdomains). From anyone else those headers would let a
client pick the host dev8 believes, so they are removed before anything reads them; the
RFC 7239 ``Forwarded`` header is always removed (not supported).
"""
from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

FORWARDED = {b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-for", b"forwarded"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxyHeaders:
    def __init__(self, app: ASGIApp, trusted: list[Network]) -> None:
        self.app, self.trusted = app, trusted

    def _is_trusted(self, peer: str) -> bool:
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        given = {k: v.decode("latin-1") for k, v in scope["headers"] if k in FORWARDED}
        headers = [(k, v) for k, v in scope["headers"] if k not in FORWARDED]
        scope = dict(scope)
        peer = (scope.get("client") or ("", 0))[0]
        if given and self._is_trusted(peer):
            # With a chain of proxies the first value is what the outermost one saw.
            host = given.get(b"x-forwarded-host", "").split(",")[0].strip()
            proto = given.get(b"x-forwarded-proto", "").split(",")[0].strip().lower()
            client = given.get(b"x-forwarded-for", "").split(",")[0].strip()
            if host:
                headers = [(k, v) for k, v in headers if k != b"host"] + [(b"host", host.encode("latin-1"))]
            if proto in ("http", "https"):
                secure = proto == "https"
                scope["scheme"] = ("wss" if secure else "ws") if scope["type"] == "websocket" else proto
            if client:
                scope["client"] = (client, 0)
        scope["headers"] = headers
        await self.app(scope, receive, send)
