"""Debian's chromium for Playwright: installed by tools/ensure_chromium.sh when missing (never
`playwright install`); the browser tests skip, saying why, where it cannot be had."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# As the machine notes advise: no sandbox (we run as root), and none of chromium's background
# traffic, which this machine's closed network would refuse.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        try:
            result = subprocess.run([str(REPO / "tools" / "ensure_chromium.sh")], capture_output=True, text=True,
                                    timeout=900)
        except (OSError, subprocess.TimeoutExpired) as error:
            pytest.skip(f"chromium is not installed and tools/ensure_chromium.sh could not run: {error}")
        if result.returncode != 0 or not CHROMIUM.exists():
            reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
            pytest.skip(f"chromium is not installed and could not be installed: {reason}")
    return CHROMIUM


@pytest.fixture
def page(chromium: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                   "(pip install -e '.[dev]')")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.set_default_timeout(10_000)
            yield context.new_page()
        finally:
            browser.close()
