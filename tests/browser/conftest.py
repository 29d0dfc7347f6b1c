"""Headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright.

When /usr/bin/chromium is missing the set-up installs it (`apt-get install chromium`, as root);
if it cannot, the tests skip on a laptop and fail on CI. Playwright's own browser download is
never used (`playwright install` is not needed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import debian
from tests.conftest import ON_CI

CHROMIUM = os.environ.get("SKYPORT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _unavailable(message: str) -> None:
    if ON_CI:
        pytest.fail(message)
    pytest.skip(message)


def _ensure_chromium() -> None:
    try:
        debian.install("chromium", Path(CHROMIUM).exists)
    except debian.InstallFailed as exc:
        _unavailable(str(exc))


# Module scope: Playwright's sync API keeps an asyncio loop running in the main thread while it
# is open, and later tests call asyncio.run() there (the payments simulator, the intake batcher).
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _ensure_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed: {exc}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
