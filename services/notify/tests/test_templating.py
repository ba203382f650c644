"""The message templates: Vietnamese by default, English on request, checked at load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
    assert catalog.names == {"winner"}
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
        catalog.render("nudge", CONTEXT)


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
