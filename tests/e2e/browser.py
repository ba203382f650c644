"""Browser fixtures for the web app's tests (tests/e2e/test_web.py): Playwright driving
Debian's Chromium (never a downloaded browser), the web build served by the stack's
gateway, and a contest of the tests' own (the story test closes the demo round).

Playwright is imported inside the fixtures, so the rest of the e2e suite runs without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.stack import ROOT, Stack
from tests.e2e.support import QUESTIONS_CSV, bearer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORD = "mat-khau-2026"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Pages a test builds are about the app: these schemes never leave the machine.
LOCAL_SCHEMES = {"data", "blob", "about", "chrome-error"}
# The browser's session (services/registration/api.py): the refresh token in this HttpOnly
# cookie, asked for with this header; the app keeps only a flag in localStorage.
REFRESH_COOKIE = "__Secure-hoithi-refresh"
COOKIE_MODE = {"X-Refresh-Cookie": "1"}
SIGNED_IN_FLAG = {"hoithi.signed_in": "1"}


@dataclass
class WebContest:
    """A contest made for the browser tests: an open round 1 with the demo question bank."""

    base_url: str
    admin_token: str
    contest_id: str
    slug: str
    title: str
    round_id: str
    round_opens_at: datetime
    question_count: int
    time_limit_s: int
    unit_id: str  # Phường Lê Chân (LC-P01)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=15)

    def register(self, name: str, phone: str, email: str | None = None) -> str:
        """A participant signed up through the API; returns their access token."""
        with self.client() as client:
            created = client.post("/api/auth/register", json={
                "full_name": name, "phone": phone, "email": email, "unit_id": self.unit_id, "password": PASSWORD,
            })
            assert created.status_code == 201, created.text
            login = client.post("/api/auth/login", json={"login": phone, "password": PASSWORD})
            assert login.status_code == 200, login.text
            return str(login.json()["access_token"])

    def login_body(self, phone: str) -> dict[str, Any]:
        with self.client() as client:
            login = client.post("/api/auth/login", json={"login": phone, "password": PASSWORD})
            assert login.status_code == 200, login.text
            return dict(login.json())


@pytest.fixture(scope="session")
def web_build() -> Path:
    """The served folder (WEB_ROOT = web/dist) built from web/src, as `make test` does."""
    done = subprocess.run([sys.executable, str(ROOT / "web" / "build.py")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return ROOT / "web" / "dist"


# Package, not session: Playwright's sync API keeps its event loop running in the main
# thread while it is open, and every async test collected after tests/e2e would find it
# ("cannot be called from a running event loop").
@pytest.fixture(scope="package")
def browser(web_build: Path) -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run `make services` (installs it as root) or "
                    "`apt-get install chromium`, or set CHROMIUM; never `playwright install`.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def web_contest(stack: Stack) -> WebContest:
    """A contest of the browser tests' own, made through the organisers' API: the questions
    first (a round snapshots the bank when it opens), then round 1, open since a minute ago."""
    slug = f"web-{uuid.uuid4().hex[:6]}"
    title = "Tìm hiểu pháp luật trên trình duyệt"
    opens_at = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
    with httpx.Client(base_url=stack.base_url, timeout=15) as client:
        login = client.post("/api/auth/login", json={"login": "admin", "password": "admin"})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        created = client.post("/api/admin/contests", headers=bearer(token), json={
            "slug": slug, "title": title,
            "rules": "Mỗi người được thi tối đa 3 lượt mỗi vòng.\nXếp hạng theo số câu đúng, rồi thời gian làm bài.",
        })
        assert created.status_code == 201, created.text
        contest_id = created.json()["id"]
        with QUESTIONS_CSV.open("rb") as f:
            imported = client.post(f"/api/admin/contests/{contest_id}/questions/import", headers=bearer(token),
                                   files={"file": ("questions.csv", f, "text/csv")})
        assert imported.status_code == 200, imported.text
        round_ = client.post(f"/api/admin/contests/{contest_id}/rounds", headers=bearer(token), json={
            "number": 1, "title": "Tuần 1", "opens_at": opens_at.isoformat(),
            "closes_at": (opens_at + timedelta(hours=6)).isoformat(), "question_count": 10, "time_limit_s": 900,
            "max_attempts": 3,
            "prediction": {"text": "Có bao nhiêu người tham gia vòng thi này?", "target": "participants"},
            "prizes": [{"name": "Giải Nhất", "count": 1}, {"name": "Giải Nhì", "count": 2}],
        })
        assert round_.status_code == 201, round_.text
        units = client.get("/api/units", params={"q": "LC-P01"}).json()
        unit_id = next(u["id"] for u in units if u["code"] == "LC-P01")
    return WebContest(
        base_url=stack.base_url, admin_token=token, contest_id=contest_id, slug=slug, title=title,
        round_id=round_.json()["id"], round_opens_at=opens_at, question_count=10, time_limit_s=900, unit_id=unit_id,
    )


@dataclass
class PageRecord:
    """What a page did: every URL it asked for, its console errors and script errors."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        foreign = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in LOCAL_SCHEMES:
                continue
            if parts.hostname not in LOCAL_HOSTS:
                foreign.append(url)
        return foreign


class Pages:
    """Makes browser pages on the stack (each in its own context: its own storage and
    cache) and, when the test ends, checks none of them asked anything of another host
    or hit a script error."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[BrowserContext] = []
        self.records: list[PageRecord] = []

    def new(self, *, width: int = 360, height: int = 740, timezone_id: str = "Asia/Ho_Chi_Minh",
            init_storage: dict[str, str] | None = None,
            signed_in: tuple[str, str] | None = None) -> tuple[Page, PageRecord]:
        """`signed_in=(login, password)`: a browser that signed in earlier (its refresh cookie)."""
        context = self.browser.new_context(
            base_url=self.base_url, viewport={"width": width, "height": height}, locale="vi-VN",
            timezone_id=timezone_id, is_mobile=width < 600, has_touch=width < 600,
        )
        context.set_default_timeout(20_000)
        if signed_in:
            # The login the app makes, through the context's own request client: its cookie
            # lands in the browser's jar exactly as the server set it.
            login, password = signed_in
            answer = context.request.post("/api/auth/login", data={"login": login, "password": password},
                                          headers=COOKIE_MODE)
            assert answer.ok, answer.text()
            assert [c for c in context.cookies() if c["name"] == REFRESH_COOKIE], "no refresh cookie kept"
            init_storage = {**SIGNED_IN_FLAG, **(init_storage or {})}
        if init_storage:
            # Before any script of the app runs, as if this phone had signed in earlier.
            context.add_init_script("\n".join(
                f"if (!sessionStorage.getItem('seeded-{k}')) {{ localStorage.setItem({k!r}, {v!r});"
                f" sessionStorage.setItem('seeded-{k}', '1'); }}"
                for k, v in init_storage.items()))
        record = PageRecord()
        context.on("request", lambda request: record.requests.append(request.url))
        page = context.new_page()
        page.on("console", lambda m: record.console_errors.append(m.text) if m.type == "error" or
                "i18n missing" in m.text else None)
        page.on("pageerror", lambda error: record.page_errors.append(str(error)))
        self.contexts.append(context)
        self.records.append(record)
        return page, record

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser: Browser, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Pages]:
    made = Pages(browser, stack.base_url)
    try:
        yield made
    finally:
        failed = getattr(request.node, "report_call", None)
        if failed is not None and failed.failed:
            for i, context in enumerate(made.contexts):
                for j, page in enumerate(context.pages):
                    screenshot(page, f"FAILED-{request.node.name}-{i}-{j}")
        made.close()
    for record in made.records:
        assert record.foreign_requests() == [], "requests left the machine"
        assert record.page_errors == [], "script errors"
        assert not [e for e in record.console_errors if "i18n missing" in e], "untranslated texts"


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=full_page)
