"""The sandbox: every tracker emulator on consecutive loopback ports, for trying mapping files
safely and for the demo. Zendesk takes the given port, then Jira, GitHub, the PagerDuty
Events endpoint and ClickUp the next ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .connectors.clickup.emulator import DEFAULT_LIST_ID, ClickUpEmulator
from .connectors.emulator_kit import EmulatorServer
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
                     clickup_mapping: Path | None = None) -> Path:
        """A config file pointing at this sandbox (used by the demo and the end-to-end tests).
        `escalation_mapping` adds the GitHub tracker with that flow and paging to the sandbox's
        PagerDuty endpoint; `clickup_mapping` adds the ClickUp tracker and the jira-clickup flow."""
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
