"""The sandbox: every tracker emulator on consecutive loopback ports, for trying mapping files
safely and for the demo. Zendesk takes the given port, then Jira, GitHub, the PagerDuty
Events endpoint and ClickUp the next ones."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .connectors.clickup.emulator import DEFAULT_LIST_ID, ClickUpEmulator
from .connectors.emulator_kit import EmulatorServer, WebhookDispatcher, WebhookFaults
from .connectors.github.emulator import GitHubEmulator
from .connectors.jira.emulator import JiraEmulator
from .connectors.pagerduty.emulator import PagerDutyEmulator
from .connectors.zendesk.emulator import ZendeskEmulator

CONFIG_TEMPLATE = """\
store:
  url: {store_url}
trackers:
  zendesk:
    type: zendesk
    base_url: {zendesk}
    auth: {{email_env: ZENDESK_EMAIL, token_env: ZENDESK_API_TOKEN}}
    poll_interval: {poll_interval}
  jira:
    type: jira
    base_url: {jira}
    auth: {{email_env: JIRA_EMAIL, token_env: JIRA_API_TOKEN}}
    poll_interval: {poll_interval}
    statuses: [To Do, In Progress, In Review, Done]
    priorities: [Highest, High, Medium, Low, Lowest]
{github_tracker}{clickup_tracker}flows:
  - name: zendesk-jira
    mapping: {mapping}
{clickup_flow}{escalation}"""

# What `escalation_mapping` adds: the GitHub tracker, the escalation flow, paging to the sandbox.
GITHUB_TRACKER = """\
  github:
    type: github
    base_url: {github}
    auth: {{token_env: GITHUB_TOKEN}}
    repos: [{repo}]
    poll_interval: {poll_interval}
"""
ESCALATION_FLOW = """\
  - name: zendesk-github
    mapping: {mapping}
paging:
  events_url: {pagerduty}
  routing_key_env: PAGERDUTY_ROUTING_KEY
"""

# What `clickup_mapping` adds: the ClickUp tracker (its planning list; the list's "Origin" text
# field holds the marker of tasks ticketbridge creates) and the Jira -> ClickUp flow.
CLICKUP_TRACKER = """\
  clickup:
    type: clickup
    base_url: {clickup}
    auth: {{token_env: CLICKUP_TOKEN}}
    list_id: "{list_id}"
    marker_field: {marker_field}
    poll_interval: {poll_interval}
    statuses: [to do, in progress, in review, complete]
    priorities: [urgent, high, normal, low]
"""
CLICKUP_FLOW = """\
  - name: jira-clickup
    mapping: {mapping}
"""

# What `webhooks=` adds: the receiver `ticketbridge run` starts, one signed route per tracker.
WEBHOOKS_SECTION = """\
webhooks:
  listen: {listen}
  trackers:
{routes}"""
WEBHOOK_ROUTE = "    {tracker}: {{path: {path}, secret_env: {secret_env}}}\n"


def webhook_path(tracker: str) -> str:
    """The receiver's default route of a tracker (`webhooks.trackers.<name>.path` left out)."""
    return f"/hooks/{tracker}"


# The env var names config.example.yaml reads, with the credentials the emulators accept.
ENV_VARS = {
    "zendesk": ("ZENDESK_EMAIL", "ZENDESK_API_TOKEN"),
    "jira": ("JIRA_EMAIL", "JIRA_API_TOKEN"),
    "github": (None, "GITHUB_TOKEN"),
    "pagerduty": (None, "PAGERDUTY_ROUTING_KEY"),
    "clickup": (None, "CLICKUP_TOKEN"),
}


class Sandbox:
    def __init__(self, host: str = "127.0.0.1", port: int = 8801, *, seed: bool = False,
                 export_delay: float = 0.0, **emulator_options: Any) -> None:
        self.zendesk = ZendeskEmulator(host, port, export_exclusion_seconds=export_delay, **emulator_options)
        self.jira = JiraEmulator(host, port + 1 if port else 0, **emulator_options)
        # Options (rate limits, faults) shape the two synced trackers; GitHub and paging keep defaults.
        self.github = GitHubEmulator(host, port + 2 if port else 0)
        self.pagerduty = PagerDutyEmulator(host, port + 3 if port else 0)
        self.clickup = ClickUpEmulator(host, port + 4 if port else 0)
        if seed:
            self.zendesk.seed()

    @property
    def emulators(self) -> dict[str, EmulatorServer]:
        return {"zendesk": self.zendesk, "jira": self.jira, "github": self.github, "pagerduty": self.pagerduty,
                "clickup": self.clickup}

    @property
    def webhook_senders(self) -> dict[str, WebhookDispatcher]:
        """The emulators that send webhooks, by tracker name (PagerDuty only receives events)."""
        return {"zendesk": self.zendesk.webhooks, "jira": self.jira.webhooks, "github": self.github.webhooks,
                "clickup": self.clickup.webhooks}

    def send_webhooks_to(self, base_url: str, secrets: Mapping[str, str], paths: Mapping[str, str] | None = None,
                         faults: WebhookFaults | None = None) -> None:
        """Point the webhooks of each tracker named in `secrets` at `base_url` + its path (by default
        the receiver's `/hooks/<tracker>`), signed with that secret. `faults` is copied to each of
        them, so every emulator rolls its own dice from the same seed; None leaves their faults as
        they are. The other emulators stop sending."""
        for name, sender in self.webhook_senders.items():
            if name not in secrets:
                sender.url = None
                continue
            path = (paths or {}).get(name, webhook_path(name))
            sender.url = base_url.rstrip("/") + path
            sender.secret = secrets[name]
            if faults is not None:
                sender.faults = dataclasses.replace(faults)

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until every emulator's queued webhooks were sent or dropped; False on timeout."""
        return all(sender.wait(timeout) for sender in self.webhook_senders.values())

    def webhooks_idle(self) -> bool:
        """No emulator has a webhook queued or on its way (a non-blocking `wait_for_webhooks`)."""
        return all(sender.pending == 0 for sender in self.webhook_senders.values())

    def credentials(self) -> dict[str, str]:
        """Env var -> value, as `export` lines need them."""
        return {
            "ZENDESK_EMAIL": self.zendesk.email, "ZENDESK_API_TOKEN": self.zendesk.token,
            "JIRA_EMAIL": self.jira.email, "JIRA_API_TOKEN": self.jira.token,
            "GITHUB_TOKEN": self.github.token, "PAGERDUTY_ROUTING_KEY": self.pagerduty.routing_keys[0],
            "CLICKUP_TOKEN": self.clickup.token,
        }

    def write_config(self, path: Path, *, store_url: str, mapping: Path, poll_interval: str = "5s",
                     policy: Path | None = None, escalation_mapping: Path | None = None,
                     clickup_mapping: Path | None = None, webhooks: Mapping[str, str] | None = None,
                     webhooks_listen: str = "127.0.0.1:8900") -> Path:
        """A config file pointing at this sandbox (used by the demo and the end-to-end tests).
        `escalation_mapping` adds the GitHub tracker with that flow and paging to the sandbox's
        PagerDuty endpoint; `clickup_mapping` adds the ClickUp tracker and the jira-clickup flow.
        `webhooks` (tracker name -> the env var holding its secret) adds the `webhooks:` section,
        the receiver listening on `webhooks_listen`, each tracker on its default path."""
        extra = {"github_tracker": "", "escalation": "", "clickup_tracker": "", "clickup_flow": ""}
        if escalation_mapping is not None:
            values = {"mapping": escalation_mapping.resolve(), "github": self.github.base_url,
                      "repo": f"{self.github.owner}/{self.github.repo_names[0]}",
                      "pagerduty": self.pagerduty.base_url, "poll_interval": poll_interval}
            extra.update(github_tracker=GITHUB_TRACKER.format(**values), escalation=ESCALATION_FLOW.format(**values))
        if clickup_mapping is not None:
            values = {"mapping": clickup_mapping.resolve(), "clickup": self.clickup.base_url,
                      "list_id": DEFAULT_LIST_ID, "marker_field": self.clickup.field_id("Origin"),
                      "poll_interval": poll_interval}
            extra.update(clickup_tracker=CLICKUP_TRACKER.format(**values), clickup_flow=CLICKUP_FLOW.format(**values))
        text = CONFIG_TEMPLATE.format(store_url=store_url, zendesk=self.zendesk.base_url, jira=self.jira.base_url,
                                      mapping=mapping.resolve(), poll_interval=poll_interval, **extra)
        if policy is not None:
            text += f"sla:\n  policy: {policy.resolve()}\n"
        if webhooks:
            routes = "".join(WEBHOOK_ROUTE.format(tracker=name, path=webhook_path(name), secret_env=env_var)
                             for name, env_var in webhooks.items())
            text += WEBHOOKS_SECTION.format(listen=webhooks_listen, routes=routes)
        path.write_text(text)
        return path

    def describe(self) -> str:
        lines = ["ticketbridge sandbox is running (Ctrl-C to stop)", ""]
        credentials = self.credentials()
        for name, emulator in self.emulators.items():
            email_var, token_var = ENV_VARS[name]
            user = f"   user {credentials[email_var]}" if email_var else ""
            lines.append(f"  {name:9} {emulator.base_url}{user}   {token_var} {credentials[token_var]}")
        lines += ["", "Export these, then run `ticketbridge sync --once --config config.example.yaml`:", ""]
        lines += [f"  export {var}={value}" for var, value in self.credentials().items()]
        return "\n".join(lines)

    def __enter__(self) -> Sandbox:
        for emulator in self.emulators.values():
            emulator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for emulator in self.emulators.values():
            emulator.stop()
