"""An ASGI app on uvicorn in a background thread, next to the sync loop: the webhook receiver and
the status page. `start()` returns once it listens (OSError when it cannot), `stop()` waits for it."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Self


class BackgroundServer:
    name = "server"  # names the thread and the error of a failed bind

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self.host = host
        self.port = port
        # No lifespan, no access log, and no logging set-up of uvicorn's own (ours is structlog).
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, lifespan="off",
                                                     access_log=False, log_config=None, log_level="warning"))
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> Self:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise OSError(f"{self.name}: could not listen on {self.host}:{self.port}")
            time.sleep(0.01)
        for server in self._server.servers:
            for sock in server.sockets:
                self.port = sock.getsockname()[1]  # the port the OS chose for port 0
        self.listening()
        return self

    def listening(self) -> None:
        """Called once the server listens (log where)."""

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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
