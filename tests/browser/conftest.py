"""One running system and one Chromium for every browser test.

The browser is Debian's `chromium` (the Makefile installs it), driven by Playwright through
its path: Playwright's own browser download is never used. It trusts the system's dev CA
the way a person's Chromium would: the CA is added to an NSS database (`certutil`, from
libnss3-tools) in a HOME of the tests' own, which is where Chromium on Linux reads the
certificates its user trusts. No certificate error is ignored.

The system is started once for the package (`flotilla up --detach` on a scratch var dir,
as tests/e2e does) with a short idle timeout for web sessions (`FLOTILLA_SESSION_IDLE_
TIMEOUT_S`, the web service's setting) so that one test can watch a session expire.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.browser.harness import SYSTEM_ENV, Api, IdleSession, Visitor, new_visitor
from tests.e2e.system import RunningSystem, start_system

_FIX = "as root: apt-get install -y chromium libnss3-tools (`make browser` does it)"


def _tools() -> tuple[str, str]:
    chromium, certutil = shutil.which("chromium"), shutil.which("certutil")
    missing = [
        what
        for what, path in (("Debian's chromium", chromium), ("certutil (libnss3-tools)", certutil))
        if path is None
    ]
    if chromium is None or certutil is None:
        pytest.skip(f"the browser tests need {' and '.join(missing)}: {_FIX}")
    return chromium, certutil


@pytest.fixture(scope="package")
def browser_tools() -> tuple[str, str]:
    """The paths of chromium and certutil; skips the tests, naming what is missing."""
    return _tools()


@pytest.fixture(scope="package")
def system(browser_tools: tuple[str, str]) -> Iterator[RunningSystem]:
    yield from start_system("sqlite", instances=1, env=SYSTEM_ENV)


@pytest.fixture(scope="package")
def browser_home(
    system: RunningSystem, browser_tools: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A HOME whose NSS database trusts the system's dev CA (and nothing else added)."""
    home = tmp_path_factory.mktemp("browser-home")
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True)
    certutil = browser_tools[1]
    for command in (
        ["-N", "--empty-password"],
        ["-A", "-n", "flotilla-dev-ca", "-t", "C,,", "-i", system.ca],
    ):
        subprocess.run(
            [certutil, "-d", f"sql:{database}", *command], check=True, capture_output=True
        )
    return home


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(
    playwright: Playwright, browser_tools: tuple[str, str], browser_home: Path
) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(
        executable_path=browser_tools[0],
        headless=True,
        # Chromium's sandbox cannot start as root (it says so and exits): only then is it off.
        chromium_sandbox=os.geteuid() != 0,
        env={**os.environ, "HOME": str(browser_home)},
    )
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="package")
def api(system: RunningSystem) -> Iterator[Api]:
    with system.client() as client:
        yield Api(system, client)


@pytest.fixture
def visitor(browser: Browser, system: RunningSystem) -> Iterator[Visitor]:
    """A fresh browser context (no cookies, empty cache) and its page. The test fails on
    any console error or uncaught exception the page had that it did not ask for."""
    person = new_visitor(browser, system)
    try:
        yield person
    finally:
        person.context.close()
    unexpected = person.console.unexpected()
    if unexpected:
        pytest.fail("the page logged errors:\n" + "\n".join(unexpected))


@pytest.fixture(scope="package", autouse=True)
def idle_session(browser: Browser, system: RunningSystem) -> Iterator[IdleSession]:
    """A session opened before the first test and never used again: by the time the
    expired-session test (test_refusals.py) looks at it, the idle timeout has mostly or
    wholly passed, so that test waits little or not at all."""
    person = new_visitor(browser, system)
    try:
        yield IdleSession(person)
    finally:
        person.context.close()
