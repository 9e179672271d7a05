"""The status app on uvicorn in a background thread, next to the sync loop (like the webhook
receiver; see serving.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

import structlog

from ..serving import BackgroundServer
from .app import build_app
from .security import DEFAULT_TOKEN_ENV, required_token
from .state import StatusContext

log = structlog.get_logger("ticketbridge.status")


class StatusServer(BackgroundServer):
    name = "status page"

    def __init__(self, ctx: StatusContext, host: str = "127.0.0.1", port: int = 8950, *,
                 token_env: str = DEFAULT_TOKEN_ENV, env: Mapping[str, str] | None = None,
                 title: str = "ticketbridge status") -> None:
        # Checked before anything listens: beyond loopback without a token is refused (exit 2).
        token = required_token(host, token_env, os.environ if env is None else env)
        self.context = ctx
        self.protected = token is not None
        self.app = build_app(ctx, token=token, title=title)
        super().__init__(self.app, host, port)

    def listening(self) -> None:
        # The token itself is never logged; only whether one is required.
        log.info("status.listening", url=self.url, token_required=self.protected)


def parse_listen(text: str) -> tuple[str, int]:
    """"127.0.0.1:8950" / "[::1]:8950" -> (host, port); ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:8950)")
    return host.strip("[]"), int(port)


def serve_until_stopped(ctx: StatusContext, listen: str, *, banner: str = "",
                        env: Mapping[str, str] | None = None) -> None:
    """Serve the page until Ctrl-C or SIGTERM (`ticketbridge demo --serve`)."""
    import signal

    host, port = parse_listen(listen)
    stop = threading.Event()
    with StatusServer(ctx, host, port, env=env) as server:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        print(f"\nStatus page: {server.url}/  (metrics: {server.url}/metrics)", flush=True)
        if banner:
            print(banner, flush=True)
        print("Ctrl-C stops the page and the sandbox.", flush=True)
        stop.wait()
    print("stopped", flush=True)
