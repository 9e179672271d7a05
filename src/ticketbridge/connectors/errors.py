"""The one exception tree for tracker traffic.

Every connector raises only these, so the engine decides what to do from the class alone:

    TrackerError
    ├── Retryable        429, 5xx, timeouts, connection errors: try again later
    │   └── RateLimited  429 (or GitHub's 403 with remaining 0): wait `retry_after` seconds
    ├── Unsure           a write timed out or got a 5xx: it may or may not have happened; not
    │                    retried blindly, the next attempt looks for our marker first
    ├── AuthError        401/403: configuration problem, stop this tracker and say which env var to fix
    └── Permanent        400/404/409/410/422 on one item: record a failure, continue with the rest
        └── NotFound     404/410
"""

from __future__ import annotations


class TrackerError(Exception):
    def __init__(self, tracker: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{tracker}: {message}")
        self.tracker = tracker
        self.message = message
        self.status = status


class Retryable(TrackerError):
    pass


class RateLimited(Retryable):
    def __init__(self, tracker: str, message: str, *, status: int | None = 429,
                 retry_after: float | None = None) -> None:
        super().__init__(tracker, message, status=status)
        self.retry_after = retry_after


class Unsure(TrackerError):
    pass


class AuthError(TrackerError):
    pass


class Permanent(TrackerError):
    pass


class NotFound(Permanent):
    pass


def error_for_status(tracker: str, status: int, message: str,
                     retry_after: float | None = None) -> TrackerError:
    """The single table from HTTP status to error class."""
    if status == 429:
        return RateLimited(tracker, message, status=status, retry_after=retry_after)
    if status == 403 and retry_after is not None:  # GitHub's rate limits answer 403 with a wait
        return RateLimited(tracker, message, status=status, retry_after=retry_after)
    if status in (401, 403):
        return AuthError(tracker, message, status=status)
    if status in (404, 410):
        return NotFound(tracker, message, status=status)
    if status >= 500 or status == 408:
        return Retryable(tracker, message, status=status)
    return Permanent(tracker, message, status=status)
