"""What can go wrong when Launcher talks to Cyberdesk, as exceptions a caller can act on.

Every exception has a message a person can read (it becomes a form error or a flash message) and
`safe_to_retry`: True when sending the same call again cannot do anything twice. None of them
carries request bodies, so prompt text and sensitive input values never end up in a message.
"""

from __future__ import annotations


class CyberdeskError(Exception):
    """Base class: the call did not give a usable answer."""

    safe_to_retry = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.method = method
        self.path = path

    def __str__(self) -> str:
        return self.message


class InvalidRequest(CyberdeskError):
    """400/422: the API refused what we sent. `field_errors` maps a dotted path without the
    `body.` prefix (e.g. `input_values.age`) to its messages, so a form can put each one next to
    its field; `messages` holds the errors that name no field."""

    def __init__(
        self,
        message: str,
        *,
        field_errors: dict[str, list[str]] | None = None,
        messages: list[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(message, **kwargs)
        self.field_errors = field_errors or {}
        self.messages = messages or []


class NotFound(CyberdeskError):
    """404: no such workflow, run, model or attachment (or it belongs to another organization)."""


class AuthError(CyberdeskError):
    """401/403: the API key is missing, wrong, or not allowed to do this."""


class Conflict(CyberdeskError):
    """409: the request clashes with the current state (e.g. retrying a run that is active)."""


class RateLimited(CyberdeskError):
    """429: too many requests. `retry_after` is the server's wait in seconds, when it said."""

    safe_to_retry = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Unavailable(CyberdeskError):
    """The API could not be reached or failed on its side (5xx, timeout, connection error)."""

    safe_to_retry = True


class NotSent(Unavailable):
    """A write that never reached the server (connection refused, DNS, connect timeout): nothing
    happened upstream, so trying again is safe."""

    safe_to_retry = True


class OutcomeUnknown(Unavailable):
    """A write that was sent but got no usable answer (read timeout, connection reset, 5xx): it
    may or may not have been applied. Never resend blindly; resending with the *same*
    Idempotency-Key is safe, or look the result up first."""

    safe_to_retry = False


class InvalidResponse(CyberdeskError):
    """The API answered 2xx with something we cannot parse (missing field, wrong type, not JSON)."""
