"""The web app in a real browser (Debian's Chromium driven by Playwright) through the
gateway of the whole stack: a participant's story on a 360 px phone, a submit that meets a
busy server, the quiz page's weight and caching, and an organiser's round from import to
announcement. Screenshots of every main page land in tests/e2e/artifacts/web-*.png.

The tests use a contest of their own (the `web_contest` fixture) and phones 0987…,
because the story of test_contest_story.py closes the demo round."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import FilePayload, Locator, Page, Response, Route, expect

from tests.e2e.browser import ARTIFACTS, PASSWORD, Pages, WebContest, screenshot
from tests.e2e.stack import Stack
from tests.e2e.support import answer_key_by_text, bearer, eventually

pytestmark = pytest.mark.e2e

VN = timedelta(hours=7)  # Vietnam keeps UTC+7 all year
QUIZ_PAGE_BUDGET = 150 * 1024
HASHED_ASSET = re.compile(r"/assets/[A-Za-z0-9_-]+\.[0-9a-f]{10}\.(js|css)$")


def vn_time(moment: datetime) -> str:
    """A moment as the app shows it in Vietnamese: '14:05 03/03/2026', Vietnam's clock."""
    return (moment.astimezone(UTC) + VN).strftime("%H:%M %d/%m/%Y")


def timer_seconds(page: Page) -> int:
    text = page.locator(".timer").inner_text().strip()
    parts = [int(p) for p in text.split(":")]
    return parts[-1] + 60 * parts[-2] + (3600 * parts[-3] if len(parts) == 3 else 0)


def questions(page: Page) -> Locator:
    return page.locator("fieldset.question[data-question-id]")


def choose_first_option(page: Page, index: int) -> None:
    questions(page).nth(index).locator("label.option").first.click()


def checked_answers(page: Page) -> dict[str, list[str]]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('fieldset[data-question-id]')]
        .map(f => [f.dataset.questionId, [...f.querySelectorAll('input:checked')].map(i => i.value)]))""")


def storage_keys(page: Page, prefix: str) -> list[str]:
    return page.evaluate(f"() => Object.keys(localStorage).filter(k => k.startsWith({prefix!r}))")


def unlabelled_controls(page: Page) -> list[str]:
    """Form controls a screen reader could not name (no <label>, aria-label or aria-labelledby)."""
    return page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
            && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
        .map(el => el.outerHTML.slice(0, 120))""")


def test_participant_story_on_a_phone(stack: Stack, web_contest: WebContest, pages: Pages) -> None:
    # A phone in New York's time zone whose clock runs 20 minutes fast: dates must still
    # show Vietnam's time, and the 15-minute timer must follow the server's clock.
    page, _ = pages.new(timezone_id="America/New_York")
    page.clock.set_system_time(datetime.now() + timedelta(minutes=20))

    # The unit's QR code opens the sign-up page with the unit chosen.
    page.goto("/dang-ky?unit=LC-P01")
    expect(page.locator(".picked")).to_contain_text("Phường Lê Chân")
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    assert unlabelled_controls(page) == []
    screenshot(page, "01-signup")

    page.locator("input[name=full_name]").fill("Phạm Thu Hà")
    page.locator("input[name=phone]").fill("0123 456")
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Đăng ký", exact=True).click()
    phone_error = page.locator("[data-field=phone] .error")
    expect(phone_error).to_contain_text("Số điện thoại")  # the API's own Vietnamese message, at the field
    expect(page.locator("input[name=phone]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("[data-field=full_name] .error")).to_be_empty()
    screenshot(page, "02-signup-errors")

    page.locator("input[name=phone]").fill("0987 654 321")
    page.get_by_role("button", name="Đăng ký", exact=True).click()
    expect(page.get_by_role("button", name="Đăng xuất")).to_be_visible()

    # The contest page (any contest opens by its slug).
    page.goto(f"/c/{web_contest.slug}")
    expect(page.locator("h1")).to_have_text(web_contest.title)
    expect(page.locator("#current-title")).to_contain_text("Vòng 1: Tuần 1")
    expect(page.locator("#current-title .badge")).to_have_text("Đang mở")
    expect(page.get_by_text(vn_time(web_contest.round_opens_at)).first).to_be_visible()
    expect(page.get_by_text("1 Giải Nhất, 2 Giải Nhì")).to_be_visible()
    countdown = page.locator(".countdown").inner_text()
    hours, minutes, _ = (int(x) for x in countdown.split(":"))
    left = web_contest.round_opens_at + timedelta(hours=6) - datetime.now(UTC)
    assert abs(hours * 60 + minutes - left.total_seconds() / 60) <= 2, countdown
    screenshot(page, "03-contest")

    with page.expect_response(lambda r: r.url.endswith(f"/api/rounds/{web_contest.round_id}/attempts")) as started:
        page.get_by_role("link", name="Vào thi").click()
    attempt = started.value.json()
    expect(questions(page)).to_have_count(web_contest.question_count)
    for i, question in enumerate(attempt["questions"]):
        shown = questions(page).nth(i)
        kind = "checkbox" if question["multiple"] else "radio"
        expect(shown.locator(f"input[type={kind}]")).to_have_count(len(question["options"]))
        expect(shown.locator(".kind")).to_have_text(
            "Có thể có nhiều đáp án đúng — chọn tất cả" if question["multiple"] else "Chọn 1 đáp án đúng")
    assert unlabelled_controls(page) == []
    remaining = timer_seconds(page)
    assert web_contest.time_limit_s - 15 <= remaining <= web_contest.time_limit_s, remaining
    screenshot(page, "04-quiz")
    screenshot(page, "04-quiz-screen", full_page=False)

    # Some answers, autosaved to the server.
    for i in range(4):
        choose_first_option(page, i)
    expect(page.locator(".timerbar")).to_contain_text("Đã trả lời 4/10 câu")
    token = web_contest.login_body("0987654321")["access_token"]  # the page's own is out of reach
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        eventually(lambda: len(client.get(f"/api/attempts/{attempt['attempt_id']}",
                                          headers=bearer(token)).json()["answers"]) == 4, timeout_s=10)
    before = checked_answers(page)
    texts = questions(page).locator("legend").all_inner_texts()
    timer_before, reloaded_at = timer_seconds(page), time.monotonic()

    # A reload mid-quiz: the same attempt, questions, answers, and the timer runs on.
    page.reload()
    expect(page.get_by_text("Bạn đang tiếp tục lượt thi đã bắt đầu")).to_be_visible()
    expect(questions(page)).to_have_count(web_contest.question_count)
    assert questions(page).locator("legend").all_inner_texts() == texts
    assert checked_answers(page) == before
    elapsed = time.monotonic() - reloaded_at
    timer_after = timer_seconds(page)
    # The clock estimate is redone after the reload (±0.5 s each time), hence a second of slack upwards.
    assert timer_before - elapsed - 3 <= timer_after <= timer_before + 1, (timer_before, elapsed, timer_after)

    for i in range(4, web_contest.question_count):
        choose_first_option(page, i)
    page.locator("input[name=prediction]").fill("25")
    page.get_by_role("button", name="Nộp bài", exact=True).click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("Bạn đã trả lời 10/10 câu")
    expect(dialog).to_contain_text("Con số dự đoán của bạn: 25")
    screenshot(page, "05-confirm")
    dialog.get_by_role("button", name="Nộp bài").click()

    page.wait_for_url(f"**/ket-qua/{attempt['attempt_id']}")
    expect(page.locator("[data-testid=rank]")).to_have_text(re.compile(r"^\d+$"), timeout=30_000)
    expect(page.locator("[data-testid=correct]")).to_have_text(re.compile(r"^\d+/10$"))
    expect(page.get_by_text("Vị trí hiện tại trên bảng xếp hạng")).to_be_visible(timeout=15_000)
    expect(page.get_by_text("Bạn còn 2 lượt thi trong vòng này.")).to_be_visible()
    # The round is open: the right answers wait for its end (the review API answers 409).
    expect(page.get_by_text("Đáp án và giải thích sẽ được công bố từ")).to_be_visible()
    expect(page.locator("[data-testid=review]")).to_have_count(0)
    assert storage_keys(page, "hoithi.pending.") == [] and storage_keys(page, "hoithi.draft.") == []
    screenshot(page, "06-result")

    page.get_by_role("link", name="Lịch sử dự thi").first.click()
    expect(page.locator(f"a[href='/ket-qua/{attempt['attempt_id']}']")).to_be_visible()
    expect(page.locator("tbody tr")).to_contain_text(re.compile(r"\d+/10 câu đúng"))
    screenshot(page, "07-history")


def test_submit_is_kept_and_retried_while_the_server_is_busy(
    stack: Stack, web_contest: WebContest, pages: Pages
) -> None:
    web_contest.register("Võ Minh Khôi", "0987 000 102")
    page, _ = pages.new()
    page.goto(f"/dang-nhap?next=/thi/{web_contest.round_id}")
    page.locator("input[name=login]").fill("0987000102")
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập", exact=True).click()
    expect(questions(page)).to_have_count(web_contest.question_count)
    for i in range(web_contest.question_count):
        choose_first_option(page, i)
    page.locator("input[name=prediction]").fill("40")

    # The first submit meets a 503 with Retry-After, the second a dropped connection;
    # the third goes through to the real API.
    calls: list[tuple[float, dict[str, Any]]] = []

    def busy_then_through(route: Route) -> None:
        calls.append((time.monotonic(), json.loads(route.request.post_data or "{}")))
        if len(calls) == 1:
            route.fulfill(status=503, headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
                          body=json.dumps({"status": 503, "code": "unavailable",
                                           "detail": "Hệ thống đang bận, vui lòng thử lại sau giây lát."}))
        elif len(calls) == 2:
            route.abort("failed")
        else:
            route.continue_()

    page.route("**/api/attempts/*/submit", busy_then_through)
    page.get_by_role("button", name="Nộp bài", exact=True).click()
    page.locator("dialog[open]").get_by_role("button", name="Nộp bài").click()

    expect(page.get_by_text("Máy chủ đang quá tải (mã 503), chưa nhận được bài.")).to_be_visible()
    expect(page.get_by_text("Bài làm của bạn vẫn được giữ an toàn trên máy này").first).to_be_visible()
    assert len(storage_keys(page, "hoithi.pending.")) == 1
    screenshot(page, "08-submit-busy", full_page=False)
    expect(page.get_by_text("Mất kết nối mạng, chưa gửi được bài.")).to_be_visible()
    screenshot(page, "09-submit-offline", full_page=False)

    page.wait_for_url("**/ket-qua/**", timeout=30_000)
    expect(page.locator("[data-testid=rank]")).to_have_text(re.compile(r"^\d+$"), timeout=30_000)
    assert len(calls) == 3
    assert calls[1][0] - calls[0][0] >= 0.95  # Retry-After: 1
    assert calls[2][0] - calls[1][0] >= 1.5  # then the backoff's 2 s (±20 %)
    assert calls[0][1] == calls[2][1]  # the very same answers every time
    assert len(calls[2][1]["answers"]) == web_contest.question_count and calls[2][1]["prediction"] == 40
    assert storage_keys(page, "hoithi.pending.") == []


def test_quiz_page_weight_caching_and_nothing_from_the_internet(
    stack: Stack, web_contest: WebContest, pages: Pages
) -> None:
    web_contest.register("Đặng Thị Lan", "0987 000 103")
    page, record = pages.new(signed_in=("0987000103", PASSWORD))
    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))
    page.goto(f"/thi/{web_contest.round_id}")
    expect(questions(page)).to_have_count(web_contest.question_count)
    page.wait_for_load_state("networkidle")

    entries = page.evaluate("""() => [...performance.getEntriesByType('navigation'),
        ...performance.getEntriesByType('resource')].map(e => ({name: e.name, transfer: e.transferSize,
        encoded: e.encodedBodySize, decoded: e.decodedBodySize}))""")
    total = sum(e["transfer"] for e in entries)
    assets = [e for e in entries if "/assets/" in e["name"]]
    lines = [f"{e['transfer']:>7} B transferred ({e['decoded']:>7} B decoded)  {e['name']}" for e in entries]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "web-quiz-weight.txt").write_text(
        "\n".join([*lines, f"{total:>7} B transferred in all (budget {QUIZ_PAGE_BUDGET} B)"]) + "\n", encoding="utf-8")
    assert all(e["transfer"] > 0 for e in entries), "a fresh browser: everything came over the network"
    assert assets and sum(e["encoded"] for e in assets) < sum(e["decoded"] for e in assets), "assets are compressed"
    assert total <= QUIZ_PAGE_BUDGET, f"{total} B > {QUIZ_PAGE_BUDGET} B"

    document = next(r for r in responses if r.request.resource_type == "document")
    assert "no-cache" in (document.headers.get("cache-control") or "")
    for response in responses:
        if "/assets/" not in response.url:
            continue
        assert HASHED_ASSET.search(response.url), response.url
        caching = response.headers["cache-control"]
        assert "immutable" in caching and "max-age=31536000" in caching, caching
        if response.url.endswith(".js") and int(response.headers.get("content-length") or 2048) >= 1024:
            assert response.headers.get("content-encoding") == "gzip", response.url
    assert record.foreign_requests() == []
    assert {r.url.split("/")[2] for r in responses} == {stack.base_url.split("/")[2]}


def test_unit_picker_searches_without_diacritics_by_keyboard(stack: Stack, pages: Pages) -> None:
    page, _ = pages.new()
    page.goto("/dang-ky")
    picker = page.get_by_role("combobox")
    picker.click()
    page.keyboard.type("le chan")
    expect(page.get_by_role("option", name=re.compile("Phường Lê Chân"))).to_be_visible()
    expect(picker).to_have_attribute("aria-expanded", "true")
    picker.press("ArrowDown")
    while "Phường Lê Chân" not in page.locator("[role=option][aria-selected=true]").inner_text():
        picker.press("ArrowDown")
    picker.press("Enter")
    expect(page.locator(".picked")).to_contain_text("Phường Lê Chân (mã LC-P01)")
    expect(picker).to_have_attribute("aria-expanded", "false")


def test_english_on_request(stack: Stack, web_contest: WebContest, pages: Pages) -> None:
    page, _ = pages.new()
    page.goto(f"/c/{web_contest.slug}")
    expect(page.get_by_role("heading", name="Bảng xếp hạng")).to_be_visible()
    page.get_by_role("button", name="Switch to English").click()
    expect(page.get_by_role("heading", name="Leaderboard")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    in_vietnam = web_contest.round_opens_at.astimezone(UTC) + VN
    expect(page.get_by_text(in_vietnam.strftime("%d/%m/%Y, %H:%M")).first).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Leaderboard")).to_be_visible()
    page.get_by_role("button", name="Chuyển sang tiếng Việt").click()
    expect(page.get_by_role("heading", name="Bảng xếp hạng")).to_be_visible()


BAD_QUESTIONS = (
    "topic,difficulty,question,option_a,option_b,option_c,option_d,correct,explanation\n"
    "phap_luat,1,Câu hỏi thiếu đáp án đúng?,Một,Hai,Ba,Bốn,,\n"
    "phap_luat,1,Câu hỏi có đáp án không tồn tại?,Một,Hai,Ba,Bốn,Z,\n"
    "phap_luat,1,Câu hỏi hợp lệ?,Một,Hai,Ba,Bốn,A,\n"
).encode()


def test_organiser_imports_creates_closes_and_announces(
    stack: Stack, web_contest: WebContest, pages: Pages
) -> None:
    page, _ = pages.new(width=1280, height=900)
    page.goto("/quan-tri")
    page.locator("input[name=login]").fill("admin")
    page.locator("input[name=password]").fill("admin")
    page.get_by_role("button", name="Đăng nhập", exact=True).click()
    page.get_by_role("link", name=web_contest.title).first.click()
    expect(page.locator("h1")).to_have_text(web_contest.title)
    assert unlabelled_controls(page) == []

    # A questions file with bad rows: every one of them shown, nothing imported.
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        refused = client.post(f"/api/admin/contests/{web_contest.contest_id}/questions/import",
                              headers=bearer(web_contest.admin_token),
                              files={"file": ("cau-hoi.csv", BAD_QUESTIONS, "text/csv")})
    assert refused.status_code == 422
    page.locator("input[type=file]").set_input_files(
        files=FilePayload(name="cau-hoi-loi.csv", mimeType="text/csv", buffer=BAD_QUESTIONS))
    page.get_by_role("button", name="Tải lên").click()
    rows = page.locator("table.import-errors tbody tr")
    expect(rows).to_have_count(len(refused.json()["errors"]))
    expect(page.locator("table.import-errors")).to_contain_text("Dòng")
    assert {row.split("\t")[0].strip() for row in rows.all_inner_texts()} >= {"2", "3"}
    expect(page.get_by_text("chưa có dòng nào được nhập")).to_be_visible()
    screenshot(page, "10-admin-import-errors")

    # A new round, open from a minute ago, through the form (times in Vietnam's clock).
    opens = datetime.now(UTC) - timedelta(minutes=1)
    form = page.locator("section[aria-labelledby=new-round-h]")
    form.get_by_label("Tên vòng thi").fill("Tuần 2 (thử)")
    form.get_by_label("Mở lúc").fill((opens + VN).strftime("%Y-%m-%dT%H:%M"))
    form.get_by_label("Đóng lúc").fill((opens + VN + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    form.get_by_label("Số câu mỗi lượt").fill("5")
    form.get_by_label("Thời gian làm bài").fill("10")
    screenshot(page, "11-admin-new-round")
    form.get_by_role("button", name="Tạo vòng thi").click()
    expect(page.locator("h1")).to_contain_text("Vòng 2: Tuần 2 (thử)")
    round_id = page.url.rstrip("/").split("/")[-1]
    expect(page.locator("[data-testid=round-status]")).to_have_text("Đang mở")
    screenshot(page, "12-admin-round")

    # Editing an open round: only a later close is allowed, and only what changed is sent.
    later = opens + VN + timedelta(hours=3)
    edit = page.locator("section[aria-labelledby=edit-h]")
    edit.get_by_label("Đóng lúc").fill(later.strftime("%Y-%m-%dT%H:%M"))
    edit.get_by_role("button", name="Lưu thay đổi").click()
    expect(edit.get_by_text("Đã lưu.")).to_be_visible()
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        rounds = client.get(f"/api/contests/{web_contest.slug}").json()["rounds"]
    closes_at = datetime.fromisoformat(next(r for r in rounds if r["id"] == round_id)["closes_at"])
    assert (closes_at.astimezone(UTC) + VN).strftime("%Y-%m-%dT%H:%M") == later.strftime("%Y-%m-%dT%H:%M")

    # Someone takes the new round (through the API), so that it has a winner.
    token = web_contest.register("Bùi Quang Huy", "0987 000 104")
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        attempt = client.post(f"/api/rounds/{round_id}/attempts", headers=bearer(token))
        assert attempt.status_code == 201, attempt.text
        body = attempt.json()
        answers = {q["id"]: [q["options"][0]["id"]] for q in body["questions"]}
        sent = client.post(f"/api/attempts/{body['attempt_id']}/submit", headers=bearer(token),
                           json={"answers": answers, "prediction": None if body["prediction"] is None else 1})
        assert sent.status_code == 202, sent.text
        eventually(lambda: client.get(f"/api/attempts/{body['attempt_id']}/result",
                                      headers=bearer(token)).json()["status"] == "scored")

    # Close it; with every attempt in, it turns final on its own.
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Đóng vòng thi ngay").click()
    expect(page.get_by_text("Đã đóng vòng thi.")).to_be_visible()
    expect(page.locator("[data-testid=round-status]")).to_have_text("Đã có kết quả", timeout=30_000)

    # Huy, on a phone that never saw his attempt (he took it through the API): his history
    # comes from the server, and with the round over his result shows the review.
    phone, _ = pages.new(signed_in=("0987000104", PASSWORD))
    phone.goto("/lich-su")
    line = phone.locator(f"tr[data-attempt-id='{body['attempt_id']}']")
    expect(line).to_contain_text("Vòng 2: Tuần 2 (thử)")
    expect(line).to_contain_text(re.compile(r"\d+/5 câu đúng"))
    expect(phone.get_by_text("Danh sách này được lưu trên thiết bị")).to_have_count(0)
    line.locator(f"a[href='/ket-qua/{body['attempt_id']}']").click()
    key = answer_key_by_text()
    right = sum(key[q["text"]] == [q["options"][0]["id"]] for q in body["questions"])
    review = phone.locator("[data-testid=review]")
    expect(review.locator("ol > li")).to_have_count(5)
    expect(review).to_contain_text(f"Bạn trả lời đúng {right}/5 câu.")
    expect(review.locator("ol > li[data-correct=true]")).to_have_count(right)
    expect(phone.locator("[data-testid=correct]")).to_have_text(f"{right}/5")
    screenshot(phone, "16-review")

    page.get_by_role("link", name="Đoạt giải").last.click()
    expect(page.locator("[data-testid=winners-status]")).to_have_text("đã có kết quả chung cuộc, chưa công bố",
                                                                      timeout=30_000)
    expect(page.locator("#winners-table tbody tr").first).to_contain_text("Bùi Quang Huy")
    expect(page.locator("#winners-table tbody tr").first).to_contain_text("Giải Nhất")
    screenshot(page, "13-admin-winners")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Công bố và gửi thông báo").click()
    expect(page.get_by_text("Đã công bố. Thông báo đang được gửi.")).to_be_visible()
    expect(page.locator("[data-testid=winners-status]")).to_have_text("đã công bố")

    # The participation dashboard of that round, from the reports API.
    page.goto(f"/quan-tri/c/{web_contest.slug}/vong/{round_id}/thong-ke")
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        report = client.get("/api/reports/participation", headers=bearer(web_contest.admin_token),
                            params={"contest": web_contest.contest_id, "round": round_id})
    if report.status_code == 200:
        expect(page.locator("[data-testid=participants]")).to_have_text(str(report.json()["participants"]))
        expect(page.locator("ul.bars li").first).to_contain_text("Phường Lê Chân")  # the only unit that took part
        # Huy's one entry, in the hour he submitted it.
        assert [p["attempts"] for p in report.json()["attempts_over_time"]] == [1]
        expect(page.locator("[data-testid=over-time] svg rect")).to_have_count(1)
        with page.expect_download() as exported:
            page.get_by_role("button", name="Tải CSV").click()
        assert exported.value.suggested_filename.endswith(".csv")
        csv_text = Path(exported.value.path()).read_text(encoding="utf-8-sig")
        assert "Phường Lê Chân" in csv_text
    else:
        expect(page.get_by_text("Máy chủ chưa có báo cáo tham gia.")).to_be_visible()
    screenshot(page, "14-admin-dashboard")

    # The delivery log shows the winner's notification.
    page.goto("/quan-tri/thong-bao")

    def logged() -> bool:
        page.get_by_role("button", name="Lọc").click()
        page.wait_for_load_state("networkidle")
        return "987000104" in page.locator("#notifications-table").inner_text() if page.locator(
            "#notifications-table").count() else False

    eventually(logged, timeout_s=30, every_s=1)
    screenshot(page, "15-admin-notifications")


def test_notification_log_replays_what_failed(stack: Stack, pages: Pages) -> None:
    """The replay button sends exactly the failed deliveries picked. The stack's mail server
    never fails, so the log is answered here; the real route is checked by notify's tests."""
    page, _ = pages.new(width=1280, height=900, signed_in=("admin", "admin"))
    failed_id, sent_id = "3f0d3c1e-1111-4a5b-9c1d-000000000001", "3f0d3c1e-1111-4a5b-9c1d-000000000002"
    log = [
        {"id": failed_id, "channel": "email", "recipient": "lan@example.vn", "template": "winner", "status": "failed",
         "attempts": 3, "last_error": "SMTP 451", "created_at": "2026-03-03T03:00:00Z", "sent_at": None},
        {"id": sent_id, "channel": "sms", "recipient": "0987000199", "template": "winner", "status": "sent",
         "attempts": 1, "last_error": None, "created_at": "2026-03-03T03:00:01Z", "sent_at": "2026-03-03T03:00:02Z"},
    ]
    replayed: list[dict[str, object]] = []

    def notifications(route: Route) -> None:
        if route.request.method == "POST":
            replayed.append(json.loads(route.request.post_data or "{}"))
            route.fulfill(status=202, json={"requeued": 1})
        else:
            route.fulfill(status=200, json=log)

    page.route("**/api/admin/notifications**", notifications)
    page.goto("/quan-tri/thong-bao")
    expect(page.locator("#notifications-table tbody tr")).to_have_count(2)
    expect(page.locator("tr[data-status=sent] input[type=checkbox]")).to_have_count(0)
    replay = page.get_by_role("button", name="Gửi lại các thông báo đã chọn")
    expect(replay).to_be_disabled()
    page.get_by_role("checkbox", name="Chọn để gửi lại cho lan@example.vn").check()
    replay.click()
    expect(page.get_by_text("Đã đưa 1 thông báo trở lại hàng gửi.")).to_be_visible()
    assert replayed == [{"ids": [failed_id]}]
    # 03:00 UTC is 10:00 in Vietnam.
    expect(page.locator("tr[data-status=failed]")).to_contain_text("10:00 03/03/2026")
