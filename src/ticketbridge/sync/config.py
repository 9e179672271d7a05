"""config.yaml: trackers, store, flows, SLA policy, paging. Loaded once, validated with every file it names.

Secrets never live in the file: a tracker names the environment variables that hold its email
and token, and ``TrackerConfig.credentials`` reads them when a connector needs them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cycles import describe, field_cycles
from .mapping import FlowMapping, check_mapping
from .policy.policy import Policy, check_policy
from .yamlsource import ConfigError, Problem, SourceDoc, load_schema, read_yaml, schema_problems

__all__ = [
    "Config", "ConfigError", "FlowConfig", "MissingSecret", "PagingConfig", "Problem", "StatusConfig", "TrackerConfig",
    "WebhookRoute", "WebhooksConfig", "load_config", "parse_duration", "resolve_store_url", "validate",
]

STORE_URL_ENV = "TICKETBRIDGE_STORE_URL"
DEFAULT_STORE_URL = "sqlite:///ticketbridge.db"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class MissingSecret(Exception):
    """A tracker's credential environment variable is not set (the value is never shown)."""

    def __init__(self, tracker: str, env_var: str) -> None:
        self.tracker, self.env_var = tracker, env_var
        super().__init__(f"tracker '{tracker}': environment variable {env_var} is not set; "
                         "export it (see config.example.yaml)")


@dataclass(frozen=True)
class TrackerConfig:
    name: str
    type: str
    base_url: str
    email_env: str | None  # None where the token alone authenticates (GitHub)
    token_env: str
    poll_interval: float
    statuses: tuple[str, ...] | None = None
    priorities: tuple[str, ...] | None = None
    repos: tuple[str, ...] = ()  # GitHub: owner/repo
    lists: tuple[str, ...] = ()  # ClickUp: list ids (`list_id: X` or `lists: [X, Y]` in the file)
    marker_field: str | None = None  # ClickUp: id of the text custom field that holds our marker

    def credentials(self, env: Mapping[str, str] = os.environ) -> tuple[str, str]:
        """(email or "", token) read from the environment now; raises MissingSecret."""
        values = []
        for var in (self.email_env, self.token_env):
            value = env.get(var) if var else ""
            if var and not value:
                raise MissingSecret(self.name, var)
            values.append(value or "")
        return values[0], values[1]


@dataclass(frozen=True)
class FlowConfig:
    name: str
    mapping_path: Path
    mapping: FlowMapping


@dataclass(frozen=True)
class PagingConfig:
    """PagerDuty Events API v2 for escalation `page` actions; the routing key stays in the environment."""

    events_url: str
    routing_key_env: str
    source: str = "ticketbridge"

    def routing_key(self, env: Mapping[str, str] = os.environ) -> str:
        """The integration key, read now; raises MissingSecret (naming the variable, never a value)."""
        value = env.get(self.routing_key_env)
        if not value:
            raise MissingSecret("paging", self.routing_key_env)
        return value


DEFAULT_EVENTS_URL = "https://events.pagerduty.com"


@dataclass(frozen=True)
class WebhookRoute:
    """One tracker's webhook route; the signing secret stays in the environment variable named here."""

    tracker: str  # the tracker's name under `trackers:`
    type: str  # its type: zendesk | jira | github | clickup
    path: str
    secret_env: str

    def secret(self, env: Mapping[str, str] = os.environ) -> str:
        """The signing secret, read now; raises MissingSecret (naming the variable, never a value)."""
        value = env.get(self.secret_env)
        if not value:
            raise MissingSecret(f"webhooks.{self.tracker}", self.secret_env)
        return value


@dataclass(frozen=True)
class WebhooksConfig:
    """`webhooks:`: the receiver `ticketbridge run` starts next to the polling loop."""

    host: str
    port: int
    routes: tuple[WebhookRoute, ...]
    max_body_bytes: int = 1024 * 1024
    tolerance: float = 300.0  # Zendesk signature timestamp freshness, seconds either way


DEFAULT_WEBHOOKS_LISTEN = "127.0.0.1:8900"


@dataclass(frozen=True)
class StatusConfig:
    """`status:`: the status page and /metrics `ticketbridge run` serves (ticketbridge.web). The
    token is read from `token_env` only when the page binds beyond loopback (web.server checks)."""

    host: str
    port: int
    token_env: str = "TICKETBRIDGE_STATUS_TOKEN"


DEFAULT_STATUS_LISTEN = "127.0.0.1:8950"
# Items synced side by side: each waits on several round trips, so a few threads keep the link
# busy; more only queue behind the trackers' rate limits.
DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True)
class Config:
    path: Path
    store_url: str
    trackers: dict[str, TrackerConfig]
    flows: tuple[FlowConfig, ...]
    lookback_seconds: float
    batch_size: int
    log_format: str
    concurrency: int = DEFAULT_CONCURRENCY
    policy: Policy | None = None
    paging: PagingConfig | None = None
    webhooks: WebhooksConfig | None = None
    status: StatusConfig | None = None


def parse_duration(value: float | int | str) -> float:
    """Seconds from 30, 1.5, "30s", "2m", "1h", "500ms" (the schema has checked the form)."""
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value.strip())
    if not match:
        raise ValueError(f"not a duration: {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def resolve_store_url(url: str, base_dir: Path) -> str:
    """A relative SQLite path is relative to the config file, not to wherever we were started."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    rest = url[len(prefix):]
    if not rest or rest.startswith((":memory:", "/")) or rest.startswith("file:"):
        return url
    return prefix + str((base_dir / rest).resolve())


def load_config(path: str | Path, *, env: Mapping[str, str] = os.environ) -> Config:
    """Load config.yaml and every mapping it names; raises ConfigError with all problems."""
    config, problems = _check_config(Path(path), env)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def validate(path: str | Path) -> list[Problem]:
    """Every problem in a config and its mappings; [] when all is valid (CLI: exit 2 otherwise)."""
    return _check_config(Path(path), os.environ)[1]


def _trackers(data: Mapping[str, Any]) -> dict[str, TrackerConfig]:
    trackers = {}
    for name, spec in data.get("trackers", {}).items():
        statuses, priorities = spec.get("statuses"), spec.get("priorities")
        trackers[name] = TrackerConfig(
            name=name, type=spec["type"], base_url=spec["base_url"].rstrip("/"),
            email_env=spec["auth"].get("email_env"), token_env=spec["auth"]["token_env"],
            poll_interval=parse_duration(spec.get("poll_interval", 30)),
            statuses=tuple(statuses) if statuses is not None else None,
            priorities=tuple(priorities) if priorities is not None else None,
            repos=tuple(spec.get("repos") or ()),
            # List ids are numbers; YAML reads an unquoted one as an int, so text them here.
            lists=tuple(str(v) for v in ([spec["list_id"]] if "list_id" in spec else spec.get("lists") or ())),
            marker_field=spec.get("marker_field"),
        )
    return trackers


# Token shapes of the trackers we talk to (GitHub classic and fine-grained, ClickUp personal, Slack-style)
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "pk_", "xoxb-", "xoxp-", "sk_live_")


def looks_like_a_secret(name: str) -> bool:
    """Whether an `*_env` value is more likely a pasted token than the name of a variable: a token's
    prefix, or a long run with many digits or with lower case, upper case and digits mixed. (Such a
    value must never be echoed: `validate` and "variable X is not set" would print the token.)"""
    if name.startswith(_TOKEN_PREFIXES):
        return True
    if len(name) < 20:
        return False
    digits = sum(c.isdigit() for c in name)
    mixed = any(c.islower() for c in name) and any(c.isupper() for c in name) and digits > 0
    return digits >= 6 or mixed


def _env_name_problems(doc: SourceDoc) -> list[Problem]:
    """`*_env` values that look like the secret itself rather than the variable holding it."""
    data = doc.data
    places: list[tuple[tuple[str | int, ...], Any]] = []
    for name, spec in data.get("trackers", {}).items():
        places += [(("trackers", name, "auth", key), spec["auth"].get(key)) for key in ("email_env", "token_env")]
    for name, route in (data.get("webhooks") or {}).get("trackers", {}).items():
        places.append((("webhooks", "trackers", name, "secret_env"), route.get("secret_env")))
    if isinstance(data.get("paging"), dict):
        places.append((("paging", "routing_key_env"), data["paging"].get("routing_key_env")))
    return [doc.problem(path, "this looks like a secret itself, not the NAME of an environment variable; put the "
                              "secret in a variable (like JIRA_API_TOKEN) and name that here (the value is not shown)")
            for path, value in places if isinstance(value, str) and looks_like_a_secret(value)]


def _tracker_problems(doc: SourceDoc) -> list[Problem]:
    """What the schema cannot say: which tracker types need an email, which need repos."""
    problems = _env_name_problems(doc)
    for name, spec in doc.data.get("trackers", {}).items():
        if spec["type"] in ("zendesk", "jira") and "email_env" not in spec["auth"]:
            problems.append(doc.problem(("trackers", name, "auth"), f"a {spec['type']} tracker needs email_env "
                                        "(the environment variable holding the account email)"))
        if spec["type"] == "github" and not spec.get("repos"):
            problems.append(doc.problem(("trackers", name), "a github tracker needs repos: [owner/repo, ...]"))
        if spec["type"] != "github" and "repos" in spec:
            problems.append(doc.problem(("trackers", name, "repos"), "repos applies to github trackers only",
                                        key=True))
        problems += _clickup_problems(doc, name, spec)
    return problems


def _clickup_problems(doc: SourceDoc, name: str, spec: Mapping[str, Any]) -> list[Problem]:
    if spec["type"] != "clickup":
        return [doc.problem(("trackers", name, key), f"{key} applies to clickup trackers only", key=True)
                for key in ("list_id", "lists", "marker_field") if key in spec]
    if "list_id" in spec and "lists" in spec:
        return [doc.problem(("trackers", name, "lists"), "give either list_id or lists, not both", key=True)]
    if "list_id" not in spec and not spec.get("lists"):
        return [doc.problem(("trackers", name), "a clickup tracker needs list_id: <list id> "
                                                "(or lists: [<list id>, ...])")]
    return []


def _check_config(path: Path, env: Mapping[str, str]) -> tuple[Config | None, list[Problem]]:
    doc, problems = read_yaml(path)
    if problems and doc.data is None:  # unparseable: nothing to check further
        return None, problems
    problems += schema_problems(doc, load_schema("config.schema.json"))
    if problems:
        # Tracker entries may be malformed, so mapping checks against them would mislead;
        # still report a missing mapping file, which is independent of the rest.
        return None, problems + _missing_mappings(doc, path.parent)
    data: dict[str, Any] = doc.data
    problems += _tracker_problems(doc) + _webhook_problems(doc)
    if problems:
        return None, problems
    trackers = _trackers(data)
    flows, mapping_problems = _flows(doc, path.parent, trackers)
    problems += mapping_problems or _cycle_problems(doc, flows)
    policy = None
    if "sla" in data:
        policy_path = path.parent / data["sla"]["policy"]
        if not policy_path.is_file():
            problems.append(doc.problem(("sla", "policy"), f"policy file '{data['sla']['policy']}' not found "
                                        f"(looked in {path.parent}); paths are relative to the config file"))
        else:
            # Escalation actions name flows; they are checked against this config's flows, unless a
            # mapping failed to load (its flow's name is then unknown, and the report would mislead).
            names = None if mapping_problems else [f.name for f in flows]
            policy, policy_problems = check_policy(policy_path, flows=names)
            problems += policy_problems
    if problems:
        return None, problems
    store_url = env.get(STORE_URL_ENV) or resolve_store_url(
        data.get("store", {}).get("url", DEFAULT_STORE_URL), path.parent)
    sync = data.get("sync", {})
    return Config(
        path=path, store_url=store_url, trackers=trackers, flows=tuple(flows),
        lookback_seconds=parse_duration(sync.get("lookback", 120)),
        batch_size=sync.get("batch_size", 100),
        concurrency=sync.get("concurrency", DEFAULT_CONCURRENCY),
        log_format=data.get("log", {}).get("format", "auto"),
        policy=policy,
        paging=_paging(data.get("paging")),
        webhooks=_webhooks(data.get("webhooks"), trackers),
        status=_status(data.get("status")),
    ), []


def _cycle_problems(doc: SourceDoc, flows: list[FlowConfig]) -> list[Problem]:
    """A field that could travel around a ring of flows back to itself (see sync/cycles.py),
    reported at the first flow of the ring."""
    index = {flow.name: i for i, flow in enumerate(flows)}
    return [doc.problem(("flows", index[cycle[0].flow]),
                        f"field cycle: {describe(cycle)}: a change could travel around it back to where it "
                        "came from; make one of these pairs one-way (direction) or remove it")
            for cycle in field_cycles((flow.name, flow.mapping) for flow in flows)]


def _paging(spec: Mapping[str, Any] | None) -> PagingConfig | None:
    if spec is None:
        return None
    return PagingConfig(events_url=str(spec.get("events_url", DEFAULT_EVENTS_URL)).rstrip("/"),
                        routing_key_env=spec["routing_key_env"], source=spec.get("source", "ticketbridge"))


def _webhook_problems(doc: SourceDoc) -> list[Problem]:
    """Routes name configured trackers, and no two share a path."""
    spec = doc.data.get("webhooks")
    if spec is None:
        return []
    problems = []
    trackers = doc.data.get("trackers", {})
    seen: dict[str, str] = {}
    for name, route in spec["trackers"].items():
        if name not in trackers:
            problems.append(doc.problem(("webhooks", "trackers", name), f"no tracker named '{name}' under "
                                        f"trackers:; known: {', '.join(trackers) or '(none)'}", key=True))
            continue
        path = route.get("path", f"/hooks/{name}")
        if path in seen:
            problems.append(doc.problem(("webhooks", "trackers", name), f"path {path} is already the route of "
                                        f"'{seen[path]}'; give each tracker its own path"))
        seen[path] = name
    port = int(str(spec.get("listen", DEFAULT_WEBHOOKS_LISTEN)).rsplit(":", 1)[1])
    if port > 65535:
        problems.append(doc.problem(("webhooks", "listen"), f"port {port} is out of range (0..65535)"))
    return problems


def _webhooks(spec: Mapping[str, Any] | None, trackers: Mapping[str, TrackerConfig]) -> WebhooksConfig | None:
    if spec is None:
        return None
    host, port = str(spec.get("listen", DEFAULT_WEBHOOKS_LISTEN)).rsplit(":", 1)
    routes = tuple(WebhookRoute(tracker=name, type=trackers[name].type, path=route.get("path", f"/hooks/{name}"),
                                secret_env=route["secret_env"])
                   for name, route in spec["trackers"].items())
    return WebhooksConfig(host=host.strip("[]"), port=int(port), routes=routes,
                          max_body_bytes=int(spec.get("max_body_bytes", 1024 * 1024)),
                          tolerance=parse_duration(spec.get("tolerance", 300)))


def _status(spec: Mapping[str, Any] | None) -> StatusConfig | None:
    if spec is None:
        return None
    host, port = str(spec.get("listen", DEFAULT_STATUS_LISTEN)).rsplit(":", 1)
    return StatusConfig(host=host.strip("[]"), port=int(port),
                        token_env=str(spec.get("token_env", "TICKETBRIDGE_STATUS_TOKEN")))


def _mapping_path(base_dir: Path, relative: str) -> Path:
    return base_dir / relative


def _missing_mappings(doc: SourceDoc, base_dir: Path) -> list[Problem]:
    problems: list[Problem] = []
    flows = doc.data.get("flows") if isinstance(doc.data, dict) else None
    for i, flow in enumerate(flows if isinstance(flows, list) else []):
        rel = flow.get("mapping") if isinstance(flow, dict) else None
        if isinstance(rel, str) and rel and not _mapping_path(base_dir, rel).is_file():
            problems.append(_not_found(doc, i, rel, base_dir))
    return problems


def _not_found(doc: SourceDoc, index: int, rel: str, base_dir: Path) -> Problem:
    return doc.problem(("flows", index, "mapping"),
                       f"mapping file '{rel}' not found (looked in {base_dir}); "
                       "paths are relative to the config file's directory")


def _flows(doc: SourceDoc, base_dir: Path, trackers: Mapping[str, TrackerConfig],
           ) -> tuple[list[FlowConfig], list[Problem]]:
    flows: list[FlowConfig] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, flow in enumerate(doc.data["flows"]):
        mapping_path = _mapping_path(base_dir, flow["mapping"])
        if not mapping_path.is_file():
            problems.append(_not_found(doc, i, flow["mapping"], base_dir))
            continue
        mapping, found = check_mapping(mapping_path, trackers=trackers)
        problems += found
        if mapping is None:
            continue
        name = flow.get("name", mapping.name)
        if name in seen:
            where = ("flows", i, "name") if "name" in flow else ("flows", i, "mapping")
            problems.append(doc.problem(where, f"flow name '{name}' is already used by flows[{seen[name]}]; "
                                               "give each flow a unique name"))
            continue
        seen[name] = i
        flows.append(FlowConfig(name=name, mapping_path=mapping_path, mapping=mapping))
    return flows, problems
