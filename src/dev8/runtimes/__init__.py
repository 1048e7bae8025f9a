"""Runtime plugins, registered under the ``dev8.runtimes`` entry point group."""
from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

from dev8.runtimes.base import Runtime


def load_runtime(name: str, data_dir: Path) -> Runtime:
    """The runtime registered as ``name``, built by its ``from_settings(data_dir)``, which
    reads the runtime's own options (``DEV8_RUNTIME_*``; each runtime module documents its
    own). Raises ValueError (unknown name, invalid option) with the reason."""
    for ep in entry_points(group="dev8.runtimes"):
        if ep.name == name:
            return ep.load().from_settings(data_dir)
    known = ", ".join(sorted(ep.name for ep in entry_points(group="dev8.runtimes")))
    raise ValueError(f"unknown runtime {name!r} (installed: {known})")
