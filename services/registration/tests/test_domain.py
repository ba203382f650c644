from __future__ import annotations

import random
import unicodedata
import uuid
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core import phones
from services.core.tables import Table, read_csv_table
from services.registration import domain
from services.registration.domain import RowError, UnitRow

# --- Vietnamese text --------------------------------------------------------------------

# Every Vietnamese vowel with every tone (none, huyền, sắc, hỏi, ngã, nặng), written out.
VOWELS_BY_BASE = {
    "a": "aàáảãạăằắẳẵặâầấẩẫậ",
    "e": "eèéẻẽẹêềếểễệ",
    "i": "iìíỉĩị",
    "o": "oòóỏõọôồốổỗộơờớởỡợ",
    "u": "uùúủũụưừứửữự",
    "y": "yỳýỷỹỵ",
}


def test_every_vietnamese_vowel_with_every_tone_maps_to_its_base_letter() -> None:
    assert sum(len(v) for v in VOWELS_BY_BASE.values()) == 72
    for base, vowels in VOWELS_BY_BASE.items():
        for vowel in vowels:
            assert domain.strip_diacritics(vowel) == base, vowel
            assert domain.strip_diacritics(vowel.upper()) == base.upper(), vowel.upper()
            # Decomposed input (as some keyboards send it) gives the same.
            assert domain.strip_diacritics(unicodedata.normalize("NFD", vowel)) == base


def test_d_with_stroke_becomes_d() -> None:
    assert domain.strip_diacritics("đĐ") == "dD"
    assert domain.strip_diacritics("Đằng Giang") == "Dang Giang"


@given(st.text())
def test_strip_diacritics_is_idempotent(text: str) -> None:
    once = domain.strip_diacritics(text)
    assert domain.strip_diacritics(once) == once


@given(st.text())
def test_search_key_has_no_marks_no_capitals_and_single_spaces(text: str) -> None:
    key = domain.search_key(text)
    assert key == key.strip()
    assert "  " not in key
    assert not any(unicodedata.category(ch) == "Mn" for ch in key)
    assert domain.search_key(key) == key


def test_search_key_ignores_diacritics_case_spacing_and_normal_form() -> None:
    expected = "phuong le chan"
    assert domain.search_key("Phường Lê Chân") == expected
    assert domain.search_key("  PHƯỜNG   lê\tchân ") == expected
    assert domain.search_key(unicodedata.normalize("NFD", "Phường Lê Chân")) == expected


# --- phone numbers ----------------------------------------------------------------------

PREFIXES = sorted(phones.MOBILE_PREFIXES)


def test_prefix_list_is_the_current_one() -> None:
    expected = (
        {f"03{d}" for d in "23456789"}
        | {"052", "055", "056", "058", "059", "070", "076", "077", "078", "079"}
        | {f"08{d}" for d in "123456789"}
        | {f"09{d}" for d in "0123456789"}
    )
    assert set(phones.MOBILE_PREFIXES) == expected


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_mobile_prefix_is_accepted(prefix: str) -> None:
    assert domain.normalise_phone(prefix + "1234567") == prefix + "1234567"


@pytest.mark.parametrize("prefix", [f"0{n:02d}" for n in range(100) if f"0{n:02d}" not in phones.MOBILE_PREFIXES])
def test_every_other_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="không phải đầu số di động"):
        domain.normalise_phone(prefix + "1234567")
    with pytest.raises(ValueError):
        domain.normalise_phone("+84" + prefix[1:] + "1234567")


mobile_numbers = st.builds(
    lambda prefix, rest: prefix + rest, st.sampled_from(PREFIXES), st.text("0123456789", min_size=7, max_size=7)
)
separators = st.sampled_from(["", "", " ", ".", "-", "  ", " - "])


@st.composite
def written_forms(draw: st.DrawFn) -> tuple[str, str]:
    """(a mobile number, one way a person might write it)."""
    phone = draw(mobile_numbers)
    subscriber = phone[1:]
    head = draw(st.sampled_from(["0", "+84", "84", "+84 ", "+84 0", "+84 (0)", "84 0", "(0"]))
    if head == "(0":
        digits = f"(0{subscriber[:2]}) {subscriber[2:]}"
    else:
        digits = head + subscriber
    written = "".join(ch + draw(separators) for ch in digits).strip()
    return phone, written


@given(written_forms())
def test_every_written_form_normalises_to_the_same_number(case: tuple[str, str]) -> None:
    phone, written = case
    assert domain.normalise_phone(written) == phone


@given(st.text("0123456789+ .-", max_size=16))
def test_anything_accepted_is_a_ten_digit_mobile_number(raw: str) -> None:
    try:
        phone = domain.normalise_phone(raw)
    except ValueError as error:
        assert str(error).startswith(("Số điện thoại", "Đầu số"))  # Vietnamese, for the form
        return
    assert len(phone) == 10 and phone.isdigit() and phone[:3] in phones.MOBILE_PREFIXES


@given(st.text("0123456789", min_size=9, max_size=9).filter(lambda s: "0" + s[:2] not in phones.MOBILE_PREFIXES))
def test_random_non_mobile_numbers_are_rejected(subscriber: str) -> None:
    for written in ("0" + subscriber, "+84" + subscriber, "84" + subscriber):
        with pytest.raises(ValueError):
            domain.normalise_phone(written)


@pytest.mark.parametrize(
    "raw",
    ["", "0912", "091234567", "09123456789", "912345678", "0912345678x", "+1 912 345 678", "0912 345 67８", "phone"],
)
def test_malformed_numbers_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError, match="Số điện thoại không hợp lệ"):
        domain.normalise_phone(raw)


@given(written_forms())
def test_mask_keeps_first_and_last_three_digits_of_the_normalised_number(case: tuple[str, str]) -> None:
    phone, written = case
    masked = domain.mask_phone(domain.normalise_phone(written))
    assert masked == phone[:3] + "****" + phone[-3:]


def test_mask_phone_example() -> None:
    assert domain.mask_phone("0912345678") == "091****678"


# --- sign-up fields and logins ----------------------------------------------------------

def test_password_needs_eight_characters() -> None:
    with pytest.raises(ValueError, match="ít nhất 8"):
        domain.validate_password("1234567")
    assert domain.validate_password("12345678") == "12345678"
    with pytest.raises(ValueError):
        domain.validate_password("x" * 129)


def test_full_name_is_nfc_trimmed_and_bounded() -> None:
    decomposed = unicodedata.normalize("NFD", "  Nguyễn   Văn An ")
    assert domain.normalise_full_name(decomposed) == unicodedata.normalize("NFC", "Nguyễn Văn An")
    with pytest.raises(ValueError):
        domain.normalise_full_name(" A ")
    with pytest.raises(ValueError):
        domain.normalise_full_name("A" * 101)
    assert domain.normalise_full_name("A" * 100) == "A" * 100


def test_email_is_validated_and_lowercased() -> None:
    assert domain.normalise_email(" An.Nguyen@Example.VN ") == "an.nguyen@example.vn"
    for bad in ("an", "an@", "@x.vn", "an@@x.vn", "an nguyen@x.vn"):
        with pytest.raises(ValueError, match="email"):
            domain.normalise_email(bad)


def test_id_number_has_exactly_twelve_digits() -> None:
    assert domain.normalise_id_number("031 203 004 567") == "031203004567"
    for bad in ("03120300456", "0312030045678", "03120300456a"):
        with pytest.raises(ValueError, match="12 chữ số"):
            domain.normalise_id_number(bad)


def test_birth_date_is_in_the_past() -> None:
    today = date(2025, 5, 1)
    assert domain.validate_birth_date(date(1990, 1, 2), today) == date(1990, 1, 2)
    for bad in (date(2025, 5, 2), date(1899, 12, 31)):
        with pytest.raises(ValueError):
            domain.validate_birth_date(bad, today)


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        ("admin", "staff", "admin"),
        (" Admin ", "staff", "admin"),
        ("An@Example.vn", "email", "an@example.vn"),
        ("+84 912 345 678", "phone", "0912345678"),
        ("0912.345.678", "phone", "0912345678"),
        ("0212345678", "staff", "0212345678"),  # not a mobile number: no participant has it
        ("031203004567", "id_number", "031203004567"),
        (" 0312 0300 4567 ", "id_number", "031203004567"),
        ("840912345678", "phone", "0912345678"),  # +84 (0)912…: twelve digits, but a phone number
    ],
)
def test_classify_login(raw: str, kind: str, value: str) -> None:
    assert domain.classify_login(raw) == domain.LoginName(kind, value)  # type: ignore[arg-type]


@given(st.text(min_size=1, max_size=40))
def test_valid_staff_logins_never_look_like_participant_logins(raw: str) -> None:
    try:
        login = domain.normalise_staff_login(raw)
    except ValueError:
        return
    assert domain.classify_login(login).kind == "staff"


def test_invite_link() -> None:
    assert domain.invite_link("https://thi.example.vn/", "LC-P01") == "https://thi.example.vn/dang-ky?unit=LC-P01"
    assert domain.invite_link("http://x", "A B&c") == "http://x/dang-ky?unit=A%20B%26c"


# --- uploaded tables --------------------------------------------------------------------

HEADER = "code,name,parent_code,block,headcount"


def csv_table(*lines: str) -> Table:
    return read_csv_table(("\n".join(lines) + "\n").encode())


# --- units ------------------------------------------------------------------------------

def test_the_seed_file_is_valid_and_ordered_parents_first() -> None:
    from services.registration.tests.conftest import SEED_UNITS

    checked = domain.check_unit_rows(read_csv_table(SEED_UNITS.read_bytes()))
    assert checked.errors == []
    assert len(checked.units) == 27
    seen: set[str] = set()
    for unit in checked.units:
        assert unit.parent_code is None or unit.parent_code in seen
        seen.add(unit.code)
    by_code = {u.code: u for u in checked.units}
    assert by_code["LC-P01"] == UnitRow(4, "LC-P01", "Phường Lê Chân", "LC", "commune", 38)
    assert by_code["LC-P01"].search_name == "phuong le chan"


def test_parents_may_come_after_children_in_the_file() -> None:
    checked = domain.check_unit_rows(csv_table(HEADER, "P1,Phường 1,Q,commune,10", "Q,Quận,,district,0"))
    assert checked.errors == []
    assert [u.code for u in checked.units] == ["Q", "P1"]
    assert [u.row for u in checked.units] == [3, 2]


def test_unknown_parent() -> None:
    checked = domain.check_unit_rows(csv_table(HEADER, "Q,Quận,,district,0", "P1,Phường 1,X,commune,10"))
    assert checked.units == []
    assert checked.errors == [RowError(3, "parent_code", "Không có đơn vị cấp trên mã «X».")]


def test_parent_may_be_a_unit_already_stored() -> None:
    checked = domain.check_unit_rows(csv_table(HEADER, "P1,Phường 1,Q,commune,10"), {"Q": None})
    assert checked.errors == []


def test_duplicate_code_is_reported_on_the_later_row() -> None:
    checked = domain.check_unit_rows(csv_table(HEADER, "Q,Quận,,district,0", "Q,Quận khác,,district,0"))
    assert checked.errors == [RowError(3, "code", "Mã đơn vị «Q» trùng với dòng 2.")]


def test_cycle_is_reported_on_every_row_in_it() -> None:
    checked = domain.check_unit_rows(
        csv_table(
            HEADER, "TP,Thành phố,,city,0", "A,Đơn vị A,B,agency,1", "B,Đơn vị B,C,agency,1", "C,Đơn vị C,A,agency,1"
        )
    )
    assert [(e.row, e.field) for e in checked.errors] == [(3, "parent_code"), (4, "parent_code"), (5, "parent_code")]
    assert all("vòng lặp" in e.message for e in checked.errors)


def test_unit_cannot_be_its_own_parent() -> None:
    checked = domain.check_unit_rows(csv_table(HEADER, "A,Đơn vị A,A,agency,1"))
    assert checked.errors == [RowError(2, "parent_code", "Đơn vị không thể là cấp trên của chính nó.")]


def test_cycle_through_units_already_stored() -> None:
    # Stored: A is B's parent. The file makes B A's parent.
    checked = domain.check_unit_rows(csv_table(HEADER, "A,Đơn vị A,B,agency,1"), {"A": None, "B": "A"})
    assert [(e.row, e.field) for e in checked.errors] == [(2, "parent_code")]


@pytest.mark.parametrize(
    ("headcount", "message"),
    [
        ("", "Thiếu quân số"),
        ("-1", "không được âm"),
        ("12.5", "số nguyên"),
        ("1.234", "số nguyên"),
        ("abc", "số nguyên"),
        ("99999999999", "vượt quá"),
    ],
)
def test_bad_headcount(headcount: str, message: str) -> None:
    checked = domain.check_unit_rows(csv_table(HEADER, f"A,Đơn vị A,,agency,{headcount}"))
    assert [(e.row, e.field) for e in checked.errors] == [(2, "headcount")]
    assert message in checked.errors[0].message


def test_bad_block_lists_the_allowed_ones() -> None:
    checked = domain.check_unit_rows(csv_table(HEADER, "A,Đơn vị A,,ministry,1"))
    assert checked.errors[0].field == "block"
    assert "public_service" in checked.errors[0].message


def test_missing_columns_are_reported_on_the_header_row() -> None:
    checked = domain.check_unit_rows(csv_table("code,name,block", "A,Đơn vị A,agency"))
    assert checked.errors == [
        RowError(1, "parent_code", "Thiếu cột «parent_code»."),
        RowError(1, "headcount", "Thiếu cột «headcount»."),
    ]


def test_all_errors_are_reported_at_once_in_row_order() -> None:
    checked = domain.check_unit_rows(
        csv_table(
            "Code, Name ,parent_code,block,headcount,note",  # header case and spacing do not matter
            "TP,Thành phố,,city,0",
            ",Không mã,TP,agency,5",
            "",  # blank line: skipped, still counted
            "X1,,NOPE,galaxy,-3",
            "TP,Trùng,,city,0",
            "OK,Được,TP,school,12",
        )
    )
    assert [(e.row, e.field) for e in checked.errors] == [
        (3, "code"),
        (5, "name"),
        (5, "parent_code"),
        (5, "block"),
        (5, "headcount"),
        (6, "code"),
    ]
    assert checked.units == []


def test_file_without_units() -> None:
    checked = domain.check_unit_rows(csv_table(HEADER, ",,,,"))
    assert checked.errors == [RowError(2, "code", "Tệp không có đơn vị nào.")]


@st.composite
def forests(draw: st.DrawFn) -> list[UnitRow]:
    """Random unit forests, shuffled: unit i's parent is an earlier unit or none."""
    size = draw(st.integers(min_value=0, max_value=40))
    units = []
    for i in range(size):
        parent = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=i - 1))) if i else None
        units.append(UnitRow(i + 2, f"U{i}", f"Đơn vị {i}", None if parent is None else f"U{parent}", "agency", 1))
    random.Random(draw(st.integers())).shuffle(units)
    return units


@given(forests())
def test_tree_order_puts_parents_first_and_keeps_every_unit(units: list[UnitRow]) -> None:
    ordered = domain.units_in_tree_order(units)
    assert sorted(ordered, key=lambda u: u.code) == sorted(units, key=lambda u: u.code)
    position = {u.code: i for i, u in enumerate(ordered)}
    for unit in ordered:
        if unit.parent_code is not None:
            assert position[unit.parent_code] < position[unit.code]


def test_tree_order_refuses_a_cycle() -> None:
    a = UnitRow(2, "A", "A", "B", "agency", 1)
    b = UnitRow(3, "B", "B", "A", "agency", 1)
    with pytest.raises(ValueError):
        domain.units_in_tree_order([a, b])


# --- issue 4: masking, logins, throttling schedule, codes, banner, exports ---------------

def test_mask_id_number_keeps_four_leading_and_two_trailing_digits() -> None:
    assert domain.mask_id_number("001090012389") == "0010******89"
    assert domain.mask_id_number("123") == "***"


@given(st.text("0123456789", min_size=12, max_size=12))
def test_masked_id_number_hides_the_birth_year_and_serial(number: str) -> None:
    masked = domain.mask_id_number(number)
    assert len(masked) == 12
    assert masked[4:10] == "******"
    assert (masked[:4], masked[-2:]) == (number[:4], number[-2:])


@given(st.text("0123456789", min_size=11, max_size=11).map(lambda digits: "0" + digits))
def test_a_cccd_is_always_classified_as_an_id_number(number: str) -> None:
    # A CCCD starts with its province code (001–096), so it never reads as a phone number.
    assert domain.classify_login(number) == domain.LoginName("id_number", number)


def test_job_is_optional_free_text() -> None:
    assert domain.normalise_job("  giáo   viên ") == "giáo viên"
    assert domain.normalise_job("   ") is None
    with pytest.raises(ValueError, match="Nghề nghiệp"):
        domain.normalise_job("x" * 101)
    with pytest.raises(ValueError, match="Nghề nghiệp"):
        domain.normalise_job("a\x00b")


def test_entry_code_is_a_unit_code() -> None:
    assert domain.normalise_entry_code(" LC-P01 ") == "LC-P01"
    with pytest.raises(ValueError, match="Mã đơn vị"):
        domain.normalise_entry_code("LC P01")


def test_login_delays_double_up_to_the_cap() -> None:
    assert domain.login_delays_ms(delay_after=5, lock_after=10, base_s=1, max_s=10) == [1000, 2000, 4000, 8000, 10000]
    assert domain.login_delays_ms(delay_after=3, lock_after=3, base_s=1, max_s=10) == []
    assert domain.login_delays_ms(delay_after=1, lock_after=3, base_s=0.0001, max_s=1) == [1, 1]  # never 0 ms


@given(
    st.integers(1, 50), st.integers(0, 50), st.floats(0.01, 100), st.floats(0.01, 1000)
)
def test_login_delays_never_shrink_and_respect_the_cap(delay_after: int, extra: int, base: float, cap: float) -> None:
    delays = domain.login_delays_ms(delay_after=delay_after, lock_after=delay_after + extra, base_s=base, max_s=cap)
    assert len(delays) == extra
    assert delays == sorted(delays)
    assert all(1 <= d <= max(1, round(cap * 1000)) for d in delays)


def test_device_id_is_kept_only_when_it_looks_like_one() -> None:
    assert domain.normalise_device_id(" 3f2a9c1e-77aa-4b1c ") == "3f2a9c1e-77aa-4b1c"
    assert domain.normalise_device_id("short") is None
    assert domain.normalise_device_id("<script>alert(1)</script>") is None
    assert domain.normalise_device_id(None) is None


def test_code_hash_depends_on_code_and_row() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    assert domain.code_hash(first, "123456") == domain.code_hash(first, "123456")
    assert domain.code_hash(first, "123456") != domain.code_hash(first, "123457")
    assert domain.code_hash(first, "123456") != domain.code_hash(second, "123456")
    assert domain.is_code_shaped("012345")
    assert not domain.is_code_shaped("12345")
    assert not domain.is_code_shaped("a12345")


@pytest.mark.parametrize(
    ("login", "phone", "email", "requested", "expected"),
    [
        (domain.LoginName("phone", "0912345678"), "0912345678", "an@x.vn", None, ("sms", "0912345678")),
        (domain.LoginName("email", "an@x.vn"), "0912345678", "an@x.vn", None, ("email", "an@x.vn")),
        (domain.LoginName("id_number", "031203004567"), "0912345678", "an@x.vn", None, ("sms", "0912345678")),
        (domain.LoginName("phone", "0912345678"), "0912345678", "an@x.vn", "email", ("email", "an@x.vn")),
        (domain.LoginName("phone", "0912345678"), "0912345678", None, "email", ("sms", "0912345678")),
        (domain.LoginName("staff", "btc"), None, "btc@x.vn", None, ("email", "btc@x.vn")),
        (domain.LoginName("staff", "btc"), None, None, "sms", None),
    ],
)
def test_reset_code_goes_where_the_person_can_read_it(
    login: domain.LoginName, phone: str | None, email: str | None, requested: Any, expected: tuple[str, str] | None
) -> None:
    delivery = domain.reset_delivery(login, phone=phone, email=email, requested=requested)
    assert (None if delivery is None else (delivery.channel, delivery.recipient)) == expected


def test_entry_password_compares_normalised_text() -> None:
    assert domain.entry_password_matches("Hội thi 2026", "Hội thi 2026")
    assert domain.entry_password_matches(unicodedata.normalize("NFD", "Hội thi 2026"), "Hội thi 2026")
    assert not domain.entry_password_matches("hội thi 2026", "Hội thi 2026")
    assert not domain.entry_password_matches(None, "Hội thi 2026")


def test_banner_links_the_qr_code_to_the_entry_link_and_escapes_the_name() -> None:
    snippet = domain.invite_banner_html(
        link="https://thi.example.vn/dang-ky?unit=A&B",
        image_url="https://thi.example.vn/api/units/1/invite.png",
        unit_name='Trường "Chu Văn An" <THCS>',
    )
    assert snippet.startswith('<a href="https://thi.example.vn/dang-ky?unit=A&amp;B"')
    assert '<img src="https://thi.example.vn/api/units/1/invite.png"' in snippet
    assert "Trường &quot;Chu Văn An&quot; &lt;THCS&gt;" in snippet
    assert "<THCS>" not in snippet
    assert "đăng ký dự thi" in snippet


# --- what throttles count by ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # the same subscriber
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),  # an IPv4 client of a dual-stack socket
        (None, "unknown"),
        ("not an address", "unknown"),
    ],
)
def test_throttle_source(address: str | None, source: str) -> None:
    assert domain.throttle_source(address) == source


# --- organisers' search of participants -----------------------------------------------------

@pytest.mark.parametrize(
    ("query", "phone", "id_number"),
    [
        ("0912345678", "0912345678", None),
        ("+84 912 345 678", "0912345678", None),
        ("0912.345.678", "0912345678", None),
        ("031203004567", None, "031203004567"),
        ("0312 0300 4567", None, "031203004567"),
        ("091234567", None, None),
        ("0312030045", None, None),
        ("Nguyễn Văn An", None, None),
    ],
)
def test_whole_numbers_are_recognised(query: str, phone: str | None, id_number: str | None) -> None:
    for partial_numbers in (False, True):
        search = domain.participant_search(query, partial_numbers=partial_numbers)
        assert (search.phone, search.id_number) == (phone, id_number)


@given(st.text(alphabet="0123456789 +.", max_size=14))
def test_no_partial_number_where_numbers_are_masked(query: str) -> None:
    search = domain.participant_search(query, partial_numbers=False)
    assert search.phone_digits is None
    assert search.phone is None or len(search.phone) == 10
    assert search.id_number is None or len(search.id_number) == 12


def test_partial_numbers_where_they_are_shown_whole() -> None:
    assert domain.participant_search("0987", partial_numbers=True).phone_digits == "0987"
    assert domain.participant_search("+84 98765", partial_numbers=True).phone_digits == "098765"
    assert domain.participant_search("09", partial_numbers=True).phone_digits is None  # too short to mean anything


def test_search_words_and_email_part() -> None:
    search = domain.participant_search("  Nguyễn  VĂN ", partial_numbers=False)
    assert (search.words, search.email_part) == (("nguyen", "van"), None)
    assert domain.participant_search("cuong@", partial_numbers=False).email_part == "cuong@"
    assert domain.participant_search("   ", partial_numbers=False).words == ()
    assert domain.participant_search(None, partial_numbers=False).words == ()
