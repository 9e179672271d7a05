"""The status app on uvicorn in a background thread, next to the sync loop (like the webhook
receiver): `start()` returns once it listens, `stop()` waits for it to finish."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping

import structlog

from .app import build_app
from .security import DEFAULT_TOKEN_ENV, required_token
from .state import StatusContext

log = structlog.get_logger("ticketbridge.status")


class StatusServer:
    def __init__(self, ctx: StatusContext, host: str = "127.0.0.1", port: int = 8950, *,
                 token_env: str = DEFAULT_TOKEN_ENV, env: Mapping[str, str] | None = None,
                 title: str = "ticketbridge status") -> None:
        import uvicorn

        # Checked before anything listens: beyond loopback without a token is refused (exit 2).
        token = required_token(host, token_env, os.environ if env is None else env)
        self.context = ctx
        self.host, self.port, self.protected = host, port, token is not None
        self.app = build_app(ctx, token=token, title=title)
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, lifespan="off",
                                                     access_log=False, log_config=None, log_level="warning"))
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> StatusServer:
        self._thread = threading.Thread(target=self._run, name="status-page", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise OSError(f"status page: could not listen on {self.host}:{self.port}")
            time.sleep(0.01)
        for server in self._server.servers:
            for sock in server.sockets:
                self.port = sock.getsockname()[1]
        # The token itself is never logged; only whether one is required.
        log.info("status.listening", url=self.url, token_required=self.protected)
        return self

    def _run(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn's answer to a failed bind; start() reports it
            self._server.run()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> StatusServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


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
