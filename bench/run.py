"""Run every benchmark of issue 8 and write their figures to bench/RESULTS.md.

    make bench                 # the full runs: .venv/bin/python bench/run.py
    make bench-quick           # everyday use, under 2 minutes: .venv/bin/python bench/run.py --quick

Each script runs in its own process (`python bench/<name>.py [--quick] --json FILE`; see its
docstring for what it measures and how), so one's memory, threads and emulators never weigh on
the next. The full run rewrites bench/RESULTS.md; the quick run writes bench/RESULTS-quick.md
(not committed), so everyday runs never overwrite the published figures. A script that fails is
reported in the file and makes the exit status 1; the others still run. Each result is also kept
as JSON (bench/results/, quick ones in bench/results/quick/), so `--only core` re-runs one script
and rewrites the file with the kept results of the others.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import REPO, machine

BENCH = Path(__file__).resolve().parent
# In the order: API efficiency, rate-limit use, latency, core throughput, scale-out.
SCRIPTS = ("backfill", "ratelimit", "latency", "core", "scaleout")
# Settings a script runs with here. Latency: 20 changes/s at 50 ms a request keep about 16 items in
# flight, twice the default `sync.concurrency` (README, Configuration); the setting a user would make.
SETTINGS = {"latency": ["--concurrency", "16"]}
TIMEOUT = {False: 3600.0, True: 120.0}  # seconds per script


def run_one(name: str, quick: bool, workdir: Path) -> dict[str, Any]:
    """One script's result as its JSON, or a stand-in saying why there is none."""
    out = workdir / f"{name}.json"
    options = [*SETTINGS.get(name, []), *(["--quick"] if quick else [])]
    args = [sys.executable, str(BENCH / f"{name}.py"), *options, "--json", str(out)]
    started = time.monotonic()
    try:
        done = subprocess.run(args, cwd=REPO, timeout=TIMEOUT[quick], check=False)
        error = None if done.returncode == 0 else f"exit status {done.returncode}"
    except subprocess.TimeoutExpired:
        error = f"no result within {TIMEOUT[quick]:.0f} s"
    seconds = time.monotonic() - started
    if error is None and not out.exists():
        error = "wrote no result"
    if error is not None:
        shown = " ".join([f"bench/{name}.py", *options])
        return {"name": name, "title": name, "command": f".venv/bin/python {shown}", "error": error,
                "seconds": seconds}
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    result["seconds"] = seconds
    result["at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return result


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.5g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def markdown(results: list[dict[str, Any]], quick: bool) -> str:
    facts = machine()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    seconds = sum(result["seconds"] for result in results)
    command = "make bench-quick" if quick else "make bench"
    lines = [
        "# Benchmark results" + (" (quick run)" if quick else ""),
        "",
        f"Written by `{command}` (`.venv/bin/python bench/run.py{' --quick' if quick else ''}`) on {stamp} "
        f"(the scripts took {seconds:,.0f} s in all), on {facts['cpus']} CPUs, Python {facts['python']}, "
        f"{facts['system']}. "
        "Every tracker is a local emulator (ticketbridge's own, see DESIGN.md); each section names the "
        "exact command that produced it. What was profiled and removed: bench/README.md.",
        "",
        "## Targets",
        "",
        "| Benchmark | Figure | Measured | Target | Met |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['title']} | (failed: {result['error']}) | | | no |")
        for target in result.get("targets", []):
            unit = target.get("unit", "")
            lines.append(f"| {result['title']} | {target['what']} | {cell(target['value'])}{unit} "
                         f"| {target['op']} {cell(target['limit'])}{unit} | {'yes' if target['met'] else '**no**'} |")
    for result in results:
        lines += ["", f"## {result['title']}", "", "```", result["command"], "```", ""]
        if "error" in result:
            lines.append(f"Failed: {result['error']} (after {result['seconds']:.0f} s).")
            continue
        lines.append(f"Took {result['seconds']:.0f} s" + (f", run on {result['at']}." if "at" in result else "."))
        lines.append("")
        for label, value in result.get("figures", {}).items():
            lines.append(f"- {label}: {cell(value)}")
        for name, rows in result.get("tables", {}).items():
            if not rows:
                continue
            columns = list(rows[0])
            lines += ["", f"{name}:", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
        if result.get("notes"):
            lines += ["", "Notes:", ""]
            lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description="Run every benchmark and write bench/RESULTS.md.")
    cli.add_argument("--quick", action="store_true", help="smaller runs, under 2 minutes in all")
    cli.add_argument("--only", nargs="+", choices=SCRIPTS,
                     help="run only these; the others' kept results (bench/results/) fill the file")
    args = cli.parse_args(argv)
    started = time.monotonic()
    kept = BENCH / "results" / ("quick" if args.quick else "")
    kept.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
        for name in SCRIPTS:
            path = kept / f"{name}.json"
            if args.only and name not in args.only:
                if path.exists():
                    results.append(json.loads(path.read_text(encoding="utf-8")))
                continue
            results.append(run_one(name, args.quick, Path(tmp)))
            path.write_text(json.dumps(results[-1], indent=2) + "\n", encoding="utf-8")
    seconds = time.monotonic() - started
    target = BENCH / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    target.write_text(markdown(results, args.quick), encoding="utf-8")
    failed = [r["name"] for r in results if "error" in r]
    missed = [f"{r['title']}: {t['what']}" for r in results for t in r.get("targets", []) if not t["met"]]
    print(f"\nwrote {target.relative_to(REPO)} in {seconds:.0f} s; "
          f"{len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; "
          f"{len(missed)} target(s) missed{': ' + '; '.join(missed) if missed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
