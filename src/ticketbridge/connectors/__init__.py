"""Tracker connectors, all behind the `Connector` protocol of `base`."""

from __future__ import annotations

from collections.abc import Mapping

from .base import Connector
from .http import RetryPolicy


def build_connector(tracker: object, env: Mapping[str, str], *, retry: RetryPolicy | None = None) -> Connector:
    """The connector for one `config.TrackerConfig`, with credentials read from `env`."""
    from ..logs import register_secret
    from ..sync.config import TrackerConfig

    assert isinstance(tracker, TrackerConfig)
    email, token = tracker.credentials(env)
    register_secret(token)
    if tracker.type == "zendesk":
        from .zendesk.connector import ZendeskConnector

        return ZendeskConnector(tracker.name, tracker.base_url, email, token, retry=retry)
    if tracker.type == "jira":
        from .jira.connector import JiraConnector

        return JiraConnector(tracker.name, tracker.base_url, email, token, retry=retry)
    if tracker.type == "github":
        from .github.connector import GitHubConnector

        return GitHubConnector(tracker.name, tracker.base_url, token, repos=tracker.repos, retry=retry)
    if tracker.type == "clickup":
        from .clickup.connector import ClickUpConnector

        return ClickUpConnector(tracker.name, tracker.base_url, token, lists=tracker.lists,
                                marker_field=tracker.marker_field, retry=retry)
    raise ValueError(f"tracker '{tracker.name}': unknown type '{tracker.type}'")
