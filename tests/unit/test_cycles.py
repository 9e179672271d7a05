"""`ticketbridge validate` rejects flows that could carry a field around a ring back to itself,
and accepts chains (Zendesk -> Jira -> GitHub) and one flow's two-way pairs."""

from __future__ import annotations

from pathlib import Path

from ticketbridge.sync.config import validate

ROOT = Path(__file__).resolve().parents[2]
TRACKERS = """\
trackers:
  zendesk: {type: zendesk, base_url: "http://127.0.0.1:1", auth: {email_env: ZE, token_env: ZT}}
  jira: {type: jira, base_url: "http://127.0.0.1:2", auth: {email_env: JE, token_env: JT}}
  github: {type: github, base_url: "http://127.0.0.1:3", auth: {token_env: GT}, repos: [acme/app]}
flows:
"""
MAPPING = """\
version: 1
name: {name}
left: {left}
right: {right}
create: {{left_to_right: false, right_to_left: false}}
fields:
{fields}
"""


def pair(left: str, right: str, direction: str) -> str:
    return f"  - {{left: {left}, right: {right}, direction: {direction}}}"


def config(tmp_path: Path, flows: dict[str, tuple[str, str, list[str]]], *, shipped: tuple[str, ...] = ()) -> Path:
    """A config of the shipped mappings named in `shipped` plus mappings written from `flows`."""
    entries = [f"  - name: {name}\n    mapping: {ROOT / 'mappings' / (name + '.yaml')}" for name in shipped]
    for name, (left, right, fields) in flows.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(MAPPING.format(name=name, left=left, right=right, fields="\n".join(fields)))
        entries.append(f"  - name: {name}\n    mapping: {path}")
    path = tmp_path / "config.yaml"
    path.write_text(TRACKERS + "\n".join(entries) + "\n")
    return path


def test_a_ring_of_three_flows_is_rejected_and_named(tmp_path: Path) -> None:
    path = config(tmp_path, {"jira-github": ("jira", "github", [pair("summary", "title", "both")])},
                  shipped=("zendesk-jira", "zendesk-github"))
    problems = [str(p) for p in validate(path)]
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:")
    assert ("field cycle: github.title -> jira.summary (jira-github) -> zendesk.subject (zendesk-jira) -> "
            "github.title (zendesk-github)") in problems[0]


def test_a_chain_is_not_a_cycle(tmp_path: Path) -> None:
    path = config(tmp_path, {"jira-github": ("jira", "github", [pair("summary", "title", "both"),
                                                                 pair("status", "state", "both")])},
                  shipped=("zendesk-jira",))
    assert validate(path) == []


def test_a_one_way_pair_breaks_the_ring(tmp_path: Path) -> None:
    # jira -> github only: nothing leads from github.title back to jira.summary any more.
    path = config(tmp_path, {"jira-github": ("jira", "github", [pair("summary", "title", "left_to_right")])},
                  shipped=("zendesk-jira", "zendesk-github"))
    assert validate(path) == []


def test_two_flows_joining_the_same_fields_are_a_cycle(tmp_path: Path) -> None:
    path = config(tmp_path, {
        "jira-github": ("jira", "github", [pair("summary", "title", "left_to_right")]),
        "github-jira": ("github", "jira", [pair("title", "summary", "left_to_right")])})
    problems = [str(p) for p in validate(path)]
    assert len(problems) == 1 and "github.title -> jira.summary (github-jira) -> github.title (jira-github)" in (
        problems[0])


def test_one_flows_two_way_pair_is_not_a_cycle(tmp_path: Path) -> None:
    path = config(tmp_path, {"jira-github": ("jira", "github", [pair("summary", "title", "both")])})
    assert validate(path) == []
