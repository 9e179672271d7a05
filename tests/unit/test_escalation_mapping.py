"""Mapping options of escalation flows: `create: left_to_right: on_escalation`, `status_note`,
and the shipped zendesk-github.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketbridge.sync.mapping import load_mapping
from ticketbridge.sync.yamlsource import ConfigError

from .test_mapping import BASE, edit, only, write

ROOT = Path(__file__).resolve().parents[2]


def test_on_escalation_means_the_pass_never_creates(tmp_path: Path) -> None:
    text = edit(BASE, "fields:\n", "create:\n  left_to_right: on_escalation\n  right: {project: ENG, issuetype: Bug}\n"
                                    "fields:\n")
    mapping = load_mapping(write(tmp_path, text))
    assert mapping.create_on_escalation and not mapping.create_left_to_right
    plain = load_mapping(write(tmp_path, edit(text, "on_escalation", "true"), "plain.yaml"))
    assert plain.create_left_to_right and not plain.create_on_escalation


def test_a_wrong_create_mode_is_reported_at_its_position(tmp_path: Path) -> None:
    text = edit(BASE, "fields:\n", "create:\n  left_to_right: on_escalate\n  right: {project: ENG, issuetype: Bug}\n"
                                    "fields:\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert only(caught.value.problems) == (
        f"{path}:5:18: create.left_to_right: expected true, false or on_escalation")


def test_on_escalation_still_needs_the_fields_the_tracker_requires(tmp_path: Path) -> None:
    text = edit(BASE, "fields:\n", "create:\n  left_to_right: on_escalation\n  right: {project: ENG}\n"
                                    "fields:\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert only(caught.value.problems) == (f"{path}:6:10: create.right: jira needs issuetype to create an item; "
                                           "add issuetype: ... under create.right")


def test_status_note_is_a_boolean_of_right_to_left_comments(tmp_path: Path) -> None:
    text = BASE + "comments:\n  right_to_left: {as: internal, status_note: true}\n"
    assert load_mapping(write(tmp_path, text)).comments.status_note is True
    assert load_mapping(write(tmp_path, BASE, "off.yaml")).comments.status_note is False
    path = write(tmp_path, BASE + "comments:\n  right_to_left: {status_note: yes please}\n", "bad.yaml")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert only(caught.value.problems) == (
        f"{path}:17:32: comments.right_to_left.status_note: expected true or false, got text")


def test_shipped_github_mapping_is_an_escalation_flow() -> None:
    mapping = load_mapping(ROOT / "mappings" / "zendesk-github.yaml")
    assert (mapping.left, mapping.right, mapping.redact) == ("zendesk", "github", True)
    assert mapping.create_on_escalation and not mapping.create_left_to_right
    assert mapping.create_right == {"labels": ("from-support",)}
    assert mapping.comments.status_note and not mapping.comments.to_left_public
    assert not mapping.comments.public_to_right and not mapping.comments.internal_to_right
    body = next(p for p in mapping.fields if p.right == "body")
    assert body.template_right == "{value}\n\n---\nZendesk #{id}"  # E9: the ticket number only
    status = next(p for p in mapping.fields if p.left == "status")
    assert status.values is not None and status.values.lookup("closed", "right_to_left") == "solved"


def test_both_schema_copies_are_identical() -> None:
    shipped = (ROOT / "src" / "ticketbridge" / "schema" / "mapping.schema.json").read_text()
    assert (ROOT / "mappings" / "schema" / "mapping.schema.json").read_text() == shipped
