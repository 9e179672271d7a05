"""Secrets: the paths most likely to leak a token, password or webhook secret, with every log line
captured at DEBUG, and not one secret value in any of it -- while the messages still say what
went wrong.

- `sync --once` with a wrong Zendesk token (exit 3, "rejected the credentials", the variables named);
- a tracker answering 5xx with the whole request echoed back (Authorization header included), then
  `failures list` showing the stored failure;
- webhook deliveries with a bad signature, and with the signing secret itself sent as the signature;
- `validate` of a config and a mapping with a secret pasted into them (exit 2, the line named);
- a store URL with a password, in `db current` and `failures list` output (reachable or not).

Everything is captured: the CLI's stdout and stderr, structlog at DEBUG (`ticketbridge.logs` forced
to level DEBUG), and stdlib logging at DEBUG from every logger. The secrets are also looked for in
their Basic-auth (base64) and URL-quoted forms.

Run as a script (`python -m tests.reliability.test_secrets`) to see what was scanned.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.request import Request, urlopen

from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from ticketbridge import cli, logs
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.webhooks import Receiver, TrackerRoute, clickup_signature, github_signature

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "mappings"

# Secrets this test hands to the code under test (the emulators' own accepted credentials are added
# from the sandbox at run time).
WRONG_ZENDESK_TOKEN = "zd-WRONG-token-7f3a9c21e5"
WEBHOOK_SECRET = "whsec-test-secrets-4d8e1b"
PASTED_TOKEN = "ghp_PastedIntoTheYamlByMistake0123456789"
PASTED_PASSWORD = "hunter2-pasted-pw-91c"
DB_PASSWORD = "db-pass-in-url-5e2c77"


# -- capture ---------------------------------------------------------------------------------------
@dataclass
class Captured:
    text: str = ""
    runs: list[str] = field(default_factory=list)  # what each scenario step was

    def add(self, what: str, text: str) -> None:
        self.runs.append(what)
        self.text += f"\n===== {what}\n{text}"


@contextlib.contextmanager
def everything_at_debug() -> Iterator[io.StringIO]:
    """stdout, stderr, structlog (forced to DEBUG, JSON) and stdlib logging at DEBUG, into one buffer."""
    buffer = io.StringIO()
    original_configure = logs.configure

    def configure(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
        original_configure("json", level="DEBUG", stream=stream)

    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logs.configure = configure  # type: ignore[assignment]
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            original_configure("json", level="DEBUG")
            yield buffer
    finally:
        logs.configure = original_configure  # type: ignore[assignment]
        root.removeHandler(handler)
        root.setLevel(old_level)
        original_configure("auto", level="WARNING")


def run_cli(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`ticketbridge <argv>` in-process with `env` added to the environment; (exit code, all output)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        with everything_at_debug() as buffer:
            try:
                code = cli.main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except Exception:
                import traceback

                traceback.print_exc(file=sys.stderr)
                code = -1
        return code, buffer.getvalue()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- the secrets and their encoded forms -------------------------------------------------------------
def forms(value: str, email: str | None = None) -> dict[str, str]:
    """A secret as it could appear: itself, URL-quoted, and inside Basic-auth headers."""
    out = {"raw": value, "url-quoted": quote(value, safe="")}
    if email:
        out["basic email/token"] = base64.b64encode(f"{email}/token:{value}".encode()).decode()
        out["basic email"] = base64.b64encode(f"{email}:{value}".encode()).decode()
    return out


def known_secrets(sandbox: Sandbox | None = None) -> dict[str, str]:
    """name -> value of every secret the scenarios handle."""
    secrets: dict[str, str] = {}
    named = {"wrong Zendesk token": (WRONG_ZENDESK_TOKEN, "agent@example.com"),
             "webhook secret": (WEBHOOK_SECRET, None),
             "token pasted in YAML": (PASTED_TOKEN, None), "password pasted in YAML": (PASTED_PASSWORD, None),
             "store password": (DB_PASSWORD, None)}
    if sandbox is not None:
        emails = {"ZENDESK_API_TOKEN": sandbox.zendesk.email, "JIRA_API_TOKEN": sandbox.jira.email}
        for var, value in sandbox.credentials().items():
            if not var.endswith("_EMAIL"):
                named[f"sandbox {var}"] = (value, emails.get(var))
    for name, (value, email) in named.items():
        for kind, text in forms(value, email).items():
            secrets[f"{name} ({kind})"] = text
    return secrets


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return sorted(name for name, value in secrets.items() if value in text)


# -- a tracker that answers 5xx with the request echoed ------------------------------------------------
class EchoingProxy:
    """Forwards to `upstream`; requests matching `fail` get a 500 whose body is the whole request."""

    def __init__(self, upstream: str, fail: Callable[[str, str], bool]) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if fail(self.command, self.path):
                    proxy.echoed += 1
                    echo = f"{self.command} {self.path}\n{self.headers}\n".encode() + body
                    self.send_response(500)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(echo)))
                    self.end_headers()
                    self.wfile.write(echo)
                    return
                forward = Request(upstream + self.path, data=body if self.command in ("POST", "PUT") else None,
                                  method=self.command,
                                  headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                try:
                    with urlopen(forward, timeout=10) as answer:
                        status, headers, data = answer.status, answer.headers, answer.read()
                except Exception as error:
                    status = getattr(error, "code", 502)
                    headers = getattr(error, "headers", {})
                    data = error.read() if hasattr(error, "read") else b""
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.echoed = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> EchoingProxy:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the scenarios -------------------------------------------------------------------------------------
def sandbox_env(sandbox: Sandbox, **override: str) -> dict[str, str]:
    return {**sandbox.credentials(), "ZENDESK_EMAIL": sandbox.zendesk.email, "JIRA_EMAIL": sandbox.jira.email,
            **override}


def wrong_credentials(tmp: Path, sandbox: Sandbox, out: Captured) -> None:
    config = sandbox.write_config(tmp / "wrong.yaml", store_url=f"sqlite:///{tmp / 'wrong.db'}",
                                  mapping=MAPPINGS / "zendesk-jira.yaml")
    code, text = run_cli(["sync", "--once", "--config", str(config)],
                         sandbox_env(sandbox, ZENDESK_API_TOKEN=WRONG_ZENDESK_TOKEN))
    out.add("sync --once with a wrong Zendesk token", text)
    assert code == 3, text
    assert "tracker 'zendesk' rejected the credentials" in text and "ZENDESK_API_TOKEN" in text, text


def echoed_5xx(tmp: Path, sandbox: Sandbox, out: Captured) -> None:
    # Jira creates fail with a 500 that quotes the request, Authorization header and all.
    with EchoingProxy(sandbox.jira.base_url,
                      lambda method, path: method == "POST" and path.rstrip("/").endswith("/issue")) as proxy:
        config = sandbox.write_config(tmp / "echo.yaml", store_url=f"sqlite:///{tmp / 'echo.db'}",
                                      mapping=MAPPINGS / "zendesk-jira.yaml")
        text = config.read_text().replace(sandbox.jira.base_url, proxy.url)
        config.write_text(text)
        env = sandbox_env(sandbox)
        code, output = run_cli(["sync", "--once", "--config", str(config)], env)
        out.add("sync --once, Jira answering 500 with the request echoed", output)
        assert proxy.echoed >= 1, "the proxy never failed a create: the scenario did not run"
        assert code == 1, output  # items failed, the pass went on
        assert "500" in output, output
        code, output = run_cli(["failures", "list", "--config", str(config)], env)
        out.add("failures list after the echoed 500s", output)
        assert code == 0 and "500" in output, output
        code, output = run_cli(["failures", "list", "--format", "json", "--config", str(config)], env)
        out.add("failures list --format json after the echoed 500s", output)
        assert code == 0 and "500" in output, output


def webhook_bad_signatures(out: Captured) -> None:
    nudges: queue.Queue[tuple[str, str]] = queue.Queue()
    routes = [TrackerRoute("github", "github", "/hooks/github", WEBHOOK_SECRET),
              TrackerRoute("clickup", "clickup", "/hooks/clickup", WEBHOOK_SECRET)]
    receiver = Receiver(routes, nudges)
    body = json.dumps({"action": "closed", "issue": {"number": 3}, "repository": {"full_name": "acme/app"}}).encode()
    answers = []
    with everything_at_debug() as buffer, TestClient(receiver.app) as client:
        attempts: list[tuple[str, dict[str, str], bytes]] = [
            ("/hooks/github", {"X-GitHub-Event": "issues", "X-Hub-Signature-256": "sha256=" + "0" * 64}, body),
            ("/hooks/github", {"X-GitHub-Event": "issues", "X-Hub-Signature-256": WEBHOOK_SECRET}, body),
            ("/hooks/github", {"X-GitHub-Event": "issues", "X-Hub-Signature-256": "sha256=" + WEBHOOK_SECRET}, body),
            ("/hooks/clickup", {"X-Signature": WEBHOOK_SECRET}, body),
            ("/hooks/clickup", {"X-Signature": clickup_signature(WEBHOOK_SECRET, body)[:-1]}, body),
            ("/hooks/clickup", {"X-Signature": clickup_signature(WEBHOOK_SECRET, b"{}")},
             json.dumps({"secret": WEBHOOK_SECRET}).encode()),
            ("/hooks/github", {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "good-one",
                               "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET, body)}, body),
        ]
        for path, headers, payload in attempts:
            answer = client.post(path, content=payload, headers=headers)
            answers.append(answer.status_code)
            print(f"answer {answer.status_code}: {answer.text}")
        print(repr(receiver.routes), repr(receiver.counters))
    out.add("webhooks with bad signatures and the secret sent as a signature", buffer.getvalue())
    assert answers == [401, 401, 401, 401, 401, 401, 202], answers
    assert buffer.getvalue().count("bad signature") >= 6


SECRET_IN_CONFIG = """\
store:
  url: postgresql+psycopg://ticketbridge:{password}@127.0.0.1:5432/ticketbridge
trackers:
  zendesk:
    type: zendesk
    base_url: http://127.0.0.1:8801
    auth: {{email_env: ZENDESK_EMAIL, token_env: ZENDESK_API_TOKEN, token: {token}}}
  jira:
    type: jira
    base_url: http://127.0.0.1:8802
    auth: {{email_env: JIRA_EMAIL, token_env: {token}}}
    password: {password}
flows:
  - mapping: {mapping}
webhooks:
  trackers:
    jira: {{secret_env: JIRA_WEBHOOK_SECRET, secret: {token}}}
"""


def validate_with_pasted_secrets(tmp: Path, out: Captured) -> None:
    mapping = tmp / "pasted-mapping.yaml"
    mapping.write_text((MAPPINGS / "zendesk-jira.yaml").read_text(encoding="utf-8").replace(
        "redact: true", f"redact: true\napi_token: {PASTED_TOKEN}\nauth: {{password: {PASTED_PASSWORD}}}", 1))
    config = tmp / "pasted.yaml"
    config.write_text(SECRET_IN_CONFIG.format(token=PASTED_TOKEN, password=PASTED_PASSWORD, mapping=mapping))
    code, text = run_cli(["validate", "--config", str(config)], {})
    out.add("validate with secrets pasted into the config", text)
    assert code == 2, text
    for where, key in ((7, "trackers.zendesk.auth.token"),
                       (12, "trackers.jira.password"), (17, "webhooks.trackers.jira.secret")):
        assert f"{config}:{where}:" in text and f"{key}:" in text, (key, text)  # located and named
    # The mapping alone (the config above stops before reading mappings): its pasted keys are named too.
    good = tmp / "pasted-mapping-config.yaml"
    good.write_text(SECRET_IN_CONFIG.split("store:")[0] + (REPO / "config.example.yaml").read_text(encoding="utf-8")
                    .replace("mappings/zendesk-jira.yaml", str(mapping)).replace("mappings/policy.yaml",
                                                                               str(MAPPINGS / "policy.yaml")))
    code, text = run_cli(["validate", "--config", str(good)], {})
    out.add("validate with secrets pasted into a mapping", text)
    assert code == 2 and str(mapping) in text and "api_token" in text, text


def token_as_variable_name(tmp: Path, sandbox: Sandbox, out: Captured) -> None:
    """A token pasted where the NAME of its variable belongs (`token_env: ghp_...`): before anything
    reads the environment, the config is refused without echoing it ("variable ghp_... is not set"
    would print the token)."""
    config = sandbox.write_config(tmp / "token-env.yaml", store_url=f"sqlite:///{tmp / 'token-env.db'}",
                                  mapping=MAPPINGS / "zendesk-jira.yaml")
    config.write_text(config.read_text().replace("token_env: JIRA_API_TOKEN", f"token_env: {PASTED_TOKEN}"))
    for command in (["sync", "--once"], ["validate"]):
        code, text = run_cli([*command, "--config", str(config)], sandbox_env(sandbox))
        out.add(f"{' '.join(command)} with a token pasted as token_env", text)
        assert code == 2, text
        assert "trackers.jira.auth.token_env: this looks like a secret" in text, text


def store_password(tmp: Path, sandbox: Sandbox, out: Captured) -> None:
    base = (REPO / "config.example.yaml").read_text(encoding="utf-8").replace(
        "mappings/", str(MAPPINGS) + "/")
    config = tmp / "store.yaml"
    config.write_text(base)
    env = sandbox_env(sandbox)
    unreachable = f"postgresql+psycopg://ticketbridge:{DB_PASSWORD}@127.0.0.1:9/ticketbridge?connect_timeout=2"
    for command in (["db", "current"], ["failures", "list"]):
        code, text = run_cli([*command, "--config", str(config)], {**env, "TICKETBRIDGE_STORE_URL": unreachable})
        out.add(f"{' '.join(command)} with an unreachable store URL holding a password", text)
        assert code != 0, text
        assert "127.0.0.1" in text, text  # still says where it could not connect
    with _reachable_pg_with_password() as reachable:
        if reachable is None:
            out.add("(PostgreSQL not reachable: the reachable-store half was not run)", "")
            return
        for command in (["db", "current"], ["failures", "list"]):
            code, text = run_cli([*command, "--config", str(config)], {**env, "TICKETBRIDGE_STORE_URL": reachable})
            out.add(f"{' '.join(command)} with a reachable store URL holding a password", text)
            assert code == 0, text
            assert command[0] != "db" or "127.0.0.1:5432" in text, text  # the URL shown, without the password


@contextlib.contextmanager
def _reachable_pg_with_password() -> Iterator[str | None]:
    """A fresh schema of the test PostgreSQL, its URL with a password added (ignored by a trust
    login), or None when PostgreSQL is not there or needs a real password."""
    from tests.pg import PG_URL, fresh_schema, pg_unreachable

    if pg_unreachable() or make_url(PG_URL).password:
        yield None
        return
    with fresh_schema() as url:
        yield make_url(url).set(password=DB_PASSWORD).render_as_string(hide_password=False)


# -- the test and the script ------------------------------------------------------------------------
def scan_all() -> tuple[Captured, dict[str, str]]:
    out = Captured()
    with tempfile.TemporaryDirectory() as tmp_name, Sandbox("127.0.0.1", 0, seed=True) as sandbox:
        tmp = Path(tmp_name)
        wrong_credentials(tmp, sandbox, out)
        echoed_5xx(tmp, sandbox, out)
        webhook_bad_signatures(out)
        validate_with_pasted_secrets(tmp, out)
        token_as_variable_name(tmp, sandbox, out)
        store_password(tmp, sandbox, out)
        return out, known_secrets(sandbox)


def test_no_secret_in_any_output_of_the_paths_most_likely_to_leak_one(secret_scan: Any) -> None:
    out, secrets = scan_all()
    for name, value in secrets.items():  # the suite-wide scan looks for them from now on, too
        secret_scan.register(f"test_secrets: {name}", value)
    assert len(out.runs) >= 9, out.runs
    found = leaks(out.text, secrets)
    assert not found, "secrets in the output: " + ", ".join(found) + "\n" + "\n".join(
        f"  {line[:200]}" for line in _mask(out.text, secrets).splitlines() if "<secret:" in line)


LEAKY_TESTS = """\
import logging

import structlog

from ticketbridge.connectors.github.emulator import DEFAULT_TOKEN

HOOK_SECRET = "inner-module-hook-secret"


def test_prints_an_emulator_token() -> None:
    print("calling with", DEFAULT_TOKEN)


def test_logs_a_module_secret_while_capsys_holds_the_output(capsys: object) -> None:
    structlog.get_logger("t").warning("signing", detail=HOOK_SECRET)


def test_logs_through_logging() -> None:
    logging.getLogger("t").warning("key %s", DEFAULT_TOKEN)


def test_quiet() -> None:
    print("nothing secret")
"""


def test_the_suite_wide_scan_fails_a_run_whose_tests_print_a_secret(tmp_path: Path) -> None:
    """tests/conftest.py's plugin, in a pytest run of its own under pytest-xdist (a worker finds, the
    controller reports): each leaking test fails, naming the secret and where it was seen, never its
    value; the clean test passes; the run's exit code is not 0."""
    xdist = ["-n", "1"]
    from ticketbridge.connectors.github.emulator import DEFAULT_TOKEN

    plugin = (REPO / "tests" / "conftest.py").read_text(encoding="utf-8")
    (tmp_path / "conftest.py").write_text(plugin, encoding="utf-8")
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf", *xdist,
                           str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "3 failed, 1 passed" in output, output[-3000:]
    assert DEFAULT_TOKEN not in output and "inner-module-hook-secret" not in output
    for test, secret, where in (
            ("test_prints_an_emulator_token", "GitHubEmulator default token", "Captured stdout call"),
            ("test_logs_a_module_secret_while_capsys_holds_the_output", "test_leaky.HOOK_SECRET", "structlog output"),
            ("test_logs_through_logging", "GitHubEmulator default token", "logging (t)")):
        assert f"LEAK test_leaky.py::{test}: {secret} appeared in {where}" in output, output[-3000:]


def _mask(text: str, secrets: dict[str, str]) -> str:
    for name, value in sorted(secrets.items(), key=lambda item: -len(item[1])):
        text = text.replace(value, f"<secret: {name}>")
    return text


def main() -> int:
    out, secrets = scan_all()
    found = leaks(out.text, secrets)
    print(f"scanned {len(out.runs)} runs, {len(out.text.splitlines())} lines of output (stdout, stderr, structlog "
          f"and logging at DEBUG), for {len(secrets)} secret forms:")
    for what in out.runs:
        print(f"  - {what}")
    print(f"findings={len(found)}")
    for name in found:
        print(f"  LEAK {name}")
    if found or "-v" in sys.argv:
        print(_mask(out.text, secrets))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
