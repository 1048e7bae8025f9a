"""Domain errors. The HTTP layer maps them to status codes; the core never sees HTTP."""
from dev8.runtimes.base import RuntimeUnavailable  # noqa: F401 — raised by runtimes, answered 503


class Dev8Error(Exception):
    """Base class; ``str(exc)`` is a message fit to show a user; ``field`` names the request
    field at fault when there is one (the dashboard shows the message next to it)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(Dev8Error):
    pass


class Conflict(Dev8Error):
    pass


class Invalid(Dev8Error):
    pass


class Unauthorized(Dev8Error):
    pass


class Forbidden(Dev8Error):
    """Authenticated, but this request is refused (e.g. a missing CSRF token)."""


class TooManyAttempts(Dev8Error):
    """Refused for now (repeated failures); try again after ``retry_after`` seconds.
    ``first``: the first refusal of this lockout."""

    def __init__(self, message: str, retry_after: int, first: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.first = first
