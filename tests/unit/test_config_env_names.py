"""A secret pasted where the NAME of its environment variable belongs is a config problem, and its
value is never shown (found by tests/reliability/test_secrets.py: `token_env: ghp_...` passed the
schema, and `sync` then printed "environment variable ghp_... is not set")."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketbridge.cli import main
from ticketbridge.sync.config import looks_like_a_secret, validate

REPO = Path(__file__).resolve().parents[2]
PASTED = "ghp_PastedTokenInsteadOfItsName012345678"


@pytest.mark.parametrize("name", ["ZENDESK_API_TOKEN", "JIRA_EMAIL", "GITHUB_TOKEN", "PAGERDUTY_ROUTING_KEY",
                                  "CLICKUP_WEBHOOK_SECRET", "TICKETBRIDGE_REDACTION_KEY", "MY_SERVICE_V2_TOKEN"])
def test_variable_names_are_names(name: str) -> None:
    assert not looks_like_a_secret(name)


@pytest.mark.parametrize("value", [PASTED, "pk_100001_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
                                   "R0UT1NGKEY0000000000000000000000", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
                                   "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"])
def test_token_shapes_are_not_names(value: str) -> None:
    assert looks_like_a_secret(value)


@pytest.mark.parametrize(("old", "path"), [
    ("token_env: JIRA_API_TOKEN", "trackers.jira.auth.token_env"),
    ("email_env: ZENDESK_EMAIL", "trackers.zendesk.auth.email_env"),
    ("routing_key_env: PAGERDUTY_ROUTING_KEY", "paging.routing_key_env"),
])
def test_a_pasted_secret_in_an_env_setting_is_reported_at_its_line_without_its_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, path: str) -> None:
    text = (REPO / "config.example.yaml").read_text(encoding="utf-8").replace("mappings/", f"{REPO}/mappings/")
    assert old in text
    line = text[: text.index(old)].count("\n") + 1
    config = tmp_path / "config.yaml"
    config.write_text(text.replace(old, old.split(":")[0] + ": " + PASTED), encoding="utf-8")
    problems = validate(config)
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [(line, path)]
    assert PASTED not in problems[0].message
    assert main(["sync", "--once", "--config", str(config)]) == 2  # before any variable is read
    captured = capsys.readouterr()
    assert PASTED not in captured.out + captured.err and f"{config}:{line}:" in captured.err
