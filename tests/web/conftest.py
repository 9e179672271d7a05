"""A bridge on the sandbox emulators (as in tests/e2e) and the status app over it, in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from ticketbridge.sync.config import load_config
from ticketbridge.web import StatusContext, build_app
from ticketbridge.web.actions import retry_action

from ..e2e import conftest as e2e
from ..e2e.conftest import Bridge

# The end-to-end tests' fixtures, as they are: a sandbox and a bridge on it.
sandbox, bridge = e2e.sandbox, e2e.bridge

FLOW = "zendesk-jira"
TOO_LONG = "Checkout fails " + "x" * 280  # the Jira emulator: "Summary must be less than 255 characters"


def context_for(bridge: Bridge) -> StatusContext:
    config = load_config(bridge.config_path, env=bridge.env)
    return StatusContext.from_config(config, bridge.store, retry=retry_action(bridge.engine.retry_failure))


def fail_one(bridge: Bridge) -> int:
    """Sync a ticket, then give it a title Jira refuses: one open failure. Returns the ticket id."""
    ticket = bridge.sandbox.zendesk.add_ticket(subject="Problem", comment={"body": "Details."}, priority="normal")
    bridge.sync_until_quiet()
    bridge.sandbox.zendesk.update_ticket(ticket["id"], subject=TOO_LONG)
    assert len(bridge.sync().failures) == 1
    return int(ticket["id"])


@pytest.fixture
def client(bridge: Bridge) -> Iterator[TestClient]:
    with TestClient(build_app(context_for(bridge)), base_url="http://127.0.0.1:8950") as made:
        yield made
