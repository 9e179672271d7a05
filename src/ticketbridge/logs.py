"""Structured logging: readable console lines on a terminal, JSON lines otherwise.

Every event passes `scrub` last, so a secret registered here never reaches any output, whatever
code logged it (an error message quoting a header, a URL with a token). Some credentials are masked
without being registered: Authorization header values, Basic and Bearer credentials, passwords in
URLs, and base64 text that decodes to a registered secret (a Basic header of "email:token").
"""

from __future__ import annotations

import base64
import functools
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


# Credentials that need no registering: an Authorization header's value (a tracker's error page may
# echo the request), Basic/Bearer credentials, a password in a URL, and any base64 run that decodes
# to text holding a registered secret (a Basic header built from "email:token").
_AUTH_HEADER = re.compile(r"(?i)(\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)[^\r\n\"',}]+")
_BASIC = re.compile(r"(?i)\b(basic\s+)([A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])")
_BEARER = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{12,})")
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@")
_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")


def _decodes_to_credentials(candidate: str) -> bool:
    try:
        decoded = base64.b64decode(candidate + "=" * (-len(candidate) % 4), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    return ":" in decoded and decoded.isprintable()


def _hides_a_secret(candidate: str) -> bool:
    try:
        decoded = base64.b64decode(candidate + "=" * (-len(candidate) % 4), validate=True).decode("utf-8", "replace")
    except ValueError:
        return False
    return any(secret in decoded for secret in _secrets)


def scrub_text(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, MASK)
    # Each pattern runs only where its literal part occurs: every logged string passes here (an
    # item key, an event name), and most hold none of them (bench/core.py: four regex passes per
    # value were most of the cost of a log line). Only for ASCII text: with IGNORECASE, re also
    # matches look-alikes such as a dotless i, which a substring test would miss.
    lowered = text.lower() if text.isascii() else "authorization basic bearer"
    if "authorization" in lowered:
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + MASK, text)
    if "basic" in lowered:
        text = _BASIC.sub(lambda m: m.group(1) + MASK if _decodes_to_credentials(m.group(2)) else m.group(0), text)
    if "bearer" in lowered:
        text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    if "://" in text and "@" in text:  # case-sensitive literals in the pattern
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", text)
    if _secrets:
        text = _BASE64_RUN.sub(lambda m: MASK if _hides_a_secret(m.group(0)) else m.group(0), text)
    return text


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    return key != "event" and _SECRET_KEYS.search(key) is not None  # a few keys, on every line


def scrub(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if _secret_key(key) and value:
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
