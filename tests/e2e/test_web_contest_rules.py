"""The organisers' pages for what scoring keeps per contest (the collective-prize rules and
the participation reminders) and quiz's audit replay of an attempt, in Debian's Chromium
through the gateway of the whole stack; and every page of the app under the gateway's
Content-Security-Policy without one violation.

Field errors come from the API's problem+json (`errors[].field`), never from the page's
own guesses, and must appear next to the field, row or list they name."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.browser import Pages, WebContest, screenshot
from tests.e2e.stack import Stack
from tests.e2e.support import bearer, eventually

pytestmark = pytest.mark.e2e

# Recorded before any script of the app runs; a violation is also logged to the console.
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample || ""}`.trim());
});
"""


def organiser_page(pages: Pages, width: int = 360) -> Page:
    page, _ = pages.new(width=width, height=900)
    page.context.add_init_script(CSP_RECORDER)
    page.goto("/quan-tri")
    page.locator("input[name=login]").fill("admin")
    page.locator("input[name=password]").fill("admin")
    page.get_by_role("button", name="Đăng nhập", exact=True).click()
    expect(page.get_by_role("heading", name="Cuộc thi", exact=True)).to_be_visible()
    return page


def csp_violations(page: Page) -> list[str]:
    return list(page.evaluate("() => window.__cspViolations || []"))


def rows(page: Page, name: str) -> Locator:
    return page.locator(f"[data-row={name}]")


def test_organiser_sets_the_collective_prize_rules(stack: Stack, web_contest: WebContest, pages: Pages) -> None:
    page = organiser_page(pages)
    page.goto(f"/quan-tri/c/{web_contest.slug}")
    page.get_by_role("link", name="Điều kiện xét giải tập thể").click()
    expect(page.locator("h1")).to_have_text("Điều kiện xét giải tập thể")
    expect(page.locator("[data-testid=collective-status]")).to_have_text("Chưa đặt điều kiện: mọi đơn vị đều được xét.")

    # Units of 0–99 people need 150 %: the API refuses the rate, next to that rate.
    first = rows(page, "min_rates").nth(0)
    first.locator("input[name=min_headcount]").fill("0")
    first.locator("input[name=max_headcount]").fill("99")
    first.locator("input[name=min_rate]").fill("150")
    page.get_by_role("button", name="Thêm khoảng biên chế").click()
    second = rows(page, "min_rates").nth(1)
    second.locator("input[name=min_headcount]").fill("50")
    second.locator("input[name=min_rate]").fill("70")
    page.get_by_role("button", name="Lưu thay đổi").click()
    expect(first.locator("[data-field=min_rate] .error")).to_have_text("Giá trị quá lớn")
    expect(first.locator("input[name=min_rate]")).to_have_attribute("aria-invalid", "true")
    expect(second.locator(".error:not(:empty)")).to_have_count(0)
    screenshot(page, "20-collective-rate-refused")

    # 90 % is fine, but 50+ overlaps 0–99: scoring names the second rule, under that row.
    first.locator("input[name=min_rate]").fill("90")
    page.get_by_role("button", name="Lưu thay đổi").click()
    expect(second.locator(".row-error")).to_have_text("Khoảng biên chế chồng lấn với quy định thứ 1.")
    expect(first.locator(".error:not(:empty)")).to_have_count(0)
    screenshot(page, "21-collective-overlap")

    second.locator("input[name=min_headcount]").fill("100")
    page.get_by_role("button", name="Lưu thay đổi").click()
    expect(page.get_by_text("Đã lưu.")).to_be_visible()
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        stored = client.get(f"/api/admin/contests/{web_contest.contest_id}/collective-rules",
                            headers=bearer(web_contest.admin_token))
    assert stored.json()["min_rates"] == [
        {"min_headcount": 0, "max_headcount": 99, "min_rate": 0.9},
        {"min_headcount": 100, "max_headcount": None, "min_rate": 0.7},
    ]

    # What is stored is what the page shows next time, in either language.
    page.reload()
    expect(page.locator("[data-testid=collective-status]")).to_have_text("Điều kiện đang áp dụng như dưới đây.")
    expect(rows(page, "min_rates").nth(0).locator("input[name=min_rate]")).to_have_value("90")
    expect(rows(page, "min_rates").nth(1).locator("input[name=max_headcount]")).to_have_value("")
    page.get_by_role("button", name="Switch to English").click()
    expect(page.locator("h1")).to_have_text("Collective prize rules")
    expect(page.get_by_label("Minimum rate (%)").first).to_have_value("90")
    screenshot(page, "22-collective-english")
    assert csp_violations(page) == []


def test_organiser_schedules_and_sends_participation_reminders(
    stack: Stack, web_contest: WebContest, pages: Pages
) -> None:
    # Scoring learns a contest from its rounds' events; until then it has no rates to remind of.
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        eventually(lambda: client.get("/api/reports/units", headers=bearer(web_contest.admin_token),
                                      params={"contest_id": web_contest.contest_id}).status_code == 200)
    page = organiser_page(pages)
    page.goto(f"/quan-tri/c/{web_contest.slug}")
    page.get_by_role("link", name="Nhắc đơn vị tham gia").click()
    expect(page.locator("h1")).to_have_text("Nhắc đơn vị tham gia")
    expect(page.locator("[data-testid=schedule-status]")).to_have_text("Chưa có lịch nhắc tự động.")
    schedule = page.locator("section", has=page.get_by_role("heading", name="Lịch nhắc tự động"))

    # 120 % and 08:00 twice: both refused at once, each where it belongs.
    schedule.get_by_label("Tỷ lệ tham gia mục tiêu (%)").fill("120")
    schedule.get_by_role("button", name="Thêm giờ nhắc").click()
    rows(page, "times_local").nth(1).locator("input").fill("17:30")
    schedule.get_by_role("button", name="Thêm giờ nhắc").click()
    rows(page, "times_local").nth(2).locator("input").fill("08:00")
    schedule.get_by_role("button", name="Lưu thay đổi").click()
    expect(schedule.locator("[data-field=target_rate] .error")).to_have_text("Giá trị quá lớn")
    expect(schedule.locator("fieldset[data-field=times_local] > .error")).to_have_text("mỗi giờ chỉ được ghi một lần")
    screenshot(page, "23-nudge-schedule-refused")

    rows(page, "times_local").nth(2).get_by_role("button", name="Xóa dòng này").click()
    schedule.get_by_label("Tỷ lệ tham gia mục tiêu (%)").fill("80")
    schedule.get_by_role("button", name="Lưu thay đổi").click()
    expect(schedule.get_by_text("Đã lưu.")).to_be_visible()
    expect(page.locator("[data-testid=schedule-status]")).to_have_text("Lịch nhắc đang bật.")
    expect(schedule.locator(".error:not(:empty)")).to_have_count(0)
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        stored = client.get(f"/api/admin/contests/{web_contest.contest_id}/nudge-schedule",
                            headers=bearer(web_contest.admin_token)).json()
    assert (stored["times_local"], stored["target_rate"], stored["enabled"], stored["round_id"]) == (
        ["08:00", "17:30"], 0.8, True, None)

    # A reminder now, about the open round (chosen by default), to units below 100 %.
    now = page.locator("section", has=page.get_by_role("heading", name="Gửi nhắc ngay"))
    expect(now.get_by_label("Tính tỷ lệ theo")).to_have_value(web_contest.round_id)
    now.get_by_label("Tỷ lệ tham gia mục tiêu (%)").fill("100")
    page.once("dialog", lambda dialog: dialog.accept())
    now.get_by_role("button", name="Gửi nhắc nhở").click()
    expect(now.locator(".notice.ok")).to_have_text(
        re.compile(r"^(Đã gửi nhắc nhở tới \d+ đơn vị\.|Không có đơn vị nào dưới mức mục tiêu, không gửi nhắc nhở\.)$"))
    screenshot(page, "24-nudge-sent")
    assert csp_violations(page) == []


def test_organiser_checks_an_attempts_questions(stack: Stack, web_contest: WebContest, pages: Pages) -> None:
    token = web_contest.register("Đỗ Minh Khoa", "0986500101")
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        started = client.post(f"/api/rounds/{web_contest.round_id}/attempts", headers=bearer(token))
    assert started.status_code in (200, 201), started.text
    attempt_id = started.json()["attempt_id"]

    page = organiser_page(pages)
    page.get_by_role("link", name="Kiểm tra lượt thi").click()
    expect(page.locator("h1")).to_have_text("Kiểm tra đề của một lượt thi")
    page.get_by_label("Mã lượt thi").fill("not-an-id")
    page.get_by_role("button", name="Kiểm tra", exact=True).click()
    expect(page.locator("[data-field=attempt_id] .error")).to_have_text("Mã định danh không hợp lệ")

    page.get_by_label("Mã lượt thi").fill(attempt_id)
    page.get_by_role("button", name="Kiểm tra", exact=True).click()
    expect(page.locator("[data-testid=replay-verdict]")).to_have_text("Đề bốc lại khớp với đề đã giao.")
    expect(page.locator("#replay-table tbody tr")).to_have_count(web_contest.question_count)
    expect(page.locator("[data-testid=replay-submitted]")).to_have_text("Chưa nộp")
    screenshot(page, "25-attempt-replay")
    # The address keeps the attempt, so the check can be shared and reopened.
    page.reload()
    expect(page.locator("[data-testid=replay-verdict]")).to_have_text("Đề bốc lại khớp với đề đã giao.")
    assert csp_violations(page) == []


def test_every_page_runs_under_the_gateways_csp(stack: Stack, web_contest: WebContest, pages: Pages) -> None:
    page = organiser_page(pages, width=1280)
    contest = f"/quan-tri/c/{web_contest.slug}"
    round_ = f"{contest}/vong/{web_contest.round_id}"
    visited = []
    for path, ready in [
        ("/", "h1"), (f"/c/{web_contest.slug}", "h1"), ("/dang-ky?unit=LC-P01", "h1"), ("/dang-nhap", "h1"),
        ("/quan-tri", "h1"), (contest, "#rounds-table"), (f"{contest}/thong-ke", "h1"), (round_, "h1"),
        (f"{round_}/thong-ke", "h1"), (f"{round_}/giai", "[data-testid=winners-status]"), ("/quan-tri/don-vi", "h1"),
        ("/quan-tri/thong-bao", "h1"), (f"{contest}/giai-tap-the", "form"), (f"{contest}/nhac-nho", "form"),
        ("/quan-tri/luot-thi", "form"),
    ]:
        answer = page.goto(path)
        assert answer is not None
        assert "frame-ancestors 'none'" in (answer.headers.get("content-security-policy") or ""), path
        expect(page.locator(ready).first).to_be_visible()
        page.wait_for_load_state("networkidle")
        visited.append((path, csp_violations(page)))
    assert [(path, found) for path, found in visited if found] == []
    # Layout that used to be style="" attributes now comes from the stylesheet.
    page.goto(contest)
    page.get_by_text("Sửa thể lệ và cài đặt").click()
    criterion = page.locator("fieldset[data-field=tie_break] li").first
    assert criterion.evaluate("li => getComputedStyle(li).alignItems") == "center"
    assert criterion.locator("label").evaluate("l => getComputedStyle(l).flexBasis") == "224px"  # 14rem
