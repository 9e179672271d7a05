"""The demo's later chapters, played through the trackers' own APIs like the rest of the demo.

Escalation: an L2 ticket full of personal data becomes a clean GitHub issue, an incomplete one is
held back with a note, a second customer's ticket follows the same issue, and closing the issue
reaches both tickets. (The Sev1 incident and its page come from the SLA chapter's outage ticket.)
Planning: a Jira issue is shared with the planning team's ClickUp list, and a status change
travels Zendesk -> Jira -> ClickUp, then back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .sandbox import Sandbox
from .sync.engine import Engine, PassStats
from .sync.store import Store

FLOW = "zendesk-github"
# Zendesk custom field ids of the shipped policy's `fields:` (mappings/policy.yaml).
SEVERITY, ENVIRONMENT, SUPPORT_LEVEL, DATE_OBSERVED = 360003, 360002, 360004, 360008
STEPS, DEVICE_OS, BROWSER, ENGINEERING_ISSUE = 360009, 360011, 360012, 360013


def _fields(values: dict[int, Any]) -> list[dict[str, Any]]:
    return [{"id": field_id, "value": value} for field_id, value in values.items()]


def escalation_story(sandbox: Sandbox, store: Store, engine: Engine, stats: PassStats,
                     sync: Callable[[Engine, PassStats], int]) -> list[str]:
    zendesk, github = sandbox.zendesk, sandbox.github
    repo = github.repo_names[0]
    acme = zendesk.add_organization("ACME GmbH")
    jane = zendesk.add_user("Jane Doe", "jane.doe@example.com", organization_id=acme["id"])
    max_ = zendesk.add_user("Max Mustermann", "max.mustermann@example.org")
    lea = zendesk.add_user("Lea Weber", "lea.weber@example.net")
    complete = zendesk.add_ticket(
        subject="CSV export drops the last row", requester_id=jane["id"],
        comment={"body": "Since Monday our CSV export misses the last row. Call +49 30 1234567 or write to "
                         "jane.doe@example.com (Jane Doe, ACME GmbH).", "author_id": jane["id"]},
        custom_fields=_fields({SEVERITY: "sev3", DATE_OBSERVED: "2026-11-30 14:20 Europe/Berlin",
                               STEPS: "1. Reports > Orders\n2. Export as CSV\n3. Compare the row count",
                               ENVIRONMENT: "production", DEVICE_OS: "macOS 15.1", BROWSER: "Firefox 133"}))
    partial = zendesk.add_ticket(
        subject="Invoice PDF is blank", requester_id=max_["id"],
        comment={"body": "The invoice PDF for order 4711 opens as an empty page.", "author_id": max_["id"]},
        custom_fields=_fields({SEVERITY: "sev3", ENVIRONMENT: "production"}))
    duplicate = zendesk.add_ticket(
        subject="Exported CSV is missing rows", requester_id=lea["id"],
        comment={"body": "Our exported order list is one row short.", "author_id": lea["id"]})
    sync(engine, stats)
    lines = [f"customers opened Zendesk #{complete['id']} (phone, email, name and company in the text, "
             f"template complete), #{partial['id']} (template incomplete) and #{duplicate['id']} (same bug "
             "as the first)"]

    for ticket in (complete, partial):  # the agents move both to L2
        zendesk.update_ticket(ticket["id"], custom_fields=_fields({SUPPORT_LEVEL: "L2"}))
    sync(engine, stats)
    issue = _issue(store, github, repo, complete["id"])
    body = issue["body"].split("<!--")[0].strip()
    lines.append(f"#{complete['id']} set to L2 -> GitHub {issue['key']} created, personal data removed:")
    lines += [f"    | {line}" for line in body.splitlines() if line.strip()]
    held = [c["body"] for c in zendesk.comments(partial["id"]) if not c["public"]]
    lines.append(f"#{partial['id']} set to L2 -> held back (GitHub issue: "
                 f"{'none' if store.link_for(FLOW, 'left', str(partial['id'])) is None else 'created!'}); "
                 f"internal note: {held[-1].splitlines()[0] if held else '(none)'}")

    zendesk.update_ticket(partial["id"], custom_fields=_fields({
        DATE_OBSERVED: "2026-12-01 09:00 Europe/Berlin", STEPS: "Open any invoice of November",
        DEVICE_OS: "Windows 11", BROWSER: "Edge 131"}))
    sync(engine, stats)
    link = store.link_for(FLOW, "left", str(partial["id"]))
    lines.append(f"the agent fills in the missing fields of #{partial['id']} -> "
                 f"{'GitHub ' + link.right_key + ' created' if link else 'still held back!'}")

    zendesk.update_ticket(duplicate["id"], custom_fields=_fields({ENGINEERING_ISSUE: issue["key"]}))
    sync(engine, stats)
    followers = [lk.left_key for lk in store.links_for(FLOW, "right", issue["key"])]
    lines.append(f"an agent names {issue['key']} on #{duplicate['id']} -> linked tickets: {', '.join(followers)}")

    github.close(repo, issue["number"])
    sync(engine, stats)
    for ticket in (complete, duplicate):
        state = zendesk.ticket(ticket["id"])["status"]
        note = next((c["body"] for c in reversed(zendesk.comments(ticket["id"])) if not c["public"]), "")
        lines.append(f"engineering closes {issue['key']} -> Zendesk #{ticket['id']} is {state}; internal note: "
                     f"{note.splitlines()[0] if note else '(none)'}")
    return lines


def incident_lines(sandbox: Sandbox, store: Store, ticket_id: int) -> list[str]:
    """What the Sev1 rule did for the SLA chapter's outage ticket: the incident issue, the page."""
    link = store.link_for("zendesk-jira", "left", str(ticket_id))
    labels = sandbox.jira.issue(link.right_id)["fields"]["labels"] if link else []
    pages = [i for i in sandbox.pagerduty.incidents() if f"zd-{ticket_id}-" in i["dedup_key"]]
    notes = [c["body"].splitlines()[0] for c in sandbox.zendesk.comments(ticket_id) if not c["public"]]
    return [f"Sev1 #{ticket_id}: Jira {link.right_key if link else '(none)'} labelled {', '.join(labels)}; "
            f"PagerDuty incidents: " + (", ".join(f"{p['dedup_key']} ({p['status']})" for p in pages) or "none"),
            *(f"    internal note: {note}" for note in notes)]


def _issue(store: Store, github: Any, repo: str, ticket_id: int) -> dict[str, Any]:
    link = store.link_for(FLOW, "left", str(ticket_id))
    if link is None:
        raise AssertionError(f"Zendesk #{ticket_id} was not escalated to GitHub")
    number = int(link.right_key.rsplit("#", 1)[1])
    return {**github.issue(repo, number), "key": link.right_key}


def planning_story(sandbox: Sandbox, store: Store, engine: Engine, stats: PassStats,
                   sync: Callable[[Engine, PassStats], int]) -> list[str]:
    zendesk, jira, clickup = sandbox.zendesk, sandbox.jira, sandbox.clickup
    ticket = zendesk.add_ticket(subject="Invoices show the wrong VAT rate for Austria", priority="high",
                                comment={"body": "Since the 1st our Austrian invoices use 19% instead of 20%."})
    sync(engine, stats)
    link = store.link_for("zendesk-jira", "left", str(ticket["id"]))
    if link is None:
        raise AssertionError(f"Zendesk #{ticket['id']} was not linked to Jira")
    labels = jira.issue(link.right_id)["fields"]["labels"]
    jira.edit(link.right_key, labels=[*labels, "planning"])  # an engineer shares it with planning
    sync(engine, stats)
    task = _task(store, clickup, link.right_id)
    lines = [f"Zendesk #{ticket['id']} -> Jira {link.right_key}; the engineer labels it `planning` -> ClickUp task "
             f"{task['id']} \"{task['name']}\" ({task['status']['status']})"]

    zendesk.update_ticket(ticket["id"], status="solved")
    sync(engine, stats)
    lines.append(f"the agent solves Zendesk #{ticket['id']} -> Jira {_jira_status(sandbox, link.right_id)}, "
                 f"ClickUp {_task(store, clickup, link.right_id)['status']['status']}")
    clickup.set_status(task["id"], "in progress")  # the planning team reopens it
    sync(engine, stats)
    lines.append(f"planning moves the task back to in progress -> Jira {_jira_status(sandbox, link.right_id)}, "
                 f"Zendesk #{ticket['id']} {zendesk.ticket(ticket['id'])['status']}")
    return lines


def _task(store: Store, clickup: Any, issue_id: str) -> dict[str, Any]:
    link = store.link_for("jira-clickup", "left", issue_id)
    if link is None:
        raise AssertionError(f"Jira issue {issue_id} was not mirrored to ClickUp")
    task: dict[str, Any] = clickup.task(link.right_id)
    return task


def _jira_status(sandbox: Sandbox, issue_id: str) -> str:
    return str(sandbox.jira.issue(issue_id)["fields"]["status"]["name"])
