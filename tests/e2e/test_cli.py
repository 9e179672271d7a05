"""The `ticketbridge` command as a user runs it: exit codes, messages, crash safety."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ticketbridge.cli import main
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.store import Store

from .conftest import MAPPING, REPO, Bridge, writes

CRASHING_SYNC = """
import itertools, os, signal, sys
from ticketbridge import cli
from ticketbridge.sync import store

calls = itertools.count(1)  # one count across the engine's threads
original = store.Store.commit_item

def commit_then_maybe_die(self, commit):
    if next(calls) == int(os.environ["CRASH_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)  # after the push, before the commit
    return original(self, commit)

store.Store.commit_item = commit_then_maybe_die
sys.exit(cli.main(["sync", "--once", "--config", sys.argv[1]]))
"""


def run_cli(args: list[str], env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ticketbridge.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, cwd=REPO, **kwargs)  # type: ignore[call-overload]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int) -> int:
    """A base port P with P..P+count-1 all free now (the sandbox takes consecutive ports). The
    kernel's ephemeral range is avoided, where other tests' connections take ports at random."""
    for base in random.Random().sample(range(12000, 30000, 10), 200):
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no block of {count} free ports")


def test_validate_accepts_the_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--config", str(REPO / "config.example.yaml")]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize("mutation, expected", [
    (("direction: both", "direction: sideways", 1), r"sideways.*both.*left_to_right.*right_to_left"),
    (("right: summary", "right: summery", 1), r"summery"),
    (("  priority:\n", "  priority:\n    bogus_key: 1\n", 1), r"bogus_key"),
    (("\nfields:", "\nfields: [", 1), r"YAML"),
])
def test_validate_reports_file_line_column_for_broken_mappings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], mutation: tuple[str, str, int], expected: str) -> None:
    old, new, count = mutation
    text = MAPPING.read_text()
    assert old in text
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace(old, new, count))
    config = (REPO / "config.example.yaml").read_text().replace("mappings/zendesk-jira.yaml", str(broken))
    (tmp_path / "config.yaml").write_text(config)
    assert main(["validate", "--config", str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(rf"{re.escape(str(broken))}:\d+:\d+: .*{expected}", err, re.S), err


def test_unmapped_status_is_reported_with_its_position(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = MAPPING.read_text()
    broken = tmp_path / "unmapped.yaml"
    broken.write_text(re.sub(r"\n\s+hold: [^\n]+", "", text, count=1))
    config = (REPO / "config.example.yaml").read_text().replace("mappings/zendesk-jira.yaml", str(broken))
    (tmp_path / "config.yaml").write_text(config)
    assert main(["validate", "--config", str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(broken))}:\d+:\d+: .*hold", err), err


def test_wrong_credentials_give_one_line_naming_the_tracker_and_env_var(sandbox: Sandbox, bridge: Bridge) -> None:
    env = {**bridge.env, "JIRA_API_TOKEN": "not-the-token"}
    result = run_cli(["sync", "--once", "--config", str(bridge.config_path)], env)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "jira" in line and "JIRA_API_TOKEN" in line
    assert "not-the-token" not in result.stderr + result.stdout


def test_missing_env_var_is_named(bridge: Bridge) -> None:
    env = {k: v for k, v in bridge.env.items() if k != "ZENDESK_API_TOKEN"}
    result = run_cli(["sync", "--once", "--config", str(bridge.config_path)],
                     env, ) if False else subprocess.run(
        [sys.executable, "-m", "ticketbridge.cli", "sync", "--once", "--config", str(bridge.config_path)],
        env={k: v for k, v in {**os.environ, **env}.items() if k != "ZENDESK_API_TOKEN"},
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert "ZENDESK_API_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_tracker_exits_non_zero_without_traceback(tmp_path: Path, bridge: Bridge) -> None:
    config = bridge.config_path.read_text().replace(bridge.sandbox.jira.base_url,
                                                    f"http://127.0.0.1:{free_port()}")
    path = tmp_path / "unreachable.yaml"
    path.write_text(config)
    result = run_cli(["sync", "--once", "--config", str(path)], bridge.env)
    assert result.returncode == 4
    assert "jira" in result.stderr and "Traceback" not in result.stderr


def test_plan_changes_nothing_anywhere(bridge: Bridge, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        bridge.sandbox.zendesk.add_ticket(subject=f"Plan me {n}", comment={"body": "text"}, priority="high")
    for key, value in bridge.env.items():
        monkeypatch.setenv(key, value)
    assert main(["plan", "--config", str(bridge.config_path), "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert out.count('"right: create (') == 3
    assert bridge.sandbox.jira.issues() == []
    assert writes(bridge.sandbox) == 0
    store = Store.open(f"sqlite:///{bridge.config_path.parent / 'tb.db'}")
    assert store.count_links() == 0 and store.cursor("zendesk", "zendesk-jira") is None
    assert store.pending_intents() == []
    store.close()


def test_sync_once_then_sigkill_between_create_and_commit_never_duplicates(bridge: Bridge) -> None:
    for n in range(12):
        bridge.sandbox.zendesk.add_ticket(subject=f"Crash test {n}", comment={"body": "text"},
                                          comments=[{"body": f"reply {n}", "public": True}])
    script = bridge.config_path.parent / "crashing_sync.py"
    script.write_text(CRASHING_SYNC)
    # Early commits: with the engine's threads, a crash also cuts the items in flight beside the
    # one dying at its commit, so later runs have fewer items left than a serial run would.
    for crash_at in (1, 2, 3):
        result = subprocess.run([sys.executable, str(script), str(bridge.config_path)],
                                env={**os.environ, **bridge.env, "CRASH_AT": str(crash_at)},
                                capture_output=True, text=True, timeout=120, cwd=REPO)
        assert result.returncode == -signal.SIGKILL, result.stderr
    result = run_cli(["sync", "--once", "--config", str(bridge.config_path)], bridge.env)
    assert result.returncode == 0, result.stderr
    issues = bridge.sandbox.jira.issues()
    markers = [label for issue in issues for label in issue["fields"]["labels"] if label.startswith("tb-")]
    assert len(issues) == 12 and len(set(markers)) == 12
    comments = [str(c["body"]) for issue in issues for c in issue["fields"]["comment"]["comments"]]
    assert len(comments) == 12, "each public reply mirrored exactly once"
    reread = Store.open(f"sqlite:///{bridge.config_path.parent / 'tb.db'}")
    assert reread.count_links() == 12 and reread.pending_intents() == []
    reread.close()


def test_run_stops_cleanly_on_sigterm(bridge: Bridge) -> None:
    bridge.sandbox.zendesk.add_ticket(subject="Loop", comment={"body": "text"})
    process = subprocess.Popen([sys.executable, "-m", "ticketbridge.cli", "run", "--config",
                                str(bridge.config_path)], env={**os.environ, **bridge.env}, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not bridge.sandbox.jira.issues() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bridge.sandbox.jira.issues(), "the loop synced the ticket"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "run.stopping" in err and "Traceback" not in err


def test_sandbox_prints_urls_credentials_and_env_vars() -> None:
    port = free_port_block(5)
    process = subprocess.Popen([sys.executable, "-m", "ticketbridge.cli", "sandbox", "--port", str(port), "--seed"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert process.stdout is not None
    while not any("export PAGERDUTY_ROUTING_KEY" in line for line in lines):
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        lines.append(line)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=20)
    text = "".join(lines)
    for offset in range(5):  # Zendesk, Jira, GitHub, PagerDuty, ClickUp on consecutive ports
        assert f"http://127.0.0.1:{port + offset}" in text
    for var in ("ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "JIRA_EMAIL", "JIRA_API_TOKEN", "GITHUB_TOKEN",
                "PAGERDUTY_ROUTING_KEY"):
        assert f"export {var}=" in text
    assert process.returncode == 0


def test_demo_runs_end_to_end_and_prints_the_report() -> None:
    result = run_cli(["demo"], {})
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout[result.stdout.index("=== ticketbridge demo report ==="):]
    for heading in ("items linked", "fields pushed", "comments mirrored", "conflicts", "failures",
                    "invariants                all hold"):
        assert heading in report
    assert re.search(r"conflicts\s+1\b", report)
    # The SLA story: the outage's first response warns twice (50%, 80%), then breaches once.
    assert re.search(r"SLA warnings after that\s+2\b", report) and re.search(r"SLA breaches after that\s+1\b", report)
    story = result.stdout[result.stdout.index("4. SLA clocks"):]
    assert re.search(r"first response due \S+Z on Zendesk, \S+ on Jira ENG-\d+", story)
    assert "SLA state now 'breached' on Zendesk, 'breached' on Jira" in story
    # Escalation: the outage is a Sev1 incident with one page; an L2 ticket becomes a GitHub issue
    # without personal data; an incomplete one is held back with a note naming what is missing and
    # goes on once filled in; closing the issue reaches both tickets linked to it.
    assert re.search(r"Sev1 #\d+: Jira ENG-\d+ labelled [^;]*incident[^;]*; PagerDuty incidents: zd-\d+-sev1-incident "
                     r"\(triggered\)", story)
    chapter = result.stdout[result.stdout.index("5. Escalation to engineering"):report_start(result.stdout)]
    body = "\n".join(line for line in chapter.splitlines() if "    | " in line)
    assert "[REDACTED:phone]" in body and "[REDACTED:email]" in body
    assert body.count("[REDACTED:requester_identity]") == 2 and "Jane" not in body and "ACME" not in body
    assert re.search(r"\| Zendesk #\d+$", body, re.MULTILINE)
    assert re.search(r"held back \(GitHub issue: none\); internal note: .*missing Date observed, Steps to "
                     r"reproduce, Device/OS, Browser", chapter)
    assert re.search(r"fills in the missing fields of #\d+ -> GitHub acme/app#2 created", chapter)
    assert re.search(r"linked tickets: #\d+, #\d+", chapter)
    closes = re.findall(r"engineering closes acme/app#1 -> Zendesk #\d+ is solved; internal note: GitHub issue "
                        r"acme/app#1 is now closed \(completed\)", chapter)
    assert len(closes) == 2
    # A chain: a Jira issue made from a ticket goes on to ClickUp, and a status travels both ways.
    chain = result.stdout[result.stdout.index("6. A chain of flows"):report_start(result.stdout)]
    assert re.search(r"Zendesk #\d+ -> Jira ENG-\d+; the engineer labels it `planning` -> ClickUp task \w+ ", chain)
    assert "the agent solves Zendesk" in chain and "-> Jira Done, ClickUp complete" in chain
    assert re.search(r"back to in progress -> Jira In Progress, Zendesk #\d+ open", chain)


def report_start(stdout: str) -> int:
    return stdout.index("=== ticketbridge demo report ===")
