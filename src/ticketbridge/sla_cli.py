"""`ticketbridge sla due|explain|report` and `ticketbridge redact`: what admins ask of the policy."""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import statistics
import sys
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .sync.config import Config
from .sync.model import iso_utc
from .sync.policy.calendar import AlwaysOpen
from .sync.policy.policy import PolicyInputError, load_policy
from .sync.sla_service import SlaService, utc_now
from .sync.store import Store
from .sync.yamlsource import ConfigError

EXIT_OK, EXIT_INPUT = 0, 2


def _instant(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PolicyInputError(f"{what} {text!r} is not an ISO 8601 instant (e.g. 2026-11-20T16:30:00+01:00)"
                               ) from None
    if moment.tzinfo is None:
        raise PolicyInputError(f"{what} {text!r} has no UTC offset; write e.g. {text}+01:00 or {text}Z")
    return moment.astimezone(UTC)


def _local(moment: datetime, tz: Any) -> str:
    local = moment.astimezone(tz)
    return f"{local.isoformat()} ({local.strftime('%a %Y-%m-%d %H:%M %Z')})"


def due(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(Path(args.policy))
        start = _instant(args.start, "--start")
        pauses = []
        for span in args.pause:
            if span.count("/") != 1:
                raise PolicyInputError(f"--pause {span!r} must be START/END, two ISO 8601 instants joined by '/'")
            a, b = span.split("/")
            pauses.append((_instant(a, "--pause start"), _instant(b, "--pause end")))
        result = policy.due(args.severity, args.metric, start, pauses, policy_id=args.policy_id)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return EXIT_INPUT
    except PolicyInputError as error:
        print(f"ticketbridge sla due: {error}", file=sys.stderr)
        return EXIT_INPUT
    # A 24/7 target has no zone of its own: show it on the desk's (default) calendar's clock.
    shown = policy.calendars[policy.default_calendar] if isinstance(result.calendar, AlwaysOpen) else result.calendar
    print(f"due {iso_utc(result.due_at)}")
    print(f"local {_local(result.due_at, shown.tz)}  [target calendar {result.calendar.name}]")
    print(f"target {args.severity} {args.metric}: {result.kind} {result.target_seconds}s")
    return EXIT_OK


def _parse_ticket(text: str) -> tuple[str, str]:
    tracker, sep, item_id = text.partition(":")
    if not sep or not tracker or not item_id:
        raise PolicyInputError(f"ticket {text!r} must be TRACKER:ID, e.g. zendesk:123")
    return tracker, item_id.lstrip("#")


def _service(config: Config, store: Store) -> SlaService:
    if config.policy is None:
        raise PolicyInputError(f"{config.path} has no `sla: policy:` section, so no SLA clocks run")
    return SlaService(store, config.policy, {}, {n: t.type for n, t in config.trackers.items()}, [])


def explain(args: argparse.Namespace, config: Config) -> int:
    store = Store.open(config.store_url)
    try:
        tracker, item_id = _parse_ticket(args.ticket)
        service = _service(config, store)
        ticket = store.sla_ticket(tracker, item_id)
        if ticket is None:
            raise PolicyInputError(f"no SLA history for {args.ticket}; has it been synced?")
        now = utc_now()
        sla = service.compute(tracker, item_id, now, explain=True)
        tz = config.policy.calendars[config.policy.default_calendar].tz if config.policy else UTC
        print(f"{ticket.item_key} ({tracker}:{item_id})  severity {sla.severity}"
              f"{' [' + ', '.join(sla.flags) + ']' if sla.flags else ''}  policy {sla.policy_id}")
        for clock in sla.clocks:
            print(f"\n  {clock.metric} (cycle {clock.cycle}): {clock.status}{' BREACHED' if clock.breached else ''}")
            print(f"    target     {clock.target_kind} {_hours(clock.target_seconds)} on calendar {clock.calendar}")
            print(f"    consumed   {_hours(clock.consumed)}; remaining {_hours(clock.remaining)}")
            if clock.started_at:
                print(f"    started    {_local(clock.started_at, tz)}")
            paused = _pauses(clock.segments)
            for a, b in paused:
                print(f"    paused     {_local(a, tz)} -> {_local(b, tz) if b else 'now'}")
            if clock.due_at:
                print(f"    due        {_local(clock.due_at, tz)}")
            if clock.stopped_at:
                print(f"    stopped    {_local(clock.stopped_at, tz)}  outcome {clock.outcome}")
            if clock.breach_nominal_at:
                print(f"    breach     nominal {iso_utc(clock.breach_nominal_at)}, "
                      f"recorded {iso_utc(clock.breach_recorded_at)}")
            for line in clock.why:
                print(f"    why        {line}")
        for event in store.sla_events(tracker, item_id):
            print(f"  event {iso_utc(event.recorded_at)} {event.metric} c{event.cycle} {event.kind} {event.threshold}")
        return EXIT_OK
    except PolicyInputError as error:
        print(f"ticketbridge sla explain: {error}", file=sys.stderr)
        return EXIT_INPUT
    finally:
        store.close()


def _pauses(segments: Any) -> list[tuple[datetime, datetime | None]]:
    """The gaps between running segments."""
    gaps = []
    for (_, end), (start, _) in itertools.pairwise(segments):
        if end is not None:
            gaps.append((end, start))
    return gaps


def _hours(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(int(seconds))
    return f"{sign}{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def report(args: argparse.Namespace, config: Config) -> int:
    store = Store.open(config.store_url)
    try:
        since = date.fromisoformat(args.since) if args.since else None
        rows = report_rows(store, since)
    except ValueError as error:
        print(f"ticketbridge sla report: --since: {error}", file=sys.stderr)
        return EXIT_INPUT
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(REPORT_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
        print(out.getvalue(), end="")
    else:
        print("  ".join(f"{c:>{w}}" for c, w in REPORT_COLUMNS.items()))
        for row in rows:
            print("  ".join(f"{_cell(row[c]):>{w}}" for c, w in REPORT_COLUMNS.items()))
        if not rows:
            print("(no SLA clocks recorded yet)")
    return EXIT_OK


REPORT_COLUMNS = {"severity": 8, "metric": 16, "count": 6, "met_pct": 7, "breached": 8, "running": 7,
                  "median_minutes": 14, "p90_minutes": 11}


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)


def report_rows(store: Store, since: date | None) -> list[dict[str, Any]]:
    """Per severity and metric, from the clocks as last computed. Times are wall-clock minutes
    from start to stop of clocks that stopped; met % is over stopped clocks."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for ticket in store.sla_tickets():
        summary = ticket.summary or {}
        for clock in summary.get("clocks", []):
            if not clock["started_at"]:
                continue
            if since and datetime.fromisoformat(clock["started_at"].replace("Z", "+00:00")).date() < since:
                continue
            groups[(summary["severity"], clock["metric"])].append(clock)
    rows = []
    for (severity, metric), clocks in sorted(groups.items()):
        stopped = [c for c in clocks if c["status"] == "stopped"]
        met = [c for c in stopped if c["outcome"] in ("met", "met_within_grace")]
        minutes = sorted((_at(c["stopped_at"]) - _at(c["started_at"])).total_seconds() / 60 for c in stopped)
        rows.append({
            "severity": severity, "metric": metric, "count": len(clocks),
            "met_pct": round(100 * len(met) / len(stopped), 1) if stopped else None,
            "breached": sum(1 for c in clocks if c["breached"] or c["outcome"] == "breached"),
            "running": sum(1 for c in clocks if c["status"] in ("running", "paused")),
            "median_minutes": round(statistics.median(minutes), 1) if minutes else None,
            "p90_minutes": round(_p90(minutes), 1) if minutes else None,
        })
    return rows


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _p90(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def redact_stdin(args: argparse.Namespace) -> int:
    """Print what engineering would see of the text on stdin, and what was removed (to stderr)."""
    from .sync.policy.redact import Identity, RedactionRules, redact
    from .sync.yamlsource import read_yaml

    try:
        doc, problems = read_yaml(Path(args.policy))
        if problems:
            raise ConfigError(problems)
        rules = RedactionRules.from_data((doc.data or {}).get("redaction") or {})
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return EXIT_INPUT
    except ValueError as error:
        print(f"ticketbridge redact: {args.policy}: redaction: {error}", file=sys.stderr)
        return EXIT_INPUT
    identity = Identity(names=tuple(args.name), emails=tuple(args.email), organizations=tuple(args.organization))
    result = redact(sys.stdin.read(), rules, identity)
    sys.stdout.write(result.text)
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(result.counts.items())) or "nothing"
    print(f"redacted: {counts}", file=sys.stderr)
    return EXIT_OK
