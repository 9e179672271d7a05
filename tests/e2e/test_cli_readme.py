"""README commands no other test ran, run against the sandbox: the `--format json` output of
`plan`, `failures list` and `sla report` parses as JSON for scripts, `failures list --flow`,
`sla report --since`, `redact --email --organization`, `sandbox --host`."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ticketbridge.cli import main
from ticketbridge.sandbox import Sandbox

from .conftest import POLICY, REPO, Bridge, make_bridge
from .test_cli import free_port_block


def export(bridge: Bridge, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in bridge.env.items():
        monkeypatch.setenv(key, value)


def test_plan_json_is_one_document_with_the_operations_per_item(
        bridge: Bridge, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    tickets = [bridge.sandbox.zendesk.add_ticket(subject=f"Scripted {n}", comment={"body": "text"}, priority="high")
               for n in range(2)]
    export(bridge, monkeypatch)
    capsys.readouterr()
    assert main(["plan", "--config", str(bridge.config_path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(int(re.findall(r"\d+", str(row["item"]))[-1]) for row in rows) == sorted(t["id"] for t in tickets)
    for row in rows:
        assert set(row) == {"flow", "item", "counterpart", "halt", "operations", "conflicts"}
        assert row["flow"] == "zendesk-jira" and row["counterpart"] is None and row["halt"] is None
        assert any(op.startswith("right: create (") for op in row["operations"])
    assert bridge.sandbox.jira.issues() == []


def test_failures_list_flow_filters_and_json_parses(bridge: Bridge, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bridge.store.record_failure("zendesk-jira", "zendesk", "11", "#11", "error", "permanent", "jira: 400 one")
    bridge.store.record_failure("jira-clickup", "jira", "10002", "ENG-2", "error", "permanent", "clickup: 400 two")
    export(bridge, monkeypatch)
    config = str(bridge.config_path)
    capsys.readouterr()
    assert main(["failures", "list", "--flow", "zendesk-jira", "--format", "json", "--config", config]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["flow"], row["item_id"], row["message"]) == ("zendesk-jira", "11", "jira: 400 one")
    assert main(["failures", "list", "--flow", "jira-clickup", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "ENG-2" in out and "#11" not in out
    assert main(["failures", "list", "--format", "json", "--config", config]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_sla_report_since_in_json_and_csv(tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = make_bridge(tmp_path, sandbox, policy=POLICY)
    try:
        bridge.sandbox.zendesk.add_ticket(subject="Checkout down for all EU customers", priority="urgent",
                                          comment={"body": "Nobody can pay."})
        bridge.sync_until_quiet()
    finally:
        bridge.store.close()
    export(bridge, monkeypatch)
    config = str(bridge.config_path)
    today = datetime.now(UTC).date()
    capsys.readouterr()  # the setup's logs (structlog prints to stdout until a command configures it)
    assert main(["sla", "report", "--config", config, "--since", str(today - timedelta(days=1)),
                 "--format", "json"]) == 0
    rows = {(r["severity"], r["metric"]): r for r in json.loads(capsys.readouterr().out)}
    assert rows[("sev1", "first_response")]["count"] == 1 and rows[("sev1", "first_response")]["running"] == 1
    assert main(["sla", "report", "--config", config, "--since", str(today + timedelta(days=2)),
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["sla", "report", "--config", config, "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {(r["severity"], r["metric"]) for r in table} == set(rows)
    assert main(["sla", "report", "--config", config, "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err


def test_redact_removes_the_named_email_and_organization(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    text = "Jane Doe of ACME writes from jane@example.com: the export fails.\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["redact", "--policy", str(POLICY), "--name", "Jane Doe", "--email", "jane@example.com",
                 "--organization", "ACME"]) == 0
    captured = capsys.readouterr()
    assert "Jane" not in captured.out and "ACME" not in captured.out and "jane@example.com" not in captured.out
    assert captured.out.endswith("the export fails.\n") and "redacted:" in captured.err


def test_sandbox_binds_the_host_it_is_given() -> None:
    port = free_port_block(5)
    process = subprocess.Popen([sys.executable, "-m", "ticketbridge.cli", "sandbox", "--host", "127.0.0.1",
                                "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        while not any("export PAGERDUTY_ROUTING_KEY" in line for line in lines):
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else ""
            lines.append(line)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}" in "".join(lines) and process.returncode == 0
