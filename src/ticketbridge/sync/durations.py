"""SLA budget durations as whole seconds.

Kept apart from `config.parse_duration` (float seconds, "500ms" for poll intervals): SLA budgets are
whole seconds (the clock model has second precision) and also come in days and ISO 8601 form.
A day is always exactly 86 400 s: `calendar: 1d` is real elapsed time, so across a DST change it ends
one wall-clock hour off, which is what sla-semantics 7.1 asks for.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration"]

_ACCEPTED = (
    "expected a whole number of seconds, units d/h/m/s in that order such as '45s', '15m', '1h30m', "
    "'1d2h' (1d = 86400 s), or ISO 8601 such as 'PT15M' or 'P1DT2H'"
)

# Each unit at most once, largest first, so "30m1h" (probably a typo) is refused rather than guessed.
_COMPACT = re.compile(r"(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?", re.IGNORECASE)
# Only the fixed-length ISO parts: years and months have no fixed number of seconds.
_ISO = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", re.IGNORECASE)
_FACTORS = (86400, 3600, 60, 1)


def parse_duration(text: str | int | float) -> int:
    """Whole seconds from "45s", "15m", "2h", "1h30m", "24h", "1d" (= exactly 86400 s), "1d2h",
    ISO 8601 "PT15M"/"P1DT2H", or a number of seconds.

    Raises ValueError with a message naming the bad text and the accepted forms.
    """
    # bool is an int subclass; `True` as a duration is always a YAML slip, never one second.
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: {_ACCEPTED}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid duration {text!r}: must not be negative")
        return text
    if isinstance(text, float):
        if not math.isfinite(text) or text < 0 or not text.is_integer():
            raise ValueError(f"invalid duration {text!r}: {_ACCEPTED}")
        return int(text)
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: {_ACCEPTED}")

    value = text.strip()
    if value.isdigit():
        return int(value)
    iso = _ISO.fullmatch(value)
    # "P" and "PT" alone (and "P1DT") match the pattern with nothing in them, so demand digits after P/T.
    if iso and any(iso.groups()) and not value.upper().endswith("T"):
        return _total(iso.groups())
    compact = _COMPACT.fullmatch(value)
    if compact and any(compact.groups()):
        return _total(compact.groups())
    raise ValueError(f"invalid duration {text!r}: {_ACCEPTED}")


def _total(parts: tuple[str | None, ...]) -> int:
    return sum(int(part) * factor for part, factor in zip(parts, _FACTORS, strict=True) if part)
