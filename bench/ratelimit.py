"""Benchmark: rate-limit use -- the request rate the bridge achieves against each tracker's ceiling, and its 429s.

    .venv/bin/python bench/ratelimit.py [--quick] [--scale S] [--windows K] [--json PATH]

What: the zendesk-jira flow (mappings/zendesk-jira.yaml) with the emulators limiting Zendesk to 700
requests and Jira to 100 requests per (scaled) minute -- issue 8's ceilings, in their ratio. The
emulators count a sliding window (`RateBudget`); the scaled clock shortens that window:
`budget.window = 60 s x scale` (full run: scale 1/4, a 15 s minute; --quick: 1/12, a 5 s minute), so
the ceilings are 700 and 100 requests per scaled minute. Two phases, each rate-bound on one tracker,
run side by side, each on a sandbox of its own with both trackers limited:
- Phase "jira": a backfill of new Zendesk tickets (a description and 3 public replies each) into Jira,
  about 4.5 Jira requests per ticket (create, 3 comments, a transition for 5 tickets in 6) against one
  Zendesk request: rate-bound on Jira.
- Phase "zendesk": an engineer comments 10 times on each already linked Jira issue (the pairs are set
  up first with the limits off, not measured); mirroring costs about 11 Zendesk requests per issue (a
  comment read, one update per comment) against one Jira search per 100 issues: rate-bound on Zendesk.
The real engine in-process (`open_runtime(config).engine()`, the default config's `sync.concurrency`
item threads, `sync_once()` pass after pass until one writes nothing) with the production retry
policy (`open_runtime`'s `RetryPolicy(attempts=5, max_delay=10)`).

How it is measured: each emulator's budget records the time of every request it judged and whether it
let it through (a denied one is answered 429). A tracker is rate-bound once one window has held 95%
of its ceiling (a paced client stops a request or two short of it: each request still in flight
keeps a slot). From that window's first request on, the budget comes back as it was spent, one window
later: the steady period starts with the first request let through then and runs to the first one
at least K windows after it (full run K=3, --quick K=1), so that it begins and ends at the same point
of the pattern (a sliding window gives its budget back in the bursts it was spent in; a period cut
mid-pattern would count a burst more or less than it holds). Figures per tracker over that period:
requests let through per scaled minute, that as a percentage of the ceiling, 429s and their share of
the requests; also the whole phase's 429s and the client's gate waits. The work is sized to outlast
the period (if it does not, a note says so).

Targets (issue 8): achieved rate >= 90% of the ceiling; 429s < 1% of requests (on each tracker).

Pacing comes from `RateGate` (src/ticketbridge/connectors/http.py): the trackers' remaining-budget and
reset headers hold a client's requests back once the budget is spent, instead of sending them into
429s. Zendesk sends `ratelimit-reset` on every response; the emulated Jira, like Jira Cloud, sends its
reset only with a 429, so the gate learns Jira's window from the first 429 (see the notes).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
import structlog

from ticketbridge.cli import Runtime, open_runtime
from ticketbridge.connectors.emulator_kit import RateBudget
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import load_config

MAPPING = common.REPO / "mappings" / "zendesk-jira.yaml"
CEILINGS = {"zendesk": 700, "jira": 100}  # requests per (scaled) minute: issue 8
TRACKERS = ("zendesk", "jira")
REPLIES = 3  # public replies per backfilled ticket (phase jira)
ENGINEER_COMMENTS = 10  # per linked issue (phase zendesk): more per issue, fewer pairs to set up
ZENDESK_REQUESTS_PER_PAIR = 11  # phase zendesk: measured, 1 read + 1 update per comment
JIRA_REQUESTS_PER_TICKET = 4.5  # phase jira: create, 3 comments, a transition for 5 of 6 tickets
MARGIN = 1.3  # work for this many times the windows the measurement needs (--quick: none, K + 1.3 windows)
MAX_PASSES = 12
BOUND_AT = 0.95  # the share of the ceiling in one window that marks the start of the rate-bound period


class RecordingBudget(RateBudget):
    """The emulator's sliding window, also noting when each request came and whether it was let through."""

    def __init__(self, per_minute: int, window: float) -> None:
        super().__init__(per_minute, window=window)
        self.judged: list[tuple[float, bool]] = []
        self._record = threading.Lock()

    def take(self) -> tuple[bool, int, float]:
        allowed, remaining, wait = super().take()
        with self._record:
            self.judged.append((time.monotonic(), allowed))
        return allowed, remaining, wait


@dataclass
class Phase:
    name: str  # the tracker it is bound on
    started: float = 0.0
    ended: float = 0.0
    passes: list[dict[str, Any]] = field(default_factory=list)


def scaled_limits(sandbox: Sandbox, window: float) -> dict[str, RecordingBudget]:
    budgets = {}
    for name in TRACKERS:
        budgets[name] = RecordingBudget(CEILINGS[name], window)
        sandbox.emulators[name].budget = budgets[name]
    return budgets


def unlimited(sandbox: Sandbox) -> None:
    for name in TRACKERS:
        sandbox.emulators[name].budget = RateBudget(None)


def add_tickets(sandbox: Sandbox, count: int, replies: int, tag: str) -> None:
    for number in range(count):
        sandbox.zendesk.add_ticket(
            subject=f"{tag} ticket {number}", comment={"body": f"Steps to reproduce {tag} {number}."},
            priority=("low", "normal", "high", "urgent")[number % 4],
            status=("new", "open", "pending", "hold", "solved", "open")[number % 6], type="incident", tags=[],
            comments=[{"body": f"Reply {k + 1} on {tag} {number}.", "public": True} for k in range(replies)])


def sync_until_quiet(runtime: Runtime, phase: Phase) -> None:
    engine = runtime.engine()
    phase.started = time.monotonic()
    while len(phase.passes) < MAX_PASSES:
        stats = engine.sync_once()
        phase.passes.append({"writes": stats.writes, "failures": len(stats.failures),
                             "ended": round(time.monotonic() - phase.started, 2)})
        if stats.writes == 0 and not stats.failures:
            break
    phase.ended = time.monotonic()


def steady(budget: RecordingBudget, phase: Phase, windows: int) -> dict[str, Any]:
    """The figures of one tracker over its steady rate-bound period (see the module docstring)."""
    judged = [(t, ok) for t, ok in budget.judged if phase.started <= t <= phase.ended]
    ceiling = budget.per_minute or 0
    allowed_times = [t for t, ok in judged if ok]
    # Rate-bound once one window has held BOUND_AT of the ceiling (a paced client stops a request or two
    # short of it: each request still in flight keeps a slot). From the first request of that window
    # on, the budget comes back as it was spent, one window later: the period starts with the first
    # request let through then, and runs to the first one at least K windows after it, so that it
    # begins and ends at the same point of the pattern (a sliding window gives its budget back in the
    # bursts it was spent in; a period cut mid-pattern would count a burst more or less than it holds).
    need = int(BOUND_AT * ceiling)
    filled_from = next((allowed_times[i - need + 1] for i in range(need - 1, len(allowed_times))
                        if allowed_times[i] - allowed_times[i - need + 1] < budget.window), None)
    row: dict[str, Any] = {"ceiling / scaled min": ceiling}
    later = [] if filled_from is None else [t for t in allowed_times if t >= filled_from + budget.window]
    if filled_from is None or not later:
        row.update({"window filled": "never" if filled_from is None else "at the end",
                    "achieved / scaled min": None, "% of ceiling": None})
        return row
    start = later[0]
    ends = [t for t in later if t >= start + windows * budget.window]
    end = ends[0] if ends else later[-1]
    full_at = filled_from
    period = [(t, ok) for t, ok in judged if start <= t < end]
    let_through = sum(1 for _, ok in period if ok)
    limited = sum(1 for _, ok in period if not ok)
    scaled_minutes = (end - start) / budget.window
    row.update({
        "window filled from (s)": round(full_at - phase.started, 1),
        "steady from (s)": round(start - phase.started, 1),
        "steady period (scaled min)": round(scaled_minutes, 2),
        "requests": let_through + limited,
        "achieved / scaled min": round(let_through / scaled_minutes, 1) if scaled_minutes else None,
        "% of ceiling": round(100 * let_through / (scaled_minutes * ceiling), 1) if scaled_minutes else None,
        "429s": limited,
        "429 share %": round(100 * limited / max(1, let_through + limited), 2),
        "short": not ends,
    })
    return row


@dataclass
class PhaseRun:
    """One phase on its own sandbox: what `steady` needs, and what the report shows."""

    phase: Phase
    budget: RecordingBudget  # the bound tracker's
    links: int = 0
    open_failures: int = 0
    concurrency: int = 0
    setup_seconds: float = 0.0
    gate_waits: int = 0
    whole_run_429s: dict[str, int] = field(default_factory=dict)


# Two stores created at once in one process trip over each other in SQLite's schema creation.
_OPENING = threading.Lock()


def run_phase(name: str, window: float, work: int) -> PhaseRun:
    """Phase `name` ("jira": backfill `work` tickets; "zendesk": comment on `work` linked issues) on a
    sandbox of its own, both trackers limited."""
    with tempfile.TemporaryDirectory(prefix=f"bench-ratelimit-{name}-") as tmp, Sandbox(port=0) as sandbox:
        workdir = Path(tmp)
        env = sandbox.credentials()
        config = load_config(sandbox.write_config(workdir / "config.yaml", mapping=MAPPING,
                                                  store_url=f"sqlite:///{workdir / 'store.db'}"), env=env)
        unlimited(sandbox)
        setup_started = time.monotonic()
        if name == "zendesk":  # set-up, limits off: the linked pairs to comment on (one create each)
            add_tickets(sandbox, work, 0, "linked")
        with _OPENING:
            runtime = open_runtime(config, env)  # the production retry policy
        try:
            if name == "zendesk":
                sync_until_quiet(runtime, Phase("setup"))
            setup_seconds = time.monotonic() - setup_started
            budgets = scaled_limits(sandbox, window)
            if name == "jira":
                add_tickets(sandbox, work, REPLIES, "new")
            else:
                for issue in sandbox.jira.issues():
                    for k in range(ENGINEER_COMMENTS):
                        sandbox.jira.add_comment(issue["key"], f"Engineering note {k + 1} on {issue['key']}.")
            phase = Phase(name)
            sync_until_quiet(runtime, phase)
            flow = runtime.flows[0]
            connector = flow.left if flow.left.name == name else flow.right
            client: Any = connector.client  # type: ignore[attr-defined]
            gate = client.gate if hasattr(client, "gate") else client.http.gate
            return PhaseRun(phase, budgets[name], runtime.store.count_links("zendesk-jira"),
                            len(runtime.store.failures()), runtime.concurrency, setup_seconds, len(gate.waits),
                            {tracker: sum(1 for _, ok in budgets[tracker].judged if not ok) for tracker in TRACKERS})
        finally:
            runtime.store.close()


def run(quick: bool, scale: float, windows: int) -> common.Result:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    window = 60.0 * scale
    # Work for the first window, K windows and up to one more to end the period on the pattern, with a
    # margin (--quick: a thinner one, to stay within its time).
    needed = (windows + 2) * MARGIN if not quick else windows + 1.3
    work = {"jira": int(needed * CEILINGS["jira"] / JIRA_REQUESTS_PER_TICKET),
            "zendesk": int(needed * CEILINGS["zendesk"] / ZENDESK_REQUESTS_PER_PAIR)}
    # The two phases run side by side, each on its own sandbox: the run takes as long as the longer one.
    runs: dict[str, PhaseRun] = {}
    errors: list[BaseException] = []

    def phase(name: str) -> None:
        try:
            runs[name] = run_phase(name, window, work[name])
        except BaseException as error:  # reported below, after the other phase ends
            errors.append(error)

    threads = [threading.Thread(target=phase, args=(name,), name=f"phase-{name}") for name in TRACKERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    rows = []
    for name in TRACKERS:
        done = runs[name]
        rows.append({"tracker": name, **steady(done.budget, done.phase, windows),
                     "429s in the whole phase": done.whole_run_429s[name],
                     "requests in the whole phase": len(done.budget.judged), "gate waits": done.gate_waits})
    return report(rows, runs, quick, scale, windows, work)


def report(rows: list[dict[str, Any]], runs: dict[str, PhaseRun], quick: bool, scale: float, windows: int,
           work: dict[str, int]) -> common.Result:
    result = common.Result(name="ratelimit", title="Rate-limit use: achieved rate vs ceiling, 429s",
                           command=common.command_line(), quick=quick)
    window = 60 * scale
    result.figures.update({
        "scaled minute": f"{window:g} s (scale {scale:g}): ceilings Zendesk 700, Jira 100 requests per {window:g} s",
        "workload": f"phase jira: backfill of {work['jira']} tickets with {REPLIES} replies; phase zendesk: "
                    f"{ENGINEER_COMMENTS} engineer comments on each of {work['zendesk']} linked issues; "
                    "side by side, each on its own sandbox",
        "engine": f"in-process, sync.concurrency {runs['jira'].concurrency}, production RetryPolicy",
        "steady period": f"{windows} scaled minute(s) or a little more (see How it is measured)",
        "phase seconds": {name: round(r.phase.ended - r.phase.started, 1) for name, r in runs.items()},
        "passes": {name: len(r.phase.passes) for name, r in runs.items()},
        "links at the end": {name: r.links for name, r in runs.items()},
        "open failures at the end": {name: r.open_failures for name, r in runs.items()},
        "set-up seconds of phase zendesk (limits off)": round(runs["zendesk"].setup_seconds, 1),
    })
    for row in rows:
        name = row["tracker"]
        result.figures[f"{name}: % of ceiling"] = row.get("% of ceiling")
        result.figures[f"{name}: 429 share %"] = row.get("429 share %")
    result.tables["per tracker (steady rate-bound period of the phase bound on it)"] = [
        {k: v for k, v in row.items() if k != "short"} for row in rows]
    for row in rows:
        name = row["tracker"]
        if row.get("% of ceiling") is None:
            result.notes.append(f"{name}: its window never filled; the phase was not rate-bound")
            continue
        result.targets.append(common.Target(f"{name}: achieved rate vs ceiling", row["% of ceiling"], ">=", 90.0, "%"))
        result.targets.append(common.Target(f"{name}: 429s of requests", row["429 share %"], "<", 1.0, "%"))
        if row["short"]:
            result.notes.append(f"{name}: the phase ran out of work before {windows} steady scaled minutes; "
                                f"measured over {row['steady period (scaled min)']}")
    result.notes.append("Both emulators count a sliding window and announce, as the reset, when the oldest "
                        "request in it leaves; Zendesk's `ratelimit-reset` is whole seconds (rounded up), so a "
                        "wait can overshoot by up to 1 s, which is 1/15 of a 15 s scaled minute and 1/5 of a "
                        "5 s one (--quick): the quick figure is the lower one for that alone.")
    result.notes.append("Jira announces no reset on a successful response (only `X-RateLimit-Remaining`); "
                        "`Retry-After` and `X-RateLimit-Reset` come with the 429 (api-facts 2.4). The client "
                        "learns the window from its first 429 (reset - start of the spell); until then the "
                        "requests in flight on the item threads meet 429s once: they are in the whole run's "
                        "429s, before the steady period.")
    result.notes.append("Set-up (the linked pairs of phase zendesk) runs with the limits off and is not measured; "
                        "each phase starts on an empty window.")
    return result


def main() -> int:
    cli = common.parser(__doc__)
    cli.add_argument("--scale", type=float, help="the scaled minute as a fraction of 60 s (default 1/4; quick 1/12)")
    cli.add_argument("--windows", type=int, help="steady scaled minutes measured per tracker (default 3; quick 1)")
    args = cli.parse_args()
    scale = args.scale or (1 / 12 if args.quick else 1 / 4)
    windows = args.windows or (1 if args.quick else 3)
    return common.emit(run(args.quick, scale, windows), args.json)


if __name__ == "__main__":
    sys.exit(main())
