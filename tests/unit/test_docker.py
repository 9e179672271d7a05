"""docker/compose.yaml and docker/Dockerfile, checked without a Docker engine (none exists here):
the compose file parses, runs `ticketbridge run` against PostgreSQL with every variable the shipped
config reads, and offers the sandbox as an optional profile; the image runs as a non-root user with
a healthcheck and the right command."""

from __future__ import annotations

import http.server
import importlib.util
import json
import re
import shlex
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from ticketbridge.cli import build_parser
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import Config, load_config

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    return dict(services[name])


def environment(spec: dict[str, Any]) -> dict[str, str | None]:
    """Compose allows a list (`NAME=value`, or `NAME` to pass it through) or a mapping."""
    env = spec.get("environment") or {}
    if isinstance(env, list):
        return {entry.split("=", 1)[0]: (entry.split("=", 1)[1] if "=" in entry else None) for entry in env}
    return dict(env)


def env_names(config: Config) -> set[str]:
    """Every environment variable a config makes ticketbridge read."""
    names = {"TICKETBRIDGE_STORE_URL"}
    for tracker in config.trackers.values():
        names.update(n for n in (tracker.email_env, tracker.token_env) if n)
    if config.paging is not None:
        names.add(config.paging.routing_key_env)
    if config.webhooks is not None:
        names.update(route.secret_env for route in config.webhooks.routes)
    if config.policy is not None:
        names.add(str(config.policy.redaction.get("hash_key_env", "TICKETBRIDGE_REDACTION_KEY")))
    if config.status is not None:
        names.add(config.status.token_env)
    return names


def argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", joined, re.MULTILINE)]


def exec_form(arguments: str) -> list[str]:
    """The JSON (exec) form Docker recommends: a signal reaches ticketbridge, not a shell."""
    value = json.loads(arguments)
    assert isinstance(value, list)
    return [str(v) for v in value]


# -- compose.yaml ------------------------------------------------------------------------------------

def test_the_service_runs_ticketbridge_run_with_a_config_the_parser_accepts() -> None:
    spec = service("ticketbridge")
    command = argv(spec["command"])
    assert command[0] == "run" and "--config" in command
    assert build_parser().parse_args(command).command == "run"
    assert spec["build"]["dockerfile"] == "docker/Dockerfile" and (DOCKER / spec["build"]["context"]).resolve() == REPO


def test_the_service_uses_postgresql_and_waits_until_it_is_healthy() -> None:
    url = environment(service("ticketbridge"))["TICKETBRIDGE_STORE_URL"]
    assert url is not None and url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
    assert "${POSTGRES_PASSWORD" in url, "the password comes from the environment, never the file"
    postgres = service("postgres")
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(argv(postgres["healthcheck"]["test"]))
    assert "${POSTGRES_PASSWORD" in environment(postgres)["POSTGRES_PASSWORD"]  # type: ignore[operator]
    assert service("ticketbridge")["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert any(str(v).startswith("pgdata:") for v in postgres["volumes"]) and "pgdata" in compose()["volumes"]


def test_every_variable_the_example_config_reads_is_passed_through_and_none_has_a_value() -> None:
    wanted = env_names(load_config(REPO / "config.example.yaml"))
    assert {"ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "JIRA_EMAIL", "JIRA_API_TOKEN", "PAGERDUTY_ROUTING_KEY"} <= wanted
    for name in ("ticketbridge", "ticketbridge-sandbox"):
        env = environment(service(name))
        assert wanted <= env.keys(), f"{name} lacks {sorted(wanted - env.keys())}"
        # Secrets are only passed through (no value), or interpolated from the shell.
        for key, value in env.items():
            assert value is None or "${" in value, f"{name}: {key} has a literal value in compose.yaml"


def test_the_sandboxs_trackers_and_the_webhook_secrets_are_passed_too(tmp_path: Path) -> None:
    """A config with every tracker (as the sandbox writes it) and webhooks needs no other names."""
    with Sandbox(port=0) as sandbox:
        config_path = sandbox.write_config(
            tmp_path / "config.yaml", store_url="sqlite:///tb.db", mapping=REPO / "mappings" / "zendesk-jira.yaml",
            policy=REPO / "mappings" / "policy.yaml", escalation_mapping=REPO / "mappings" / "zendesk-github.yaml",
            clickup_mapping=REPO / "mappings" / "jira-clickup.yaml",
            webhooks={t: f"{t.upper()}_WEBHOOK_SECRET" for t in ("zendesk", "jira", "github", "clickup")})
        with config_path.open("a", encoding="utf-8") as file:
            file.write("status:\n  listen: 0.0.0.0:8950\n")
    wanted = env_names(load_config(config_path)) | set(sandbox.credentials())
    env = environment(service("ticketbridge"))
    assert wanted <= env.keys(), sorted(wanted - env.keys())


def test_ports_publish_the_webhook_receiver_the_status_page_and_the_sandbox_emulators() -> None:
    assert [str(p) for p in service("ticketbridge")["ports"]] == ["8900:8900", "8950:8950"]
    sandbox = service("sandbox")
    published = [str(p) for p in sandbox["ports"]]
    assert published == [f"{p}:{p}" for p in range(8801, 8806)]  # Zendesk, Jira, GitHub, PagerDuty, ClickUp
    command = argv(sandbox["command"])
    args = build_parser().parse_args(command)
    assert (args.command, args.host, args.port, args.seed) == ("sandbox", "0.0.0.0", 8801, True)


def test_the_sandbox_is_an_optional_profile_with_its_own_bridge() -> None:
    assert service("sandbox")["profiles"] == ["sandbox"]
    bridge = service("ticketbridge-sandbox")
    assert bridge["profiles"] == ["sandbox"]
    assert bridge["network_mode"] == "service:sandbox"  # config.example.yaml's 127.0.0.1 URLs reach the emulators
    assert build_parser().parse_args(argv(bridge["command"])).command == "run"
    assert any(str(v).startswith("../config.example.yaml:") for v in bridge["volumes"])
    assert "profiles" not in service("ticketbridge") and "profiles" not in service("postgres")


@pytest.mark.parametrize("name", ["ticketbridge", "ticketbridge-sandbox", "sandbox", "postgres"])
def test_every_service_has_a_healthcheck(name: str) -> None:
    test = argv(service(name)["healthcheck"]["test"])
    assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1


def test_config_and_mappings_are_mounted_read_only_from_files_that_exist() -> None:
    volumes = [str(v) for v in service("ticketbridge")["volumes"]]
    assert any(v.endswith(":/etc/ticketbridge/config.yaml:ro") for v in volumes)
    assert any(v.endswith(":/etc/ticketbridge/mappings:ro") for v in volumes)
    for volume in service("ticketbridge-sandbox")["volumes"]:
        assert (DOCKER / str(volume).split(":")[0]).exists(), volume


# -- Dockerfile --------------------------------------------------------------------------------------

def test_the_image_is_slim_python_311_and_installs_the_project_from_the_repo() -> None:
    instructions = dockerfile()
    assert all(args.split()[0] == "python:3.11-slim" for op, args in instructions if op == "FROM")
    assert any(op == "COPY" and args.split()[0] == "src" for op, args in instructions)
    assert any(op == "RUN" and re.search(r"pip install\b.* \.(\s|$)", args) for op, args in instructions)
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    for needed in ("pyproject.toml", "README.md", "src/", "mappings/", "config.example.yaml"):
        assert f"!{needed}" in ignore


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [args for op, args in dockerfile() if op == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_the_image_and_the_services_run_the_shipped_healthcheck_on_their_config() -> None:
    (check,) = [args for op, args in dockerfile() if op == "HEALTHCHECK"]
    command = exec_form(check[check.index("CMD") + 3:].strip())
    assert command == ["python", "/opt/ticketbridge/healthcheck.py", "/etc/ticketbridge/config.yaml"]
    assert any(op == "COPY" and args.split() == ["docker/healthcheck.py", "/opt/ticketbridge/healthcheck.py"]
               for op, args in dockerfile())
    for name in ("ticketbridge", "ticketbridge-sandbox"):
        assert argv(service(name)["healthcheck"]["test"]) == ["CMD", *command]


def test_the_image_runs_ticketbridge_run_by_default() -> None:
    instructions = dict(dockerfile())
    entrypoint, cmd = exec_form(instructions["ENTRYPOINT"]), exec_form(instructions["CMD"])
    assert entrypoint == ["ticketbridge"]
    assert build_parser().parse_args(cmd).command == "run"
    # The compose service gives its own command to the same entrypoint.
    assert argv(service("ticketbridge")["command"]) == cmd


# -- docker/healthcheck.py ---------------------------------------------------------------------------

def healthcheck_module() -> Any:
    spec = importlib.util.spec_from_file_location("tb_docker_healthcheck", DOCKER / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_file(tmp_path: Path, extra: str = "") -> Path:
    text = (REPO / "config.example.yaml").read_text(encoding="utf-8").replace("mappings/", f"{REPO}/mappings/")
    text = text.replace("url: sqlite:///ticketbridge.db", f"url: sqlite:///{tmp_path / 'tb.db'}")
    path = tmp_path / "config.yaml"
    path.write_text(text + extra, encoding="utf-8")
    return path


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_healthcheck_asks_healthz_where_the_status_section_says(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETBRIDGE_STORE_URL", raising=False)
    module = healthcheck_module()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:  # a wildcard bind is asked on loopback, from inside the container
        config = config_file(tmp_path, f"status:\n  listen: 0.0.0.0:{port}\n")
        assert module.main(["healthcheck.py", str(config)]) == 0
        assert f"healthy: http://127.0.0.1:{port}/healthz: 200" in capsys.readouterr().out
    finally:
        server.shutdown()
        server.server_close()
    assert module.main(["healthcheck.py", str(config)]) == 1  # the service is gone
    assert capsys.readouterr().out.startswith("unhealthy: ")
    assert module.healthz_url("::1", 8950) == "http://[::1]:8950/healthz"


def test_healthcheck_without_a_status_section_checks_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETBRIDGE_STORE_URL", raising=False)
    module = healthcheck_module()
    config = config_file(tmp_path)
    assert module.main(["healthcheck.py", str(config)]) == 0
    assert "healthy: sqlite:" in capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text("store: [\n", encoding="utf-8")
    assert module.main(["healthcheck.py", str(broken)]) == 1
    assert module.main(["healthcheck.py", str(tmp_path / "missing.yaml")]) == 1
