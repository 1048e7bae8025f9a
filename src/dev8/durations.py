"""Durations and sizes as people type and read them (pure; light enough for the CLI to import)."""
from __future__ import annotations

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``30m``, ``2h``, ``90s``, ``1d`` to seconds; ``0`` or ``never`` to 0."""
    text = text.strip().lower()
    if text in ("0", "never"):
        return 0
    number, unit = text[:-1], text[-1:]
    if unit not in UNITS or not number.isdigit():
        raise ValueError(f"expected e.g. 30m, 2h or 0 (never), got {text!r}")
    return int(number) * UNITS[unit]


# An idle timeout, wherever it is set (the server's DEV8_IDLE_TIMEOUT, an environment's own):
# 0 (never) or between these.
MIN_IDLE_TIMEOUT = 5
MAX_IDLE_TIMEOUT = 30 * 24 * 3600
IDLE_TIMEOUT_RULE = "0 (never) or between 5 s and 30 days"


def idle_timeout_ok(seconds: int) -> bool:
    return seconds == 0 or MIN_IDLE_TIMEOUT <= seconds <= MAX_IDLE_TIMEOUT


def human(seconds: float) -> str:
    """As people say it: ``45`` → ``45 s``, ``60`` → ``1 min``, ``200`` → ``3 min``,
    ``1800`` → ``30 min``, ``7200`` → ``2 h``, ``5400`` → ``1.5 h``."""
    if seconds < 60:
        return f"{round(seconds)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f}".removesuffix(".0") + " h"


def human_size(n: float) -> str:
    """``512 * 2**20`` → ``512 MiB``, ``1.5 * 2**30`` → ``1.5 GiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{round(n) if n >= 10 or i == 0 else round(n, 1):g} {units[i]}"
