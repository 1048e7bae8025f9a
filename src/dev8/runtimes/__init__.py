"""Runtime plugins, registered under the ``dev8.runtimes`` entry point group."""
from __future__ import annotations

from importlib.metadata import entry_points

from dev8.runtimes.base import Runtime


def load_runtime(name: str, **options: object) -> Runtime:
    for ep in entry_points(group="dev8.runtimes"):
        if ep.name == name:
            return ep.load()(**options)
    known = ", ".join(sorted(ep.name for ep in entry_points(group="dev8.runtimes")))
    raise ValueError(f"unknown runtime {name!r} (installed: {known})")
