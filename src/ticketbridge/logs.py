"""Structured logging: readable console lines on a terminal, JSON lines otherwise.

Every event passes `scrub` last, so a secret registered here never reaches any output, whatever
code logged it (an error message quoting a header, a URL with a token).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_secrets: set[str] = set()
_SECRET_KEYS = re.compile(r"token|password|secret|authorization|api_key", re.IGNORECASE)
MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret value (read from env) so that it is masked wherever it appears."""
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub_text(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, MASK)
    return text


def scrub(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and key != "event" and value:
            event[key] = MASK
        elif isinstance(value, str):
            event[key] = scrub_text(value)
        elif isinstance(value, BaseException):
            event[key] = scrub_text(str(value))
    return event


class _Stderr:
    """Whatever sys.stderr is at write time, so that a later swap (pytest's capture, a daemon
    redirect) never leaves the logger writing to a closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """fmt: auto (console on a terminal, JSON otherwise) | console | json."""
    stream = stream or _Stderr()
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=stream.isatty()) if fmt == "console"
                     else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
