"""The SLA board's order and states, links to each tracker's UI, and the `status:` config section."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import ConfigError, load_config
from ticketbridge.web import build_app
from ticketbridge.web.state import cursor_time, sla_board
from ticketbridge.web.urls import item_url

from ..e2e.conftest import MAPPING, Bridge
from .conftest import context_for
from .test_access import write_config

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def clock(metric: str, status: str, due_in: float | None, breached: bool = False) -> dict[str, object]:
    due = None if due_in is None else (NOW + timedelta(seconds=due_in)).isoformat().replace("+00:00", "Z")
    return {"metric": metric, "cycle": 1, "status": status, "breached": breached, "due_at": due}


def test_board_lists_running_clocks_soonest_breach_first_with_their_states(bridge: Bridge) -> None:
    store = bridge.store
    tickets = {
        "1": ("sev3", [clock("resolution", "running", 7200), clock("first_response", "stopped", None)]),
        "2": ("sev1", [clock("first_response", "running", -60, breached=True)]),
        "3": ("sev2", [clock("next_response", "running", 600)]),
        "4": ("sev2", [clock("resolution", "paused", None)]),
    }
    for item_id, (severity, clocks) in tickets.items():
        store.record_observation("zendesk", item_id, f"#{item_id}", {}, [])
        store.save_sla("zendesk", item_id, {"severity": severity, "state": "running", "clocks": clocks}, None)
    store.record_sla_event("zendesk", "3", "next_response", 1, "warning", "80%", None, NOW, {})
    context = context_for(bridge)
    context.now = lambda: NOW
    board = sla_board(context)
    assert [(c.item_id, c.metric, c.state, c.severity) for c in board] == [
        ("2", "first_response", "breached", "sev1"),
        ("3", "next_response", "warning", "sev2"),
        ("1", "resolution", "ok", "sev3"),
        ("4", "resolution", "ok", "sev2"),  # paused: no due instant, last
    ]
    assert board[0].url == f"{bridge.sandbox.zendesk.base_url}/agent/tickets/2"
    with TestClient(build_app(context)) as client:
        html = client.get("/").text
    section = html[html.index('id="sla"'):html.index('id="links"')]
    assert section.index("#2") < section.index("#3") < section.index("#1") < section.index("#4")
    assert 'class="breached">breached' in section and 'class="warning">warning' in section
    assert "-1m00s" in section and "10m00s" in section


@pytest.mark.parametrize(("kind", "base", "item_id", "key", "url"), [
    ("zendesk", "https://acme.zendesk.com", "123", "#123", "https://acme.zendesk.com/agent/tickets/123"),
    ("jira", "https://acme.atlassian.net/", "10001", "ENG-7", "https://acme.atlassian.net/browse/ENG-7"),
    ("github", "https://api.github.com", "acme/app#42", "acme/app#42", "https://github.com/acme/app/issues/42"),
    ("github", "https://ghe.acme.io/api/v3", "acme/app#42", "acme/app#42", "https://ghe.acme.io/acme/app/issues/42"),
    ("github", "http://127.0.0.1:9000", "acme/app#42", "acme/app#42", "http://127.0.0.1:9000/acme/app/issues/42"),
    ("clickup", "https://api.clickup.com/api/v2", "86abc", "86abc", "https://app.clickup.com/t/86abc"),
    ("clickup", "http://127.0.0.1:9001", "86abc", "86abc", "http://127.0.0.1:9001/t/86abc"),
    ("pagerduty", "https://events.pagerduty.com", "x", "x", None),
])
def test_item_urls_point_at_each_trackers_own_ui(kind: str, base: str, item_id: str, key: str,
                                                  url: str | None) -> None:
    assert item_url(kind, base, item_id, key) == url


def test_cursor_times_are_read_from_epoch_seconds_ms_and_iso() -> None:
    assert cursor_time("1764676800") == datetime(2025, 12, 2, 12, 0, tzinfo=UTC)
    assert cursor_time("1764676800000") == datetime(2025, 12, 2, 12, 0, tzinfo=UTC)
    assert cursor_time("2025-12-02T12:00:00Z") == datetime(2025, 12, 2, 12, 0, tzinfo=UTC)
    assert cursor_time("opaque-page-token") is None and cursor_time("42") is None


def test_status_section_of_the_config(tmp_path: Path, sandbox: Sandbox) -> None:
    path = write_config(tmp_path, sandbox, "0.0.0.0:9123", "OPS_STATUS_TOKEN")
    config = load_config(path, env=sandbox.credentials())
    assert config.status is not None
    assert (config.status.host, config.status.port, config.status.token_env) == ("0.0.0.0", 9123, "OPS_STATUS_TOKEN")
    without = sandbox.write_config(tmp_path / "bare.yaml", store_url=f"sqlite:///{tmp_path / 'x.db'}",
                                   mapping=MAPPING)
    assert load_config(without, env=sandbox.credentials()).status is None  # no section: no page
    default = write_config(tmp_path, sandbox, "127.0.0.1:8950", "TICKETBRIDGE_STATUS_TOKEN")
    assert load_config(default, env=sandbox.credentials()).status.host == "127.0.0.1"  # type: ignore[union-attr]
    bad = write_config(tmp_path, sandbox, "nonsense", "TICKETBRIDGE_STATUS_TOKEN")
    with pytest.raises(ConfigError) as raised:
        load_config(bad, env=sandbox.credentials())
    assert "status" in str(raised.value) and "host:port" in str(raised.value)
