"""parse_duration: SLA budgets as whole seconds (sla-semantics 7.1 "Durations")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketbridge.sync.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("15m", 900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("24h", 86400),
        ("1d", 86400),  # exactly 86400 s, never "the same wall time tomorrow"
        ("1d2h", 93600),
        ("2d3h4m5s", 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        ("0m", 0),
        (" 15M ", 900),
        ("PT15M", 900),
        ("PT45S", 45),
        ("PT1H30M", 5400),
        ("P1D", 86400),
        ("P1DT2H", 93600),
        ("pt15m", 900),
        ("900", 900),
        (900, 900),
        (0, 0),
        (3600.0, 3600),
    ],
)
def test_accepted_forms(text: str | int | float, seconds: int) -> None:
    result = parse_duration(text)
    assert result == seconds
    assert type(result) is int


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "15x",
        "1.5h",
        "h",
        "1h1h",
        "30m1h",  # units out of order: a typo, not 1h30m
        "-5m",
        "P",
        "PT",
        "P1DT",
        "P1M",  # months have no fixed length
        "P1Y",
        "PT0.5S",
        "T15M",
        "15 minutes",
        -1,
        1.5,
        float("nan"),
        float("inf"),
        True,
        None,
        [],
    ],
)
def test_rejected_forms(text: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)  # type: ignore[arg-type]
    message = str(info.value)
    assert repr(text) in message or "negative" in message
    if not isinstance(text, int | float) or isinstance(text, bool):
        assert "PT15M" in message and "1h30m" in message  # names the accepted forms


def test_message_names_the_bad_text() -> None:
    with pytest.raises(ValueError, match=r"invalid duration '2 hours'.*'1h30m'.*'PT15M'"):
        parse_duration("2 hours")


@given(st.integers(0, 400), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_compact_and_iso_agree(days: int, hours: int, minutes: int, seconds: int) -> None:
    expected = days * 86400 + hours * 3600 + minutes * 60 + seconds
    assert parse_duration(f"{days}d{hours}h{minutes}m{seconds}s") == expected
    assert parse_duration(f"P{days}DT{hours}H{minutes}M{seconds}S") == expected
    assert parse_duration(str(expected)) == expected
