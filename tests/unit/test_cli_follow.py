"""How the CLI follows an environment's lifecycle events."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer

from dev8.cli import environments as cli
from dev8.cli.client import ApiError


def event(id: int, step: str, status: str) -> dict:
    return {"kind": "progress", "id": id, "step": step, "status": status, "message": ""}


def test_a_cut_stream_is_followed_again_from_the_last_event_it_gave(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A server restarted (or a replica gone) under `dev8 create`: the command opens the stream
    again (the balancer picks a live replica) from where it was, and ends when ready."""
    monkeypatch.setattr(cli.time, "sleep", lambda _s: None)
    asked: list[int] = []

    class Flaky:
        def events(self, name: str, after: int = 0) -> Iterator[dict]:
            asked.append(after)
            if len(asked) == 1:
                yield event(7, "start", "running")
                return  # cut: the stream just ends
            if len(asked) == 2:
                raise ApiError(0, "cannot reach the dev8 server: connection refused")
            yield event(8, "start", "ok")
            yield event(9, "ready", "ok")
    cli._follow(Flaky(), "web", {"ready"})  # type: ignore[arg-type]
    assert asked == [0, 7, 7]
    assert "reconnecting" in capsys.readouterr().out


def test_a_stream_that_stays_cut_fails_instead_of_claiming_success(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server ends a stream only when its environment is gone: a stream that just ends
    and cannot be had again is an error, not a silent success."""
    monkeypatch.setattr(cli, "RESUME_SECONDS", 0.0)
    monkeypatch.setattr(cli.time, "sleep", lambda _s: None)

    class Cut:
        def events(self, name: str, after: int = 0) -> Iterator[dict]:
            if after < 1:
                yield event(1, "start", "running")
    with pytest.raises(typer.Exit) as ended:
        cli._follow(Cut(), "web", {"ready"})  # type: ignore[arg-type]
    assert ended.value.exit_code == 1


def test_an_answer_of_the_server_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.time, "sleep", lambda _s: pytest.fail("retried a refusal"))

    class Refused:
        def events(self, name: str, after: int = 0) -> Iterator[dict]:
            raise ApiError(404, "no environment named web")
            yield {}
    with pytest.raises(typer.Exit):
        cli._follow(Refused(), "web", {"ready"})  # type: ignore[arg-type]
