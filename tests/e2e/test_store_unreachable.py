"""A store that cannot be reached is one clear line and exit 4, its password hidden, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketbridge.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["failures", "list"], ["db", "current"], ["db", "upgrade"]])
def test_an_unreachable_store_is_one_line_and_exit_4(command: list[str], monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TICKETBRIDGE_STORE_URL", "postgresql+psycopg://bridge:s3cr3t-pw@127.0.0.1:1/tb")
    code = main([*command, "--config", str(REPO / "config.example.yaml")])
    err = capsys.readouterr().err
    assert code == 4
    assert "the store at postgresql+psycopg://bridge:***@127.0.0.1:1/tb could not be reached" in err
    assert "s3cr3t-pw" not in err and "Traceback" not in err
