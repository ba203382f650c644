"""The message templates: Vietnamese by default, English on request, checked at load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.notify import domain
from services.notify.settings import DEFAULT_TEMPLATES_DIR
from services.notify.templating import (
    TemplateCatalog,
    TemplateCatalogError,
    TemplateRenderError,
    load_catalog,
    sample_contexts,
)

CONTEXT = {
    "full_name": "Phạm Thị Hồng Nhung",
    "prize": "Giải Nhì",
    "rank": 2,
    "contest_title": "Cuộc thi trực tuyến tìm hiểu Luật Đất đai",
    "round_title": "Tuần 4",
    "correct": 25,
}


@pytest.fixture(scope="module")
def catalog() -> TemplateCatalog:
    return load_catalog(DEFAULT_TEMPLATES_DIR)


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES_DIR, folder)
    return folder


def test_the_shipped_templates_load_in_both_languages(catalog: TemplateCatalog) -> None:
    assert catalog.names == {"winner", "signup", "code", "nudge", "organiser_summary"}
    assert catalog.languages == {"vi", "en"}


def test_winner_email_in_vietnamese_names_the_winner_and_prize(catalog: TemplateCatalog) -> None:
    email = catalog.render("winner", CONTEXT)

    assert email.subject == (
        "Chúc mừng Phạm Thị Hồng Nhung đạt Giải Nhì – Cuộc thi trực tuyến tìm hiểu Luật Đất đai, Tuần 4"
    )
    for body in (email.text, email.html):
        assert "Phạm Thị Hồng Nhung" in body
        assert "Giải Nhì" in body
        assert "xếp hạng 2" in body
        assert "Tuần 4" in body
        assert "Cuộc thi trực tuyến tìm hiểu Luật Đất đai" in body
        assert "liên hệ với bạn" in body and "nhận giải" in body
        assert "trả lời đúng 25 câu hỏi" in body
    assert '<html lang="vi">' in email.html


def test_the_number_of_correct_answers_is_left_out_when_unknown(catalog: TemplateCatalog) -> None:
    email = catalog.render("winner", {**CONTEXT, "correct": None})
    assert "trả lời đúng" not in email.text
    assert "trả lời đúng" not in email.html


def test_english_variant_on_request(catalog: TemplateCatalog) -> None:
    email = catalog.render("winner", CONTEXT, language="en")
    assert email.subject.startswith("Congratulations, Phạm Thị Hồng Nhung: Giải Nhì")
    assert "will contact you" in email.text
    assert '<html lang="en">' in email.html


def test_an_unknown_language_falls_back_to_vietnamese(catalog: TemplateCatalog) -> None:
    assert catalog.render("winner", CONTEXT, language="fr").subject.startswith("Chúc mừng")


def test_html_escapes_names_and_text_does_not(catalog: TemplateCatalog) -> None:
    email = catalog.render("winner", {**CONTEXT, "full_name": "<script>x</script> & Co"})
    assert "<script>" not in email.html
    assert "&lt;script&gt;x&lt;/script&gt; &amp; Co" in email.html
    assert "<script>x</script> & Co" in email.text


def test_subject_is_one_line_whatever_the_data(catalog: TemplateCatalog) -> None:
    email = catalog.render("winner", {**CONTEXT, "full_name": "Nguyễn\r\nBcc: x@evil.example"})
    assert "\n" not in email.subject and "\r" not in email.subject


def test_rendering_with_a_missing_value_or_unknown_template_raises(catalog: TemplateCatalog) -> None:
    context = dict(CONTEXT)
    del context["prize"]
    with pytest.raises(TemplateRenderError, match="prize"):
        catalog.render("winner", context)
    with pytest.raises(TemplateRenderError, match="unknown template"):
        catalog.render("newsletter", CONTEXT)


def test_sample_context_matches_what_the_domain_builds() -> None:
    assert set(sample_contexts()["winner"]) == set(CONTEXT)


def test_a_syntax_error_makes_loading_fail(templates_copy: Path) -> None:
    (templates_copy / "winner.html").write_text("<p>{{ full_name </p>", encoding="utf-8")
    with pytest.raises(TemplateCatalogError, match=r"vi/winner\.html:1: TemplateSyntaxError"):
        load_catalog(templates_copy)


def test_an_unknown_variable_makes_loading_fail(templates_copy: Path) -> None:
    (templates_copy / "en" / "winner.txt").write_text("Dear {{ fullname }}", encoding="utf-8")
    with pytest.raises(TemplateCatalogError, match=r"en/winner\.txt.*fullname"):
        load_catalog(templates_copy)


def test_a_missing_part_makes_loading_fail(templates_copy: Path) -> None:
    (templates_copy / "en" / "winner.html").unlink()
    with pytest.raises(TemplateCatalogError, match=r"en/winner\.html: missing"):
        load_catalog(templates_copy)


def test_a_template_no_notification_uses_makes_loading_fail(templates_copy: Path) -> None:
    for part in ("subject.txt", "txt", "html"):
        (templates_copy / f"winer.{part}").write_text("typo", encoding="utf-8")
    with pytest.raises(TemplateCatalogError, match="winer: no notification uses this template"):
        load_catalog(templates_copy)


def test_a_missing_folder_makes_loading_fail(tmp_path: Path) -> None:
    with pytest.raises(TemplateCatalogError, match="does not exist"):
        load_catalog(tmp_path / "nowhere")


# --- issue 5: every notification, SMS parts, number formats --------------------------------

def test_every_notification_renders_in_both_languages_with_vietnamese_diacritics(catalog: TemplateCatalog) -> None:
    samples = sample_contexts()
    vietnamese = {
        "winner": "Chúc mừng", "signup": "Xác nhận đăng ký", "code": "Mã xác nhận đăng ký",
        "nudge": "tỷ lệ tham gia", "organiser_summary": "Tổng hợp kết quả",
    }
    for name, subject_start in vietnamese.items():
        vi, en = catalog.render(name, samples[name]), catalog.render(name, samples[name], language="en")
        assert subject_start in vi.subject, name
        assert vi.text != en.text and '<html lang="en">' in en.html, name


def test_sms_parts_exist_exactly_for_notifications_sent_by_sms(catalog: TemplateCatalog) -> None:
    samples = sample_contexts()
    assert catalog.render_sms("winner", samples["winner"]).startswith("Chúc mừng Nguyễn Văn A đạt Giải Nhất")
    assert "123456" in catalog.render_sms("code", samples["code"], language="en")
    assert "45/120" in catalog.render_sms("nudge", samples["nudge"])
    with pytest.raises(TemplateRenderError, match="no SMS template"):
        catalog.render_sms("signup", samples["signup"])


def test_numbers_and_rates_are_written_the_language_s_way(catalog: TemplateCatalog) -> None:
    context = {**sample_contexts()["nudge"], "participants": 12345, "headcount": 20000, "rate": 0.61725}
    assert "12.345 / 20.000 người" in catalog.render("nudge", context).text
    assert "61,7%" in catalog.render("nudge", context).text
    assert "12,345 of 20,000" in catalog.render("nudge", context, language="en").text
    assert "61.7%" in catalog.render("nudge", context, language="en").text


def test_a_missing_sms_part_makes_loading_fail(templates_copy: Path) -> None:
    (templates_copy / "en" / "nudge.sms.txt").unlink()
    with pytest.raises(TemplateCatalogError, match=r"en/nudge\.sms\.txt: missing"):
        load_catalog(templates_copy)


def test_an_sms_part_for_an_email_only_notification_makes_loading_fail(templates_copy: Path) -> None:
    (templates_copy / "signup.sms.txt").write_text("{{ full_name }}", encoding="utf-8")
    (templates_copy / "en" / "signup.sms.txt").write_text("{{ full_name }}", encoding="utf-8")
    with pytest.raises(TemplateCatalogError, match=r"vi/signup\.sms\.txt: not used \(signup is sent by email only\)"):
        load_catalog(templates_copy)


def test_a_notification_without_templates_makes_loading_fail(templates_copy: Path) -> None:
    for language_folder in (templates_copy, templates_copy / "en"):
        for path in language_folder.glob("organiser_summary.*"):
            path.unlink()
    with pytest.raises(TemplateCatalogError, match="vi/organiser_summary: missing"):
        load_catalog(templates_copy)


def test_an_error_on_the_other_side_of_an_if_is_caught_at_load(templates_copy: Path) -> None:
    # The sample has no name (the else branch); its variant has one: both sides are rendered.
    (templates_copy / "code.txt").write_text(
        "{% if full_name %}{{ full_name }}{% else %}{{ nobody }}{% endif %} {{ code }}", encoding="utf-8"
    )
    with pytest.raises(TemplateCatalogError, match=r"vi/code\.txt.*nobody"):
        load_catalog(templates_copy)


def test_sample_contexts_cover_every_notification() -> None:
    assert set(sample_contexts()) == set(domain.TEMPLATE_CHANNELS)
