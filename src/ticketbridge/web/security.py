"""Who may see the page and who may press its buttons.

* Bound to a loopback address, the page is open to whoever can reach that address (the
  machine's own users). Bound anywhere else it needs the token from the environment variable
  `status.token_env` names, and refuses to start without one (`StatusTokenMissing`, exit 2).
  Clients send it as `Authorization: Bearer <token>` (Prometheus: `authorization:` in the
  scrape config), or open `/?token=<token>` once: that sets an HttpOnly cookie and drops the
  token from the address bar. /healthz and /readyz stay open, for load balancers and probes.
* Every state-changing request (POST) is checked against cross-site request forgery twice:
  the `csrf` form field must equal the per-session `tb_csrf` cookie (double submit; another site
  can neither read nor set that cookie, SameSite=Strict), and an Origin header, when the browser
  sends one, must be this page's own origin.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.requests import Request

from ..sync.config import MissingSecret

CSRF_COOKIE = "tb_csrf"
TOKEN_COOKIE = "tb_status_token"
DEFAULT_TOKEN_ENV = "TICKETBRIDGE_STATUS_TOKEN"


class StatusTokenMissing(MissingSecret):
    """Bound beyond loopback without a token: refuse to start (the CLI exits 2)."""

    def __init__(self, host: str, env_var: str) -> None:
        super().__init__("status", env_var)
        self.args = (f"status page: listening on {host} (not a loopback address) needs an access token; "
                     f"export {env_var}=<a long random value>, or listen on 127.0.0.1",)

    def __str__(self) -> str:
        return str(self.args[0])


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def required_token(host: str, token_env: str, env: Mapping[str, str]) -> str | None:
    """The token requests must carry: None on loopback; raises StatusTokenMissing elsewhere."""
    if is_loopback(host):
        return None
    token = env.get(token_env, "")
    if not token:
        raise StatusTokenMissing(host, token_env)
    return token


def same(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(TOKEN_COOKIE)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def origin_ok(request: Request) -> bool:
    """No Origin (a non-browser client) passes; a browser's Origin must be this very page's."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return origin != "null" and parts.scheme == request.url.scheme and parts.netloc == request.headers.get("host")


def csrf_ok(request: Request, form_token: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie) and same(cookie or "", form_token) and origin_ok(request)
