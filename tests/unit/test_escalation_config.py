"""config.yaml for escalations: the paging section (key from the environment only), escalation flows
checked against the config's flows, and the runtime wiring of the escalation service."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ticketbridge.cli import open_runtime
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import MissingSecret, load_config, validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"
SECRET = "R0UT1NGKEYSANDBOX000000000000000"


def site(tmp_path: Path) -> Path:
    """A copy of the example config with its mapping and policy files."""
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    config = tmp_path / "config.yaml"
    config.write_text(EXAMPLE.read_text())
    return config


def test_the_example_pages_through_the_sandbox_with_the_key_from_the_environment() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.paging is not None
    assert (config.paging.events_url, config.paging.routing_key_env, config.paging.source) == (
        "http://127.0.0.1:8804", "PAGERDUTY_ROUTING_KEY", "ticketbridge")
    assert config.paging.routing_key({"PAGERDUTY_ROUTING_KEY": SECRET}) == SECRET
    with pytest.raises(MissingSecret) as error:
        config.paging.routing_key({})
    assert "PAGERDUTY_ROUTING_KEY is not set" in str(error.value)


def test_paging_problems_have_a_line_and_column(tmp_path: Path) -> None:
    config = site(tmp_path)
    text = config.read_text().replace("routing_key_env: PAGERDUTY_ROUTING_KEY", f"routing_key: {SECRET}")
    config.write_text(text)
    problems = [str(p) for p in validate(config)]
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "routing_key: " in t)
    assert any(p.startswith(f"{config}:{line}:") and "routing_key" in p for p in problems), problems


def test_an_escalation_through_an_unknown_flow_is_reported_in_the_policy_file(tmp_path: Path) -> None:
    config = site(tmp_path)
    policy = tmp_path / "mappings" / "policy.yaml"
    text = policy.read_text().replace("- create_issue: {flow: zendesk-jira,", "- create_issue: {flow: zendesk-jria,")
    policy.write_text(text)
    problems = [str(p) for p in validate(config)]
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "flow: zendesk-jria" in t)
    assert len(problems) == 1, problems
    assert re.match(rf"{re.escape(str(policy))}:{line}:\d+: escalations\[0\]\.do\[0\]\.create_issue\.flow: "
                    r"unknown flow 'zendesk-jria'; flows in the config: zendesk-jira", problems[0]), problems


def test_the_runtime_builds_the_escalation_service_and_hands_it_to_the_engine(tmp_path: Path) -> None:
    with Sandbox(port=0) as sandbox:
        path = sandbox.write_config(tmp_path / "config.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
                                    mapping=ROOT / "mappings" / "zendesk-jira.yaml",
                                    policy=ROOT / "mappings" / "policy.yaml")
        plain = open_runtime(load_config(path, env=sandbox.credentials()), sandbox.credentials())
        assert plain.escalation is not None and plain.escalation.pager is None
        assert plain.engine().escalation is plain.escalation
        assert plain.engine(dry_run=True).escalation is None  # a dry run creates nothing
        # The GitHub rule is optional and this config has no zendesk-github flow: it does not run.
        assert [r.id for r in plain.escalation.rules.rules] == [
            "sev1-incident", "outage-update-reminder", "outage-update-overdue", "resolution-breach-raise"]
        plain.store.close()

        path.write_text(path.read_text() + f"paging:\n  events_url: {sandbox.pagerduty.base_url}\n"
                                           "  routing_key_env: PAGERDUTY_ROUTING_KEY\n")
        paged = open_runtime(load_config(path, env=sandbox.credentials()), sandbox.credentials())
        assert paged.escalation is not None and paged.escalation.pager is not None
        assert SECRET not in repr(paged.escalation.pager)
        paged.store.close()
        env = {k: v for k, v in sandbox.credentials().items() if k != "PAGERDUTY_ROUTING_KEY"}
        with pytest.raises(MissingSecret):
            open_runtime(load_config(path, env=env), env)
