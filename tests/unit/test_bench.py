"""bench/run.py (`make bench`): what it writes into RESULTS.md, and that every script it runs takes
the options it passes. The benchmarks themselves print figures; nothing here times anything."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[tuple[ModuleType, ModuleType]]:
    sys.path.insert(0, str(BENCH))  # as `python bench/run.py` sees its neighbours
    try:
        yield importlib.import_module("run"), importlib.import_module("common")
    finally:
        sys.path.remove(str(BENCH))


def test_results_list_every_target_with_its_verdict_and_every_failed_script(bench) -> None:
    run, common = bench
    result = common.Result("core", "Core throughput", ".venv/bin/python bench/core.py", quick=False,
                           figures={"changes/s (SQLite)": 2450.5, "links": 100_000},
                           tables={"by store": [{"store": "sqlite", "changes/s": 2450.5}]},
                           targets=[common.Target("changes/s on SQLite", 2450.5, ">=", 2000),
                                    common.Target("peak RSS", 231.0, "<", 200, " MB")],
                           notes=["one core"]).to_json()
    result["seconds"], result["at"] = 12.0, "2026-12-03 08:00 UTC"
    failed = {"name": "latency", "title": "latency", "command": ".venv/bin/python bench/latency.py",
              "error": "exit status 1", "seconds": 3.0}
    text = run.markdown([result, failed], quick=False)
    assert "| Core throughput | changes/s on SQLite | 2,450 | >= 2,000 | yes |" in text
    assert "| Core throughput | peak RSS | 231 MB | < 200 MB | **no** |" in text
    assert "| latency | (failed: exit status 1) | | | no |" in text
    assert ".venv/bin/python bench/core.py" in text and "- links: 100,000" in text
    assert "| sqlite | 2,450 |" in text and "- one core" in text
    # A script re-run alone (--only) says when; the header adds up what the scripts took.
    assert "Took 12 s, run on 2026-12-03 08:00 UTC." in text and "(the scripts took 15 s in all)" in text


def test_ratios_keep_their_decimals(bench) -> None:
    run, _ = bench
    assert run.cell(1.0001) == "1.0001" and run.cell(0.293) == "0.293" and run.cell(891.4) == "891"


def test_the_command_shown_leaves_out_where_the_json_went(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    _, common = bench
    monkeypatch.setattr(sys, "argv", [str(BENCH / "core.py"), "--quick", "--json", "/tmp/x.json"])
    assert common.command_line() == ".venv/bin/python bench/core.py --quick"


def test_target_verdicts(bench) -> None:
    _, common = bench
    assert common.Target("ratio", 1.10, "<=", 1.10).met
    assert not common.Target("ratio", 1.11, "<=", 1.10).met
    assert not common.Target("p95", 1.0, "<", 1.0).met
    assert common.Target("share", 0.9, ">=", 0.9).met


@pytest.mark.parametrize("name", ["backfill", "ratelimit", "latency", "core", "scaleout"])
def test_every_script_make_bench_runs_takes_quick_and_json(bench, name: str) -> None:
    run, _ = bench
    assert name in run.SCRIPTS
    shown = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--help"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "--quick" in shown.stdout and "--json" in shown.stdout


def test_make_bench_runs_the_runner() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "bench: $(STAMP) compiled\n\t$(BIN)/python bench/run.py\n" in makefile
    assert "bench-quick: $(STAMP) compiled\n\t$(BIN)/python bench/run.py --quick\n" in makefile
