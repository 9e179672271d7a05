"""The status page, /metrics, /healthz and /readyz that `ticketbridge run` (and `demo --serve`) serve.

Layout: `state` reads what the page shows (from the store and this process's counters),
`urls` builds links to each tracker's own UI, `metrics` is the Prometheus collector,
`security` holds the bind/token/CSRF rules, `pages` renders HTML, `app` wires the Starlette
routes, and `server` runs it on uvicorn in a background thread.
"""

from __future__ import annotations

from .app import build_app
from .security import StatusTokenMissing
from .server import StatusServer
from .state import RetryOutcome, StatusContext

__all__ = ["RetryOutcome", "StatusContext", "StatusServer", "StatusTokenMissing", "build_app"]
