"""The container's healthcheck: exit 0 healthy, 1 unhealthy (Docker reserves 2).

With a `status:` section in the config, the running service's own `/healthz` answers (the status
page serves it without a token, for exactly this); that proves the `ticketbridge run` process is
alive, not merely that its store is. Without one there is no port to ask, so the check falls back
to `ticketbridge db current`: the store answers and its schema is readable.

    python /opt/ticketbridge/healthcheck.py [CONFIG]      (default /etc/ticketbridge/config.yaml)
"""

from __future__ import annotations

import contextlib
import io
import sys
import urllib.request

DEFAULT_CONFIG = "/etc/ticketbridge/config.yaml"
TIMEOUT = 5.0


def healthz_url(host: str, port: int) -> str:
    """Where to reach the page from inside its own container: a wildcard bind answers on loopback."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"


def check(config_path: str) -> tuple[bool, str]:
    from ticketbridge.cli import main as ticketbridge
    from ticketbridge.sync.config import load_config

    config = load_config(config_path)
    if config.status is not None:
        url = healthz_url(config.status.host, config.status.port)
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            return answer.status == 200, f"{url}: {answer.status}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = ticketbridge(["db", "current", "--config", config_path])
    return code == 0, out.getvalue().strip()


def main(argv: list[str]) -> int:
    try:
        healthy, detail = check(argv[1] if len(argv) > 1 else DEFAULT_CONFIG)
    except Exception as error:  # any failure to ask is "unhealthy", said in one line
        healthy, detail = False, f"{type(error).__name__}: {error}"
    print(("healthy: " if healthy else "unhealthy: ") + detail)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
