"""What every benchmark script shares: `--quick` and `--json`, figures, targets, peak RSS.

A script builds one `Result` and hands it to `emit`, which prints it for a person and, with
`--json PATH`, writes it for `bench/run.py` (`make bench`), which turns every result into
bench/RESULTS.md. Scripts import this as `common`: they run as `python bench/<name>.py`, which
puts bench/ first on sys.path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Target:
    """One target of issue 8: `value op limit`, e.g. ratio <= 1.10."""

    what: str
    value: float
    op: str  # "<=", "<", ">=", ">"
    limit: float
    unit: str = ""

    @property
    def met(self) -> bool:
        return {"<=": self.value <= self.limit, "<": self.value < self.limit,
                ">=": self.value >= self.limit, ">": self.value > self.limit}[self.op]


@dataclass
class Result:
    """One benchmark's outcome. `figures` keep their order: label -> value (number or text);
    `tables` are lists of rows (dicts with the same keys), for curves and per-tracker counts."""

    name: str
    title: str
    command: str  # the exact command line that produced it
    quick: bool
    figures: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = [{**asdict(t), "met": t.met} for t in self.targets]
        data["machine"] = machine()
        return data


def parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the two options every benchmark has."""
    cli = argparse.ArgumentParser(description=(description or "").strip().splitlines()[0])
    cli.add_argument("--quick", action="store_true", help="a smaller run for everyday use (make bench-quick)")
    cli.add_argument("--json", metavar="PATH", help="also write the result as JSON (for bench/run.py)")
    return cli


def command_line() -> str:
    """The command as a user would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    args, skip = [], False
    for arg in sys.argv[1:]:  # --json only says where the figures go: not part of the command
        if skip or arg == "--json" or arg.startswith("--json="):
            skip = arg == "--json"
            continue
        args.append(arg)
    return " ".join([".venv/bin/python", str(shown), *args])


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "system": platform.platform()}


def emit(result: Result, json_path: str | None) -> int:
    """Print the result; write it as JSON when asked. Exit status 0: a missed target is a figure,
    not an error (RESULTS.md says which are met)."""
    print(f"\n== {result.title}" + (" (quick)" if result.quick else ""))
    print(f"   {result.command}")
    for label, value in result.figures.items():
        print(f"   {label}: {value}")
    for name, rows in result.tables.items():
        print(f"   {name}:")
        for row in rows:
            print("     " + ", ".join(f"{k}={v}" for k, v in row.items()))
    for target in result.targets:
        mark = "met" if target.met else "MISSED"
        print(f"   target {target.what}: {target.value:g}{target.unit} {target.op} "
              f"{target.limit:g}{target.unit}: {mark}")
    for note in result.notes:
        print(f"   note: {note}")
    if json_path:
        Path(json_path).write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
    return 0
