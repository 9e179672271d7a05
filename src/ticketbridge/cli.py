"""The `ticketbridge` command.

Exit codes: 0 success; 1 the sync ran but items failed or invariants broke; 2 bad input
(config, mapping file, missing env var); 3 a tracker rejected the credentials; 4 a tracker could
not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from . import __version__, logs, progress
from .connectors import build_connector
from .connectors.errors import AuthError, Retryable, TrackerError
from .connectors.http import RetryPolicy
from .connectors.pagerduty.client import PagerDutyClient
from .sync.config import Config, ConfigError, MissingSecret, load_config, validate
from .sync.engine import Engine, Flow, PassStats
from .sync.escalation_service import EscalationService
from .sync.sla_service import SlaService, utc_now
from .sync.store import Store
from .sync.workers import run_worker
from .sync.workqueue import DEFAULT_LEASE

if TYPE_CHECKING:
    from .sync.engine import Retried
    from .sync.scrubbing import Scrubber
    from .sync.store import Failure
    from .sync.webhooks import Counters
    from .web import StatusServer

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_AUTH, EXIT_UNREACHABLE = 0, 1, 2, 3, 4


def default_config() -> Path:
    """config.yaml when present, else the example (so a fresh clone can try `validate`)."""
    for name in ("config.yaml", "config.example.yaml"):
        if Path(name).exists():
            return Path(name)
    return Path("config.yaml")


def _fail(message: str, code: int) -> int:
    print(f"ticketbridge: {logs.scrub_text(message)}", file=sys.stderr)
    return code


@dataclass
class Runtime:
    store: Store
    flows: list[Flow]
    sla: SlaService | None
    escalation: EscalationService | None = None
    concurrency: int = 1  # items synced side by side (config `sync.concurrency`)

    def engine(self, *, dry_run: bool = False) -> Engine:
        return Engine(self.store, self.flows, dry_run=dry_run, sla=self.sla, escalation=self.escalation,
                      concurrency=self.concurrency)


def redactor(config: Config, env: Mapping[str, str] | None = None) -> Scrubber:
    """The scrubber of flows that say `redact: true`: the policy's `redaction:` rules (every kind
    of personal data when there is no policy), bound per ticket to its requester and CC'd people.
    The HMAC key of `hashed_fields` comes from the environment variable the rules name."""
    from .sync.policy.redact import RedactionKeyError
    from .sync.scrubbing import Scrubber

    try:
        return Scrubber.from_policy(config.policy.redaction if config.policy else None,
                                    os.environ if env is None else env)
    except RedactionKeyError:
        rules = config.policy.redaction if config.policy else {}
        raise MissingSecret("redaction", str(rules.get("hash_key_env", "TICKETBRIDGE_REDACTION_KEY"))) from None


def open_runtime(config: Config, env: Mapping[str, str], *, check: bool = True,
                 retry: RetryPolicy | None = None, now: Callable[[], datetime] | None = None) -> Runtime:
    """Connectors for every tracker (checked), the store, the flows joining them, the SLA clocks."""
    connectors = {name: build_connector(tracker, env, retry=retry or RetryPolicy(attempts=5, max_delay=10))
                  for name, tracker in config.trackers.items()}
    if check:
        for connector in connectors.values():
            connector.check()
    scrub = redactor(config, env)
    flows = [Flow(flow.mapping, connectors[flow.mapping.left], connectors[flow.mapping.right],
                  scrub if flow.mapping.redact else None)
             for flow in config.flows]
    store = Store.open(config.store_url)
    sla = escalation = None
    if config.policy is not None:
        types = {n: t.type for n, t in config.trackers.items()}
        flow_trackers = [(f.name, f.left.name, f.right.name) for f in flows]
        sla = SlaService(store, config.policy, connectors, types, flow_trackers, now=now or utc_now)
        pager = None
        if config.paging is not None:
            pager = PagerDutyClient(config.paging.events_url, config.paging.routing_key(env),
                                    retry=retry or RetryPolicy(attempts=5, max_delay=10))
        escalation = EscalationService(store, config.policy, connectors, types, flow_trackers, pager=pager,
                                       page_source=config.paging.source if config.paging else "ticketbridge",
                                       now=now or utc_now)
    return Runtime(store, flows, sla, escalation, config.concurrency)


def log_level(env: Mapping[str, str]) -> str:
    """$TICKETBRIDGE_LOG_LEVEL (DEBUG adds which items each worker held, and when), else INFO."""
    level = env.get("TICKETBRIDGE_LOG_LEVEL", "INFO").upper()
    return level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO"


def guarded(args: argparse.Namespace, action: Callable[[Config], int]) -> int:
    """Load the config and run `action` on it, turning the documented errors into one clear
    line and an exit code."""
    config: Config | None = None
    try:
        config = load_config(Path(args.config) if args.config else default_config())
        logs.configure(config.log_format, level=log_level(os.environ))
        return action(config)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return EXIT_INPUT
    except MissingSecret as error:
        return _fail(str(error), EXIT_INPUT)
    except AuthError as error:
        hint = ""
        if config and error.tracker in config.trackers:
            tracker = config.trackers[error.tracker]
            hint = f"; check {tracker.email_env} and {tracker.token_env}"
        return _fail(f"tracker '{error.tracker}' rejected the credentials (HTTP {error.status}){hint}",
                     EXIT_AUTH)
    except Retryable as error:
        where = config.trackers[error.tracker].base_url if config and error.tracker in config.trackers else ""
        return _fail(f"tracker '{error.tracker}' could not be reached {where}: {error.message}".replace("  ", " "),
                     EXIT_UNREACHABLE)
    except TrackerError as error:
        return _fail(str(error), EXIT_FAILED)
    except sa_exc.OperationalError as error:  # the store's database is down or refuses us
        where = make_url(config.store_url).render_as_string(hide_password=True) if config else "the store"
        first = str(error.orig or error).strip().splitlines()[0] if str(error.orig or error).strip() else ""
        return _fail(f"the store at {where} could not be reached: {first}", EXIT_UNREACHABLE)


# -- commands -------------------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.config) if args.config else default_config()
    problems = validate(path)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return EXIT_INPUT
    config = load_config(path)
    print(f"{path}: valid ({len(config.trackers)} trackers, {len(config.flows)} flows: "
          f"{', '.join(f.name for f in config.flows)})")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    def action(config: Config) -> int:
        runtime = open_runtime(config, os.environ)
        stats = runtime.engine(dry_run=True).sync_once()
        runtime.store.close()
        rows = [plan_row(p) for p in stats.planned if p.decision.writes or p.decision.halt]
        if args.format == "json":
            print(json.dumps(rows, indent=2, default=str))
        else:
            for row in rows:
                print(f"{row['flow']} {row['item']}" + (f" <-> {row['counterpart']}" if row["counterpart"] else ""))
                if row["halt"]:
                    print(f"    HALT {row['halt']}")
                for op in row["operations"]:
                    print(f"    {op}")
            print(f"{len(rows)} item(s) would change; nothing was written.")
        return EXIT_OK

    return guarded(args, action)


def plan_row(planned: Any) -> dict[str, Any]:
    ops = []
    for side in ("left", "right"):
        for op in planned.decision.ops[side]:
            ops.append(f"{side}: {describe_op(op)}")
    return {"flow": planned.flow, "item": planned.key, "counterpart": planned.counterpart,
            "halt": planned.decision.halt.reason if planned.decision.halt else None, "operations": ops,
            "conflicts": [c.field for c in planned.decision.conflicts]}


def describe_op(op: Any) -> str:
    if op.kind == "create":
        return f"create ({', '.join(sorted(op.fields))}) marker {op.marker}"
    if op.kind == "update":
        return "update " + ", ".join(f"{k}={v!r}" for k, v in sorted(op.fields.items()))
    if op.kind == "transition":
        return f"transition to {op.status!r}"
    return f"{'public' if op.public else 'internal'} comment from {op.source_id}"


def cmd_sync(args: argparse.Namespace) -> int:
    def action(config: Config) -> int:
        runtime = open_runtime(config, os.environ)
        try:
            # A running count of items on a terminal (a first sync is a backfill of every item).
            with progress.sync_progress(config.log_format):
                stats = runtime.engine().sync_once()
        finally:
            runtime.store.close()
        print(pass_summary(stats))
        return EXIT_FAILED if stats.failures else EXIT_OK

    return guarded(args, action)


def pass_summary(stats: PassStats) -> str:
    return (f"items seen {stats.items_seen}; created {sum(stats.created.values())}; "
            f"fields pushed {dict(stats.fields_pushed) or 0}; comments mirrored "
            f"{dict(stats.comments_mirrored) or 0}; conflicts {len(stats.conflicts)}; "
            f"failures {len(stats.failures)}; halts {len(stats.halts)}; SLA fields written "
            f"{stats.sla.fields_written}, warnings {len(stats.sla.warnings)}, breaches {len(stats.sla.breaches)}")


def cmd_run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        import structlog

        structlog.get_logger("ticketbridge").info("run.stopping", signal=signal.Signals(signum).name)
        stop.set()

    def action(config: Config) -> int:
        import queue

        receiver = None
        nudges: queue.Queue[tuple[str, str]] | None = None
        if config.webhooks is not None:
            from .sync.webhooks import Receiver, WebhookServer

            # Webhook secrets are read (MissingSecret: exit 2) before anything starts.
            nudges = queue.Queue(maxsize=10_000)
            receiver = WebhookServer(Receiver.from_config(config.webhooks, nudges, os.environ),
                                     config.webhooks.host, config.webhooks.port)
        if config.status is not None:
            from .web.security import required_token

            required_token(config.status.host, config.status.token_env, os.environ)  # exit 2 before starting
        runtime = open_runtime(config, os.environ)
        status = status_server(config, receiver.receiver.counters if receiver else None)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        intervals = {name: t.poll_interval for name, t in config.trackers.items()}
        try:
            if receiver is not None:
                try:
                    receiver.start()
                except OSError as error:
                    return _fail(f"{error} (webhooks.listen in {config.path}; is the port in use?)", EXIT_INPUT)
            if status is not None:
                try:
                    status.start()
                except OSError as error:
                    return _fail(f"{error} (status.listen in {config.path}; is the port in use?)", EXIT_INPUT)
            if runtime.store.shared:  # PostgreSQL: one of any number of workers sharing the store
                run_worker(runtime.engine(), stop, intervals, claim_lease=args.claim_lease, nudges=nudges)
            else:
                runtime.engine().run_forever(stop, intervals, nudges=nudges)
        finally:
            if receiver is not None:
                receiver.stop()
            if status is not None:
                status.stop()
                status.context.store.close()
            runtime.store.close()
        return EXIT_OK

    return guarded(args, action)


def status_server(config: Config, webhooks: Counters | None) -> StatusServer | None:
    """The status page of `ticketbridge run` (config `status:`), not yet started; None without one.
    It reads through a store connection of its own, and its Retry button replays the failure in a
    fresh runtime, exactly as `ticketbridge failures retry` does from another shell."""
    if config.status is None:
        return None
    from .web import StatusContext, StatusServer
    from .web.actions import retry_action

    def replay(failure: Failure) -> Retried:
        runtime = open_runtime(config, os.environ, check=False)
        try:
            return runtime.engine().retry_failure(failure)
        finally:
            runtime.store.close()

    context = StatusContext.from_config(config, Store.open(config.store_url), retry=retry_action(replay),
                                        webhooks=webhooks)
    return StatusServer(context, config.status.host, config.status.port, token_env=config.status.token_env)


def cmd_sla(args: argparse.Namespace) -> int:
    from . import sla_cli

    if args.sla_command == "due":
        return sla_cli.due(args)
    return guarded(args, lambda config: sla_cli.explain(args, config) if args.sla_command == "explain"
                   else sla_cli.report(args, config))


def cmd_failures(args: argparse.Namespace) -> int:
    from . import failures_cli

    actions: dict[str, Callable[[Config], int]] = {
        "list": lambda config: failures_cli.list_failures(args, config),
        "show": lambda config: failures_cli.show_failure(args, config, open_runtime),
        "retry": lambda config: failures_cli.retry_failure(args, config, open_runtime),
        "drop": lambda config: failures_cli.drop_failure(args, config),
    }
    return guarded(args, actions[args.failures_command])


def cmd_db(args: argparse.Namespace) -> int:
    from . import failures_cli

    return guarded(args, lambda config: failures_cli.db_upgrade(args, config) if args.db_command == "upgrade"
                   else failures_cli.db_current(args, config))


def add_failures_parsers(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
                         ) -> None:
    failures = sub.add_parser("failures", help="items waiting in failures: list, show, retry after a fix, drop")
    failures_sub = failures.add_subparsers(dest="failures_command", required=True)
    listing = with_config(failures_sub.add_parser("list", help="open failures, oldest first, with their place in line"))
    listing.add_argument("--flow", help="only this flow")
    listing.add_argument("--all", action="store_true", help="resolved and dropped ones too")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    show = with_config(failures_sub.add_parser("show", help="one failure in full, with the changes waiting behind it"))
    show.add_argument("id", metavar="ID")
    show.add_argument("--format", choices=("text", "json"), default="text")
    retry = with_config(failures_sub.add_parser("retry", help="sync the item's current state now (after a fix)"))
    retry.add_argument("id", metavar="ID")
    drop = with_config(failures_sub.add_parser("drop", help="stop holding the item; its next change syncs"))
    drop.add_argument("id", metavar="ID")
    failures.set_defaults(func=cmd_failures)
    db = sub.add_parser("db", help="the store's schema: Alembic migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    with_config(db_sub.add_parser("upgrade", help="run the migrations to head, print from/to revisions"))
    with_config(db_sub.add_parser("current", help="print the store's revision"))
    db.set_defaults(func=cmd_db)


def cmd_redact(args: argparse.Namespace) -> int:
    from .sla_cli import redact_stdin

    return redact_stdin(args)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from .sandbox import Sandbox

    with Sandbox(args.host, args.port, seed=args.seed, export_delay=args.export_delay) as sandbox:
        stop = threading.Event()
        # Handlers first: whoever reads the printed URLs may signal us at once.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        print(sandbox.describe(), flush=True)
        stop.wait()
    print("sandbox stopped")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if args.serve:  # refuse a bad address, or a non-loopback one without its token, before the demo runs
        from .web.security import DEFAULT_TOKEN_ENV, required_token
        from .web.server import parse_listen

        try:
            required_token(parse_listen(args.status_listen)[0], DEFAULT_TOKEN_ENV, os.environ)
        except (ValueError, MissingSecret) as error:
            return _fail(f"--status-listen: {error}", EXIT_INPUT)
    return run_demo(Path(args.mapping), quiet_logs=not args.verbose, policy=Path(args.policy),
                    serve=args.status_listen if args.serve else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ticketbridge", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--version", action="version", version=f"ticketbridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="config file (default: config.yaml, else config.example.yaml)")
        return p

    with_config(sub.add_parser("validate", help="check config.yaml and every mapping file it references")
                ).set_defaults(func=cmd_validate)
    plan = with_config(sub.add_parser("plan", help="dry run: what a sync would do, changing nothing"))
    plan.add_argument("--format", choices=("text", "json"), default="text")
    plan.set_defaults(func=cmd_plan)
    sync = with_config(sub.add_parser("sync", help="sync every flow"))
    sync.add_argument("--once", action="store_true", required=True, help="one full pass, then exit")
    sync.set_defaults(func=cmd_sync)
    run = with_config(sub.add_parser(
        "run", help="the long-running loop (SIGTERM/SIGINT stop it cleanly); on PostgreSQL, start as many as you like"))
    run.add_argument("--claim-lease", type=float, default=DEFAULT_LEASE, metavar="SECONDS",
                     help="on PostgreSQL: how long a dead worker's claimed items wait before another takes "
                          f"them over (default {DEFAULT_LEASE:g})")
    run.set_defaults(func=cmd_run)
    sla = sub.add_parser("sla", help="SLA clocks: due dates, one ticket's clocks, a report")
    sla_sub = sla.add_subparsers(dest="sla_command", required=True)
    due = sla_sub.add_parser("due", help="when a target falls due, on the policy's calendars")
    due.add_argument("--policy", default="mappings/policy.yaml")
    due.add_argument("--severity", required=True)
    due.add_argument("--metric", required=True)
    due.add_argument("--start", required=True, help="ISO 8601 with an offset, e.g. 2026-11-20T16:30:00+01:00")
    due.add_argument("--pause", action="append", default=[], metavar="START/END",
                     help="a paused span, two ISO 8601 instants joined by '/' (repeatable)")
    due.add_argument("--policy-id", help="which policy of the file (default: the catch-all)")
    explain = with_config(sla_sub.add_parser("explain", help="every clock of one ticket, and why"))
    explain.add_argument("ticket", metavar="TRACKER:ID", help="e.g. zendesk:123")
    report = with_config(sla_sub.add_parser("report", help="per severity and metric: met %%, breaches, times"))
    report.add_argument("--since", help="only tickets created on or after this date (YYYY-MM-DD)")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sla.set_defaults(func=cmd_sla)
    add_failures_parsers(sub, with_config)
    redact = sub.add_parser("redact", help="print what engineering would see of the text on stdin")
    redact.add_argument("--policy", default="mappings/policy.yaml", help="policy file with the redaction rules")
    redact.add_argument("--name", action="append", default=[], help="a requester/CC name to remove (repeatable)")
    redact.add_argument("--email", action="append", default=[], help="a requester/CC email to remove")
    redact.add_argument("--organization", action="append", default=[], help="the requester's organization")
    redact.set_defaults(func=cmd_redact)
    sandbox = sub.add_parser("sandbox", help="run the tracker emulators in the foreground")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8801,
                         help="Zendesk port; Jira, GitHub, PagerDuty and ClickUp get the next ones")
    sandbox.add_argument("--seed", action="store_true", help="start with realistic support tickets")
    sandbox.add_argument("--export-delay", type=float, default=0.0,
                         help="seconds Zendesk's incremental export hides recent changes (real Zendesk: 60)")
    sandbox.set_defaults(func=cmd_sandbox)
    demo = sub.add_parser("demo", help="the end-to-end demo on in-process emulators")
    demo.add_argument("--mapping", default="mappings/zendesk-jira.yaml")
    demo.add_argument("--policy", default="mappings/policy.yaml")
    demo.add_argument("--verbose", action="store_true", help="show the sync's logs")
    demo.add_argument("--serve", action="store_true",
                      help="afterwards keep the sandbox up and serve the status page until Ctrl-C")
    demo.add_argument("--status-listen", default="127.0.0.1:8950", metavar="HOST:PORT",
                      help="where --serve's status page listens (default 127.0.0.1:8950)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("validate", "sandbox", "demo", "redact") or (
            args.command == "sla" and args.sla_command == "due"):
        logs.configure("auto", level="WARNING")
        try:
            return int(args.func(args))
        except ConfigError as error:
            print(str(error), file=sys.stderr)
            return EXIT_INPUT
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
