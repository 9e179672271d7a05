"""`ticketbridge sla due`: the section 8 table through the command line, and its input errors."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from ticketbridge.cli import main

from .test_sla import DUE_CASES, FIXTURE, SHIPPED, z


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "fixture.yaml"
    path.write_text(yaml.safe_dump(FIXTURE, sort_keys=False), encoding="utf-8")
    return path


def due(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["sla", "due", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("name", "policy_id", "severity", "metric", "start", "pauses", "local", "utc"),
                         [pytest.param(*case[1:], id=case[0]) for case in DUE_CASES])
def test_section_8_through_the_command(capsys: pytest.CaptureFixture[str], fixture_file: Path, name: str,
                                       policy_id: str | None, severity: str, metric: str, start: str,
                                       pauses: tuple[tuple[str, str], ...], local: str, utc: str) -> None:
    args = ["--policy", str(SHIPPED if name == "shipped" else fixture_file), "--severity", severity,
            "--metric", metric, "--start", start.replace("Z", "+00:00")]
    for a, b in pauses:
        args += ["--pause", f"{a}/{b}"]
    if policy_id:
        args += ["--policy-id", policy_id]
    code, out, err = due(capsys, *args)
    assert code == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert z(lines["due"]) == z(utc)
    # The local line shows the calendar's wall clock with its offset, as section 8 writes it.
    shown, expected = datetime.fromisoformat(lines["local"].split()[0]), datetime.fromisoformat(local)
    assert (shown.replace(tzinfo=None), shown.utcoffset()) == (expected.replace(tzinfo=None), expected.utcoffset())


@pytest.mark.parametrize(("args", "message"), [
    (["--severity", "sev9", "--metric", "first_response", "--start", "2026-11-20T16:30:00+01:00"], "sev9"),
    (["--severity", "sev3", "--metric", "reply_time", "--start", "2026-11-20T16:30:00+01:00"], "reply_time"),
    (["--severity", "sev3", "--metric", "first_response", "--start", "2026-11-20T16:30:00"], "no UTC offset"),
    (["--severity", "sev3", "--metric", "first_response", "--start", "last friday"], "not an ISO 8601"),
    (["--severity", "sev3", "--metric", "resolution", "--start", "2026-11-20T16:30:00+01:00",
      "--pause", "2026-11-19T10:00:00+01:00/2026-11-19T11:00:00+01:00"], "pause"),
    (["--severity", "sev3", "--metric", "resolution", "--start", "2026-11-20T16:30:00+01:00",
      "--pause", "2026-11-23T10:00:00+01:00"], "START/END"),
])
def test_bad_input_exits_2_with_one_clear_line(capsys: pytest.CaptureFixture[str], args: list[str],
                                               message: str) -> None:
    code, out, err = due(capsys, "--policy", str(SHIPPED), *args)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_redact_shows_what_engineering_would_see(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    text = "Call Jane Doe on +49 30 1234567 or jane.doe@example.com; build 2.14.1, order 2026-11-23.\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["redact", "--policy", str(SHIPPED), "--name", "Jane Doe"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ("Call [REDACTED:requester_identity] on [REDACTED:phone] or [REDACTED:email]; "
                            "build 2.14.1, order 2026-11-23.\n")
    assert captured.err.strip() == "redacted: email 1, phone 1, requester_identity 1"


def test_redact_rejects_unknown_kinds_in_the_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(SHIPPED.read_text().replace("scrub: [email,", "scrub: [emails,"))
    monkeypatch.setattr("sys.stdin", io.StringIO("x"))
    assert main(["redact", "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert "emails" in err and "Traceback" not in err
