"""The Retry button's action: `Engine.retry_failure`, the code `ticketbridge failures retry` runs,
with its outcomes told in the same words."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..connectors.errors import NotFound, TrackerError
from ..sync.engine import Retried
from ..sync.store import Failure
from .state import Retry, RetryOutcome


def retry_action(run: Callable[[Failure], Retried]) -> Retry:
    """Wrap `run` (which retries one failure through an engine) into the page's action. One retry
    at a time per process: a double click must not replay the same item twice at once."""
    lock = threading.Lock()

    def retry(failure: Failure) -> RetryOutcome:
        with lock:
            try:
                retried = run(failure)
            except NotFound:
                return RetryOutcome(False, f"{failure.item_key} no longer exists on {failure.tracker}; "
                                           f"`ticketbridge failures drop {failure.id}` lets it go")
            except TrackerError as error:
                return RetryOutcome(False, str(error))
        return describe(failure, retried)

    return retry


def describe(failure: Failure, retried: Retried) -> RetryOutcome:
    stats = retried.stats
    if retried.resolved:
        return RetryOutcome(True, f"{failure.item_key} synced through {failure.flow} (created "
                                  f"{sum(stats.created.values())}, fields pushed {sum(stats.fields_pushed.values())}, "
                                  f"comments mirrored {sum(stats.comments_mirrored.values())})")
    if retried.failed_again:
        after = retried.after
        return RetryOutcome(False, f"still open after attempt {after.attempts} ({after.kind}/{after.reason}): "
                                   f"{after.message}")
    return RetryOutcome(False, f"{failure.item_key} was not synced (it no longer takes part in {failure.flow}, or "
                               f"its pair was already in step); `ticketbridge failures drop {failure.id}` lets it go")
