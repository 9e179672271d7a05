"""YAML files that admins edit, checked with file:line:column messages.

Both the config loader and the mapping loader go through here so that every problem an admin
sees has the same shape: ``file:line:column: <path>: <problem>; <fix or allowed values>``.

PyYAML's constructed data forgets where each value came from, so we compose the node graph and
build the Python data ourselves, recording the start mark of every value node and every mapping
key by path. JSON Schema errors carry paths; the marks turn those paths back into positions.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

PathT = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(Exception):
    """A config or mapping file (or several) is invalid; ``problems`` lists every finding."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(path: Iterable[str | int]) -> str:
    """``("fields", 0, "direction")`` -> ``fields[0].direction``; the empty path is the document."""
    path = tuple(path)
    if len(path) > 12:  # only runaway alias nesting gets here; keep the message readable
        return f"{format_path(path[:6])}...{format_path(path[-2:])}"
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


@dataclass
class SourceDoc:
    """Parsed YAML plus the position of every node, addressed by path."""

    file: str
    data: Any
    # Position (1-based line, column) of each value node and of each mapping key node.
    values: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathT, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: PathT, *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` is; falls back to the nearest ancestor that exists in the file."""
        if key and path in self.keys:
            return self.keys[path]
        probe = tuple(path)
        while probe:
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def problem(self, path: PathT, message: str, *, key: bool = False) -> Problem:
        line, column = self.position(path, key=key)
        return Problem(self.file, line, column, f"{format_path(path)}: {message}")


def _pos(mark: yaml.Mark | None) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _char(character: object) -> str:
    return f"U+{character:04X}" if isinstance(character, int) else repr(character)


def _line_col(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


MAX_NODES = 200_000  # far above any real config or mapping file


class _TooBig(Exception):
    def __init__(self, path: PathT) -> None:
        self.path = path


class _Builder:
    """Node graph -> plain Python data (dict/list/scalars) while recording positions."""

    def __init__(self, loader: yaml.SafeLoader, doc: SourceDoc) -> None:
        self.loader = loader
        self.doc = doc
        self.problems: list[Problem] = []
        self._depth = 0
        self._count = 0

    def build(self, node: yaml.Node, path: PathT) -> Any:
        self.doc.values.setdefault(path, _pos(node.start_mark))
        self._count += 1
        if self._count > MAX_NODES:
            # Aliases of aliases expand exponentially ("billion laughs"); refuse, do not hang.
            raise _TooBig(path)
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.loader.construct_object(node)
            except (yaml.YAMLError, ValueError, OverflowError) as error:
                # e.g. a date-looking scalar that is not a real date (2024-13-45).
                self.problems.append(self.doc.problem(path, f"could not read this value: {error}"))
                return node.value
        if self._depth > 100:  # aliases can make cycles; admins never need this depth
            self.problems.append(self.doc.problem(path, "nesting is too deep (recursive alias?)"))
            return None
        self._depth += 1
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return None
        finally:
            self._depth -= 1

    def _mapping(self, node: yaml.MappingNode, path: PathT) -> dict[str, Any]:
        self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _pos(key_node.start_mark)
                self.problems.append(Problem(self.doc.file, line, col,
                                             f"{format_path(path)}: a key must be plain text"))
                continue
            # Keys stay as written: `yes:` or `1:` in a value table mean the text, not a bool/int.
            key = key_node.value
            child = (*path, key)
            if key in out:
                line, col = _pos(key_node.start_mark)
                self.problems.append(Problem(
                    self.doc.file, line, col,
                    f"{format_path(child)}: duplicate key; keep only one '{key}:' here"))
                continue
            self.doc.keys[child] = _pos(key_node.start_mark)
            out[key] = self.build(value_node, child)
        return out


def parse_yaml(text: str, file: str) -> tuple[SourceDoc, list[Problem]]:
    """Parse one YAML document. Syntax errors become Problems at the parser's mark."""
    doc = SourceDoc(file, None)
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return doc, []
            builder = _Builder(loader, doc)
            try:
                doc.data = builder.build(node, ())
            except _TooBig as error:
                doc.data = None
                return doc, [doc.problem(error.path, f"more than {MAX_NODES} values (aliases expanding?); "
                                                     "write the file out without nested aliases")]
            return doc, builder.problems
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        line, col = _pos(error.problem_mark or error.context_mark)
        what = error.problem or error.context or "invalid YAML"
        if error.context and error.problem:
            # e.g. "while parsing a block mapping" started at the context mark.
            what += f" ({error.context} started at line {_pos(error.context_mark)[0]})"
        return doc, [Problem(file, line, col, f"could not parse YAML: {what}; "
                                              "check indentation, quotes and colons here")]
    except yaml.reader.ReaderError as error:
        line, col = _line_col(text, error.position)
        return doc, [Problem(file, line, col, f"could not parse YAML: {error.reason} "
                             f"({_char(error.character)}); remove it")]
    except (yaml.YAMLError, RecursionError) as error:
        return doc, [Problem(file, 1, 1, f"could not parse YAML: {error}")]


def read_yaml(path: Path | str) -> tuple[SourceDoc, list[Problem]]:
    """Read and parse a file; an unreadable file is a Problem too, not an exception."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        return SourceDoc(file, None), [Problem(file, 1, 1, f"cannot read file: {error.strerror or error}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line, col = _line_col(raw[: error.start].decode("utf-8", "replace"), error.start)
        return SourceDoc(file, None), [Problem(file, line, col, "file is not UTF-8 text; save it as UTF-8")]
    return parse_yaml(text, file)


# --- JSON Schema --------------------------------------------------------------------------------

@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped inside the package (``ticketbridge/schema/<name>``)."""
    text = resources.files("ticketbridge").joinpath("schema", name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


_TYPE_WORDS = {
    "object": "a mapping (key: value lines)", "array": "a list", "string": "text",
    "integer": "a whole number", "number": "a number", "boolean": "true or false", "null": "empty",
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, int | float):
        return "a number"
    return "text" if isinstance(value, str) else type(value).__name__


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _extra_keys(error: jsonschema.ValidationError) -> list[str]:
    schema, instance = error.schema, error.instance
    if not isinstance(schema, dict) or not isinstance(instance, dict):
        return []
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [k for k in instance if k not in known and not any(re.search(p, k) for p in patterns)]


def _describe(error: jsonschema.ValidationError) -> str:
    """An admin-readable problem text; echoes values only for enum/const (never secrets)."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    custom = schema.get("errorMessage")
    if isinstance(custom, str):
        return custom
    kind, expected = error.validator, error.validator_value
    if kind == "enum":
        return f"{_show(error.instance)} is not one of: {', '.join(str(v) for v in expected)}"
    if kind == "const":
        return f"must be {expected!r}"
    if kind == "type":
        types = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
        return f"expected {wanted}, got {_kind(error.instance)}"
    if kind == "required":
        missing = [k for k in expected if isinstance(error.instance, dict) and k not in error.instance]
        names = ", ".join(repr(k) for k in missing)
        if len(missing) > 1:
            return f"missing required keys {names}; add them here"
        return f"missing required key {names}; add it here"
    if kind == "minItems":
        return f"needs at least {expected} entr{'y' if expected == 1 else 'ies'}"
    if kind == "minLength":
        return "must not be empty"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{error.message.split(' is ', 1)[-1]}"
    if kind == "minProperties":
        return "must not be empty"
    if kind == "pattern":
        return f"does not match the expected form {expected}"
    # Not error.message: it quotes the offending value, which could be a pasted secret.
    return f"does not satisfy the schema rule {kind}: {_show(expected)}"


def schema_problems(doc: SourceDoc, schema: Mapping[str, Any]) -> list[Problem]:
    """Validate ``doc.data`` against ``schema`` and locate each error at its node."""
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[Problem] = []
    flagged_keys: set[PathT] = set()
    unknown: list[tuple[PathT, str]] = []
    for error in validator.iter_errors(doc.data):
        path: PathT = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            # jsonschema reports at the parent; point at each offending key instead.
            allowed = list(error.schema.get("properties", {}))
            for key in _extra_keys(error):
                hint = difflib.get_close_matches(key, allowed, n=1)
                fix = f"allowed keys here: {', '.join(allowed)}"
                if hint:
                    fix = f"did you mean '{hint[0]}'? {fix}"
                unknown.append(((*path, key), f"unknown key '{key}'; {fix}"))
            continue
        if "propertyNames" in error.relative_schema_path and isinstance(error.instance, str):
            # propertyNames errors carry the key name as instance and the parent as path.
            key_path = (*path, error.instance)
            flagged_keys.add(key_path)
            problems.append(doc.problem(key_path, _describe(error), key=True))
            continue
        problems.append(doc.problem(path, _describe(error)))
    # A key rejected for a specific reason (a secret) should not also be called "unknown".
    problems += [doc.problem(p, msg, key=True) for p, msg in unknown if p not in flagged_keys]
    return sort_problems(problems)


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """File order, then position; identical findings reported once."""
    return sorted(set(problems), key=lambda p: (p.file, p.line, p.column, p.message))


def frozen(value: Any) -> Any:
    """Loaded YAML made read-only: mappings become MappingProxyType, lists tuples (deeply)."""
    if isinstance(value, dict):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value
