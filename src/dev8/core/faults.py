"""Crash points for the reconciler's crash-recovery tests.

``DEV8_FAULT_KILL_AFTER=<point>`` makes the server SIGKILL itself right after that point,
so tests can prove a control plane that dies half way converges after a restart. Unset
(always, outside those tests) it does nothing.
"""
from __future__ import annotations

import os
import signal


def crash_point(point: str) -> None:
    if os.environ.get("DEV8_FAULT_KILL_AFTER") == point:
        os.kill(os.getpid(), signal.SIGKILL)
