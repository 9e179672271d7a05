from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from ticketbridge.cli import open_runtime
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import load_config
from ticketbridge.sync.engine import Engine, Flow, PassStats
from ticketbridge.sync.sla_service import SlaService
from ticketbridge.sync.store import Store

REPO = Path(__file__).resolve().parents[2]
MAPPING = REPO / "mappings" / "zendesk-jira.yaml"
POLICY = REPO / "mappings" / "policy.yaml"


@dataclass
class Bridge:
    sandbox: Sandbox
    store: Store
    flow: Flow
    config_path: Path
    retry: RetryPolicy
    sla: SlaService | None = None

    @property
    def engine(self) -> Engine:
        return Engine(self.store, [self.flow], sla=self.sla)

    def sync(self) -> PassStats:
        return self.engine.sync_once()

    def sync_until_quiet(self, limit: int = 6) -> PassStats:
        total = PassStats()
        for _ in range(limit):
            stats = self.sync()
            total.merge(stats)
            if stats.writes == 0 and not stats.failures:
                return total
        raise AssertionError(f"still writing after {limit} passes: {total}")

    @property
    def env(self) -> dict[str, str]:
        return self.sandbox.credentials()


def writes(sandbox: Sandbox) -> int:
    """Requests that change tracker state (Jira's POST search/jql only reads)."""
    return sum(1 for emulator in sandbox.emulators.values() for method, path, _ in emulator.request_log
               if method in ("POST", "PUT", "PATCH", "DELETE") and not path.endswith("/search/jql"))


def make_bridge(tmp_path: Path, sandbox: Sandbox, retry: RetryPolicy | None = None, *,
                policy: Path | None = None, now: Callable[[], datetime] | None = None) -> Bridge:
    config_path = sandbox.write_config(tmp_path / "config.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
                                       mapping=MAPPING, policy=policy)
    config = load_config(config_path, env=sandbox.credentials())
    retry = retry or RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.2)
    runtime = open_runtime(config, sandbox.credentials(), retry=retry, now=now)
    return Bridge(sandbox, runtime.store, runtime.flows[0], config_path, retry, runtime.sla)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0) as running:
        yield running


@pytest.fixture
def bridge(tmp_path: Path, sandbox: Sandbox) -> Iterator[Bridge]:
    made = make_bridge(tmp_path, sandbox)
    yield made
    made.store.close()
