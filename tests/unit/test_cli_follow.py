"""How the CLI follows an environment's lifecycle events."""
from __future__ import annotations

import pytest
import typer

from dev8.cli import environments as cli


def test_a_cli_command_whose_event_stream_is_cut_fails_instead_of_claiming_success() -> None:
    """The server ends a stream only when its environment is gone: a stream that just ends
    (a server stopped under `dev8 create`) is an error, not a silent success."""
    class Cut:
        def events(self, name: str, after: int = 0):  # type: ignore[no-untyped-def]
            yield {"kind": "progress", "step": "start", "status": "running", "message": ""}
    with pytest.raises(typer.Exit) as ended:
        cli._follow(Cut(), "web", {"ready"})  # type: ignore[arg-type]
    assert ended.value.exit_code == 1
