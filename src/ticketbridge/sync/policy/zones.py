"""Time zones from the pinned tzdata package (see calendar.py, which re-exports load_zone).

Kept out of calendar.py because that module may run compiled (ticketbridge.compiled) and a
compiled subclass of ZoneInfo breaks zoneinfo's per-class cache; this module always runs as Python.
"""

from __future__ import annotations

import importlib.resources
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["TZDATA_VERSION", "ZoneError", "load_zone"]


class ZoneError(ValueError):
    """An unknown or malformed IANA zone key (calendar.py turns it into a CalendarError)."""


class _PinnedZone(ZoneInfo):
    """A zone read from the tzdata package. from_file zones refuse to pickle; this one pickles by key."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return load_zone, (str(self.key),)


@cache
def load_zone(key: str) -> ZoneInfo:
    """The IANA zone `key`, read from the pinned `tzdata` package.

    zoneinfo prefers the operating system's database (TZPATH) over the `tzdata` package, so with a plain
    ZoneInfo(key) the pin in pyproject.toml would not apply on any machine that has /usr/share/zoneinfo,
    and deadlines would depend on how old that machine's tz data is.
    """
    try:
        fallback = ZoneInfo(key)  # also rejects malformed keys such as "../x" before we touch files
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ZoneError(f"unknown time zone {key!r}: expected an IANA name such as 'Europe/Berlin'") from exc
    try:
        resource = importlib.resources.files("tzdata.zoneinfo").joinpath(*key.split("/"))
        with resource.open("rb") as fh:
            return _PinnedZone.from_file(fh, key=key)
    except (ModuleNotFoundError, OSError):
        return fallback


def _tzdata_version() -> str:
    try:
        import tzdata
    except ModuleNotFoundError:
        return "system"
    return str(tzdata.IANA_VERSION)


TZDATA_VERSION = _tzdata_version()
