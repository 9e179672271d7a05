"""Suite-wide secret scan: no token, password or webhook secret in any log output of the test run.

Every test's output is scanned for every known secret value:

- structlog lines, as `ticketbridge.logs` writes them (teed from structlog's PrintLogger, so a line
  is seen even when a test redirects or captures the stream);
- stdlib `logging` records reaching the root logger (uvicorn, httpx, sqlalchemy, ...);
- the captured stdout, stderr and log sections pytest attaches to each test report.

The known secrets come from the code, so the list stays current: every credential default of every
emulator the sandbox runs (tokens, OAuth tokens, routing keys; also as the Basic-auth header values
built from them), module-level `*SECRET*` constants of the collected test modules (webhook signing
secrets), passwords in the PostgreSQL URLs of `TICKETBRIDGE_TEST_PG_URL` / `TICKETBRIDGE_STORE_URL`,
and any `*_TOKEN`, `*_SECRET`, `*_PASSWORD`, `*_KEY` environment variable set when the run starts.
More come from `TICKETBRIDGE_TEST_SECRETS` (`NAME=value` pairs separated by newlines or `;`) and
from the `secret_scan` fixture (`secret_scan.register(name, value)`).

A finding fails the test whose phase printed it (the report is turned into a failure naming the
test, the secret's name and where it was seen, never the value) and the run exits non-zero.
Under pytest-xdist each worker scans its own tests; the failed reports and anything seen after the
last test (sent in `workeroutput`) reach the controller, which lists every finding at the end. What
is printed between tests (collection) is counted against the next test.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import logging
import os
import re
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

ENV_EXTRA = "TICKETBRIDGE_TEST_SECRETS"
MIN_LENGTH = 6  # shorter values ("g", "key") would match ordinary text
_PROPERTY = "secret-scan"
_SECRET_PARAMS = re.compile(r"token|password|secret|routing_key|api_key", re.IGNORECASE)
_SECRET_ENV = re.compile(r"(_TOKEN|_SECRET|_PASSWORD|_PASSWD|_KEY)$|^TICKETBRIDGE_REDACTION_KEY$")
_SECRET_CONSTANT = re.compile(r"SECRET|TOKEN|PASSWORD", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_ONE_WORD = re.compile(r"^\S{6,200}$")


# -- the known secrets ---------------------------------------------------------------------------
def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple | set | frozenset):
        return [s for v in value for s in _strings(v)]
    return []


def emulator_credentials() -> dict[str, str]:
    """name -> value of every credential an emulator accepts by default (its constructor's defaults),
    and the HTTP Basic values a client builds from them."""
    from ticketbridge import sandbox
    from ticketbridge.connectors.emulator_kit import EmulatorServer

    found: dict[str, str] = {}
    emulators = sorted({obj for obj in vars(sandbox).values()
                        if isinstance(obj, type) and issubclass(obj, EmulatorServer) and obj is not EmulatorServer},
                       key=lambda cls: cls.__name__)
    assert emulators, "the sandbox runs no emulators? the secret scan would check nothing"
    for cls in emulators:
        params = inspect.signature(cls.__init__).parameters
        email = params["email"].default if "email" in params else None
        for name, param in params.items():
            if not _SECRET_PARAMS.search(name):
                continue
            for i, value in enumerate(_strings(param.default)):
                label = f"{cls.__name__} default {name}" + (f"[{i}]" if i else "")
                found[label] = value
                if isinstance(email, str) and name == "token":  # Zendesk: email/token:T, Jira: email:T
                    for shape, form in (("email/token:TOKEN", f"{email}/token:{value}"),
                                        ("email:TOKEN", f"{email}:{value}")):
                        found[f"{label} as Basic auth {shape}"] = base64.b64encode(form.encode()).decode()
    return found


def url_passwords(env: dict[str, str]) -> dict[str, str]:
    """Passwords in the database URLs the tests use."""
    from sqlalchemy.engine import make_url

    found = {}
    for var in ("TICKETBRIDGE_TEST_PG_URL", "TICKETBRIDGE_STORE_URL"):
        url = env.get(var)
        if not url:
            continue
        try:
            password = make_url(url).password
        except Exception:
            continue
        if password:
            found[f"password in ${var}"] = str(password)
    return found


def environment_secrets(env: dict[str, str]) -> dict[str, str]:
    found = {f"${name}": value for name, value in env.items() if _SECRET_ENV.search(name)}
    for entry in re.split(r"[;\n]", env.get(ENV_EXTRA, "")):
        name, sep, value = entry.partition("=")
        if sep and value:
            found[f"{name.strip()} (from ${ENV_EXTRA})"] = value
    return found


def module_secrets(module: Any) -> dict[str, str]:
    """Module-level constants named like secrets (SECRET, SECRETS = {...}, TOKEN) of a test module."""
    found = {}
    for name, value in vars(module).items():
        if name.isupper() and _SECRET_CONSTANT.search(name):
            for i, text in enumerate(_strings(value)):
                # Not a variable's NAME (SECRET_ENV = {...: "JIRA_WEBHOOK_SECRET"}), not a template or text.
                if _ENV_NAME.match(text) or not _ONE_WORD.match(text):
                    continue
                found[f"{module.__name__}.{name}" + (f"[{i}]" if i else "")] = text
    return found


# -- the scanner ---------------------------------------------------------------------------------
@dataclass
class Finding:
    secret: str  # the secret's name, never its value
    where: str  # "structlog", "logging <logger>", "Captured stderr call", ...
    test: str = ""

    def __str__(self) -> str:
        return f"{self.test or '(outside any test)'}: {self.secret} appeared in {self.where}"


@dataclass
class SecretScan:
    """The known secrets and what was seen since the last `take()`; thread-safe."""

    secrets: dict[str, str] = field(default_factory=dict)  # value -> name
    scanned_lines: int = 0
    _pending: list[Finding] = field(default_factory=list)
    _pattern: re.Pattern[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, name: str, value: str | None) -> None:
        """Scan for `value` from now on (ignored when shorter than MIN_LENGTH)."""
        if not value or len(value) < MIN_LENGTH:
            return
        with self._lock:
            if value not in self.secrets:
                self.secrets[value] = name
                self._pattern = None

    def register_all(self, named: dict[str, str]) -> None:
        for name, value in named.items():
            self.register(name, value)

    def names_in(self, text: str) -> list[str]:
        """The names of the secrets that appear in `text`."""
        pattern = self._pattern
        if pattern is None:
            with self._lock:
                values = sorted(self.secrets, key=len, reverse=True)
                pattern = self._pattern = re.compile("|".join(re.escape(v) for v in values) or r"(?!x)x")
        self.scanned_lines += text.count("\n") + 1
        return sorted({self.secrets[m.group(0)] for m in pattern.finditer(text)})

    def mask(self, text: str) -> str:
        """`text` with every known secret replaced by its name."""
        self.names_in(text)  # builds the pattern
        assert self._pattern is not None
        return self._pattern.sub(lambda m: f"<secret: {self.secrets[m.group(0)]}>", text)

    def check(self, text: str, where: str) -> None:
        for name in self.names_in(text):
            with self._lock:
                self._pending.append(Finding(name, where))

    def take(self) -> list[Finding]:
        with self._lock:
            out, self._pending = self._pending, []
        return out


SCAN = SecretScan()


class _ScanHandler(logging.Handler):
    def __init__(self, scan: SecretScan) -> None:
        super().__init__(logging.NOTSET)
        self.scan = scan
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.scan.check(self.format(record), f"logging ({record.name})")


def _tee_structlog(scan: SecretScan) -> None:
    """Every line structlog's PrintLogger writes (ticketbridge.logs uses it) is scanned too."""
    import structlog

    original = structlog.PrintLogger.msg
    if getattr(original, "_secret_scan", False):
        return

    def msg(self: Any, message: str) -> None:
        scan.check(str(message), "structlog output")
        original(self, message)

    msg._secret_scan = True  # type: ignore[attr-defined]
    for name in dir(structlog.PrintLogger):
        if getattr(structlog.PrintLogger, name, None) is original:
            setattr(structlog.PrintLogger, name, msg)


# -- pytest hooks ----------------------------------------------------------------------------------
_reported: list[str] = []  # controller: every finding, as text
_figures = {"secrets": 0, "lines": 0}  # controller: the most secrets a process looked for, lines scanned


def pytest_configure(config: pytest.Config) -> None:
    env = dict(os.environ)
    SCAN.register_all(emulator_credentials())
    SCAN.register_all(url_passwords(env))
    SCAN.register_all(environment_secrets(env))
    logging.getLogger().addHandler(_ScanHandler(SCAN))
    _tee_structlog(SCAN)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    seen: set[str] = set()
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ not in seen:
            seen.add(module.__name__)
            SCAN.register_all(module_secrets(module))


@pytest.fixture
def secret_scan() -> SecretScan:
    """The session's scanner: `secret_scan.register("name", value)` adds a secret to look for."""
    return SCAN


_carried: dict[str, list[Finding]] = {}  # findings of a phase that could not fail its own report


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    findings = _carried.pop(item.nodeid, []) + SCAN.take()
    masked = []
    for title, content in report.sections:
        if title.endswith(f" {call.when}"):  # later phases' reports repeat earlier sections
            findings += [Finding(name, title) for name in SCAN.names_in(content)]
        masked.append((title, SCAN.mask(content)))
    if not findings:
        return
    report.sections[:] = masked  # the report shows where, never the value
    for finding in findings:
        finding.test = item.nodeid
    if call.when == "setup" and report.passed:  # fail the call instead: a failed setup hides the test
        _carried[item.nodeid] = findings
        return
    unique = sorted({str(f) for f in findings})
    message = ("secret scan: a known secret appeared in the output of this test (its value is not shown):\n"
               + "\n".join(f"  {text}" for text in unique))
    report.user_properties.extend((_PROPERTY, text) for text in unique)
    if report.failed:
        report.sections.append(("secret scan", message))
    else:
        report.outcome = "failed"
        report.longrepr = message


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Runs in the controller (or the lone process): collects what the workers found.
    for name, value in report.user_properties:
        if name == _PROPERTY and value not in _reported:
            _reported.append(str(value))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", {})
    for text in output.get(_PROPERTY, []):
        _reported.append(str(text))
    _figures["secrets"] = max(_figures["secrets"], int(output.get(f"{_PROPERTY}-secrets", 0)))
    _figures["lines"] += int(output.get(f"{_PROPERTY}-lines", 0))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = [str(f) for f in SCAN.take()]
    left += [str(f) for findings in _carried.values() for f in findings]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports it
        workeroutput[_PROPERTY] = left
        workeroutput[f"{_PROPERTY}-secrets"] = len(SCAN.secrets)
        workeroutput[f"{_PROPERTY}-lines"] = SCAN.scanned_lines
        return
    _figures["secrets"] = max(_figures["secrets"], len(SCAN.secrets))
    _figures["lines"] += SCAN.scanned_lines
    _reported.extend(left)
    if _reported and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if getattr(terminalreporter.config, "workeroutput", None) is not None:
        return
    if _reported:
        terminalreporter.section("secret scan", sep="=", red=True, bold=True)
        for text in _reported:
            terminalreporter.line(f"LEAK {text}", red=True)
        terminalreporter.line(f"{len(_reported)} finding(s); the values are not shown. "
                              f"{_figures['secrets']} known secrets were looked for.")
    elif terminalreporter.verbosity >= 0:
        terminalreporter.line(f"secret scan: no known secret in any test's output ({_figures['secrets']} secrets "
                              f"looked for in {_figures['lines']} lines)")
