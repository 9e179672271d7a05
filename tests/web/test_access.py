"""Who may reach the page: open on loopback; elsewhere only with the token from the environment,
and `ticketbridge run` refuses to start bound elsewhere without one (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ticketbridge.sandbox import Sandbox
from ticketbridge.web import StatusServer, StatusTokenMissing, build_app
from ticketbridge.web.security import is_loopback, required_token

from ..e2e.conftest import MAPPING, Bridge
from ..e2e.test_cli import free_port, run_cli
from .conftest import context_for

STATUS_TOKEN_SECRET = "status-token-3c1f9e0b7d2a4c58"  # the suite's secret scan checks it never shows


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.53", True), ("::1", True),
                                                ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                                ("::", False), ("192.168.1.10", False), ("status.example", False)])
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_bind_without_the_token_env_refuses_with_a_clear_message(bridge: Bridge) -> None:
    with pytest.raises(StatusTokenMissing) as raised:
        StatusServer(context_for(bridge), "0.0.0.0", 0, token_env="TB_TEST_STATUS_TOKEN", env={})
    assert "TB_TEST_STATUS_TOKEN" in str(raised.value) and "0.0.0.0" in str(raised.value)
    assert required_token("127.0.0.1", "TB_TEST_STATUS_TOKEN", {}) is None


def test_with_a_token_every_page_but_the_probes_needs_it(bridge: Bridge) -> None:
    app = build_app(context_for(bridge), token=STATUS_TOKEN_SECRET)
    with TestClient(app, base_url="http://status.example:8950") as client:
        for path in ("/", "/metrics"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            ok = client.get(path, headers={"Authorization": f"Bearer {STATUS_TOKEN_SECRET}"})
            assert ok.status_code == 200
            assert STATUS_TOKEN_SECRET not in ok.text
        assert client.post("/failures/1/retry", data={"csrf": "x"}).status_code == 401
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
        # A browser opens /?token=... once: the token becomes an HttpOnly cookie and leaves the URL.
        first = client.get(f"/?token={STATUS_TOKEN_SECRET}", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/"
        assert "httponly" in first.headers["set-cookie"].lower()
        assert client.get("/").status_code == 200


def write_config(tmp_path: Path, sandbox: Sandbox, listen: str, token_env: str) -> Path:
    path = sandbox.write_config(tmp_path / "config.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
                                mapping=MAPPING)
    path.write_text(path.read_text() + f"status:\n  listen: {listen}\n  token_env: {token_env}\n")
    return path


def test_run_bound_beyond_loopback_without_the_token_exits_2_before_starting(
        tmp_path: Path, sandbox: Sandbox) -> None:
    config = write_config(tmp_path, sandbox, f"0.0.0.0:{free_port()}", "TB_TEST_STATUS_TOKEN")
    result = run_cli(["run", "--config", str(config)], {**sandbox.credentials(), "TB_TEST_STATUS_TOKEN": ""})
    assert result.returncode == 2, result.stderr
    assert "TB_TEST_STATUS_TOKEN" in result.stderr and "loopback" in result.stderr
    assert "Traceback" not in result.stderr
    assert not sandbox.zendesk.request_log, "nothing was synced"


def test_demo_serve_beyond_loopback_without_the_token_exits_2_before_the_demo() -> None:
    result = run_cli(["demo", "--serve", "--status-listen", "0.0.0.0:8950"], {"TICKETBRIDGE_STATUS_TOKEN": ""})
    assert result.returncode == 2 and "TICKETBRIDGE_STATUS_TOKEN" in result.stderr
    assert "Sandbox:" not in result.stdout
