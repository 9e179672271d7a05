"""Links to an item in its tracker's own UI, built from the tracker's base URL and the item's
id/key the way the connectors build `Item.url` (the store keeps ids and keys, not URLs)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..connectors.clickup.client import api_root


def item_url(tracker_type: str, base_url: str, item_id: str, item_key: str) -> str | None:
    """The browser URL of one item, or None for a tracker type we cannot link to."""
    base = base_url.rstrip("/")
    if tracker_type == "zendesk":
        return f"{base}/agent/tickets/{item_id}"
    if tracker_type == "jira":
        return f"{base}/browse/{item_key}"
    if tracker_type == "github":
        repo, _, number = item_id.rpartition("#")
        if not repo or not number.isdigit():
            return None
        return f"{_github_web_root(base)}/{repo}/issues/{number}"
    if tracker_type == "clickup":
        root = api_root(base)
        host = urlsplit(root).hostname or ""
        # The API lives on api.clickup.com, task pages on app.clickup.com; an emulator serves both.
        web = "https://app.clickup.com" if host == "api.clickup.com" else root
        return f"{web}/t/{item_id}"
    return None


def _github_web_root(api_base: str) -> str:
    """api.github.com -> github.com; GitHub Enterprise's https://host/api/v3 -> https://host."""
    parts = urlsplit(api_base)
    if parts.hostname == "api.github.com":
        return "https://github.com"
    if parts.path.rstrip("/").endswith("/api/v3"):
        return api_base.rstrip("/")[: -len("/api/v3")]
    return api_base
