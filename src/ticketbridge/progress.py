"""A progress bar (rich) for long CLI work: `sync --once` over many items, a first backfill.

The engine already names every item it finishes in its structured log (`engine.item_synced`,
`engine.item_failed`, `engine.item_halted`, per flow between `engine.pass_start` and
`engine.pass_done`), so the bar counts those events with a structlog processor instead of asking
the engine for a callback: the engine stays free of presentation, and the bar sees exactly what
the logs report. Totals are unknown in advance (trackers page through changes without a count),
so the bar shows a running count, the flow being synced and the elapsed time.

The bar is drawn only for a person: on a terminal, and never when the logs are JSON lines (a log
shipper or a script reads stderr then). Events below the configured log level never reach a
processor, so while the bar is shown at a level above INFO (TICKETBRIDGE_LOG_LEVEL=WARNING) the
INFO events are let through to the count and dropped right after it, as the level would have.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

SYNCED, FAILED = "engine.item_synced", ("engine.item_failed", "engine.item_halted")
PASS_START = "engine.pass_start"


class SyncProgress:
    """Context manager: while open, counts the engine's item events into a progress bar on
    `console`. Usable around any code that runs engine passes."""

    def __init__(self, console: Console, description: str = "sync") -> None:
        self.console = console
        self.description = description
        self.synced = 0
        self.failed = 0
        self.flow = ""
        self._progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.fields[synced]} items synced{task.fields[failed]}"), TimeElapsedColumn(),
            console=console, transient=False)
        self._task: TaskID | None = None
        self._saved: dict[str, Any] | None = None

    def count(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """A structlog processor: looks at the event and passes it on unchanged."""
        name = event.get("event")
        if name == SYNCED:
            self.synced += 1
        elif name in FAILED:
            self.failed += 1
        elif name == PASS_START and event.get("flow"):
            self.flow = str(event["flow"])
        else:
            return event
        self._refresh()
        return event

    def _refresh(self) -> None:
        if self._task is None:
            return
        flow = f" {self.flow}" if self.flow else ""
        self._progress.update(self._task, description=f"{self.description}{flow}", synced=self.synced,
                              failed=f", {self.failed} failed" if self.failed else "")

    def __enter__(self) -> SyncProgress:
        self._task = self._progress.add_task(self.description, total=None, synced=0, failed="")
        self._progress.start()
        config = structlog.get_config()
        self._saved = {"processors": list(config["processors"]), "wrapper_class": config["wrapper_class"]}
        # First in the chain, so the count sees the event before any renderer turns it into text.
        processors: list[Any] = [self.count, *config["processors"]]
        level = effective_level(config["wrapper_class"])
        if level is not None and level > logging.INFO:
            processors.insert(1, drop_below(level))
            structlog.configure(processors=processors,
                                wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        else:
            structlog.configure(processors=processors)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._saved is not None:
            structlog.configure(**self._saved)
            self._saved = None
        self._refresh()
        self._progress.stop()


def effective_level(wrapper_class: Any) -> int | None:
    """The minimum level of a `make_filtering_bound_logger` class, None for any other wrapper."""
    try:
        return int(wrapper_class.get_effective_level(None))
    except (AttributeError, TypeError, ValueError):
        return None


def drop_below(level: int) -> Any:
    """A processor doing what the configured level's filter would have done to an event."""

    def drop(_logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        number = logging.getLevelName("ERROR" if method == "exception" else method.upper())
        if isinstance(number, int) and number < level:
            raise structlog.DropEvent
        return event

    return drop


def wanted(log_format: str, console: Console | None = None) -> Console | None:
    """The console to draw on, or None when no bar should be drawn: stderr is not a terminal (a
    pipe, a file, a test's captured output) or the logs are JSON. A caller may pass a console
    that forces a terminal (`Console(file=..., force_terminal=True)`), which is how tests see it."""
    if log_format == "json":
        return None
    if console is None:
        # The real stream, not rich's guess: FORCE_COLOR in a CI environment must not put bars
        # into captured logs.
        if not sys.stderr.isatty():
            return None
        console = Console(stderr=True)
    return console if console.is_terminal else None


def sync_progress(log_format: str, console: Console | None = None, description: str = "sync"
                  ) -> SyncProgress | _NoProgress:
    """A SyncProgress when a bar is wanted (see `wanted`), else a context that does nothing."""
    chosen = wanted(log_format, console)
    return SyncProgress(chosen, description) if chosen is not None else _NoProgress()


class _NoProgress:
    synced = failed = 0

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
