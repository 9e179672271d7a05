"""The progress bar of `sync --once`: it counts the items a pass syncs, and is drawn only for a
person at a terminal (never into a pipe, a test's captured output or JSON logs)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from functools import partial

import pytest
import structlog
from rich.console import Console

from ticketbridge import logs, progress
from ticketbridge.cli import main

from .conftest import Bridge

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """These tests configure structlog; later tests in this process get it back as it was."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def forced_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


def test_the_bar_counts_every_item_a_pass_syncs(bridge: Bridge) -> None:
    for n in range(7):
        bridge.sandbox.zendesk.add_ticket(subject=f"Backfill {n}", comment={"body": "text"})
    logs.configure("console", level="INFO", stream=io.StringIO())
    console, out = forced_console()
    with progress.SyncProgress(console) as bar:
        stats = bridge.sync()
    assert bar.synced == 7 == len(bridge.sandbox.jira.issues()) and stats.items_seen == 7
    shown = ANSI.sub("", out.getvalue())
    assert "sync zendesk-jira" in shown and "7 items synced" in shown


def test_the_bar_counts_at_a_quieter_log_level_without_printing_info_lines(bridge: Bridge) -> None:
    for n in range(3):
        bridge.sandbox.zendesk.add_ticket(subject=f"Quiet {n}", comment={"body": "text"})
    lines = io.StringIO()
    logs.configure("console", level="WARNING", stream=lines)
    console, _ = forced_console()
    with progress.SyncProgress(console) as bar:
        bridge.sync()
        structlog.get_logger("test").warning("still.shown")
    assert bar.synced == 3
    assert "engine.item_synced" not in lines.getvalue() and "still.shown" in lines.getvalue()
    structlog.get_logger("test").info("not.shown")  # the level's own filter is back
    assert "not.shown" not in lines.getvalue()


def test_the_processor_is_removed_afterwards(bridge: Bridge) -> None:
    logs.configure("console", level="INFO", stream=io.StringIO())
    before = structlog.get_config()["processors"]
    console, _ = forced_console()
    with progress.SyncProgress(console):
        assert len(structlog.get_config()["processors"]) == len(before) + 1
    assert structlog.get_config()["processors"] == before


def test_sync_once_draws_the_bar_on_a_terminal(bridge: Bridge, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for n in range(5):
        bridge.sandbox.zendesk.add_ticket(subject=f"Terminal {n}", comment={"body": "text"})
    for key, value in bridge.env.items():
        monkeypatch.setenv(key, value)
    console, out = forced_console()
    monkeypatch.setattr(progress, "sync_progress", partial(progress.sync_progress, console=console))
    assert main(["sync", "--once", "--config", str(bridge.config_path)]) == 0
    assert "5 items synced" in ANSI.sub("", out.getvalue())
    assert "items synced" not in capsys.readouterr().err  # the bar went to its console only


def test_no_bar_in_json_mode_or_without_a_terminal() -> None:
    console, _ = forced_console()
    assert progress.wanted("json", console) is None
    assert progress.wanted("console", console) is console
    # Under pytest stderr is captured, never a terminal: the default console is not even made.
    assert progress.wanted("auto") is None and progress.wanted("console") is None
    assert isinstance(progress.sync_progress("auto"), progress._NoProgress)


def test_sync_once_in_a_pipe_prints_only_the_summary(bridge: Bridge, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bridge.sandbox.zendesk.add_ticket(subject="Piped", comment={"body": "text"})
    for key, value in bridge.env.items():
        monkeypatch.setenv(key, value)
    assert main(["sync", "--once", "--config", str(bridge.config_path)]) == 0
    captured = capsys.readouterr()
    assert "items synced" not in captured.out + captured.err and "\x1b[" not in captured.err
    assert captured.out.startswith("items seen 1;")
