"""`ticketbridge demo --serve`: after the demo, its sandbox and status page stay up until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from ..e2e.test_cli import REPO, free_port


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


@pytest.mark.slow
def test_demo_serve_keeps_the_page_up_until_ctrl_c() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ticketbridge.cli", "demo", "--serve", "--status-listen",
                                f"127.0.0.1:{port}"], cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.monotonic() + 120, None
        while page is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            page = get(f"http://127.0.0.1:{port}/")
        assert page is not None, "the demo's status page came up"
        assert "zendesk-jira" in page and "jira-clickup" in page and "zendesk-github" in page
        metrics = (get(f"http://127.0.0.1:{port}/metrics") or "").splitlines()

        def total(prefix: str) -> float:
            return sum(float(line.split()[-1]) for line in metrics if line.startswith(prefix))

        assert total('ticketbridge_items_synced{flow="zendesk-jira"}') >= 20  # two dozen seeded tickets
        assert total("ticketbridge_sla_breaches_total{") >= 1  # the outage story breaches
        time.sleep(1.0)
        assert process.poll() is None, "still serving"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0  # (output not shown: it lists the sandbox credentials)
    assert f"Status page: http://127.0.0.1:{port}/" in out and out.rstrip().endswith("stopped")
    assert get(f"http://127.0.0.1:{port}/healthz") is None, "the page is gone"
