"""Mapping files: load, validate (schema + semantic checks) and expose as frozen values.

A mapping file pairs a left tracker with a right tracker (see mappings/zendesk-jira.yaml). The
JSON Schema in ticketbridge/schema/mapping.schema.json checks the shape; the checks here cover
what a schema cannot know: field names per tracker type, value tables that are referenced but
missing, statuses/priorities a table forgets, one native field written by two pairs.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol

from .yamlsource import (
    ConfigError,
    PathT,
    Problem,
    SourceDoc,
    frozen,
    load_schema,
    read_yaml,
    schema_problems,
)

Direction = Literal["left_to_right", "right_to_left"]
DIRECTIONS: tuple[Direction, Direction] = ("left_to_right", "right_to_left")


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing.MISSING  # "no default": distinct from a default of None


class TrackerInfo(Protocol):
    """What the mapping checks need to know about a tracker (TrackerConfig satisfies it)."""

    @property
    def type(self) -> str: ...
    @property
    def statuses(self) -> tuple[str, ...] | None: ...
    @property
    def priorities(self) -> tuple[str, ...] | None: ...


@dataclass(frozen=True)
class Vocabulary:
    """Native field names and fixed value sets of one tracker type."""

    fields: tuple[str, ...]
    custom: str  # regex for custom field names
    custom_hint: str
    statuses: tuple[str, ...] | None = None  # None: comes from config (the workflow is per site)
    priorities: tuple[str, ...] | None = None
    select_keys: tuple[str, ...] = ()
    create_extra: tuple[str, ...] = ()  # fields only meaningful at creation (Jira project)
    create_required: tuple[str, ...] = ()  # the tracker refuses to create an item without these


VOCABULARIES: dict[str, Vocabulary] = {
    "zendesk": Vocabulary(
        fields=("subject", "description", "status", "priority", "type", "tags", "external_id",
                "assignee_id", "group_id", "due_at"),
        custom=r"custom_fields\.\d+", custom_hint="custom_fields.<id>",
        statuses=("new", "open", "pending", "hold", "solved", "closed"),
        priorities=("urgent", "high", "normal", "low"),
        select_keys=("statuses", "tags_any", "tags_none"),
        create_extra=("requester_id", "brand_id", "ticket_form_id"),
    ),
    "jira": Vocabulary(
        fields=("summary", "description", "status", "priority", "labels", "issuetype", "assignee",
                "duedate", "resolution", "components", "environment"),
        custom=r"customfield_\d+", custom_hint="customfield_<id>",
        select_keys=("jql",),
        create_extra=("project",),
        create_required=("project", "issuetype"),
    ),
    "github": Vocabulary(
        fields=("title", "body", "state", "state_reason", "labels", "assignees", "milestone"),
        custom=r"(?!)", custom_hint="(GitHub issues have no custom fields)",
        statuses=("open", "closed"),
        select_keys=("repos", "labels_any", "labels_none"),
        create_extra=("repo",),
    ),
    "clickup": Vocabulary(
        fields=("name", "description", "status", "priority", "assignees", "tags", "due_date", "start_date"),
        # Custom fields by id (a UUID), as GET /list/{id}/field lists them: names can be renamed.
        custom=r"custom_fields\.[0-9a-fA-F-]{8,}", custom_hint="custom_fields.<field id>",
        # Statuses are per list: list them in config.yaml (`statuses:`) to have tables checked.
        priorities=("urgent", "high", "normal", "low"),
        select_keys=("statuses", "tags_any", "tags_none"),
        create_extra=("list",),  # which configured list a created task goes to (default: the first)
    ),
}


class UnmappedValue(Exception):
    """A value has no entry in its value table and the table has no default for that direction."""

    def __init__(self, table: ValueTable, value: Any, direction: Direction) -> None:
        self.table, self.value, self.direction = table, value, direction
        source = table.left_tracker if direction == "left_to_right" else table.right_tracker
        where = f" from {source}" if source else ""
        fix = f"; add it to {table.source_path}" if table.source_path else "; add an entry or a default"
        super().__init__(f"{table.name} value {value!r}{where} has no entry in "
                         f"values.{table.name}.{direction} and no default{fix}")


@dataclass(frozen=True)
class ValueTable:
    name: str
    left_to_right: Mapping[str, Any]
    right_to_left: Mapping[str, Any]
    default_left_to_right: Any = MISSING
    default_right_to_left: Any = MISSING
    # Context for UnmappedValue messages only.
    source_path: str = ""
    left_tracker: str = ""
    right_tracker: str = ""

    def lookup(self, value: Any, direction: Direction) -> Any:
        if value is None:
            return None
        if isinstance(value, list | tuple):
            return tuple(self.lookup(v, direction) for v in value)
        table = self.left_to_right if direction == "left_to_right" else self.right_to_left
        # Keys are text as written in YAML; tracker values may be numbers (ids, option values).
        for candidate in (value, str(value)):
            if isinstance(candidate, str) and candidate in table:
                return table[candidate]
        default = self.default_left_to_right if direction == "left_to_right" else self.default_right_to_left
        if default is MISSING:
            raise UnmappedValue(self, value, direction)
        return default


@dataclass(frozen=True)
class FieldPair:
    name: str
    left: str
    right: str
    direction: str  # both | left_to_right | right_to_left
    conflict: str  # newest | owner:left | owner:right
    values: ValueTable | None = None
    template_left: str | None = None
    template_right: str | None = None

    def flows(self, direction: str) -> bool:
        return self.direction in ("both", direction)


@dataclass(frozen=True)
class CommentRules:
    public_to_right: bool = True
    internal_to_right: bool = False
    to_left: bool = True
    to_left_public: bool = False
    # One note on the left item per status change coming from the right (back-propagation).
    status_note: bool = False


@dataclass(frozen=True)
class FlowMapping:
    name: str
    path: str
    left: str
    right: str
    select_left: Mapping[str, Any]
    select_right: Mapping[str, Any]
    create_left_to_right: bool  # the sync pass creates right items for new selected left items
    create_right_to_left: bool
    create_left: Mapping[str, Any]
    create_right: Mapping[str, Any]
    fields: tuple[FieldPair, ...]
    comments: CommentRules
    redact: bool = False  # scrub personal data from text travelling left to right
    # `create: left_to_right: on_escalation`: only an escalation (Engine.escalate) creates the
    # right item; the pass never does (create_left_to_right is then False).
    create_on_escalation: bool = False


# --- templates ----------------------------------------------------------------------------------

PLACEHOLDERS = ("value", "key", "id", "url")


def _template_parts(template: str) -> Iterator[tuple[str, str | None]]:
    """(literal text, placeholder or None) pieces; raises ValueError on a malformed template."""
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if name is not None and (name not in PLACEHOLDERS or spec or conversion):
            raise ValueError(f"unknown placeholder {{{name}}}")
        yield literal, name


def render_template(template: str, value: Any, *, key: Any, id: Any, url: Any) -> str:
    """Fill ``{value} {key} {id} {url}``; ``{{``/``}}`` are literal braces. None renders as ''."""
    given = {"value": value, "key": key, "id": id, "url": url}
    return "".join(literal + ("" if name is None or given[name] is None else str(given[name]))
                   for literal, name in _template_parts(template))


def strip_template(template: str, text: str, *, key: Any, id: Any, url: Any) -> str:
    """Inverse of render_template: the inner {value} when ``text`` has the rendered decoration
    around it, else ``text`` unchanged (an admin edited it, or it was never decorated)."""
    given = {"key": key, "id": id, "url": url}
    pattern, seen_value = "", False
    try:
        for literal, name in _template_parts(template):
            pattern += re.escape(literal)
            if name == "value":
                # A repeated {value} must repeat the same text.
                pattern += "(?P=value)" if seen_value else "(?P<value>.*)"
                seen_value = True
            elif name is not None:
                pattern += re.escape("" if given[name] is None else str(given[name]))
    except ValueError:
        return text
    match = re.fullmatch(pattern, text, re.DOTALL) if seen_value else None
    return match.group("value") if match else text


# --- loading ------------------------------------------------------------------------------------

def load_mapping(path: str | Path, *, trackers: Mapping[str, TrackerInfo] | None = None) -> FlowMapping:
    """Load one mapping file; raises ConfigError listing every problem found in it."""
    mapping, problems = check_mapping(path, trackers=trackers)
    if problems or mapping is None:
        raise ConfigError(problems)
    return mapping


def check_mapping(path: str | Path, *, trackers: Mapping[str, TrackerInfo] | None = None,
                  ) -> tuple[FlowMapping | None, list[Problem]]:
    """(mapping or None, problems). Used by load_config to collect problems across files."""
    doc, problems = read_yaml(path)
    if problems and doc.data is None:  # unparseable: nothing to check further
        return None, problems
    problems += schema_problems(doc, load_schema("mapping.schema.json"))
    # Semantic checks run even after schema errors (guarded against odd shapes) so that an
    # admin sees everything in one pass.
    problems += _Checker(doc, trackers).run()
    if problems:
        return None, sorted(set(problems), key=lambda p: (p.line, p.column, p.message))
    return _build(doc), []


def _tracker_type(name: Any, trackers: Mapping[str, TrackerInfo] | None) -> str | None:
    if not isinstance(name, str):
        return None
    if trackers is None:
        return name if name in VOCABULARIES else None
    info = trackers.get(name)
    return info.type if info is not None else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class _Checker:
    """Semantic checks. Every step tolerates wrong shapes: the schema already reported those."""

    def __init__(self, doc: SourceDoc, trackers: Mapping[str, TrackerInfo] | None) -> None:
        self.doc, self.trackers = doc, trackers
        self.data = _dict(doc.data)
        self.problems: list[Problem] = []
        self.side_names = {side: self.data.get(side) for side in ("left", "right")}
        self.types = {side: _tracker_type(name, trackers) for side, name in self.side_names.items()}

    def report(self, path: PathT, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, key=key))

    def run(self) -> list[Problem]:
        self.check_trackers()
        self.check_select()
        self.check_create()
        self.check_fields()
        return self.problems

    def vocab(self, side: str) -> Vocabulary | None:
        kind = self.types[side]
        return VOCABULARIES.get(kind) if kind else None

    def info(self, side: str) -> TrackerInfo | None:
        name = self.side_names[side]
        return self.trackers.get(name) if self.trackers is not None and isinstance(name, str) else None

    def check_trackers(self) -> None:
        left, right = self.side_names["left"], self.side_names["right"]
        if self.trackers is not None:
            known = ", ".join(sorted(self.trackers)) or "(none)"
            for side, name in self.side_names.items():
                if isinstance(name, str) and name not in self.trackers:
                    self.report((side,), f"no tracker named '{name}' in config.yaml; known trackers: {known}")
        if isinstance(left, str) and left == right:
            self.report(("right",), f"left and right are both '{left}'; a flow joins two different trackers")

    def check_select(self) -> None:
        for side in ("left", "right"):
            vocab = self.vocab(side)
            if vocab is None:
                continue
            for key, value in _dict(_dict(self.data.get("select")).get(side)).items():
                path: PathT = ("select", side, key)
                if key not in vocab.select_keys:
                    self.report(path, f"'{key}' does not apply to {self.types[side]}; "
                                      f"use: {', '.join(vocab.select_keys)}", key=True)
                elif key == "statuses" and vocab.statuses:
                    for i, status in enumerate(_list(value)):
                        if isinstance(status, str) and status not in vocab.statuses:
                            self.report((*path, i), f"'{status}' is not a {self.types[side]} status; "
                                                    f"allowed: {', '.join(vocab.statuses)}")

    def check_create(self) -> None:
        create = _dict(self.data.get("create"))
        for side, flow in (("left", "right_to_left"), ("right", "left_to_right")):
            vocab = self.vocab(side)
            if vocab is None:
                continue
            fixed = _dict(create.get(side))
            for key in fixed:
                if not self.known_field(vocab, key) and key not in vocab.create_extra:
                    self.report(("create", side, key), self.unknown_field(side, key, vocab.create_extra),
                                key=True)
            # on_escalation creates too (through Engine.escalate), so it needs the same fields.
            if create.get(flow) not in (True, "on_escalation"):
                continue
            # A required field can be fixed here or carried by a pair flowing towards this side.
            carried = {p[side] for p in _list(self.data.get("fields")) if isinstance(p, dict)
                       and isinstance(p.get(side), str) and p.get("direction", "both") in ("both", flow)}
            missing = [f for f in vocab.create_required if f not in fixed and f not in carried]
            if missing:
                where: PathT = ("create", side) if side in create else ("create", flow)
                self.report(where, f"{self.types[side]} needs {', '.join(missing)} to create an item; "
                                   f"add {', '.join(f + ': ...' for f in missing)} under create.{side}")

    def known_field(self, vocab: Vocabulary, name: str) -> bool:
        return name in vocab.fields or re.fullmatch(vocab.custom, name) is not None

    def unknown_field(self, side: str, name: str, extra: tuple[str, ...] = ()) -> str:
        vocab = self.vocab(side)
        assert vocab is not None
        allowed = ", ".join((*vocab.fields, *extra, vocab.custom_hint))
        return f"unknown {self.types[side]} field '{name}'; allowed: {allowed}"

    def check_fields(self) -> None:
        tables = _dict(self.data.get("values"))
        names: dict[str, int] = {}
        native: dict[tuple[str, str], str] = {}  # (side, native field) -> first pair name
        for i, pair in enumerate(_list(self.data.get("fields"))):
            if not isinstance(pair, dict):
                continue
            base: PathT = ("fields", i)
            name = pair.get("name", pair.get("left"))
            if isinstance(name, str):
                if name in names:
                    where = ("name",) if "name" in pair else ("left",)
                    self.report((*base, *where), f"pair name '{name}' is already used by fields[{names[name]}]; "
                                                 "give this pair its own name:")
                names.setdefault(name, i)
            for side in ("left", "right"):
                field = pair.get(side)
                if not isinstance(field, str):
                    continue
                vocab = self.vocab(side)
                if vocab is not None and not self.known_field(vocab, field):
                    self.report((*base, side), self.unknown_field(side, field))
                if (side, field) in native:
                    tracker = self.side_names[side]
                    self.report((*base, side), f"field '{field}' on {tracker} is used by pairs "
                                               f"'{native[side, field]}' and '{name}'; "
                                               "keep one pair with direction: both")
                else:
                    native[side, field] = str(name)
            for side, template in _dict(pair.get("template")).items():
                self.check_template((*base, "template", side), template)
            table_name = pair.get("values")
            if isinstance(table_name, str):
                if table_name not in tables:
                    defined = ", ".join(tables) or "none yet"
                    self.report((*base, "values"), f"values table '{table_name}' is not defined under "
                                                   f"values: (defined: {defined}); add it or fix the name")
                elif isinstance(tables[table_name], dict):
                    self.check_table(pair, table_name, tables[table_name])

    def check_template(self, path: PathT, template: Any) -> None:
        if not isinstance(template, str):
            return
        try:
            names = [name for _, name in _template_parts(template)]
        except ValueError as error:
            self.report(path, f"bad template: {error}; placeholders are {{value}} {{key}} {{id}} {{url}} "
                              "and literal braces are written {{ and }}")
            return
        if "value" not in names:
            self.report(path, "template has no {value}; it would overwrite the field's text")

    def check_table(self, pair: dict[str, Any], table_name: str, table: dict[str, Any]) -> None:
        direction = pair.get("direction", "both")
        for flow in DIRECTIONS:
            if direction not in ("both", flow):
                continue
            source, target = ("left", "right") if flow == "left_to_right" else ("right", "left")
            entries, default = table.get(flow), _dict(table.get("default"))
            path: PathT = ("values", table_name, flow)
            if not isinstance(entries, dict):
                if flow not in default:
                    self.report(("values", table_name), f"pair '{pair.get('name', pair.get('left'))}' flows "
                                                        f"{flow} but values.{table_name} has no {flow}; add it")
                continue
            kind = pair.get(source)
            if kind not in ("status", "priority") or kind != pair.get(target):
                continue  # only status<->status and priority<->priority have known value sets
            allowed = self.allowed_values(source, kind)
            if allowed is not None and flow not in default:
                for value in allowed:
                    if value not in entries:
                        self.report(path, f"unmapped {kind} '{value}' (values.{table_name}.{flow}); "
                                          "add an entry or a default")
            targets = self.allowed_values(target, kind)
            if targets is None:
                continue
            written = [((*path, k), v) for k, v in entries.items()]
            if flow in default:
                written.append((("values", table_name, "default", flow), default[flow]))
            for where, value in written:
                if isinstance(value, str) and value not in targets:
                    self.report(where, f"'{value}' is not a {self.side_names[target]} {kind}; "
                                       f"allowed: {', '.join(targets)}")

    def allowed_values(self, side: str, field: Any) -> tuple[str, ...] | None:
        if field not in ("status", "priority"):
            return None
        info, vocab = self.info(side), self.vocab(side)
        from_config = getattr(info, "statuses" if field == "status" else "priorities", None)
        if from_config:
            return tuple(from_config)
        if vocab is None:
            return None
        return vocab.statuses if field == "status" else vocab.priorities


def _build(doc: SourceDoc) -> FlowMapping:
    """Dataclasses from a document that passed every check."""
    data: dict[str, Any] = doc.data
    left, right = data["left"], data["right"]
    tables: dict[str, ValueTable] = {}
    for name, table in data.get("values", {}).items():
        default = table.get("default", {})
        tables[name] = ValueTable(
            name=name,
            left_to_right=MappingProxyType(dict(table.get("left_to_right", {}))),
            right_to_left=MappingProxyType(dict(table.get("right_to_left", {}))),
            default_left_to_right=default.get("left_to_right", MISSING),
            default_right_to_left=default.get("right_to_left", MISSING),
            source_path=doc.file, left_tracker=left, right_tracker=right,
        )
    pairs = []
    for pair in data["fields"]:
        conflict = pair.get("conflict", "newest")
        template = pair.get("template", {})
        pairs.append(FieldPair(
            name=pair.get("name", pair["left"]), left=pair["left"], right=pair["right"],
            direction=pair.get("direction", "both"),
            conflict=conflict if isinstance(conflict, str) else f"owner:{conflict['owner']}",
            values=tables[pair["values"]] if "values" in pair else None,
            template_left=template.get("left"), template_right=template.get("right"),
        ))
    select, create = data.get("select", {}), data.get("create", {})
    to_right, to_left = data.get("comments", {}).get("left_to_right", {}), data.get("comments", {}).get(
        "right_to_left", {})
    return FlowMapping(
        name=data.get("name", Path(doc.file).stem), path=doc.file, left=left, right=right,
        select_left=frozen(select.get("left", {})), select_right=frozen(select.get("right", {})),
        create_left_to_right=create.get("left_to_right", False) is True,
        create_right_to_left=create.get("right_to_left", False),
        create_left=frozen(create.get("left", {})), create_right=frozen(create.get("right", {})),
        fields=tuple(pairs),
        comments=CommentRules(
            public_to_right=to_right.get("public", True), internal_to_right=to_right.get("internal", False),
            to_left=to_left.get("enabled", True), to_left_public=to_left.get("as", "internal") == "public",
            status_note=bool(to_left.get("status_note", False)),
        ),
        redact=bool(data.get("redact", False)),
        create_on_escalation=create.get("left_to_right") == "on_escalation",
    )
