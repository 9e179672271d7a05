"""Webhooks end to end: the receiver on a real uvicorn, the GitHub emulator delivering signed
`issues` webhooks to it, and the engine syncing the named issue without waiting for a poll;
`ticketbridge run` starting and stopping the receiver."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ticketbridge.cli import open_runtime
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import load_config
from ticketbridge.sync.engine import PassStats
from ticketbridge.sync.webhooks import (
    Receiver,
    TrackerRoute,
    WebhookServer,
    clickup_signature,
    github_signature,
    jira_signature,
)

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "mappings"
SECRET = "gh-webhook-secret-for-tests"
WEBHOOKS = """\
webhooks:
  listen: 127.0.0.1:{port}
  trackers:
    github: {{path: /hooks/github, secret_env: GITHUB_WEBHOOK_SECRET}}
"""


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server() -> Iterator[tuple[WebhookServer, queue.Queue[tuple[str, str]]]]:
    nudges: queue.Queue[tuple[str, str]] = queue.Queue()
    routes = [TrackerRoute("gh", "github", "/hooks/github", "g"), TrackerRoute("eng", "jira", "/hooks/jira", "j"),
              TrackerRoute("plan", "clickup", "/hooks/clickup", "c")]
    with WebhookServer(Receiver(routes, nudges, max_body_bytes=4096), "127.0.0.1", 0) as running:
        yield running, nudges


def test_the_receiver_answers_on_a_real_uvicorn_and_queues_what_it_accepts(
        server: tuple[WebhookServer, queue.Queue[tuple[str, str]]]) -> None:
    running, nudges = server
    assert running.port != 0
    body = json.dumps({"action": "closed", "issue": {"number": 5}, "repository": {"full_name": "acme/app"}}).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-1",
               "X-Hub-Signature-256": github_signature("g", body)}
    started = time.perf_counter()
    assert post(running.url + "/hooks/github", body, headers) == 202
    elapsed = time.perf_counter() - started
    print(f"webhook answered in {elapsed * 1000:.1f} ms")  # shown with -s; never asserted as a timing
    assert post(running.url + "/hooks/github", body, headers) == 200  # the same delivery again
    assert post(running.url + "/hooks/github", body, {**headers, "X-Hub-Signature-256": "sha256=00"}) == 401
    jira = json.dumps({"webhookEvent": "comment_created", "issue": {"id": "10007", "key": "ENG-2"}}).encode()
    assert post(running.url + "/hooks/jira", jira, {"X-Hub-Signature": jira_signature("j", jira)}) == 202
    task = b'{"event":"taskUpdated","task_id":"abc","history_items":[{"id":"1"}]}'
    assert post(running.url + "/hooks/clickup", task, {"X-Signature": clickup_signature("c", task)}) == 202
    assert post(running.url + "/hooks/clickup", b"x" * 5000, {"X-Signature": "00"}) == 413
    assert post(running.url + "/hooks/clickup", b"{", {"X-Signature": clickup_signature("c", b"{")}) == 400
    got = [nudges.get(timeout=5) for _ in range(3)]
    assert got == [("gh", "acme/app#5"), ("eng", "10007"), ("plan", "abc")]
    assert nudges.empty()


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        receiver = Receiver([TrackerRoute("gh", "github", "/h", "s")], queue.Queue())
        with pytest.raises(OSError, match="could not listen"):
            WebhookServer(receiver, "127.0.0.1", port).start(timeout=5)


def test_a_github_webhook_makes_the_engine_sync_the_issue_without_waiting_for_a_poll(tmp_path: Path) -> None:
    with Sandbox(port=0) as sandbox:
        config_path = sandbox.write_config(
            tmp_path / "config.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
            mapping=MAPPINGS / "zendesk-jira.yaml", escalation_mapping=MAPPINGS / "zendesk-github.yaml")
        config_path.write_text(config_path.read_text() + WEBHOOKS.format(port=0))
        env = {**sandbox.credentials(), "GITHUB_WEBHOOK_SECRET": SECRET}
        config = load_config(config_path, env=env)
        assert config.webhooks is not None
        runtime = open_runtime(config, env, retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.1))
        engine = runtime.engine()
        ticket = sandbox.zendesk.add_ticket(subject="Export to CSV fails", comment={"body": "The export stops."})
        escalated = engine.escalate("zendesk-github", str(ticket["id"]))
        assert escalated.link is not None
        issue_ref = escalated.link.id_on("right")
        repo, number = sandbox.github.repo_names[0], int(issue_ref.rsplit("#", 1)[1])

        nudges: queue.Queue[tuple[str, str]] = queue.Queue()
        receiver = WebhookServer(Receiver.from_config(config.webhooks, nudges, env), config.webhooks.host, 0).start()
        sandbox.github.webhook_url = receiver.url + "/hooks/github"
        sandbox.github.webhook_secret = SECRET
        polls: list[str] = []
        plain_sync_flow = engine.sync_flow

        def counted(flow):  # type: ignore[no-untyped-def]
            polls.append(flow.name)
            return plain_sync_flow(flow)

        engine.sync_flow = counted  # type: ignore[method-assign]
        passes: list[PassStats] = []
        stop = threading.Event()
        hour = {name: 3600.0 for name in config.trackers}  # no second poll within this test
        loop = threading.Thread(target=engine.run_forever, args=(stop, hour), kwargs={
            "on_pass": passes.append, "nudges": nudges}, daemon=True)
        loop.start()
        try:
            assert wait_for(lambda: len(polls) == len(runtime.flows) and len(passes) >= len(runtime.flows))
            assert sandbox.zendesk.ticket(ticket["id"])["status"] != "solved"

            sandbox.github.close(repo, number)
            assert sandbox.github.wait_for_deliveries(10)
            assert wait_for(lambda: sandbox.zendesk.ticket(ticket["id"])["status"] == "solved"), \
                "the ticket follows the closed issue"
            notes = [c for c in sandbox.zendesk.comments(ticket["id"]) if not c["public"]]
            assert any("closed" in c["body"] for c in notes), notes

            # A duplicated delivery (same X-GitHub-Delivery) is answered, and fetched once.
            sandbox.github.webhook_faults.duplicate_rate = 1.0
            fetches_before = sum(1 for method, path, _ in sandbox.github.request_log
                                 if method == "GET" and path.endswith(f"/issues/{number}"))
            sandbox.github.reopen(repo, number)
            assert sandbox.github.wait_for_deliveries(10)
            assert wait_for(lambda: sandbox.zendesk.ticket(ticket["id"])["status"] == "open")
            statuses = [d.status for d in sandbox.github.deliveries]
            assert statuses[-2:] == [202, 200], statuses
            assert wait_for(lambda: nudges.empty())
            time.sleep(0.3)  # let a (wrong) second fetch happen if it were going to
            fetches = sum(1 for method, path, _ in sandbox.github.request_log
                          if method == "GET" and path.endswith(f"/issues/{number}")) - fetches_before
            assert fetches == 1, fetches
            assert polls == [f.name for f in runtime.flows], "only the first pass polled"
        finally:
            stop.set()
            loop.join(15)
            receiver.stop()
            runtime.store.close()
        assert not loop.is_alive()


@pytest.mark.slow
def test_run_starts_the_receiver_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    with Sandbox(port=0) as sandbox:
        config_path = sandbox.write_config(tmp_path / "config.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
                                           mapping=MAPPINGS / "zendesk-jira.yaml",
                                           escalation_mapping=MAPPINGS / "zendesk-github.yaml")
        config_path.write_text(config_path.read_text() + WEBHOOKS.format(port=port))
        env = {**os.environ, **sandbox.credentials(), "GITHUB_WEBHOOK_SECRET": SECRET}
        missing = subprocess.run([sys.executable, "-m", "ticketbridge.cli", "run", "--config", str(config_path)],
                                 env={k: v for k, v in env.items() if k != "GITHUB_WEBHOOK_SECRET"}, cwd=REPO,
                                 capture_output=True, text=True, timeout=60)
        assert missing.returncode == 2 and "GITHUB_WEBHOOK_SECRET" in missing.stderr, missing.stderr
        # Logs go to a file: a pipe nobody reads while the test posts would fill up and stall the process.
        log_path = tmp_path / "run.log"
        with log_path.open("w") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "ticketbridge.cli", "run", "--config",
                                        str(config_path)], env=env, cwd=REPO, stdout=log_file, stderr=log_file)
        try:
            body = json.dumps({"action": "opened", "issue": {"number": 404},
                               "repository": {"full_name": f"{sandbox.github.owner}/{sandbox.github.repo_names[0]}"}
                               }).encode()
            headers = {"Content-Type": "application/json", "X-GitHub-Event": "issues", "X-GitHub-Delivery": "cli-1",
                       "X-Hub-Signature-256": github_signature(SECRET, body)}
            url = f"http://127.0.0.1:{port}/hooks/github"

            def answered() -> bool:
                try:
                    return post(url, body, headers) in (200, 202)
                except OSError:
                    return False

            assert wait_for(answered), "the receiver listens while `run` runs"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        err = log_path.read_text()
        assert process.returncode == 0, err
        assert "run.stopping" in err and "Traceback" not in err, err
        assert SECRET not in err
        assert "webhooks.listening" in err and "webhooks.accepted" in err
        with pytest.raises(OSError):
            post(url, body, headers)  # stopped with the process


@pytest.mark.slow
def test_run_with_zendesk_and_jira_webhooks_syncs_changes_long_before_the_next_poll(tmp_path: Path) -> None:
    """`ticketbridge run` polling every 60 s: with the emulators delivering signed webhooks, a new ticket,
    a ticket edit and a Jira comment cross within seconds. Only the first pass polls."""
    port = free_port()
    secrets = {"zendesk": "zd-webhook-secret-for-tests", "jira": "jira-webhook-secret-for-tests"}
    with Sandbox(port=0) as sandbox:
        config_path = sandbox.write_config(
            tmp_path / "config.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
            mapping=MAPPINGS / "zendesk-jira.yaml", poll_interval="60s",
            webhooks={"zendesk": "ZENDESK_WEBHOOK_SECRET", "jira": "JIRA_WEBHOOK_SECRET"},
            webhooks_listen=f"127.0.0.1:{port}")
        env = {**os.environ, **sandbox.credentials(), "ZENDESK_WEBHOOK_SECRET": secrets["zendesk"],
               "JIRA_WEBHOOK_SECRET": secrets["jira"]}
        sandbox.send_webhooks_to(f"http://127.0.0.1:{port}", secrets)
        before = sandbox.zendesk.add_ticket(subject="Seen by the first poll", comment={"body": "Polled."})

        def issue_of(ticket_id: int) -> dict[str, Any] | None:
            marker = f"[ZD #{ticket_id}]"  # the mapping's title template
            return next((i for i in sandbox.jira.issues() if i["fields"]["summary"].startswith(marker)), None)

        log_path = tmp_path / "run.log"
        with log_path.open("w") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "ticketbridge.cli", "run", "--config",
                                        str(config_path)], env=env, cwd=REPO, stdout=log_file, stderr=log_file)
        try:
            assert wait_for(lambda: issue_of(before["id"]) is not None), log_path.read_text()
            started = time.monotonic()

            ticket = sandbox.zendesk.add_ticket(subject="Arrives by webhook", comment={"body": "Pushed."},
                                                priority="normal")
            assert wait_for(lambda: issue_of(ticket["id"]) is not None, timeout=10), log_path.read_text()
            issue = issue_of(ticket["id"])
            assert issue is not None and issue["fields"]["priority"]["name"] == "Medium"

            sandbox.zendesk.update_ticket(ticket["id"], subject="Arrives by webhook, edited", priority="urgent")
            assert wait_for(lambda: (issue_of(ticket["id"]) or {}).get("fields", {}).get("priority", {})
                            .get("name") == "Highest", timeout=10), log_path.read_text()
            issue = issue_of(ticket["id"])
            assert issue is not None and issue["fields"]["summary"].endswith("Arrives by webhook, edited")

            sandbox.jira.add_comment(issue["key"], "Fixed on main, deploying.", author="Dana Engineer")
            assert wait_for(lambda: any("Fixed on main" in c["body"] for c in sandbox.zendesk.comments(ticket["id"])),
                            timeout=10), log_path.read_text()
            note = next(c for c in sandbox.zendesk.comments(ticket["id"]) if "Fixed on main" in c["body"])
            assert note["public"] is False  # Jira comments come back as internal notes
            assert time.monotonic() - started < 30, "all of it well before the 60 s poll"
            assert sandbox.wait_for_webhooks(10)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        log = log_path.read_text()
        assert process.returncode == 0, log
        assert "Traceback" not in log and secrets["zendesk"] not in log and secrets["jira"] not in log
        events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        accepted = {e["tracker"] for e in events if e["event"] == "webhooks.accepted"}
        assert accepted == {"zendesk", "jira"}
        assert [e["event"] for e in events].count("engine.pass_start") == 1, "only the first pass polled"
        # None: a delivery of the engine's last writes, sent after the process stopped.
        for sender in (sandbox.zendesk, sandbox.jira):
            statuses = {d.status for d in sender.deliveries}
            assert statuses <= {200, 202, None} and 202 in statuses, statuses
