"""A small synchronous client for the dev8 REST API."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _detail(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail", resp.text)
    except ValueError:
        return resp.text or resp.reason_phrase
    if isinstance(detail, list):  # pydantic validation errors
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return str(detail)


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 30) -> None:
        import httpx  # here, not at the top: `dev8 --help` needs no HTTP client (~55 ms of imports)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Loading the CA store costs ~30 ms of every command; a plain-HTTP server needs none.
        plain = url.startswith("http://")
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, verify=not plain)

    def request(self, method: str, path: str, **kw: object) -> object:
        import httpx
        try:
            resp = self.http.request(method, "/api/v1" + path, **kw)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the dev8 server at {self.http.base_url}: {exc}") from None
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, _detail(resp))
        return resp.json() if resp.content else None

    def get(self, path: str, **kw: object) -> object:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: object) -> object:
        return self.request("POST", path, **kw)

    def events(self, name: str, after: int = 0) -> Iterator[dict]:
        """Follow an environment's lifecycle events (Server-Sent Events)."""
        import httpx
        try:
            with self.http.stream("GET", f"/api/v1/environments/{name}/events", params={"after": after},
                                  timeout=httpx.Timeout(30, read=None)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise ApiError(resp.status_code, _detail(resp))
                kind = "message"
                for line in resp.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line[5:])
                        yield {"kind": kind, **data}
                    elif not line:
                        kind = "message"
        except httpx.HTTPError as exc:  # refused, or cut in the middle
            raise ApiError(0, f"cannot reach the dev8 server at {self.http.base_url}: {exc}") from None
