"""A calendar name of the wrong type (a list or a mapping where a name belongs) next to a
`business_days:` target is a file:line:column problem, not a TypeError (found by the mapping-file
mutations of tests/reliability/test_bad_input.py: `calendar: !!omap [a: 1]` crashed `validate`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketbridge.sync.policy.policy import check_policy

REPO = Path(__file__).resolve().parents[3]
SHIPPED = (REPO / "mappings" / "policy.yaml").read_text(encoding="utf-8")
CALENDAR_LINE = "    calendar: support_berlin\n"


@pytest.mark.parametrize("value", ["[support_berlin]", "{name: support_berlin}", "!!omap [a: 1]"])
def test_a_policy_calendar_that_is_not_a_name_is_a_located_problem(tmp_path: Path, value: str) -> None:
    assert SHIPPED.count(CALENDAR_LINE) >= 1 and "business_days:" in SHIPPED
    line = SHIPPED[: SHIPPED.index(CALENDAR_LINE)].count("\n") + 1
    path = tmp_path / "policy.yaml"
    path.write_text(SHIPPED.replace(CALENDAR_LINE, f"    calendar: {value}\n", 1), encoding="utf-8")
    policy, problems = check_policy(path)
    assert policy is None
    assert any(p.file == str(path) and p.line == line and "calendar" in p.message for p in problems), problems


def test_a_default_calendar_that_is_not_a_name_is_a_located_problem(tmp_path: Path) -> None:
    assert "\ndefault_calendar: " in SHIPPED
    path = tmp_path / "policy.yaml"
    text = "\n".join("default_calendar: [x, y]" if ln.startswith("default_calendar: ") else ln
                     for ln in SHIPPED.split("\n"))
    path.write_text(text.replace(CALENDAR_LINE, ""), encoding="utf-8")
    policy, problems = check_policy(path)
    assert policy is None and any("default_calendar" in p.message for p in problems), problems


@pytest.mark.parametrize("value", ["[BE, BY]", "{state: BE}", "[[1]]"])
def test_a_calendar_the_schema_rejects_is_not_built_so_a_wrong_holiday_subdivision_is_a_problem_not_a_crash(
        tmp_path: Path, value: str) -> None:
    subdiv = "          subdiv: BE"
    assert subdiv in SHIPPED
    line = SHIPPED[: SHIPPED.index(subdiv)].count("\n") + 1
    path = tmp_path / "policy.yaml"
    path.write_text(SHIPPED.replace(subdiv, f"          subdiv: {value}", 1), encoding="utf-8")
    policy, problems = check_policy(path)
    assert policy is None
    assert any(p.line == line and "subdiv" in p.message for p in problems), problems
