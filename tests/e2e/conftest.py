from collections.abc import Iterator
from pathlib import Path

import pytest

# The web app's browser fixtures (Playwright itself is imported only when they are used).
from tests.e2e.browser import browser, pages, web_build, web_contest  # noqa: F401
from tests.e2e.stack import Stack, start_stack, stop_stack

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("stack"), ARTIFACTS)
    try:
        yield running
    finally:
        stop_stack(running)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keeps each phase's report on the test, so the browser fixtures can save a
    screenshot of the page a failed test left behind."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)
