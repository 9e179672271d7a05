"""Every command README.md shows is a command that works.

Each `ticketbridge ...` command in the README (code blocks, the command table, inline code) must
parse with the real argument parser once placeholders (ID, FILE, ...) are filled in, and each
must be run by at least one test under tests/. `make` targets, files named in commands and
`docker compose` services and arguments are checked to exist; Docker itself does not run here.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ticketbridge.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
THIS = Path(__file__).name

# Usage placeholders -> a value the parser accepts.
PLACEHOLDERS = {"FILE": "config.yaml", "ID": "7", "H": "127.0.0.1", "P": "8801", "F": "zendesk-jira",
                "N": "Jane Doe", "E": "jane@example.com", "O": "ACME", "SECONDS": "20",
                "TRACKER:ID": "zendesk:1", "START/END": "2026-11-04T13:00:00+01:00/2026-11-09T11:00:00+01:00"}


@dataclass(frozen=True)
class Shown:
    text: str  # as the README shows it
    where: str  # "line N (code block|table|inline)"


def code_blocks() -> Iterator[tuple[int, str]]:
    """(line number, logical line) of every fenced code block; `\\` continuations joined."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(README.splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def outside_code_blocks() -> Iterator[tuple[int, str]]:
    inside = False
    for number, line in enumerate(README.splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
        elif not inside:
            yield number, line


def strip_comment(line: str) -> str:
    """Drop a trailing shell comment (never inside quotes in the README's commands)."""
    return re.split(r"(?:^|\s)#\s", line, maxsplit=1)[0].rstrip()


def shell_commands(line: str) -> list[str]:
    """One line as the commands a shell would run: `$ ` prompts, `&`, `&&`, `;` and `|` split."""
    line = strip_comment(re.sub(r"^\s*\$\s+", "", line))
    return [part.strip() for part in re.split(r"\s*(?:&&|;|\|(?!\|)|&)\s*", line) if part.strip()]


def program(command: str) -> tuple[str, list[str]]:
    try:
        words = shlex.split(command)
    except ValueError:  # not a shell line (YAML, JSON, a log excerpt)
        words = command.split()
    if not words:
        return "", []
    return Path(words[0]).name if words[0].endswith("/ticketbridge") else words[0], words[1:]


def readme_ticketbridge_commands() -> list[Shown]:
    shown: list[Shown] = []
    for number, line in code_blocks():
        for command in shell_commands(line):
            if program(command)[0] == "ticketbridge":
                shown.append(Shown(command, f"line {number} (code block)"))
    for number, line in outside_code_blocks():
        for span in re.findall(r"`((?:\.venv/bin/)?ticketbridge [^`]+)`", line):
            kind = "table" if line.startswith("|") else "inline"
            shown.append(Shown(span.replace("\\|", "|"), f"line {number} ({kind})"))
    return shown


# -- usage syntax: `a|b` alternatives and `[--opt X]` optional groups ---------------------------------

def tokens(usage: str) -> list[str]:
    """Words, with each `[...]` group kept whole."""
    return re.findall(r"\[[^\]]*\]|\S+", usage)


def alternatives(word: str) -> list[str]:
    return word.split("|") if "|" in word and not word.startswith("-") else [word]


def expand(usage: str) -> list[list[str]]:
    """Concrete argument lists for one usage line: every alternative of every word, without the
    optional groups, with all of them, and with each alternative inside each group."""
    words = tokens(usage.removeprefix(".venv/bin/").removeprefix("ticketbridge").strip())
    required = [w for w in words if not w.startswith("[")]
    groups = [w[1:-1].split() for w in words if w.startswith("[")]
    variants: list[list[str]] = []
    for base in itertools.product(*(alternatives(w) for w in required)):
        variants.append(list(base))
        full = list(base)
        for group in groups:
            full += [g.split("|")[0] for g in group]
        variants.append(full)
        for index, group in enumerate(groups):
            for position, word in enumerate(group):
                for choice in word.split("|")[1:]:
                    variant = list(base)
                    for other in groups[: index + 1]:
                        variant += [g.split("|")[0] for g in other]
                    variant[len(base) + sum(len(g) for g in groups[:index]) + position] = choice
                    variants.append(variant)
    return [[PLACEHOLDERS.get(word, word) for word in variant] for variant in variants]


def summary(usage: str) -> bool:
    """`ticketbridge sla due|explain|report`: a list of subcommands, not a command to run."""
    return any("|" in w and not w.startswith(("[", "-")) for w in tokens(usage))


def subcommand(args: list[str]) -> tuple[str, ...]:
    """The command path of a summary's variant, after checking the parser knows it (`--help`
    exits 0 only for a known subcommand)."""
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*args, "--help"])
    assert exit_.value.code == 0, f"ticketbridge {shlex.join(args)}: no such command"
    return tuple(args)


def parse(args: list[str], *, shown: str = "") -> tuple[str, ...]:
    """The command path (`("failures", "retry")`) of args the real parser accepts."""
    if summary(shown):
        return subcommand(args)
    try:
        with contextlib.redirect_stderr(io.StringIO()) as errors:
            namespace = build_parser().parse_args(args)
    except SystemExit as exit_:
        raise AssertionError(f"ticketbridge {shlex.join(args)}: {errors.getvalue().strip()}") from exit_
    path = [namespace.command]
    for attribute in ("sla_command", "failures_command", "db_command"):
        if getattr(namespace, attribute, None):
            path.append(getattr(namespace, attribute))
    return tuple(path)


SHOWN = readme_ticketbridge_commands()


def test_the_readme_shows_the_commands_of_every_section() -> None:
    texts = " ".join(s.text for s in SHOWN)
    for expected in ("sandbox", "validate", "plan", "sync --once", "run", "sla due", "sla explain", "sla report",
                     "redact", "failures list", "failures show", "failures retry", "failures drop", "db upgrade",
                     "db current", "demo"):
        assert f"ticketbridge {expected}" in texts or f"ticketbridge/{expected}" in texts, expected
    assert len(SHOWN) >= 40


@pytest.mark.parametrize("shown", SHOWN, ids=[f"{s.where}: {s.text[:60]}" for s in SHOWN])
def test_every_readme_command_parses(shown: Shown) -> None:
    for args in expand(shown.text):
        parse(args, shown=shown.text)


# -- ... and is run by a test ------------------------------------------------------------------------

# Tests that only parse commands (they run nothing) do not count as running them.
PARSE_ONLY = {THIS, "test_docker.py"}


def sources_of_tests() -> dict[str, str]:
    return {str(path.relative_to(REPO)): path.read_text(encoding="utf-8")
            for path in (REPO / "tests").rglob("*.py") if path.name not in PARSE_ONLY}


def runs(path: tuple[str, ...], source: str) -> bool:
    """Does a test source invoke this command? An argument list that starts with its words
    (`main(["sla", "report", ...])`, `cli(bridge, "failures", "retry", ...)`,
    `run_cli(["demo"], ...)`), in a file that calls the CLI."""
    if not re.search(r"\bmain\(|run_cli|\bcli\(|ticketbridge\.cli|\"-m\", \"ticketbridge", source):
        return False
    words = r"\s*,\s*".join(f"[\"']{re.escape(word)}[\"']" for word in path)
    return re.search(rf"[\[(,]\s*{words}\s*[,\])]", source) is not None


def readme_command_paths() -> dict[tuple[str, ...], list[str]]:
    paths: dict[tuple[str, ...], list[str]] = {}
    for shown in SHOWN:
        for args in expand(shown.text):
            paths.setdefault(parse(args, shown=shown.text), []).append(shown.where)
    return paths


def readme_options() -> dict[tuple[str, ...], set[str]]:
    """Per command, every option the README shows with it."""
    options: dict[tuple[str, ...], set[str]] = {}
    for shown in SHOWN:
        for args in expand(shown.text):
            options.setdefault(parse(args, shown=shown.text), set()).update(a for a in args if a.startswith("--"))
    return options


def test_every_readme_command_is_run_by_a_test() -> None:
    sources = sources_of_tests()
    unrun = {" ".join(path): where for path, where in readme_command_paths().items()
             if not any(runs(path, source) for source in sources.values())}
    assert not unrun, f"README commands no test runs: {unrun}"


def test_every_option_the_readme_shows_is_used_by_a_test_that_runs_its_command() -> None:
    sources = sources_of_tests()
    unused: dict[str, list[str]] = {}
    for path, options in readme_options().items():
        running = [source for source in sources.values() if runs(path, source)]
        for option in sorted(options):
            if not any(re.search(rf"[\"']{re.escape(option)}[\"'=]", source) for source in running):
                unused.setdefault(" ".join(path), []).append(option)
    assert not unused, f"README options no test of their command uses: {unused}"


# -- make, files, docker compose ---------------------------------------------------------------------

def other_commands() -> list[tuple[int, str]]:
    return [(number, command) for number, line in code_blocks() for command in shell_commands(line)
            if program(command)[0] in ("make", "docker", ".venv/bin/python", "python")]


def test_make_targets_named_in_the_readme_exist() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE))
    named = {word for _, command in other_commands() if command.startswith("make ")
             for word in shlex.split(command)[1:]} | set(re.findall(r"`make (\w+)`", README))
    assert {"demo", "test"} <= named
    assert named <= targets, named - targets


def test_scripts_and_modules_named_in_the_readme_exist() -> None:
    for _, command in other_commands():
        name, args = program(command)
        if name.endswith("python") and args:
            target = REPO / args[1].replace(".", "/") if args[0] == "-m" else REPO / args[0]
            assert target.with_suffix(".py").exists() or target.exists(), command


def test_docker_compose_lines_name_the_shipped_file_its_services_and_real_commands() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    services = set(compose["services"])
    lines = [command for _, command in other_commands() if command.startswith("docker ")]
    assert any(" up " in f"{line} " for line in lines), "the README shows how to start it"
    for line in lines:
        words = shlex.split(line)
        assert words[:4] == ["docker", "compose", "-f", "docker/compose.yaml"], line
        rest = words[4:]
        while rest and rest[0] == "--profile":
            assert rest[1] in {p for s in compose["services"].values() for p in s.get("profiles", [])}, line
            rest = rest[2:]
        verb, rest = rest[0], rest[1:]
        assert verb in ("up", "down", "logs", "run", "build", "ps", "exec"), line
        flags_with_values = {"--scale"}
        named = [w for i, w in enumerate(rest) if not w.startswith("-") and rest[i - 1] not in flags_with_values]
        if verb == "run":  # docker compose run [options] SERVICE [ARGS...]: ARGS go to the entrypoint
            assert named[0] in services, line
            if named[0] != "sandbox" or len(named) > 1:
                parse(rest[rest.index(named[0]) + 1:])
        else:
            assert set(named) <= services, line
    assert (REPO / "docker" / "Dockerfile").exists()
