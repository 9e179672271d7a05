"""config.yaml: the shipped example, secrets from the environment, problems across files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketbridge.sync.config import (
    Config,
    MissingSecret,
    load_config,
    parse_duration,
    resolve_store_url,
    validate,
)
from ticketbridge.sync.yamlsource import ConfigError, Problem

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")

BASE = """\
trackers:
  zendesk:
    type: zendesk
    base_url: http://127.0.0.1:8801
    auth: {email_env: ZENDESK_EMAIL, token_env: ZENDESK_API_TOKEN}
  jira:
    type: jira
    base_url: http://127.0.0.1:8802/
    auth: {email_env: JIRA_EMAIL, token_env: JIRA_API_TOKEN}
flows:
  - mapping: mappings/zendesk-jira.yaml
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory with the shipped mapping and policy in mappings/, like a real deployment."""
    (tmp_path / "mappings").mkdir()
    shutil.copy(ROOT / "mappings" / "zendesk-jira.yaml", tmp_path / "mappings")
    shutil.copy(ROOT / "mappings" / "policy.yaml", tmp_path / "mappings")
    return tmp_path


def write(directory: Path, text: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def edit(text: str, old: str, new: str) -> str:
    assert old in text, f"test setup: {old!r} not in text"
    return text.replace(old, new, 1)


def errors(path: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert validate(path) == caught.value.problems
    return caught.value.problems


def only(problems: list[Problem]) -> str:
    assert len(problems) == 1, problems
    return str(problems[0])


# --- the shipped example -----------------------------------------------------------------------

def test_shipped_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETBRIDGE_STORE_URL", raising=False)
    assert validate(EXAMPLE) == []
    config = load_config(EXAMPLE, env={})
    assert isinstance(config, Config)
    assert config.store_url == f"sqlite:///{ROOT / 'ticketbridge.db'}"  # relative to the file
    assert set(config.trackers) == {"zendesk", "jira"}
    jira = config.trackers["jira"]
    assert (jira.type, jira.base_url, jira.poll_interval) == ("jira", "http://127.0.0.1:8802", 30.0)
    assert jira.statuses == ("To Do", "In Progress", "In Review", "Done")
    assert jira.priorities == ("Highest", "High", "Medium", "Low", "Lowest")
    assert config.trackers["zendesk"].statuses is None
    assert [f.name for f in config.flows] == ["zendesk-jira"]
    flow = config.flows[0]
    assert flow.mapping_path == ROOT / "mappings" / "zendesk-jira.yaml"
    assert len(flow.mapping.fields) == 4
    assert (config.lookback_seconds, config.batch_size, config.log_format) == (120.0, 100, "auto")


def test_defaults_and_store_url_override(site: Path) -> None:
    path = write(site, BASE)
    config = load_config(path, env={})
    assert config.store_url == f"sqlite:///{site.resolve() / 'ticketbridge.db'}"
    assert config.trackers["jira"].base_url == "http://127.0.0.1:8802"  # trailing slash dropped
    assert config.flows[0].name == "zendesk-jira"  # from the mapping
    assert config.lookback_seconds == 120.0 and config.batch_size == 100
    url = "postgresql+psycopg://tb@127.0.0.1:5432/ticketbridge"
    assert load_config(path, env={"TICKETBRIDGE_STORE_URL": url}).store_url == url


def test_store_url_resolution() -> None:
    base = Path("/srv/tb")
    assert resolve_store_url("sqlite:///data/tb.db", base) == "sqlite:////srv/tb/data/tb.db"
    assert resolve_store_url("sqlite:////var/tb.db", base) == "sqlite:////var/tb.db"
    assert resolve_store_url("sqlite:///:memory:", base) == "sqlite:///:memory:"
    assert resolve_store_url("postgresql+psycopg://u@h/db", base) == "postgresql+psycopg://u@h/db"


def test_durations() -> None:
    assert [parse_duration(v) for v in (30, 1.5, "30s", "2m", "1h", "500ms")] == [30, 1.5, 30, 120, 3600, 0.5]


# --- secrets -----------------------------------------------------------------------------------

def test_credentials_come_from_the_environment(site: Path) -> None:
    jira = load_config(write(site, BASE), env={}).trackers["jira"]
    assert jira.credentials({"JIRA_EMAIL": "a@example.com", "JIRA_API_TOKEN": "t0k"}) == ("a@example.com", "t0k")
    with pytest.raises(MissingSecret) as caught:
        jira.credentials({"JIRA_EMAIL": "a@example.com"})
    assert str(caught.value) == ("tracker 'jira': environment variable JIRA_API_TOKEN is not set; "
                                 "export it (see config.example.yaml)")
    assert (caught.value.tracker, caught.value.env_var) == ("jira", "JIRA_API_TOKEN")


def test_secret_looking_key_is_rejected_without_echoing_the_value(site: Path) -> None:
    text = edit(BASE, "token_env: JIRA_API_TOKEN}", "token_env: JIRA_API_TOKEN, token: s3cr3t-value}")
    path = write(site, text)
    message = only(errors(path))
    assert message == (f"{path}:9:62: trackers.jira.auth.token: secrets never go in YAML; "
                       "name an environment variable with token_env instead")
    assert "s3cr3t" not in message


@pytest.mark.parametrize("key", ["password", "api_key", "client_secret", "API_TOKEN"])
def test_secret_keys_anywhere(site: Path, key: str) -> None:
    path = write(site, BASE + f"sync:\n  {key}: hunter2\n")
    message = only(errors(path))
    assert message.startswith(f"{path}:13:3: sync.{key}: secrets never go in YAML")
    assert "hunter2" not in message


def test_token_pasted_into_token_env_is_not_echoed(site: Path) -> None:
    path = write(site, edit(BASE, "token_env: JIRA_API_TOKEN", "token_env: 'ATATT3x secret'"))
    message = only(errors(path))
    assert message == (f"{path}:9:46: trackers.jira.auth.token_env: must be the NAME of an environment "
                       "variable (like JIRA_API_TOKEN), not its value")


# --- problems, located -------------------------------------------------------------------------

def test_missing_mapping_file_is_reported_at_the_mapping_node(site: Path) -> None:
    path = write(site, edit(BASE, "mappings/zendesk-jira.yaml", "mappings/zendesk-jra.yaml"))
    assert only(errors(path)).startswith(f"{path}:11:14: flows[0].mapping: mapping file "
                                         "'mappings/zendesk-jra.yaml' not found")


def test_problems_from_the_config_and_its_mapping_are_collected(site: Path) -> None:
    mapping = site / "mappings" / "zendesk-jira.yaml"
    mapping.write_text(edit(mapping.read_text(), "right: summary", "right: sumary"))
    text = EXAMPLE_TEXT.replace("statuses: [To Do, In Progress, In Review, Done]",
                                "statuses: [To Do, In Progress, In Review, Blocked, Done]")
    problems = errors(write(site, text))
    assert [(p.file, p.line, p.column) for p in problems] == [(str(mapping), 49, 12), (str(mapping), 103, 7)]
    assert "unknown jira field 'sumary'" in str(problems[0])
    assert "unmapped status 'Blocked' (values.status.right_to_left)" in str(problems[1])


def test_mapping_naming_an_unknown_tracker(site: Path) -> None:
    path = write(site, edit(BASE, "  jira:\n", "  jira-cloud:\n"))
    problems = errors(path)
    assert str(problems[0]) == (f"{site / 'mappings' / 'zendesk-jira.yaml'}:10:8: right: no tracker named 'jira' "
                                "in config.yaml; known trackers: jira-cloud, zendesk")


def test_unknown_tracker_type_lists_allowed_types(site: Path) -> None:
    path = write(site, edit(BASE, "type: jira", "type: jira-server"))
    assert only(errors(path)) == (f"{path}:7:11: trackers.jira.type: 'jira-server' is not one of: zendesk, jira, "
                                  "github, clickup")


def test_missing_policy_file_is_named_with_its_position(site: Path) -> None:
    (site / "mappings" / "policy.yaml").unlink()
    problems = errors(write(site, EXAMPLE_TEXT))
    assert len(problems) == 1 and "policy file 'mappings/policy.yaml' not found" in str(problems[0])
    assert str(problems[0]).startswith(f"{site / 'config.yaml'}:")


def test_broken_policy_is_reported_through_the_config(site: Path) -> None:
    policy = site / "mappings" / "policy.yaml"
    policy.write_text(policy.read_text().replace("sev3: {business: 24h}", "sev3: {business: 24x}", 1))
    problems = errors(write(site, EXAMPLE_TEXT))
    assert len(problems) == 1 and str(problems[0]).startswith(f"{policy}:") and "24x" in str(problems[0])


def test_bad_duration_and_unknown_key(site: Path) -> None:
    path = write(site, BASE + "sync:\n  lookback: 2 minutes\n  batchsize: 10\n")
    assert [str(p) for p in errors(path)] == [
        f"{path}:13:13: sync.lookback: must be a number of seconds (30) or a duration like \"30s\", \"2m\", \"1h\"",
        f"{path}:14:3: sync.batchsize: unknown key 'batchsize'; did you mean 'batch_size'? "
        "allowed keys here: lookback, batch_size, concurrency",
    ]


def test_broken_config_yaml(site: Path) -> None:
    path = write(site, BASE + "log:\n  format: 'json\n")
    assert only(errors(path)).startswith(f"{path}:14:1: could not parse YAML: found unexpected end of stream")


def test_duplicate_flow_names(site: Path) -> None:
    path = write(site, BASE + "  - mapping: mappings/zendesk-jira.yaml\n")
    assert only(errors(path)) == (f"{path}:12:14: flows[1].mapping: flow name 'zendesk-jira' is already used "
                                  "by flows[0]; give each flow a unique name")


def test_missing_config_file(tmp_path: Path) -> None:
    assert only(validate(tmp_path / "config.yaml")).startswith(f"{tmp_path / 'config.yaml'}:1:1: cannot read file")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_config_loads_or_reports_located_problems(site: Path, data: st.DataObject) -> None:
    lines = EXAMPLE_TEXT.splitlines(keepends=True)
    i = data.draw(st.integers(0, len(lines) - 1))
    kind = data.draw(st.sampled_from(["delete", "duplicate", "replace", "swap"]))
    if kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "swap":
        j = data.draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        at = data.draw(st.integers(0, max(len(lines[i]) - 1, 0)))
        lines[i] = lines[i][:at] + data.draw(st.characters(blacklist_categories=("Cs",))) + lines[i][at + 1:]
    try:
        load_config(write(site, "".join(lines)), env={})
    except ConfigError as error:
        assert error.problems
        assert all(re.match(r"^.+:\d+:\d+: .+", str(p), re.DOTALL) for p in error.problems), error.problems


GITHUB = """\
  github:
    type: github
    base_url: https://api.github.com
    auth: {token_env: GITHUB_TOKEN}
    repos: [acme/app, acme/billing]
"""


def test_a_github_tracker_needs_only_a_token_and_its_repos(site: Path) -> None:
    config = load_config(write(site, edit(BASE, "flows:", GITHUB + "flows:")), env={})
    github = config.trackers["github"]
    assert (github.type, github.email_env, github.repos) == ("github", None, ("acme/app", "acme/billing"))
    assert github.credentials({"GITHUB_TOKEN": "ghp_x"}) == ("", "ghp_x")


def test_tracker_type_rules_the_schema_cannot_say(site: Path) -> None:
    no_repos = edit(GITHUB, "    repos: [acme/app, acme/billing]\n", "")
    path = write(site, edit(edit(BASE, "flows:", no_repos + "flows:"), "{email_env: JIRA_EMAIL, token_env",
                            "{token_env"))
    messages = [str(p) for p in errors(path)]
    assert messages == [f"{path}:9:11: trackers.jira.auth: a jira tracker needs email_env (the environment "
                        "variable holding the account email)",
                        f"{path}:11:5: trackers.github: a github tracker needs repos: [owner/repo, ...]"]
