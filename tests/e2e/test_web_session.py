"""The web app's session in a real browser (Debian's Chromium driven by Playwright) through
the stack's gateway on http://127.0.0.1: after sign-in no token is where a page script can
read it (localStorage, sessionStorage, document.cookie), the refresh token is an HttpOnly,
Secure, SameSite=Strict cookie that Chromium keeps on loopback without TLS and sends only
to /api/auth/, a reload keeps the person signed in, tabs that reload together keep one
session, signing out ends it on the server too, and an owner locked out gets back in with
a code."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, Request, expect
from redis import Redis

from tests.e2e.browser import COOKIE_MODE, PASSWORD, REFRESH_COOKIE, Pages, WebContest, screenshot
from tests.e2e.stack import Stack
from tests.e2e.support import eventually

pytestmark = pytest.mark.e2e


def readable_storage(page: Page) -> dict[str, Any]:
    """Everything a script of the page can read back: both storages and document.cookie."""
    return page.evaluate("""() => ({
        local: Object.fromEntries(Object.keys(localStorage).map(k => [k, localStorage.getItem(k)])),
        session: Object.fromEntries(Object.keys(sessionStorage).map(k => [k, sessionStorage.getItem(k)])),
        cookie: document.cookie,
    })""")


def refresh_cookie(context: BrowserContext) -> dict[str, Any] | None:
    found = [c for c in context.cookies() if c["name"] == REFRESH_COOKIE]
    return dict(found[0]) if found else None


def sign_out_button(page: Page) -> Locator:
    return page.locator("#top").get_by_role("button", name="Đăng xuất", exact=True)


def sign_in_link(page: Page) -> Locator:
    return page.locator("#top").get_by_role("link", name="Đăng nhập", exact=True)


def sign_in_on_the_page(page: Page, login: str) -> None:
    page.goto("/dang-nhap")
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập", exact=True).click()
    expect(sign_out_button(page)).to_be_visible()


def test_no_token_within_reach_of_page_scripts(stack: Stack, web_contest: WebContest, pages: Pages) -> None:
    web_contest.register("Hồ Thị Sen", "0987 000 201")
    page, _ = pages.new()
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request))
    with page.expect_response("**/api/auth/login") as answered:
        sign_in_on_the_page(page, "0987000201")
    login = answered.value
    access_token = login.json()["access_token"]
    assert "refresh_token" not in login.json()

    # Chromium kept the Secure cookie on plain http://127.0.0.1 (loopback counts as secure).
    cookie = refresh_cookie(page.context)
    assert cookie is not None, "Chromium refused the refresh cookie"
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"], cookie["path"]) == (
        True, True, "Strict", "/api/auth/")
    assert cookie["domain"] == "127.0.0.1"

    seen = readable_storage(page)
    assert REFRESH_COOKIE not in seen["cookie"] and cookie["value"] not in seen["cookie"]
    everything = repr(seen)
    assert access_token not in everything and cookie["value"] not in everything
    assert "eyJ" not in everything  # no JWT of any kind
    assert seen["local"].get("hoithi.signed_in") == "1"  # the flag, and only the flag
    assert seen["session"] == {}

    # Pages that need the session work with the token in memory, after a reload too.
    page.goto(f"/c/{web_contest.slug}")
    page.reload()
    page.get_by_role("link", name="Lịch sử dự thi").first.click()
    expect(page.locator("h1")).to_contain_text("Lịch sử")
    # The cookie went to the refresh only (Path=/api/auth/), never to the other routes.
    cookie_to = sorted({urlsplit(r.url).path for r in sent if REFRESH_COOKIE in r.all_headers().get("cookie", "")})
    assert cookie_to == ["/api/auth/refresh"]
    assert any(urlsplit(r.url).path.startswith("/api/me") for r in sent)  # others were asked, without it
    screenshot(page, "session-01-signed-in", full_page=False)


def test_a_reload_keeps_the_person_signed_in(stack: Stack, web_contest: WebContest, pages: Pages) -> None:
    web_contest.register("Lò Văn Hưng", "0987 000 202")
    page, _ = pages.new()
    sign_in_on_the_page(page, "0987000202")
    page.goto("/lich-su")
    expect(page.locator("h1")).to_contain_text("Lịch sử")
    before = refresh_cookie(page.context)

    with page.expect_response("**/api/auth/refresh") as refreshed:
        page.reload()
    assert refreshed.value.status == 200
    expect(sign_out_button(page)).to_be_visible()
    expect(page.locator("h1")).to_contain_text("Lịch sử")
    after = refresh_cookie(page.context)
    assert before is not None and after is not None and after["value"] != before["value"]  # rotated
    assert "eyJ" not in repr(readable_storage(page))

    # A browser that was never signed in does not even ask.
    stranger, record = pages.new()
    stranger.goto(f"/c/{web_contest.slug}")
    expect(sign_in_link(stranger)).to_be_visible()
    assert not [url for url in record.requests if url.endswith("/api/auth/refresh")]


def test_tabs_that_reload_together_keep_one_session(stack: Stack, web_contest: WebContest, pages: Pages) -> None:
    """Every refresh uses its token up; two tabs sending the same one at once would look like
    a stolen copy and end the session. The app takes its turn (Web Locks)."""
    web_contest.register("Mai Anh Tuấn", "0987 000 203")
    first, _ = pages.new(signed_in=("0987000203", PASSWORD))
    first.goto("/healthz")  # same origin, no app yet
    tabs = [first, first.context.new_page(), first.context.new_page(), first.context.new_page()]
    for page in tabs[1:]:
        page.goto("/healthz")
    refreshes: list[int] = []
    first.context.on("response", lambda r: refreshes.append(r.status) if r.url.endswith("/api/auth/refresh") else None)
    # All four start the app within a few milliseconds: their refreshes would cross.
    for page in tabs:
        page.evaluate("() => setTimeout(() => { location.href = '/lich-su'; }, 0)")
    for page in tabs:
        expect(sign_out_button(page)).to_be_visible()
        expect(page.locator("h1")).to_contain_text("Lịch sử")
    assert refreshes == [200, 200, 200, 200]
    # The session is still alive after all that rotating.
    first.reload()
    expect(sign_out_button(first)).to_be_visible()


def test_signing_out_ends_the_session(stack: Stack, web_contest: WebContest, pages: Pages) -> None:
    web_contest.register("Vi Thị Loan", "0987 000 204")
    page, _ = pages.new()
    sign_in_on_the_page(page, "0987000204")
    other_tab = page.context.new_page()
    other_tab.goto("/lich-su")
    expect(sign_out_button(other_tab)).to_be_visible()
    cookie = refresh_cookie(page.context)
    assert cookie is not None

    with page.expect_response("**/api/auth/logout") as logged_out:
        sign_out_button(page).click()
    assert logged_out.value.status == 204
    expect(sign_in_link(page)).to_be_visible()
    assert refresh_cookie(page.context) is None  # the server cleared it
    assert readable_storage(page)["local"].get("hoithi.signed_in") is None
    # The other tab heard of it.
    expect(sign_in_link(other_tab)).to_be_visible()

    # Ended on the server, not only forgotten here: the old cookie is refused.
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        stale = client.post("/api/auth/refresh", headers={
            **COOKIE_MODE, "Cookie": f"{REFRESH_COOKIE}={cookie['value']}"})
    assert stale.status_code == 401 and stale.json()["code"] == "invalid_refresh_token"

    page.reload()
    expect(sign_in_link(page)).to_be_visible()
    page.goto("/lich-su")
    expect(sign_out_button(page)).to_have_count(0)


def test_an_owner_locked_out_here_gets_back_in_with_a_code(
    stack: Stack, web_contest: WebContest, pages: Pages
) -> None:
    web_contest.register("Đinh Thị Mơ", "0987 000 205", email="mo@example.vn")
    token = web_contest.login_body("0987000205")["access_token"]
    payload = token.split(".")[1]
    account_id = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    # This browser's address locked out of the account, as ten wrong passwords from it would
    # do (the lock set with its TTL directly, rather than waiting through the schedule).
    lock = f"registration:login:pair:participant:{account_id}:127.0.0.1:block"
    Redis.from_url(stack.env["REDIS_URL"]).set(lock, "lock", px=600_000)

    page, _ = pages.new()
    page.goto("/dang-nhap")
    page.locator("input[name=login]").fill("0987000205")
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập", exact=True).click()
    expect(page.get_by_text("Tài khoản tạm thời bị khoá")).to_be_visible()
    # The way back in opens by itself: a code to the owner's phone or email.
    expect(page.get_by_role("heading", name="Đặt lại mật khẩu")).to_be_visible()
    page.locator("input[name=reset_login]").fill("mo@example.vn")
    page.get_by_role("button", name="Gửi mã xác nhận").click()
    expect(page.get_by_text("Nếu tài khoản tồn tại, mã xác nhận đã được gửi")).to_be_visible()

    def code_in_the_mail() -> str | None:
        for message in stack.mailbox.messages:
            if str(message["To"]) == "mo@example.vn":
                text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
                if found := re.search(r"đặt lại mật khẩu của bạn là: (\d{6})", text):
                    return found.group(1)
        return None

    code = eventually(code_in_the_mail, timeout_s=30)
    page.locator("input[name=code]").fill(code)
    page.locator("input[name=new_password]").fill("mật khẩu mới 2026")
    screenshot(page, "session-02-reset", full_page=False)
    page.get_by_role("button", name="Đặt lại mật khẩu và đăng nhập").click()
    expect(sign_out_button(page)).to_be_visible()
    assert not Redis.from_url(stack.env["REDIS_URL"]).exists(lock)  # proving who they are lifted it
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        old = client.post("/api/auth/login", json={"login": "0987000205", "password": PASSWORD})
    assert old.status_code == 401
