"""In a real browser, against a real `ticketbridge run` on the sandbox emulators: the status page
shows a ticket Jira refused, with Jira's message; once the cause is fixed, Retry syncs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ticketbridge.sandbox import Sandbox

from ..e2e.conftest import MAPPING
from ..e2e.test_cli import free_port
from .conftest import REPO

TOO_LONG = "Checkout fails " + "x" * 280  # the Jira emulator: "Summary must be less than 255 characters"


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Sandbox, str, subprocess.Popen[bytes]]]:
    """The sandbox, and `ticketbridge run` polling it every second with its status page on."""
    with Sandbox(port=0) as sandbox:
        config = sandbox.write_config(tmp_path / "config.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
                                      mapping=MAPPING, poll_interval="1s")
        port = free_port()
        config.write_text(config.read_text() + f"status:\n  listen: 127.0.0.1:{port}\n")
        log = tmp_path / "run.log"
        with log.open("w") as out:
            process = subprocess.Popen([sys.executable, "-m", "ticketbridge.cli", "run", "--config", str(config)],
                                       env={**os.environ, **sandbox.credentials()}, cwd=REPO, stdout=out,
                                       stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: answers(url + "/readyz") or process.poll() is not None, 20, "the status page")
            assert process.poll() is None, f"ticketbridge run exited: {log.read_text()[-2000:]}"
            yield sandbox, url, process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_see_a_failure_fix_it_click_retry_and_see_it_succeed(
        running: tuple[Sandbox, str, subprocess.Popen[bytes]], page: Any) -> None:
    sandbox, url, process = running
    ticket = sandbox.zendesk.add_ticket(subject="Checkout fails", comment={"body": "Details."}, priority="normal")
    jira = sandbox.jira
    issue = wait_until(lambda: next(iter(jira.issues()), None), 15, "the ticket's Jira issue")
    sandbox.zendesk.update_ticket(ticket["id"], subject=TOO_LONG)

    def failure_shown() -> bool:
        page.goto(url + "/")
        return bool(page.locator("#failures + table button", has_text="Retry").count())

    wait_until(failure_shown, 15, "the failure on the page")
    row = page.locator("#failures + table tbody tr").first
    assert "Summary must be less than 255 characters" in row.inner_text()
    assert page.locator(f'a[href="{sandbox.zendesk.base_url}/agent/tickets/{ticket["id"]}"]').count() >= 1
    assert page.locator(f'a[href="{jira.base_url}/browse/{issue["key"]}"]').count() >= 1

    sandbox.zendesk.update_ticket(ticket["id"], subject="Checkout fails on Safari")  # fix the cause
    row.get_by_role("button", name="Retry").click()
    page.wait_for_url(lambda address: "retried=" in address)
    notice = page.locator("#notice").inner_text()
    assert "succeeded" in notice, notice
    assert page.locator("#failures + p").inner_text() == "No open failures."
    assert jira.issue(issue["id"])["fields"]["summary"] == f"[ZD #{ticket['id']}] Checkout fails on Safari"
    process.terminate()  # SIGTERM stops the loop and the page cleanly
    assert process.wait(15) == 0
    assert not answers(url + "/healthz")
