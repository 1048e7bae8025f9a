"""`--help` shows what a user types, as git, gh and docker do, and cuts nothing at 80 columns."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from dev8.cli.main import command


def every_command() -> list[list[str]]:
    found: list[list[str]] = []

    def walk(cmd, path: list[str]) -> None:  # type: ignore[no-untyped-def]
        found.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])
    walk(command(), [])
    return found


def help_of(path: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "dev8.cli.main", *path, "--help"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_shows_placeholders_not_python_types_and_cuts_nothing() -> None:
    paths = every_command()
    assert ["create"] in paths and ["admin", "set-quota"] in paths and len(paths) > 30
    with ThreadPoolExecutor(8) as pool:
        helps = dict(zip((" ".join(p) for p in paths), pool.map(help_of, paths), strict=True))
    for path, text in helps.items():
        assert not re.search(r"<(str|int|float|bool|path|list\[[a-z]+\])>", text), (path, text)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "{" not in usage, (path, usage)
        assert not re.search(r"…\s*[│|]?\s*$", text, re.M), (path, text)  # a help text cut at 80 columns
    assert "Usage: dev8 create [OPTIONS] NAME" in helps["create"]
    assert re.search(r"--memory SIZE", helps["create"]) and re.search(r"--git LOGIN", helps["create"])
    assert re.search(r"--keep-volume\s+Keep", helps["delete"])  # a flag: nothing between it and its help
    assert "--registry HOST[/PREFIX]" in helps["image push"]  # brackets are text (as markup they crashed)
