"""`ticketbridge demo`: the whole Zendesk <-> Jira story on in-process emulators, with a report.

It seeds a support desk, syncs until quiet, then plays one working hour on both sides (an
engineer moves an issue and comments; an agent replies, leaves an internal note and raises a
priority; one title is edited on both sides at once) and syncs again. It exits non-zero when an
invariant breaks: a pass after quiet that still writes, a leaked internal note, a duplicate.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from .cli import open_runtime
from .connectors.http import RetryPolicy
from .demo_escalation import escalation_story, incident_lines, planning_story
from .sandbox import Sandbox
from .sync.config import load_config
from .sync.engine import Engine, PassStats
from .sync.policy.redact import RedactionRules, post_scan
from .sync.store import Store


def sync_until_quiet(engine: Engine, total: PassStats, max_passes: int = 6) -> int:
    """Passes until one writes nothing; returns how many passes ran."""
    for number in range(1, max_passes + 1):
        stats = engine.sync_once()
        total.merge(stats)
        if stats.writes == 0 and not stats.failures:
            return number
    return max_passes


class FastClock:
    """The SLA clocks' "now", which the demo winds forward instead of waiting 15 minutes."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def run_demo(mapping: Path, *, quiet_logs: bool = True, policy: Path | None = None, serve: str | None = None) -> int:
    """`serve` ("host:port"): afterwards keep the sandbox up and serve the status page until Ctrl-C."""
    from . import logs

    logs.configure("console", level="WARNING" if quiet_logs else "INFO")
    if not mapping.exists():
        print(f"ticketbridge demo: mapping file {mapping} not found; run it from the repository root")
        return 2
    policy = policy or mapping.with_name("policy.yaml")
    workdir = Path(tempfile.mkdtemp(prefix="ticketbridge-demo-"))
    clock = FastClock()
    with Sandbox(port=0, seed=True) as sandbox:
        config_path = sandbox.write_config(workdir / "config.yaml", store_url=f"sqlite:///{workdir / 'demo.db'}",
                                           mapping=mapping, policy=policy,
                                           escalation_mapping=mapping.with_name("zendesk-github.yaml"),
                                           clickup_mapping=mapping.with_name("jira-clickup.yaml"))
        config = load_config(config_path, env=sandbox.credentials())
        runtime = open_runtime(config, sandbox.credentials(), retry=RetryPolicy(attempts=6, max_delay=2), now=clock)
        store, flows, engine = runtime.store, runtime.flows, runtime.engine()
        tickets = len(sandbox.zendesk.tickets())
        print(f"Sandbox: Zendesk {sandbox.zendesk.base_url} with {tickets} seeded tickets, "
              f"Jira {sandbox.jira.base_url} (empty), GitHub {sandbox.github.base_url} (empty), "
              f"ClickUp {sandbox.clickup.base_url}, PagerDuty {sandbox.pagerduty.base_url}. "
              f"Store: {store.safe_url}")

        first, second, third = PassStats(), PassStats(), PassStats()
        passes = sync_until_quiet(engine, first)
        print(f"\n1. Initial sync: quiet after {passes} pass(es); {store.count_links()} items linked.")

        story = play_an_hour(sandbox, store)
        for line in story:
            print(f"   - {line}")
        passes = sync_until_quiet(engine, second)
        print(f"\n3. Sync after the changes: quiet after {passes} pass(es).")

        print("\n4. SLA clocks (the demo winds the SLA clock forward instead of waiting):")
        outage, lines = sla_story(sandbox, store, engine, clock, third)
        for line in lines + incident_lines(sandbox, store, outage):
            print(f"   - {line}")

        print("\n5. Escalation to engineering:")
        for line in escalation_story(sandbox, store, engine, third, sync_until_quiet):
            print(f"   - {line}")

        print("\n6. A chain of flows: Zendesk -> Jira -> ClickUp (the planning team's list):")
        for line in planning_story(sandbox, store, engine, third, sync_until_quiet):
            print(f"   - {line}")

        problems = check_invariants(sandbox, store, engine)
        print_report(store, first, second, third, flows, problems)
        if serve is not None:
            from .web import StatusContext
            from .web.actions import retry_action
            from .web.server import serve_until_stopped

            context = StatusContext.from_config(config, store, retry=retry_action(engine.retry_failure), now=clock)
            serve_until_stopped(context, serve, banner=sandbox.describe())
        store.close()
    structlog.reset_defaults()
    return 0 if not problems else 1


def play_an_hour(sandbox: Sandbox, store: Store) -> list[str]:
    """Changes on both sides, as people make them, through the trackers' own APIs."""
    zendesk, jira = sandbox.zendesk, sandbox.jira
    links = sorted(store.links("zendesk-jira"), key=lambda link: int(link.left_id))
    print("\n2. An hour of work on both sides:")
    a, b, c = links[0], links[1], links[2]
    jira.transition(a.right_key, "Done")
    jira.add_comment(a.right_key, "Fixed in release 4.2.1; deployed to production.", author="Dana Engineer")
    zendesk.update_ticket(int(b.left_id), comment={"body": "Thanks for the details, we are on it.",
                                                   "public": True})
    zendesk.update_ticket(int(b.left_id), comment={"body": "Customer is on the Enterprise plan; "
                                                   "call back on +49 30 1234567.", "public": False})
    zendesk.update_ticket(int(b.left_id), priority="urgent")
    jira.edit(c.right_key, summary=f"[ZD #{c.left_id}] Checkout fails for EU cards (engineering wording)")
    time.sleep(1.1)  # Zendesk clocks tick in seconds: make the desk's edit clearly the newest
    zendesk.update_ticket(int(c.left_id), subject="Checkout fails for all EU card payments")
    return [
        f"engineer moved {a.right_key} to Done and commented",
        f"agent replied publicly on Zendesk #{b.left_id}, left an internal note and raised priority to urgent",
        f"Zendesk #{c.left_id} subject and {c.right_key} summary edited at once (conflict)",
    ]


def check_invariants(sandbox: Sandbox, store: Store, engine: Engine) -> list[str]:
    problems: list[str] = []
    extra = engine.sync_once()
    if extra.writes:
        problems.append(f"a pass after quiet still wrote {extra.writes} time(s)")
    internal = [c["body"] for t in sandbox.zendesk.tickets() for c in sandbox.zendesk.comments(t["id"])
                if not c["public"]]
    public_texts = [c["body"] for t in sandbox.zendesk.tickets() for c in sandbox.zendesk.comments(t["id"])
                    if c["public"]]
    jira_texts = [str(c) for issue in sandbox.jira.issues()
                  for c in issue["fields"]["comment"]["comments"]]
    for note in internal:
        core = note.splitlines()[-1][:40]
        if any(core in text for text in public_texts + jira_texts):
            problems.append(f"internal note leaked: {core!r}")
    markers = Counter(label for issue in sandbox.jira.issues() for label in issue["fields"]["labels"]
                      if label.startswith("tb-"))
    problems += [f"duplicate Jira issues for {m}" for m, n in markers.items() if n > 1]
    mirrored = Counter(line for issue in sandbox.jira.issues() for c in issue["fields"]["comment"]["comments"]
                       for line in [str(c["body"])] if "[tb:" in line)
    problems += ["a comment was mirrored twice" for n in mirrored.values() if n > 1]
    github = [i for i in sandbox.github.issues(sandbox.github.repo_names[0]) if "pull_request" not in i]
    origins = Counter(re.findall(r"<!-- ticketbridge: (\S+) -->", i["body"] or "")[0] for i in github)
    problems += [f"duplicate GitHub issues for {m}" for m, n in origins.items() if n > 1]
    rules = RedactionRules()
    for issue in github:  # nothing the scanner recognises as personal data may reach engineering
        texts = [issue["title"], issue["body"] or "", *(c["body"] for c in sandbox.github.comments(
            sandbox.github.repo_names[0], issue["number"]))]
        found = sorted({f.kind for text in texts for f in post_scan(text, rules)})
        problems += [f"personal data ({', '.join(found)}) in GitHub issue #{issue['number']}"] if found else []
    noops = {name: e.noop_writes for name, e in sandbox.emulators.items() if e.noop_writes}
    problems += [f"{n} write(s) to {name} changed nothing (echo)" for name, n in noops.items()]
    pages = Counter(i["dedup_key"] for i in sandbox.pagerduty.incidents())
    problems += [f"paged twice for {key}" for key, n in pages.items() if n > 1]
    return problems


def sla_story(sandbox: Sandbox, store: Store, engine: Engine, clock: FastClock,
              stats: PassStats) -> tuple[int, list[str]]:
    """A customer reports an outage; nobody answers; the 15-minute first response warns, then
    breaches. Returns the outage ticket's id and the story."""
    zendesk, lines = sandbox.zendesk, []
    customer = zendesk.add_user("Erika Kunde", "erika.kunde@example.com")
    ticket = zendesk.add_ticket(subject="Checkout down for all EU customers", priority="urgent",
                                requester_id=customer["id"],
                                comment={"body": "Since 10:02 no EU card payment goes through.",
                                         "author_id": customer["id"]})
    sync_until_quiet(engine, stats)
    link = store.link_for("zendesk-jira", "left", str(ticket["id"]))
    assert link is not None, "the outage ticket was linked"
    zd_due = _zd_field(sandbox, ticket["id"], "First response due")
    jira_due = sandbox.jira.issue(link.right_id)["fields"].get(_jira_field(sandbox, "First response due"))
    lines.append(f"customer opened Zendesk #{ticket['id']} (urgent: sev1); first response due {zd_due} on Zendesk, "
                 f"{jira_due} on Jira {link.right_key}")
    created = datetime.fromisoformat(ticket["created_at"].replace("Z", "+00:00"))
    for minutes, what in ((12.5, "12.5 minutes later, no reply yet"), (16, "16 minutes later, still no reply")):
        clock.offset = created + timedelta(minutes=minutes) - datetime.now(UTC)
        step = PassStats()
        sync_until_quiet(engine, step)
        stats.merge(step)
        fired = step.sla.warnings + step.sla.breaches
        jira_state = sandbox.jira.issue(link.right_id)["fields"].get(_jira_field(sandbox, "SLA state"))
        lines.append(f"{what}: {'; '.join(fired) or 'nothing fired'}; SLA state now "
                     f"{_zd_field(sandbox, ticket['id'], 'SLA state')!r} on Zendesk, {jira_state!r} on Jira")
    return ticket["id"], lines


def _zd_field(sandbox: Sandbox, ticket_id: int, title: str) -> object:
    ids = {f["title"]: f["id"] for f in sandbox.zendesk.custom_field_defs}
    ticket = sandbox.zendesk.ticket(ticket_id)
    return next(f["value"] for f in ticket["custom_fields"] if f["id"] == ids[title])


def _jira_field(sandbox: Sandbox, name: str) -> str:
    return next(key for key, spec in sandbox.jira.custom_fields.items() if spec["name"] == name)


def print_report(store: Store, first: PassStats, second: PassStats, third: PassStats, flows: list,
                 problems: list[str]) -> None:
    story = PassStats()
    story.merge(second)
    story.merge(third)
    total = PassStats()
    for stats in (first, story):
        total.merge(stats)
    story_sla = story.sla
    print("\n=== ticketbridge demo report ===")
    print(f"items linked              {store.count_links()}")
    print(f"issues created            Zendesk -> Jira {total.created['left_to_right']}, "
          f"Jira -> Zendesk {total.created['right_to_left']}")
    print(f"fields pushed             Zendesk -> Jira {total.fields_pushed['left_to_right']}, "
          f"Jira -> Zendesk {total.fields_pushed['right_to_left']}")
    print(f"comments mirrored         Zendesk -> Jira {total.comments_mirrored['left_to_right']}, "
          f"Jira -> Zendesk {total.comments_mirrored['right_to_left']} (as internal notes)")
    print(f"conflicts                 {len(total.conflicts)}")
    for conflict in total.conflicts:
        print(f"    {conflict}")
    failures = store.failures()
    print(f"failures                  {len(failures)}")
    for failure in failures:
        print(f"    {failure.item_key} ({failure.tracker}): {failure.message}")
    print(f"SLA fields written        {total.sla.fields_written} (due dates, state, severity; both trackers)")
    print(f"SLA at first sync         {len(first.sla.breaches)} breaches already past on seeded tickets "
          f"(created up to two weeks ago), {len(first.sla.warnings)} warnings")
    print(f"SLA warnings after that   {len(story_sla.warnings)}")
    for line in story_sla.warnings:
        print(f"    {line}")
    print(f"SLA breaches after that   {len(story_sla.breaches)}")
    for line in story_sla.breaches:
        print(f"    {line}")
    print(f"escalation actions        {len(total.escalations)}")
    for line in total.escalations:
        print(f"    {line}")
    for flow in flows:
        print(f"requests                  {flow.left.name} {flow.left.requests_made}, "
              f"{flow.right.name} {flow.right.requests_made}")
    print(f"invariants                {'all hold' if not problems else '; '.join(problems)}")
