"""An environment's states: what its owner asked for, and what dev8 last observed.

String enums, so they compare equal to (and are stored as) their plain values.
"""
from enum import StrEnum


class Desired(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"


class State(StrEnum):
    PENDING = "pending"          # requested, nothing done yet
    STARTING = "starting"        # image, storage, start, sshd, configure
    RUNNING = "running"          # configured and reachable over SSH
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"              # a step failed; retried with backoff
    UNREACHABLE = "unreachable"  # the runtime's backend did not answer
