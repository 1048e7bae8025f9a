"""The small pages dev8 shows browsers instead of an app."""
from __future__ import annotations

from types import SimpleNamespace

from starlette.requests import Request

from dev8.server.apps import proxy


def browser_get() -> Request:
    app = SimpleNamespace(state=SimpleNamespace())
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [(b"accept", b"text/html")],
                    "query_string": b"", "app": app})


def test_a_preview_nobody_listens_on_stops_reloading_after_a_minute_and_says_what_to_check(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    env = SimpleNamespace(id="e1", name="web")
    clock = [1000.0]
    monkeypatch.setattr(proxy.time, "monotonic", lambda: clock[0])
    first = proxy.nothing_answers(browser_get(), env, 3000).body.decode()  # type: ignore[arg-type]
    assert 'http-equiv="refresh"' in first and "tries again every second." in first
    clock[0] += proxy.GIVE_UP_AFTER + 1
    later = proxy.nothing_answers(browser_get(), env, 3000).body.decode()  # type: ignore[arg-type]
    assert 'http-equiv="refresh"' not in later and "dev8 ports web" in later and "for 1 min" in later
    assert "Back to your environments" in later
    proxy._silent_since.pop(("e1", 3000))  # an answer ends the streak (forward_http does this)
    again = proxy.nothing_answers(browser_get(), env, 3000).body.decode()  # type: ignore[arg-type]
    assert 'http-equiv="refresh"' in again
