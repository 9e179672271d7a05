"""Mapping files: the shipped example, every class of admin mistake, templates, robustness."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketbridge.sync.mapping import (
    MISSING,
    FlowMapping,
    UnmappedValue,
    ValueTable,
    check_mapping,
    load_mapping,
    render_template,
    strip_template,
)
from ticketbridge.sync.yamlsource import ConfigError, Problem

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "mappings" / "zendesk-jira.yaml"

# A small valid mapping; tests change one line and assert the exact position reported.
BASE = """\
version: 1
left: zendesk
right: jira
fields:
  - name: title
    left: subject
    right: summary
  - left: status
    right: status
    direction: both
    values: status
values:
  status:
    left_to_right: {new: To Do, open: In Progress, pending: In Progress, hold: In Progress, solved: Done, closed: Done}
    right_to_left: {To Do: open, Done: solved}
"""


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edit(text: str, old: str, new: str) -> str:
    assert old in text, f"test setup: {old!r} not in text"
    return text.replace(old, new, 1)


def errors(path: Path, **kwargs: object) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_mapping(path, **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)
    return caught.value.problems


def only(problems: list[Problem]) -> str:
    assert len(problems) == 1, problems
    return str(problems[0])


def jira(statuses: tuple[str, ...] | None = None, priorities: tuple[str, ...] | None = None) -> object:
    return SimpleNamespace(type="jira", statuses=statuses, priorities=priorities)


ZENDESK = SimpleNamespace(type="zendesk", statuses=None, priorities=None)


# --- the shipped example -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def example() -> FlowMapping:
    return load_mapping(EXAMPLE)


def test_shipped_mapping_loads_into_frozen_values(example: FlowMapping) -> None:
    assert example.name == "zendesk-jira"
    assert (example.left, example.right) == ("zendesk", "jira")
    assert [p.name for p in example.fields] == ["title", "description", "priority", "status"]
    title, description, priority, status = example.fields
    assert (title.left, title.right, title.conflict) == ("subject", "summary", "newest")
    assert title.template_right == "[ZD {key}] {value}" and title.template_left is None
    assert description.flows("left_to_right") and not description.flows("right_to_left")
    assert priority.conflict == "owner:left" and status.conflict == "owner:right"
    assert example.select_left["tags_none"] == ("no_jira",)
    assert example.select_right == {"jql": "project = ENG"}
    assert example.create_left_to_right and not example.create_right_to_left
    assert example.create_right["issuetype"] == "Bug"
    assert example.comments.public_to_right and not example.comments.internal_to_right
    assert example.comments.to_left and not example.comments.to_left_public
    with pytest.raises(AttributeError):
        example.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        example.create_right["project"] = "OPS"  # type: ignore[index]


def test_shipped_mapping_passes_checks_with_the_example_jira_workflow() -> None:
    trackers = {"zendesk": ZENDESK, "jira": jira(("To Do", "In Progress", "In Review", "Done"),
                                                ("Highest", "High", "Medium", "Low", "Lowest"))}
    assert check_mapping(EXAMPLE, trackers=trackers)[1] == []  # type: ignore[arg-type]


def test_priority_table_maps_both_ways_and_uses_its_default(example: FlowMapping) -> None:
    table = example.fields[2].values
    assert table is not None
    assert table.lookup("urgent", "left_to_right") == "Highest"
    assert table.lookup("Lowest", "right_to_left") == "low"
    assert table.default_right_to_left == "normal" and table.default_left_to_right is MISSING
    assert table.lookup("Blocker", "right_to_left") == "normal"  # not in the table: the default
    assert table.lookup(None, "left_to_right") is None
    assert table.lookup(["high", "low"], "left_to_right") == ("High", "Low")


def test_unmapped_value_without_default_names_table_tracker_and_file(example: FlowMapping) -> None:
    table = example.fields[3].values
    assert table is not None
    with pytest.raises(UnmappedValue) as caught:
        table.lookup("Blocked", "right_to_left")
    assert str(caught.value) == (f"status value 'Blocked' from jira has no entry in values.status.right_to_left "
                                 f"and no default; add it to {EXAMPLE}")
    with pytest.raises(UnmappedValue, match="'deleted' from zendesk"):
        table.lookup("deleted", "left_to_right")


def test_value_table_matches_numbers_against_text_keys() -> None:
    table = ValueTable("env", {"1": "production"}, {})
    assert table.lookup(1, "left_to_right") == "production"


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    assert load_mapping(write(tmp_path, BASE, "support-eng.yaml")).name == "support-eng"


# --- admin mistakes: exact file:line:column, the problem and the fix ----------------------------

def test_unknown_field_lists_allowed_names(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "    right: summary\n", "    right: sumary\n"))
    message = only(errors(path))
    assert message.startswith(f"{path}:7:12: fields[0].right: unknown jira field 'sumary'; allowed: summary, ")
    assert "customfield_<id>" in message


def test_unknown_zendesk_custom_field_form(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "    left: subject\n", "    left: custom_fields.product\n"))
    assert only(errors(path)).startswith(f"{path}:6:11: fields[0].left: unknown zendesk field 'custom_fields.product'")
    ok = write(tmp_path, edit(BASE, "    left: subject\n", "    left: custom_fields.360001\n"), "ok.yaml")
    assert load_mapping(ok).fields[0].left == "custom_fields.360001"


def test_unmapped_zendesk_status(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, " hold: In Progress,", ""))
    assert only(errors(path)) == (f"{path}:14:20: values.status.left_to_right: unmapped status 'hold' "
                                  "(values.status.left_to_right); add an entry or a default")


def test_status_default_covers_missing_entries(tmp_path: Path) -> None:
    text = edit(BASE, " hold: In Progress,", "") + "    default: {left_to_right: In Progress}\n"
    assert load_mapping(write(tmp_path, text)).fields[1].values.lookup("hold", "left_to_right") == "In Progress"  # type: ignore[union-attr]


def test_unmapped_jira_status_from_config_workflow(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    trackers = {"zendesk": ZENDESK, "jira": jira(("To Do", "In Progress", "Done"))}
    assert only(errors(path, trackers=trackers)) == (
        f"{path}:15:20: values.status.right_to_left: unmapped status 'In Progress' "
        "(values.status.right_to_left); add an entry or a default")
    # Unknown Jira workflow: nothing to check against.
    assert check_mapping(path, trackers={"zendesk": ZENDESK, "jira": jira()})[1] == []  # type: ignore[dict-item]


def test_table_values_must_exist_on_the_target_tracker(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "solved: Done,", "solved: Closed,"))
    trackers = {"zendesk": ZENDESK, "jira": jira(("To Do", "In Progress", "Done"))}
    problems = errors(path, trackers=trackers)
    assert str(problems[0]) == (f"{path}:14:101: values.status.left_to_right.solved: 'Closed' is not a jira "
                                "status; allowed: To Do, In Progress, Done")


def test_creating_jira_issues_needs_project_and_issuetype(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "fields:\n", "create:\n  left_to_right: true\n  right: {project: ENG}\n"
                                                "fields:\n"))
    assert only(errors(path)) == (f"{path}:6:10: create.right: jira needs issuetype to create an item; "
                                  "add issuetype: ... under create.right")
    text = edit(BASE, "fields:\n", "create:\n  left_to_right: true\n  right: {project: ENG, issuetype: Bug}\n"
                                    "fields:\n")
    assert load_mapping(write(tmp_path, text, "ok.yaml")).create_right == {"project": "ENG", "issuetype": "Bug"}


def test_duplicate_keys_are_reported_with_other_problems(tmp_path: Path) -> None:
    text = edit(BASE, "right: jira\n", "right: jira\nleft: jira\n")
    text = edit(text, "direction: both", "direction: sideways")
    assert [(p.line, p.column) for p in errors(write(tmp_path, text))] == [(4, 1), (11, 16)]


def test_unmapped_zendesk_priority(tmp_path: Path) -> None:
    text = BASE + "  priority:\n    left_to_right: {urgent: Highest, high: High, low: Low}\n" \
                  "    right_to_left: {Highest: urgent}\n    default: {right_to_left: normal}\n"
    text = edit(text, "  - left: status\n", "  - left: priority\n    right: priority\n    values: priority\n"
                                            "  - left: status\n")
    path = write(tmp_path, text)
    assert only(errors(path)) == (f"{path}:20:20: values.priority.left_to_right: unmapped priority 'normal' "
                                  "(values.priority.left_to_right); add an entry or a default")


def test_one_way_pair_needs_only_that_direction(tmp_path: Path) -> None:
    text = edit(BASE, "    direction: both\n", "    direction: right_to_left\n")
    text = edit(text, " hold: In Progress,", "")
    assert load_mapping(write(tmp_path, text)).fields[1].direction == "right_to_left"


def test_bad_direction_lists_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "direction: both", "direction: sideways"))
    assert only(errors(path)) == (f"{path}:10:16: fields[1].direction: 'sideways' is not one of: "
                                  "both, left_to_right, right_to_left")


def test_bad_conflict_lists_allowed_forms(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "    values: status\n", "    values: status\n    conflict: {owner: lft}\n"))
    assert only(errors(path)) == (f"{path}:12:15: fields[1].conflict: conflict must be one of: newest, "
                                  "{owner: left}, {owner: right}")


def test_broken_indentation_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "    left: subject\n", "   left: subject\n"))
    message = only(errors(path))
    assert message.startswith(f"{path}:6:4: could not parse YAML: expected <block end>")


def test_unclosed_quote(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "right: jira\n", 'right: "jira\n'))
    message = only(errors(path))
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: could not parse YAML: ", message), message
    assert "quoted scalar" in message


def test_unknown_key_is_reported_at_the_key_with_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "    right: summary\n", "    right: summary\n    diretcion: both\n"))
    assert only(errors(path)) == (f"{path}:8:5: fields[0].diretcion: unknown key 'diretcion'; did you mean "
                                  "'direction'? allowed keys here: name, left, right, direction, conflict, "
                                  "values, template")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "comment:\n  public: true\n")
    message = only(errors(path))
    assert message.startswith(f"{path}:16:1: comment: unknown key 'comment'; did you mean 'comments'?")


def test_missing_values_table(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "    values: status\n", "    values: state\n"))
    assert only(errors(path)) == (f"{path}:11:13: fields[1].values: values table 'state' is not defined "
                                  "under values: (defined: status); add it or fix the name")


def test_native_field_used_by_two_pairs(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "values:\n", "  - name: state\n    left: status\n"
                                                  "    right: customfield_10046\nvalues:\n"))
    assert only(errors(path)) == (f"{path}:13:11: fields[2].left: field 'status' on zendesk is used by pairs "
                                  "'status' and 'state'; keep one pair with direction: both")


def test_duplicate_pair_name(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "  - left: status\n", "  - name: title\n    left: status\n"))
    assert only(errors(path)).startswith(f"{path}:8:11: fields[1].name: pair name 'title' is already used")


def test_template_placeholders_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "    right: summary\n", "    right: summary\n    template:\n"
                                                             "      right: \"[ZD {ticket}] {value}\"\n"))
    assert only(errors(path)).startswith(f"{path}:9:14: fields[0].template.right: bad template: "
                                         "unknown placeholder {ticket}; placeholders are {value} {key} {id} {url}")


def test_trackers_must_exist_and_differ(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "right: jira\n", "right: zendesk\n"))
    problems = errors(path, trackers={"zendesk": ZENDESK})
    assert str(problems[0]) == (f"{path}:3:8: right: left and right are both 'zendesk'; "
                                "a flow joins two different trackers")
    path = write(tmp_path, BASE, "other.yaml")
    assert only(errors(path, trackers={"zendesk": ZENDESK, "jira2": jira()})) == (
        f"{path}:3:8: right: no tracker named 'jira' in config.yaml; known trackers: jira2, zendesk")


def test_all_problems_of_a_file_are_collected(tmp_path: Path) -> None:
    text = edit(BASE, "direction: both", "direction: sideways")
    text = edit(text, "    right: summary\n", "    right: sumary\n")
    text = edit(text, "version: 1\n", "version: 1\nextra: 1\n")
    positions = [(p.line, p.column) for p in errors(write(tmp_path, text))]
    assert positions == [(2, 1), (8, 12), (11, 16)]


def test_missing_required_keys_and_wrong_types(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nleft: zendesk\nfields: {}\n")
    messages = [str(p) for p in errors(path)]
    assert f"{path}:1:1: (document): missing required key 'right'; add it here" in messages
    assert f"{path}:3:9: fields: expected a list, got a mapping" in messages


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    assert only(errors(path)) == f"{path}:1:1: (document): expected a mapping (key: value lines), got nothing"


def test_missing_file(tmp_path: Path) -> None:
    assert only(errors(tmp_path / "nope.yaml")).startswith(f"{tmp_path / 'nope.yaml'}:1:1: cannot read file")


# --- templates ----------------------------------------------------------------------------------

def test_render_and_strip_template() -> None:
    template = "{value}\n\n---\nZendesk ticket {key}: {url}"
    text = render_template(template, "It broke", key="#12", id="12", url="https://zd/12")
    assert text == "It broke\n\n---\nZendesk ticket #12: https://zd/12"
    assert strip_template(template, text, key="#12", id="12", url="https://zd/12") == "It broke"
    # Someone else's decoration, or an edited one, stays as it is.
    assert strip_template(template, text, key="#13", id="13", url="https://zd/13") == text
    assert strip_template("[ZD {key}] {value}", "plain title", key="1", id="1", url="u") == "plain title"
    assert render_template("{{literal}} {value}", "x", key="k", id="i", url="u") == "{literal} x"


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.text(alphabet=st.characters(exclude_characters="{}"), max_size=10),
    suffix=st.text(alphabet=st.characters(exclude_characters="{}"), max_size=10),
    placeholder=st.sampled_from(["", "{key}", "{id}", "{url}"]),
    twice=st.booleans(),
    value=st.text(max_size=30),
    key=st.text(max_size=8),
)
def test_strip_inverts_render(prefix: str, suffix: str, placeholder: str, twice: bool, value: str,
                              key: str) -> None:
    template = f"{prefix}{placeholder}{{value}}{suffix}" + ("{value}" if twice else "")
    rendered = render_template(template, value, key=key, id="7", url="https://x/7")
    assert strip_template(template, rendered, key=key, id="7", url="https://x/7") == value


# --- robustness --------------------------------------------------------------------------------

EXAMPLE_LINES = EXAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
PROBLEM_RE = re.compile(r"^.+:\d+:\d+: .+", re.DOTALL)


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    lines = list(EXAMPLE_LINES)
    kind = draw(st.sampled_from(["delete", "duplicate", "replace", "swap"]))
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "swap":
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        line = lines[i]
        at = draw(st.integers(0, max(len(line) - 1, 0)))
        char = draw(st.characters(blacklist_categories=("Cs",)))
        lines[i] = line[:at] + char + line[at + 1:]
    return "".join(lines)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated_example())
def test_mutated_example_loads_or_reports_located_problems(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text, "mutated.yaml")
    try:
        load_mapping(path)
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.line >= 1 and problem.column >= 1
            assert PROBLEM_RE.match(str(problem)), str(problem)


def test_schema_copies_are_identical() -> None:
    for name in ("mapping.schema.json", "config.schema.json"):
        shipped = (ROOT / "src" / "ticketbridge" / "schema" / name).read_bytes()
        assert (ROOT / "mappings" / "schema" / name).read_bytes() == shipped, (
            f"mappings/schema/{name} drifted; copy it from src/ticketbridge/schema/")


def test_alias_bombs_are_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    problems = errors(write(tmp_path, "\n".join(lines) + "\n"))
    assert "aliases expanding" in only(problems)


def test_default_must_be_a_target_value_too(tmp_path: Path) -> None:
    text = BASE + "    default: {right_to_left: reopened}\n"
    problems = errors(write(tmp_path, text))
    assert only(problems).startswith(f"{tmp_path / 'm.yaml'}:16:30: values.status.default.right_to_left: "
                                     "'reopened' is not a zendesk status; allowed: new, open, pending, hold")
