"""A burst of creates on a runtime whose instances share the machine's CPUs boots at most
``boot_slots`` at once, first come first served: the first environments asked for are the
first ready, instead of all of them finishing together at the end of the burst."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.support import User, fake_server, unique, wait_until


def boot(api, name: str) -> tuple[datetime, datetime]:  # type: ignore[no-untyped-def]
    """When ``name``'s start step began and its host key was read (its boot, as dev8 sees it)."""
    events = api.get(f"/environments/{name}/events", params={"follow": "false"}).json()
    began = next(e["ts"] for e in events if (e["step"], e["status"]) == ("start", "running"))
    booted = next(e["ts"] for e in events if (e["step"], e["status"]) == ("host-key", "ok"))
    return datetime.fromisoformat(began), datetime.fromisoformat(booted)


def test_a_burst_boots_within_its_slots_in_the_order_it_was_asked(tmp_path: Path) -> None:
    with fake_server(tmp_path, DEV8_RUNTIME_BOOT_SLOTS="1") as server:
        user = User(server, "burst@example.com", tmp_path / "u")
        api = user.http()
        names = [unique("b") for _ in range(5)]
        for name in names:  # one after the other: the order they were asked in
            assert api.post("/environments", json={"name": name}).status_code == 202
        wait_until(lambda: all(api.get(f"/environments/{n}").json()["state"] == "running" for n in names),
                   timeout=120, what="the burst running")
        boots = [boot(api, n) for n in names]
        for (_, booted), (began, _) in zip(boots, boots[1:], strict=False):
            assert booted <= began, boots  # one at a time, and in the order asked
        waited = [e["message"] for n in names[1:]
                  for e in api.get(f"/environments/{n}/events", params={"follow": "false"}).json()
                  if (e["step"], e["status"]) == ("start", "progress")]
        assert waited and all("waiting its turn: 1 environment(s) booting" in m for m in waited), waited  # said, not silent
