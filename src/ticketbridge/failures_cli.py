"""`ticketbridge failures list|show|retry|drop` and `ticketbridge db upgrade|current`.

A failed item waits in the failures table with the tracker's message; every later change of the
item waits behind it (the sync pass leaves its pairs alone) until a retry syncs the item's
current state, every waiting change included, in one go. Nothing here prints a secret: every
line passes `logs.scrub_text`, and store URLs are shown without their password.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from . import logs
from .connectors.errors import AuthError, NotFound, TrackerError
from .sync.config import Config
from .sync.model import AddComment, Create, Operation, Transition, Update
from .sync.store import Failure, Store, current_revision, head_revision, upgrade

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2
TRACKER_TITLES = {"zendesk": "Zendesk", "jira": "Jira", "github": "GitHub", "clickup": "ClickUp"}


def _out(text: str) -> None:
    print(logs.scrub_text(text))


def _err(text: str) -> None:
    print(f"ticketbridge: {logs.scrub_text(text)}", file=sys.stderr)


def _register_secrets(config: Config, env: Mapping[str, str]) -> None:
    """Commands that open no connector still mask the trackers' tokens, should a message quote one."""
    for tracker in config.trackers.values():
        logs.register_secret(env.get(tracker.token_env))


def age(since: datetime, now: datetime) -> str:
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def places(failures: list[Failure]) -> dict[int, tuple[int, int]]:
    """failure id -> (position, open failures of its flow), oldest first; open failures only."""
    by_flow: dict[str, list[Failure]] = {}
    for failure in failures:
        if failure.state == "open":
            by_flow.setdefault(failure.flow, []).append(failure)
    return {f.id: (n, len(queue)) for queue in by_flow.values()
            for n, f in enumerate(sorted(queue, key=lambda f: (f.created_at, f.id)), start=1)}


def failure_row(failure: Failure, place: tuple[int, int] | None, now: datetime) -> dict[str, Any]:
    return {
        "id": failure.id, "flow": failure.flow, "tracker": failure.tracker, "item_id": failure.item_id,
        "item_key": failure.item_key, "kind": failure.kind, "reason": failure.reason,
        "message": logs.scrub_text(failure.message), "attempts": failure.attempts, "state": failure.state,
        "created_at": failure.created_at.isoformat(), "updated_at": failure.updated_at.isoformat(),
        "age_seconds": int((now - failure.created_at).total_seconds()),
        "position": place[0] if place else None, "open_in_flow": place[1] if place else None,
    }


def _item_title(failure: Failure, config: Config) -> str:
    tracker = config.trackers.get(failure.tracker)
    title = TRACKER_TITLES.get(tracker.type, failure.tracker) if tracker else failure.tracker
    return f"{title} {failure.item_key}"


def _line_text(row: Mapping[str, Any]) -> str:
    if row["position"] is None:
        return row["state"]
    return f"{row['position']} of {row['open_in_flow']} open in {row['flow']}"


def _store(config: Config) -> Store:
    return Store.open(config.store_url)


def _lookup(store: Store, raw: str) -> Failure | None:
    text = raw.lstrip("#")
    return store.failure(int(text)) if text.isdigit() else None


# -- failures list ----------------------------------------------------------------------------

def list_failures(args: argparse.Namespace, config: Config) -> int:
    _register_secrets(config, os.environ)
    store = _store(config)
    try:
        every = store.failures(state=None, flow=args.flow)
    finally:
        store.close()
    lines = places(every)
    shown = every if args.all else [f for f in every if f.state == "open"]
    now = datetime.now(UTC)
    rows = [failure_row(f, lines.get(f.id), now) for f in shown]
    if args.format == "json":
        _out(json.dumps(rows, indent=2))
        return EXIT_OK
    for failure, row in zip(shown, rows, strict=True):
        _out(f"#{row['id']}  {row['flow']}  {_item_title(failure, config)} (id {row['item_id']}, "
             f"{row['tracker']})  {row['kind']}/{row['reason']}  attempts {row['attempts']}  "
             f"age {age(failure.created_at, now)}  line {_line_text(row)}")
        _out(f"    {_one_line(row['message'])}")
    what = "failure(s)" if args.all else "open failure(s)"
    _out(f"{len(rows)} {what}" + ("; `ticketbridge failures show ID` lists the changes waiting behind one"
                                  if rows and not args.all else ""))
    return EXIT_OK


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- failures show ----------------------------------------------------------------------------

def describe_ops(side: str, ops: tuple[Operation, ...]) -> list[str]:
    """One line per waiting change: each field of an update, a transition, a comment, a creation."""
    lines = []
    for op in ops:
        if isinstance(op, Create):
            lines.append(f"{side}: create ({', '.join(sorted(op.fields))})")
        elif isinstance(op, Update):
            lines += [f"{side}: set {name} = {value!r}" for name, value in sorted(op.fields.items())]
        elif isinstance(op, Transition):
            lines.append(f"{side}: transition to {op.status!r}")
        elif isinstance(op, AddComment):
            lines.append(f"{side}: {'public' if op.public else 'internal'} comment from {op.source_id}")
        else:
            lines.append(f"{side}: {op.kind}")
    return lines


def waiting_changes(config: Config, failure: Failure,
                    open_runtime: Callable[..., Any]) -> tuple[list[str] | None, str | None]:
    """The changes a retry would push now (the failed one and every later one), planned on a dry
    run that writes nothing: (lines, None), or (None, why they could not be read)."""
    if failure.state != "open":
        return [], None
    runtime = open_runtime(config, os.environ, check=False)
    try:
        retried = runtime.engine(dry_run=True).retry_failure(failure)
    except AuthError:
        raise
    except NotFound:
        return None, f"the item no longer exists on {failure.tracker}"
    except TrackerError as error:
        return None, f"could not read the item: {error}"
    finally:
        runtime.store.close()
    lines: list[str] = []
    for planned in retried.stats.planned:
        if planned.decision.halt:
            lines.append(f"halt: {planned.decision.halt.reason}")
        for side in ("left", "right"):
            lines += describe_ops(side, planned.decision.ops[side])
    if retried.stats.failures:
        return None, f"could not plan the retry: {'; '.join(retried.stats.failures)}"
    return lines, None


def show_failure(args: argparse.Namespace, config: Config, open_runtime: Callable[..., Any]) -> int:
    _register_secrets(config, os.environ)
    store = _store(config)
    try:
        failure = _lookup(store, args.id)
        every = store.failures(state=None, flow=failure.flow) if failure else []
    finally:
        store.close()
    if failure is None:
        _err(f"no failure with id {args.id!r}; `ticketbridge failures list` shows them")
        return EXIT_INPUT
    now = datetime.now(UTC)
    row = failure_row(failure, places(every).get(failure.id), now)
    waiting, why = waiting_changes(config, failure, open_runtime)
    row["waiting"] = waiting
    row["waiting_unknown"] = why
    if args.format == "json":
        _out(json.dumps(row, indent=2))
        return EXIT_OK
    _out(f"failure #{failure.id} ({failure.state})")
    _out(f"  flow        {failure.flow}")
    _out(f"  item        {_item_title(failure, config)} (tracker {failure.tracker}, id {failure.item_id})")
    _out(f"  kind        {failure.kind} / {failure.reason}")
    _out(f"  attempts    {failure.attempts}")
    _out(f"  first seen  {row['created_at']} ({age(failure.created_at, now)} ago)")
    _out(f"  last seen   {row['updated_at']} ({age(failure.updated_at, now)} ago)")
    _out(f"  line        {_line_text(row)}")
    _out("  message")
    for text in failure.message.splitlines() or [""]:
        _out(f"    {text}")
    if why is not None:
        _out(f"  waiting     unknown: {why}")
    elif failure.state == "open":
        _out(f"  waiting     {len(waiting or [])} change(s) a retry would push now (the failed one included)")
        for text in waiting or []:
            _out(f"    {text}")
    return EXIT_OK


# -- failures retry / drop --------------------------------------------------------------------

def retry_failure(args: argparse.Namespace, config: Config, open_runtime: Callable[..., Any]) -> int:
    store = _store(config)
    try:
        failure = _lookup(store, args.id)
    finally:
        store.close()
    if failure is None:
        _err(f"no failure with id {args.id!r}; `ticketbridge failures list` shows them")
        return EXIT_INPUT
    if failure.state != "open":
        _err(f"failure #{failure.id} is {failure.state}; only an open failure can be retried")
        return EXIT_INPUT
    runtime = open_runtime(config, os.environ)
    try:
        retried = runtime.engine().retry_failure(failure)
    except NotFound:
        _err(f"failure #{failure.id}: {failure.item_key} no longer exists on {failure.tracker}; "
             f"`ticketbridge failures drop {failure.id}` lets it go")
        return EXIT_FAILED
    finally:
        runtime.store.close()
    stats = retried.stats
    if retried.resolved:
        _out(f"failure #{failure.id} resolved: {failure.item_key} synced through {failure.flow} "
             f"(created {sum(stats.created.values())}, fields pushed {sum(stats.fields_pushed.values())}, "
             f"comments mirrored {sum(stats.comments_mirrored.values())})")
        return EXIT_OK
    if retried.failed_again:
        after = retried.after
        _err(f"failure #{failure.id} still open after attempt {after.attempts} ({after.kind}/{after.reason}): "
             f"{after.message}")
        return EXIT_FAILED
    _err(f"failure #{failure.id} still open: {failure.item_key} was not synced (it no longer takes part in "
         f"{failure.flow}, or its pair was already in step); `ticketbridge failures drop {failure.id}` lets it go")
    return EXIT_FAILED


def drop_failure(args: argparse.Namespace, config: Config) -> int:
    store = _store(config)
    try:
        failure = _lookup(store, args.id)
        if failure is None:
            _err(f"no failure with id {args.id!r}; `ticketbridge failures list` shows them")
            return EXIT_INPUT
        if failure.state != "open":
            _err(f"failure #{failure.id} is {failure.state}; only an open failure can be dropped")
            return EXIT_INPUT
        store.drop_failure(failure.id)
    finally:
        store.close()
    _out(f"failure #{failure.id} dropped: {failure.item_key} no longer waits; its next change syncs as usual")
    return EXIT_OK


# -- db ---------------------------------------------------------------------------------------

def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def db_upgrade(args: argparse.Namespace, config: Config) -> int:
    url = config.store_url
    before = current_revision(url)
    upgrade(url)
    after = current_revision(url)
    if before == after:
        _out(f"{_safe(url)}: already at {after} (head)")
    else:
        _out(f"{_safe(url)}: upgraded from {before or '(empty)'} to {after} (head)")
    return EXIT_OK


def db_current(args: argparse.Namespace, config: Config) -> int:
    url = config.store_url
    revision = current_revision(url)
    head = head_revision()
    state = "head" if revision == head else f"behind head {head}; run `ticketbridge db upgrade`"
    _out(f"{_safe(url)}: {revision or '(empty)'} ({state})")
    return EXIT_OK
