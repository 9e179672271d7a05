"""Benchmark: how long a change on one tracker takes to show on the other, with webhooks and with polls only.

    .venv/bin/python bench/latency.py [--quick] [--json PATH] [--concurrency N] [--paths poll,webhook]

What runs: a Sandbox (Zendesk and Jira emulators in this process, 50 ms added to every HTTP request
they answer: `Faults.latency = 0.05`), a SQLite store in a temp dir, the zendesk-jira flow
(mappings/zendesk-jira.yaml) and `ticketbridge run --config <file>` as a subprocess, as a user runs
it. Tickets come from `seed_backfill` (fields, 2-3 replies each). The bridge's first passes, which
create and link every ticket, run without the added latency and are not measured.

The load: 20 changes per second on a fixed schedule, round-robin over the linked pairs. Three in four
are Zendesk subject edits carrying a unique token (the mapping copies subject -> Jira summary); one in
four is an engineer's Jira comment carrying a unique token (the mapping brings Jira comments back to
Zendesk as internal notes). Both are made through the emulators' in-process API; the change's
time is taken when that call returns. Full: 5 s of warm-up (load, not measured), then 30 s measured;
quick: 8 s measured, no warm-up, fewer tickets.

Visibility: a hook around each emulator's request router records, with `time.monotonic()`, the first
time an accepted write (POST/PUT answered 2xx) carries a token: the moment the mirrored value landed
in the other tracker's state. No thread polls the emulators, so the bridge gets the CPU. A subject
edit superseded by a later edit of the same ticket before it crossed counts as visible when the
later one lands (the other side then shows a state at least that new). Latency = landing - change;
a change not seen by the end of the drain (the measured period, then up to `drain` s) counts with
its latency so far, so a percentile over it is a lower bound (printed with ">=").

Two paths, one after the other on the same sandbox and store:
- poll-only: no webhooks, both trackers polled every 2 s (`poll_interval: 2s`);
- webhook: the emulators deliver signed webhooks to the bridge's receiver (`webhooks:` section,
  secrets from env vars), poll interval 60 s, so no poll falls into the measured period: what is
  measured is the webhook path alone.

Per path and direction: changes made, seen, not seen, p50/p95/p99/max. To tell where the time goes:
the requests each tracker answered from the measured start to the drain's end, by kind, per change
that landed in that window (warm-up backlog included); the throughput; the CPU of the bridge and of
this process (emulators, load, hooks) and the machine's load average; the emulators' handler times
(after the 50 ms delay: an emulator slow by its own work would show here); the poll passes (duration,
items, the gap between one's end and the next's start); echo writes (a token written back to the
tracker it came from) and lost updates (a Zendesk subject no longer carrying its last edit's token).
`--concurrency N` writes `sync: concurrency: N` into the config (1: items one at a time, as before
the engine's thread pool). Progress goes to stderr.

Targets (issue 8): webhook p95 < 1 s; poll-only p95 < poll interval + 1 s = 3 s, over all changes of
the path (both directions). Nothing is asserted. Quick: 40 tickets, about 25-30 s on an idle 2-core
machine.
"""

from __future__ import annotations

import math
import os
import re
import resource
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import common

sys.path.insert(0, str(common.REPO))  # tests.reliability.harness: seeding and the bridge as a process

from tests.reliability.harness import BridgeProcess, marker_issue_ids, seed_backfill

from ticketbridge.connectors.emulator_kit import EmulatorServer, Request, Response
from ticketbridge.sandbox import Sandbox

MAPPING = common.REPO / "mappings" / "zendesk-jira.yaml"
LATENCY = 0.05  # seconds the emulators add to every request
RATE = 20.0  # changes per second, both directions together
JIRA_EVERY = 4  # every 4th change is made on Jira (an engineer's comment), the rest on Zendesk
SEED = 8
ENGINEER = "Dana Engineer"
SECRETS = {"zendesk": "zd-latency-bench-secret", "jira": "jira-latency-bench-secret"}
SECRET_ENV = {name: f"{name.upper()}_WEBHOOK_SECRET" for name in SECRETS}
# A token per change: Z for one made on Zendesk, J on Jira; the path's letter keeps runs apart.
TOKEN = re.compile(rb"LAT[ZJ][pw]\d{5}")


@dataclass(frozen=True)
class Plan:
    tickets: int
    warmup: float  # seconds of load before the measured period
    measured: float  # seconds of measured load
    drain: float  # seconds to wait after the load for changes still on their way
    quick: bool

    @classmethod
    def of(cls, quick: bool) -> Plan:
        return cls(tickets=40, warmup=0.0, measured=8.0, drain=2.0, quick=True) if quick else \
            cls(tickets=300, warmup=5.0, measured=30.0, drain=30.0, quick=False)


@dataclass(frozen=True)
class PathSpec:
    name: str  # "webhook" | "poll-only"
    letter: str  # in the tokens
    poll_interval: float
    webhooks: bool


PATHS = {"poll": PathSpec("poll-only", "p", 2.0, False), "webhook": PathSpec("webhook", "w", 60.0, True)}


# -- when a mirrored value lands ------------------------------------------------------------------

class Landings:
    """Wraps an emulator's router: the first time an accepted write carries a token, note when."""

    def __init__(self, emulator: EmulatorServer) -> None:
        self.at: dict[bytes, float] = {}
        self.timing = False
        self.handler_seconds: list[float] = []
        self.trace: list[tuple[float, float, str, str, int]] | None = None  # (start, end, method, path, status)
        route: Callable[[Request], Response] = emulator._route

        def hooked(request: Request) -> Response:
            began = time.monotonic()
            response = route(request)
            if self.timing:
                # Time in the emulator's handler, its lock wait included (the 50 ms come before):
                # tells an emulator slowed down by its own work from a bridge slow to ask.
                self.handler_seconds.append(time.monotonic() - began)
            if self.trace is not None:  # the request began with the emulator's delay, before `began`
                self.trace.append((began - emulator.faults.latency, time.monotonic(), request.method,
                                   ID.sub("/{id}", request.path), response.status))
            # Right after the handler applied the write under the emulator's lock, before the answer
            # goes out: this is when the other tracker's state shows the value.
            if request.method in ("POST", "PUT") and response.status < 300 and b"LAT" in request.body:
                now = time.monotonic()
                for token in TOKEN.findall(request.body):
                    self.at.setdefault(token, now)
            return response

        emulator._route = hooked  # type: ignore[method-assign]


@dataclass
class Change:
    token: bytes
    direction: str  # "zendesk->jira" | "jira->zendesk"
    item: str  # the ticket id or issue key it was made on
    made_at: float
    measured: bool
    seen_at: float | None = None


T0 = time.monotonic()


def phase(what: str) -> None:
    """Progress on stderr (the figures go to stdout)."""
    print(f"[{time.monotonic() - T0:6.1f} s] {what}", file=sys.stderr, flush=True)


# -- the bridge ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, bridge: BridgeProcess) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if not bridge.alive():
            raise SystemExit(f"the bridge exited while waiting for {what}:\n{bridge.tail()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not reached within {timeout:.0f} s:\n{bridge.tail()}")
        time.sleep(0.05)


def quiet_for(sandbox: Sandbox, seconds: float) -> Callable[[], bool]:
    """A predicate: no emulator has answered a request for `seconds` (the bridge is idle)."""
    seen = {"count": -1, "since": time.monotonic()}

    def quiet() -> bool:
        count = len(sandbox.zendesk.request_log) + len(sandbox.jira.request_log)
        if count != seen["count"]:
            seen["count"], seen["since"] = count, time.monotonic()
        return time.monotonic() - seen["since"] >= seconds

    return quiet


def quiet_passes(bridge: BridgeProcess) -> list[dict[str, Any]]:
    return [e for e in bridge.events("engine.pass_done") if not e.get("writes")]


def start_bridge(sandbox: Sandbox, workdir: Path, store_url: str, spec: PathSpec,
                 concurrency: int | None) -> BridgeProcess:
    """`ticketbridge run` on the path's config; returns once its first pass is done and, polling
    only, a pass wrote nothing (the echoes of the first pass's writes were read back)."""
    port = free_port()
    config = sandbox.write_config(
        workdir / f"{spec.name}.yaml", store_url=store_url, mapping=MAPPING,
        poll_interval=f"{spec.poll_interval:g}s",
        webhooks=SECRET_ENV if spec.webhooks else None, webhooks_listen=f"127.0.0.1:{port}")
    if concurrency is not None:
        with config.open("a") as handle:
            handle.write(f"sync:\n  concurrency: {concurrency}\n")
    if spec.webhooks:
        sandbox.send_webhooks_to(f"http://127.0.0.1:{port}", SECRETS)
    else:
        sandbox.send_webhooks_to("http://unused", {})  # every emulator stops sending
    env = {**sandbox.credentials(), **{SECRET_ENV[name]: secret for name, secret in SECRETS.items()}}
    bridge = BridgeProcess.start(["run", "--config", str(config)], env, workdir, spec.name)
    timeout = 600.0
    wait_for(lambda: bool(bridge.events("engine.pass_done")), timeout, "the first pass", bridge)
    done = bridge.events("engine.pass_done")[0]
    phase(f"{spec.name}: first pass done ({done.get('items')} items, {done.get('writes')} writes)")
    if spec.webhooks:
        # The first pass's own writes come back as webhooks: let them be served before measuring.
        wait_for(lambda: sandbox.webhooks_idle(), timeout, "the first pass's webhooks", bridge)
        # The engine has served them (and the backlog they brought) once it stops calling the trackers.
        wait_for(quiet_for(sandbox, 0.5), timeout, "the bridge to go quiet", bridge)
    else:
        wait_for(lambda: bool(quiet_passes(bridge)), timeout, "a quiet poll", bridge)
    return bridge


def trace_one(sandbox: Sandbox, landed: dict[str, Landings], pairs: list[tuple[int, str]],
              letter: str) -> list[dict[str, Any]]:
    """One change made on each side with nothing else going on: the requests the bridge makes for
    it, in order, with their times from the change (the critical path, then the echo of its write)."""
    rows: list[dict[str, Any]] = []
    for side in ("zendesk", "jira"):
        for landing in landed.values():
            landing.trace = []
        made = time.monotonic()
        if side == "zendesk":
            token, target = f"LATZ{letter}99990", "jira"
            sandbox.zendesk.update_ticket(pairs[0][0], subject=f"Traced alone ({token})")
        else:
            token, target = f"LATJ{letter}99991", "zendesk"
            sandbox.jira.add_comment(pairs[1][1], f"Traced alone {token}.", author=ENGINEER)
        time.sleep(2.0)  # the change, its echo and any second webhook of it are served by then
        landed_at = landed[target].at.get(token.encode())
        calls = sorted((start, end, name, method, path, status) for name, landing in landed.items()
                       for start, end, method, path, status in landing.trace or [])
        for landing in landed.values():
            landing.trace = None
        for start, end, name, method, path, status in calls:
            rows.append({"change on": side, "from s": round(start - made, 3), "to s": round(end - made, 3),
                         "tracker": name, "request": f"{method} {path} -> {status}",
                         "after landing": landed_at is not None and end > landed_at + 1e-6})
        rows.append({"change on": side, "from s": "", "to s": round(landed_at - made, 3) if landed_at else "never",
                     "tracker": target, "request": "(the value landed)", "after landing": ""})
    return rows


# -- the load ----------------------------------------------------------------------------------------

class Load:
    """Changes on a fixed schedule (RATE per second), round-robin over the pairs, each direction in
    its own order so one pair rarely changes on both sides at once."""

    def __init__(self, sandbox: Sandbox, pairs: list[tuple[int, str]], letter: str) -> None:
        self.sandbox = sandbox
        self.letter = letter
        self.desk_items = [ticket for ticket, _ in pairs]
        self.engineering_items = [issue for _, issue in reversed(pairs)]
        self.subjects = {ticket: sandbox.zendesk.ticket(ticket)["subject"] for ticket in self.desk_items}
        self.changes: list[Change] = []
        self.late = 0  # changes made more than 50 ms behind their schedule (the generator lagging)

    def run(self, seconds: float, measured: bool) -> None:
        start = time.monotonic()
        for i in range(int(seconds * RATE)):
            pause = start + i / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            elif pause < -0.05:
                self.late += 1
            self.changes.append(self.make(len(self.changes), measured))

    def make(self, n: int, measured: bool) -> Change:
        if n % JIRA_EVERY == JIRA_EVERY - 1:
            issue = self.engineering_items[(n // JIRA_EVERY) % len(self.engineering_items)]
            token = f"LATJ{self.letter}{n:05d}"
            self.sandbox.jira.add_comment(issue, f"Looked into it, see build {token}.", author=ENGINEER)
            return Change(token.encode(), "jira->zendesk", issue, time.monotonic(), measured)
        desk_n = n - n // JIRA_EVERY
        ticket = self.desk_items[desk_n % len(self.desk_items)]
        token = f"LATZ{self.letter}{n:05d}"
        self.sandbox.zendesk.update_ticket(ticket, subject=f"{self.subjects[ticket]} ({token})")
        return Change(token.encode(), "zendesk->jira", str(ticket), time.monotonic(), measured)


# -- what was seen, and what it cost ------------------------------------------------------------------

def resolve(changes: list[Change], landed: dict[str, Landings]) -> None:
    """Set `seen_at` from the landings; a subject edit also counts as seen when a later edit of the
    same ticket landed first (the coalesced value is newer than it)."""
    later: dict[str, float] = {}
    for change in reversed(changes):
        target = "jira" if change.direction == "zendesk->jira" else "zendesk"
        own = landed[target].at.get(change.token)
        if change.direction == "zendesk->jira":
            newest = later.get(change.item)
            if own is not None and (newest is None or own < newest):
                later[change.item] = own
            own = later.get(change.item)
        change.seen_at = own


def percentile(ordered: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Latencies:
    made: int
    seen: int
    p50: float
    p95: float
    p99: float
    max: float
    censored: bool  # some were not seen: the percentiles at or above their rank are lower bounds

    @classmethod
    def of(cls, changes: list[Change], until: float) -> Latencies:
        values = sorted((c.seen_at if c.seen_at is not None else until) - c.made_at for c in changes) or [math.nan]
        seen = sum(1 for c in changes if c.seen_at is not None)
        return cls(len(changes), seen, percentile(values, 0.50), percentile(values, 0.95),
                   percentile(values, 0.99), values[-1], seen < len(changes))

    def bound(self, q: float) -> bool:
        """Whether the q-percentile is only a lower bound (it falls among the unseen changes)."""
        return self.censored and q > self.seen / self.made

    def text(self) -> str:
        def shown(q: float, value: float) -> str:
            return (">=" if self.bound(q) else "") + f"{value:.3f} s"
        return (f"p50 {shown(0.50, self.p50)}, p95 {shown(0.95, self.p95)}, p99 {shown(0.99, self.p99)}, "
                f"max {shown(1.0, self.max)}; seen {self.seen}/{self.made}")


ID = re.compile(r"/(\d+|[A-Z][A-Z0-9]+-\d+)(?=/|$)")


def request_kinds(log: list[tuple[str, str, int]]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for method, path, status in log:
        shown = ID.sub("/{id}", path.removesuffix(".json"))
        kinds[f"{method} {shown}" + ("" if status < 400 else f" -> {status}")] += 1
    return kinds


def lost_updates(sandbox: Sandbox, load: Load) -> list[str]:
    """Tickets whose Zendesk subject no longer carries the token of the last edit made on it (the
    bridge wrote an older title over it), with the token it carries instead."""
    last: dict[str, bytes] = {}
    for change in load.changes:
        if change.direction == "zendesk->jira":
            last[change.item] = change.token
    lost = []
    for ticket, token in last.items():
        subject = sandbox.zendesk.ticket(int(ticket))["subject"]
        if token.decode() not in subject:
            found = TOKEN.findall(subject.encode())
            lost.append(f"#{ticket}: {token.decode()} -> {found[0].decode() if found else subject!r}")
    return lost


def pass_timings(bridge: BridgeProcess, skip: int) -> list[tuple[float, float, int]]:
    """The poll passes since the `skip` first: (seconds from the previous pass's end, duration,
    items seen), from the bridge's log."""
    def at(event: dict[str, Any]) -> float:
        return datetime.fromisoformat(event["timestamp"]).timestamp()
    starts, ends = bridge.events("engine.pass_start"), bridge.events("engine.pass_done")
    timings = []
    for index in range(max(skip, 1), min(len(starts), len(ends))):
        timings.append((at(starts[index]) - at(ends[index - 1]), at(ends[index]) - at(starts[index]),
                        int(ends[index].get("items") or 0)))
    return timings


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime, stime in clock ticks (USER_HZ = 100)


@dataclass
class PathOutcome:
    spec: PathSpec
    by_direction: dict[str, Latencies] = field(default_factory=dict)
    all_changes: Latencies | None = None
    requests: dict[str, Counter[str]] = field(default_factory=dict)
    measured_changes: int = 0
    crossed: int = 0  # changes (warm-up ones too) that landed between the measured start and the drain's end
    measured_seconds: float = 0.0
    bridge_cpu: float = 0.0  # CPU seconds the bridge used over the measured period and the drain
    drain_used: float = 0.0
    own_cpu: float = 0.0  # CPU seconds of this process (emulators, load, hooks) over the same span
    load_average: float = 0.0  # the machine's 1-minute load average at the drain's end
    handler_seconds: dict[str, list[float]] = field(default_factory=dict)
    late: int = 0
    echo_writes: int = 0  # writes carrying a token back to the tracker the change was made on
    passes: list[tuple[float, float, int]] = field(default_factory=list)  # (gap before, duration, items) of polls
    alone: list[dict[str, Any]] = field(default_factory=list)  # trace_one's rows
    lost_updates: list[str] = field(default_factory=list)  # tickets whose last subject edit was overwritten


def linked_pairs(sandbox: Sandbox) -> list[tuple[int, str]]:
    """(Zendesk ticket id, Jira issue id) of every linked pair, by the marker the bridge puts on issues."""
    pairs = [(int(marker.split(":")[1]), issue) for marker, issue in marker_issue_ids(sandbox).items()
             if marker.startswith("zendesk:")]
    return sorted(pairs)


def run_path(sandbox: Sandbox, landed: dict[str, Landings], workdir: Path, store_url: str, spec: PathSpec,
             plan: Plan, concurrency: int | None) -> PathOutcome:
    for emulator in (sandbox.zendesk, sandbox.jira):
        emulator.faults.latency = 0.0  # the first passes (backfill, catching up) are not measured
    bridge = start_bridge(sandbox, workdir, store_url, spec, concurrency)
    outcome = PathOutcome(spec)
    phase(f"{spec.name}: bridge ready (pid {bridge.pid})")
    try:
        pairs = linked_pairs(sandbox)  # the first bridge's first pass linked them (the backfill)
        if len(pairs) < plan.tickets:
            raise SystemExit(f"only {len(pairs)} of {plan.tickets} tickets linked:\n{bridge.tail()}")
        for emulator in (sandbox.zendesk, sandbox.jira):
            emulator.faults.latency = LATENCY
        if spec.webhooks and not plan.quick:
            outcome.alone = trace_one(sandbox, landed, pairs, spec.letter)
        load = Load(sandbox, pairs, spec.letter)
        load.run(plan.warmup, measured=False)
        marks = {name: len(e.request_log) for name, e in (("zendesk", sandbox.zendesk), ("jira", sandbox.jira))}
        passes_before = len(bridge.events("engine.pass_start"))
        cpu_before = cpu_seconds(bridge.pid)
        own_before = own_cpu_seconds()
        for landing in landed.values():
            landing.handler_seconds, landing.timing = [], True
        started = time.monotonic()
        load.run(plan.measured, measured=True)
        ended = time.monotonic()
        measured = [c for c in load.changes if c.measured]
        phase(f"{spec.name}: load done")
        while time.monotonic() - ended < plan.drain:
            resolve(load.changes, landed)
            if all(c.seen_at is not None for c in measured):
                break
            time.sleep(0.1)
        until = time.monotonic()
        phase(f"{spec.name}: drained")
        outcome.drain_used = until - ended
        outcome.bridge_cpu = cpu_seconds(bridge.pid) - cpu_before
        outcome.own_cpu = own_cpu_seconds() - own_before
        outcome.load_average = os.getloadavg()[0]
        for name, landing in landed.items():
            landing.timing = False
            outcome.handler_seconds[name] = sorted(landing.handler_seconds)
        resolve(load.changes, landed)
        outcome.measured_changes, outcome.measured_seconds, outcome.late = len(measured), ended - started, load.late
        # The requests of that window served these changes (a warm-up backlog included): the denominator.
        outcome.crossed = sum(1 for c in load.changes if c.seen_at is not None and started <= c.seen_at <= until)
        for direction in ("zendesk->jira", "jira->zendesk"):
            outcome.by_direction[direction] = Latencies.of([c for c in measured if c.direction == direction], until)
        outcome.all_changes = Latencies.of(measured, until)
        for name, emulator in (("zendesk", sandbox.zendesk), ("jira", sandbox.jira)):
            outcome.requests[name] = request_kinds(emulator.request_log[marks[name]:])
        outcome.passes = pass_timings(bridge, passes_before)
        outcome.lost_updates = lost_updates(sandbox, load)
        tokens = {c.token: c.direction for c in load.changes}
        outcome.echo_writes = (sum(1 for t in landed["zendesk"].at if tokens.get(t) == "zendesk->jira")
                               + sum(1 for t in landed["jira"].at if tokens.get(t) == "jira->zendesk"))
    finally:
        for emulator in (sandbox.zendesk, sandbox.jira):
            emulator.faults.latency = 0.0  # a backlog left over is finished quickly, for a prompt clean stop
        bridge.terminate(timeout=5)
        phase(f"{spec.name}: bridge stopped")
    return outcome


# -- the run -----------------------------------------------------------------------------------------

def main() -> int:
    cli = common.parser(__doc__)
    cli.add_argument("--concurrency", type=int, metavar="N",
                     help="write `sync: concurrency: N` into the bridge's config (default: the config's default)")
    cli.add_argument("--paths", default="poll,webhook", help="which paths, in order (poll, webhook)")
    args = cli.parse_args()
    plan = Plan.of(args.quick)
    specs = [PATHS[name.strip()] for name in args.paths.split(",")]
    began = time.monotonic()
    outcomes: list[PathOutcome] = []
    with tempfile.TemporaryDirectory(prefix="tb-latency-") as tmp, Sandbox(port=0) as sandbox:
        workdir = Path(tmp)
        store_url = f"sqlite:///{workdir / 'ticketbridge.db'}"
        seed_backfill(sandbox, plan.tickets, SEED)
        phase(f"seeded {plan.tickets} tickets")
        landed = {"zendesk": Landings(sandbox.zendesk), "jira": Landings(sandbox.jira)}
        for spec in specs:
            outcomes.append(run_path(sandbox, landed, workdir, store_url, spec, plan, args.concurrency))
    return report(outcomes, plan, args, time.monotonic() - began)


def report(outcomes: list[PathOutcome], plan: Plan, args: Any, wall: float) -> int:
    result = common.Result("latency", "Change-to-visibility latency at 20 changes/s, webhooks vs polls",
                           common.command_line(), args.quick)
    concurrency = "the config's default" if args.concurrency is None else str(args.concurrency)
    result.figures["load"] = (
        f"{RATE:g} changes/s on a fixed schedule over {plan.tickets} linked pairs: {JIRA_EVERY - 1} in "
        f"{JIRA_EVERY} Zendesk subject edits (-> Jira summary), 1 in {JIRA_EVERY} engineer comments on Jira "
        f"(-> Zendesk internal note); {plan.warmup:g} s warm-up, {plan.measured:g} s measured, drain up to "
        f"{plan.drain:g} s; every emulator request +{LATENCY * 1000:g} ms; SQLite; sync.concurrency: {concurrency}")
    result.tables["latency"] = []
    result.tables["requests during the measured period and drain"] = []
    for outcome in outcomes:
        spec, total = outcome.spec, outcome.all_changes
        assert total is not None
        how = ("webhooks on, poll interval 60 s (no poll in the measured period)" if spec.webhooks
               else f"no webhooks, poll interval {spec.poll_interval:g} s")
        result.figures[f"{spec.name}: setup"] = how
        result.figures[f"{spec.name}: all changes"] = total.text()
        for direction, latencies in outcome.by_direction.items():
            result.figures[f"{spec.name}: {direction}"] = latencies.text()
        span = outcome.measured_seconds + outcome.drain_used
        requests = {tracker: sum(kinds.values()) for tracker, kinds in outcome.requests.items()}
        result.figures[f"{spec.name}: requests per change"] = ", ".join(
            f"{tracker} {count / max(outcome.crossed, 1):.2f}" for tracker, count in requests.items()) + (
            f" (requests answered from the measured start to the drain's end / the {outcome.crossed} changes "
            "that landed in that window)")
        result.figures[f"{spec.name}: throughput"] = f"{outcome.crossed / span:.1f} changes/s landed over {span:.1f} s"
        result.figures[f"{spec.name}: bridge CPU"] = (
            f"{outcome.bridge_cpu:.1f} s over {span:.1f} s ({outcome.bridge_cpu / span:.0%} of one core; "
            f"{outcome.bridge_cpu / max(outcome.crossed, 1) * 1000:.1f} ms per change)")
        result.figures[f"{spec.name}: emulators' CPU"] = (
            f"{outcome.own_cpu:.1f} s over {span:.1f} s ({outcome.own_cpu / span:.0%} of one core; the emulators, "
            f"the load and the hooks share this process); machine load average {outcome.load_average:.1f} "
            f"on {os.cpu_count()} CPUs")
        result.figures[f"{spec.name}: emulator handler time"] = "; ".join(
            f"{name} p50 {percentile(times, 0.5) * 1000:.1f} ms, p95 {percentile(times, 0.95) * 1000:.1f} ms, "
            f"max {times[-1] * 1000:.0f} ms over {len(times)} requests"
            for name, times in outcome.handler_seconds.items() if times) + f" (after the {LATENCY * 1000:g} ms delay)"
        if outcome.passes:
            gaps, durations, items = zip(*outcome.passes, strict=True)
            result.figures[f"{spec.name}: poll passes"] = (
                f"{len(durations)} in the window; duration mean {sum(durations) / len(durations):.2f} s, max "
                f"{max(durations):.2f} s; items per pass mean {sum(items) / len(items):.0f}; from one pass's end "
                f"to the next's start mean {sum(gaps) / len(gaps):.2f} s")
        result.figures[f"{spec.name}: echo writes"] = outcome.echo_writes
        result.figures[f"{spec.name}: lost updates"] = len(outcome.lost_updates)
        if outcome.lost_updates:
            result.notes.append(f"{spec.name}: Zendesk subjects overwritten by an older title (last edit -> "
                                f"what the ticket shows): {', '.join(outcome.lost_updates[:10])}")
        for direction, latencies in [("both", total), *outcome.by_direction.items()]:
            result.tables["latency"].append({
                "path": spec.name, "direction": direction, "made": latencies.made, "seen": latencies.seen,
                "not seen": latencies.made - latencies.seen, "p50 s": round(latencies.p50, 3),
                "p95 s": round(latencies.p95, 3), "p99 s": round(latencies.p99, 3),
                "max s": round(latencies.max, 3), "lower bound": latencies.censored})
        for tracker, kinds in outcome.requests.items():
            for kind, count in kinds.most_common(8):
                result.tables["requests during the measured period and drain"].append({
                    "path": spec.name, "tracker": tracker, "request": kind, "count": count,
                    "per change": round(count / max(outcome.crossed, 1), 2)})
        if outcome.alone:
            result.tables["webhook path: one change alone, its requests in order"] = outcome.alone
            for side in ("zendesk", "jira"):
                rows = [r for r in outcome.alone if r["change on"] == side]
                before = sum(1 for r in rows if r["after landing"] is False)
                after = sum(1 for r in rows if r["after landing"] is True)
                result.figures[f"webhook: one change on {side} alone"] = (
                    f"landed after {rows[-1]['to s']} s and {before} requests in a row; {after} more after "
                    "it landed (reading back the bridge's own write: the echo)") if rows[-1]["to s"] != "never" \
                    else f"did not land within 2 s ({before} requests: the bridge was still busy)"
        if outcome.late:
            result.notes.append(f"{spec.name}: the load generator fell more than 50 ms behind its schedule "
                                f"for {outcome.late} changes")
        limit = 1.0 if spec.webhooks else spec.poll_interval + 1.0
        what = "p95 with webhooks" if spec.webhooks else f"poll-only p95 (poll interval {spec.poll_interval:g} s)"
        if total.bound(0.95):
            what += ", a lower bound (over 5% not seen)"
        result.targets.append(common.Target(what, round(total.p95, 3), "<", limit, " s"))
    result.figures["wall time"] = f"{wall:.1f} s"
    result.notes += [
        "Latency runs from the return of the in-process change to the first accepted write carrying its "
        "token on the other emulator (a hook in the emulator's router, no polling thread).",
        "A change not seen by the end of the drain counts with its time so far: percentiles marked >= "
        "(lower bound) fall among those.",
        "The bridge's first passes (the backfill of the seeded tickets, catching up after the previous "
        "path) run without the added latency and are not measured.",
    ]
    if args.quick:
        result.notes.append("Quick: 40 tickets, 8 s of load without warm-up: a backlog has less time to build up "
                            "than in the full run (30 s after 5 s of warm-up), so its percentiles run lower; "
                            "compare full runs with full runs.")
    return common.emit(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
