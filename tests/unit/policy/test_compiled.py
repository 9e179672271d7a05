"""The compiled build of the SLA engine (ticketbridge.compiled): used only when current, and it
computes exactly what the Python source does.

Run as a script (`python test_compiled.py N SEED`), this file prints the pure-Python results for
the random tickets that test_compiled_and_pure_agree compares against.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import types
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from ticketbridge import compiled
from ticketbridge.sync.policy import calendar as calendar_module
from ticketbridge.sync.policy import sla as sla_module
from ticketbridge.sync.policy.policy import load_policy
from ticketbridge.sync.policy.sla import HistoryEvent, compute_clocks

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "mappings" / "policy.yaml"
TODAY = date(2026, 11, 23)
STATUSES = ("new", "open", "pending", "hold", "solved", "closed", "open", "Reopened", "weird")
FIELDS = ("incident_active", "incident_mitigated", "rca_url", "subject")


def random_history(rng: random.Random, start: datetime) -> list[HistoryEvent]:
    """A history touching every kind of event the engine reads, with same-second updates."""
    at = start
    events = [HistoryEvent(at=at, seq=0, kind="created", value="new")]
    if rng.random() < 0.8:
        events.append(HistoryEvent(at=at, seq=1, kind="severity", value=rng.choice(("sev1", "sev2", "sev3", "sev4")),
                                   source="derived"))
    for seq in range(2, rng.randint(3, 30)):
        if rng.random() < 0.8:
            at += timedelta(minutes=rng.randint(0, 900), seconds=rng.choice((0, 0, 0, 30)))
        roll = rng.random()
        if roll < 0.35:
            events.append(HistoryEvent(at=at, seq=seq, kind="comment", public=rng.random() < 0.7,
                                       by_agent=rng.random() < 0.6))
        elif roll < 0.7:
            events.append(HistoryEvent(at=at, seq=seq, kind="status", value=rng.choice(STATUSES)))
        elif roll < 0.8:
            events.append(HistoryEvent(at=at, seq=seq, kind="severity", value=rng.choice(("sev1", "sev2", "sev3", "x")),
                                       source=rng.choice(("zendesk_agent", "jira", "zendesk_enduser"))))
        elif roll < 0.95:
            name = rng.choice(FIELDS)
            value = rng.choice((True, False, None, "https://example.invalid/rca", "outage"))
            events.append(HistoryEvent(at=at, seq=seq, kind="field", field=name, value=value))
        else:
            events.append(HistoryEvent(at=at, seq=seq, kind="tags", value=tuple(rng.sample(("vip", "a", "b"), 2))))
    rng.shuffle(events)  # the engine orders them itself
    return events


def results(count: int, seed: int) -> list[str]:
    """repr() of every ticket's result, with and without explanations."""
    policy = load_policy(SHIPPED, today=TODAY)
    rng = random.Random(seed)
    base = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    found = []
    for _ in range(count):
        events = random_history(rng, base + timedelta(minutes=rng.randint(0, 60 * 24 * 30)))
        now = base + timedelta(days=rng.randint(1, 60), seconds=rng.randint(0, 86400))
        for explain in (False, True):
            found.append(repr(compute_clocks(policy, "zendesk", events, now, explain=explain)))
    return found


def adopted() -> bool:
    return sla_module.IMPLEMENTATION == calendar_module.IMPLEMENTATION == "compiled"


def test_both_modules_run_the_same_implementation() -> None:
    # They are adopted together: the compiled engine calls the compiled calendars natively.
    assert sla_module.IMPLEMENTATION == calendar_module.IMPLEMENTATION
    expected = "pure" if compiled.build_problem() else "compiled"
    assert expected == sla_module.IMPLEMENTATION


@pytest.mark.skipif(not adopted(), reason="no current compiled build (make install builds it)")
def test_compiled_and_pure_agree_on_random_tickets() -> None:
    assert type(compute_clocks).__name__ != "function"  # really the compiled one
    count, seed = 300, 20261123
    env = {**os.environ, "TICKETBRIDGE_PURE": "1"}
    pure = subprocess.run([sys.executable, __file__, str(count), str(seed)], env=env, check=True, cwd=ROOT,
                          capture_output=True, text=True)
    expected = json.loads(pure.stdout)
    assert expected["implementation"] == "pure"
    got = results(count, seed)
    assert len(got) == len(expected["results"]) == 2 * count
    for index, (mine, theirs) in enumerate(zip(got, expected["results"], strict=True)):
        assert mine == theirs, f"ticket {index // 2} differs"


def fake_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sources: dict[str, str]) -> None:
    """A build whose manifest lists `sources` (relative path -> digest) under tmp_path."""
    manifest = types.ModuleType(compiled.PACKAGE)
    manifest.MODULES = sorted(compiled.COMPILED)  # type: ignore[attr-defined]
    manifest.SOURCES = sources  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, compiled.PACKAGE, manifest)
    monkeypatch.setattr(compiled, "SOURCE_ROOT", tmp_path)
    monkeypatch.delenv("TICKETBRIDGE_PURE", raising=False)
    compiled.build_problem.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_verdict() -> object:
    yield
    compiled.build_problem.cache_clear()


def test_a_build_from_other_sources_is_never_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    source = tmp_path / "ticketbridge" / "sync" / "policy" / "sla.py"
    source.parent.mkdir(parents=True)
    source.write_text("x = 1\n")
    fake_build(monkeypatch, tmp_path, {"ticketbridge/sync/policy/sla.py": compiled.source_digest(source)})
    assert compiled.build_problem() is None
    source.write_text("x = 2\n")  # edited after the build
    compiled.build_problem.cache_clear()
    problem = compiled.build_problem()
    assert problem is not None and "ticketbridge/sync/policy/sla.py changed" in problem
    namespace = {"__name__": "ticketbridge.sync.policy.sla", "x": 2}
    assert compiled.adopt(namespace) == "pure"
    assert namespace == {"__name__": "ticketbridge.sync.policy.sla", "x": 2}


def test_a_missing_source_or_pure_setting_keeps_python(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_build(monkeypatch, tmp_path, {"ticketbridge/gone.py": "0" * 64})
    assert "ticketbridge/gone.py changed" in (compiled.build_problem() or "")
    monkeypatch.setenv("TICKETBRIDGE_PURE", "1")
    compiled.build_problem.cache_clear()
    assert compiled.build_problem() == "TICKETBRIDGE_PURE is set"


def test_other_names_are_never_replaced() -> None:
    # The source loaded under another name stays itself; the build itself is "compiled".
    assert compiled.adopt({"__name__": "somewhere.sla"}) == "pure"
    assert compiled.adopt({"__name__": f"{compiled.PACKAGE}.sla"}) == "compiled"


if __name__ == "__main__":
    print(json.dumps({"implementation": sla_module.IMPLEMENTATION,
                      "results": results(int(sys.argv[1]), int(sys.argv[2]))}))
