"""Every emulator counts API writes that changed nothing: the chained-flow and demo checks use the
count to prove the sync never writes an echo (a value the item already has)."""

from __future__ import annotations

import requests

from ticketbridge.connectors.github.emulator import GitHubEmulator
from ticketbridge.connectors.jira.emulator import JiraEmulator
from ticketbridge.connectors.zendesk.emulator import ZendeskEmulator


def test_zendesk_counts_an_update_that_changes_nothing() -> None:
    with ZendeskEmulator() as zd:
        ticket = zd.add_ticket(subject="Printer on fire")
        url, auth = f"{zd.base_url}/api/v2/tickets/{ticket['id']}.json", (f"{zd.email}/token", zd.token)
        assert requests.put(url, json={"ticket": {"subject": "Printer on fire"}}, auth=auth, timeout=5).ok
        assert zd.noop_writes == 1
        assert requests.put(url, json={"ticket": {"subject": "Printer still on fire"}}, auth=auth, timeout=5).ok
        assert zd.noop_writes == 1


def test_jira_counts_an_edit_that_changes_nothing() -> None:
    with JiraEmulator() as jira:
        issue = jira.create_issue(summary="Printer on fire")
        url, auth = f"{jira.base_url}/rest/api/3/issue/{issue['key']}", (jira.email, jira.token)
        assert requests.put(url, json={"fields": {"summary": "Printer on fire"}}, auth=auth, timeout=5).ok
        assert jira.noop_writes == 1
        assert requests.put(url, json={"fields": {"summary": "Printer still on fire"}}, auth=auth, timeout=5).ok
        assert jira.noop_writes == 1


def test_github_counts_a_patch_that_changes_nothing() -> None:
    with GitHubEmulator() as gh:
        issue = gh.add_issue("app", "Printer on fire")
        url = f"{gh.base_url}/repos/acme/app/issues/{issue['number']}"
        headers = {"Authorization": f"Bearer {gh.token}", "User-Agent": "test"}
        assert requests.patch(url, json={"title": "Printer on fire"}, headers=headers, timeout=5).ok
        assert gh.noop_writes == 1
        assert requests.patch(url, json={"state": "closed"}, headers=headers, timeout=5).ok
        assert gh.noop_writes == 1
