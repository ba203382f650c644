"""Registration's pure rules: Vietnamese text and phone numbers, sign-up fields, logins,
and the organisers' units file (DESIGN.md "File formats"). No I/O, no framework, no SQL.

User-facing messages are Vietnamese; they reach participants and organisers unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal
from urllib.parse import quote

from email_validator import EmailNotValidError, validate_email

from services.core.phones import NotAMobileNumber, national_mobile
from services.core.tables import Table

# --- Vietnamese text --------------------------------------------------------------------

# đ/Đ are letters of their own, not d plus a mark: NFD leaves them whole.
_LETTERS_WITHOUT_DECOMPOSITION = str.maketrans({"đ": "d", "Đ": "D"})


def strip_diacritics(text: str) -> str:
    """'Phường Lê Chân' → 'Phuong Le Chan' (tones, hats, horns and breves dropped; đ → d)."""
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return bare.translate(_LETTERS_WITHOUT_DECOMPOSITION)


def search_key(text: str) -> str:
    """What searches compare: no diacritics, lowercase, single spaces, trimmed."""
    return " ".join(strip_diacritics(text).lower().split())


def clean_text(text: str) -> str:
    """NFC (browsers and keyboards send both composed and decomposed Vietnamese) with
    runs of whitespace collapsed to one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


# --- phone numbers ----------------------------------------------------------------------

_PHONE_MESSAGE = "Số điện thoại không hợp lệ: cần số di động Việt Nam gồm 10 chữ số, ví dụ 0912345678."
_PREFIX_MESSAGE = "Đầu số {prefix} không phải đầu số di động Việt Nam."


def normalise_phone(raw: str) -> str:
    """'+84 912 345 678', '84912345678', '0912.345.678' → '0912345678'.

    Raises ValueError (Vietnamese message) for anything that is not a Vietnamese mobile number.
    """
    try:
        return national_mobile(raw)
    except NotAMobileNumber as exc:
        message = _PREFIX_MESSAGE.format(prefix=exc.prefix) if exc.prefix else _PHONE_MESSAGE
        raise ValueError(message) from None


def mask_phone(phone: str) -> str:
    """'0912345678' → '091****678': enough for its owner to recognise, not to call."""
    if len(phone) <= 6:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 6) + phone[-3:]


def mask_id_number(id_number: str) -> str:
    """'001090012389' → '0010******89': the province and century digits stay, enough for
    its owner to tell it is theirs; the birth year and serial do not."""
    if len(id_number) <= 6:
        return "*" * len(id_number)
    return id_number[:4] + "*" * (len(id_number) - 6) + id_number[-2:]


# --- sign-up fields ---------------------------------------------------------------------

PASSWORD_MIN_LENGTH = 8
# Far above any real password; stops a megabyte "password" from costing an Argon2 hash.
PASSWORD_MAX_LENGTH = 128
FULL_NAME_MIN_LENGTH = 2
FULL_NAME_MAX_LENGTH = 100
GROUP_MAX_LENGTH = 50
JOB_MAX_LENGTH = 100
_ID_NUMBER = re.compile(r"^[0-9]{12}$")  # căn cước công dân: 12 digits
_STAFF_LOGIN = re.compile(r"^[a-z][a-z0-9._-]{1,49}$")
_EARLIEST_BIRTH_DATE = date(1900, 1, 1)


def validate_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValueError(f"Mật khẩu phải có ít nhất {PASSWORD_MIN_LENGTH} ký tự.")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise ValueError(f"Mật khẩu không được dài quá {PASSWORD_MAX_LENGTH} ký tự.")
    return password


def normalise_full_name(raw: str) -> str:
    name = clean_text(raw)
    if len(name) < FULL_NAME_MIN_LENGTH:
        raise ValueError(f"Họ và tên phải có ít nhất {FULL_NAME_MIN_LENGTH} ký tự.")
    if len(name) > FULL_NAME_MAX_LENGTH:
        raise ValueError(f"Họ và tên không được dài quá {FULL_NAME_MAX_LENGTH} ký tự.")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ValueError("Họ và tên chứa ký tự không hợp lệ.")
    return name


def normalise_email(raw: str) -> str:
    try:
        checked = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("Địa chỉ email không hợp lệ.") from None
    return checked.normalized.lower()


def normalise_id_number(raw: str) -> str:
    number = "".join(raw.split())
    if not _ID_NUMBER.match(number):
        raise ValueError("Số căn cước công dân phải gồm đúng 12 chữ số.")
    return number


def normalise_group(raw: str) -> str:
    group = clean_text(raw)
    if not group or len(group) > GROUP_MAX_LENGTH:
        raise ValueError(f"Nhóm dự thi phải có từ 1 đến {GROUP_MAX_LENGTH} ký tự.")
    return group


def normalise_job(raw: str) -> str | None:
    """Free text ("giáo viên", "công chức"); blank means not given."""
    job = clean_text(raw)
    if not job:
        return None
    if len(job) > JOB_MAX_LENGTH:
        raise ValueError(f"Nghề nghiệp không được dài quá {JOB_MAX_LENGTH} ký tự.")
    if any(unicodedata.category(ch).startswith("C") for ch in job):
        raise ValueError("Nghề nghiệp chứa ký tự không hợp lệ.")
    return job


def validate_birth_date(born: date, today: date) -> date:
    if not _EARLIEST_BIRTH_DATE <= born <= today:
        raise ValueError("Ngày sinh không hợp lệ.")
    return born


def normalise_staff_login(raw: str) -> str:
    """Staff logins start with a letter and hold no '@', so they never look like a
    participant's phone number or email (see `classify_login`)."""
    login = raw.strip().lower()
    if not _STAFF_LOGIN.match(login):
        raise ValueError("Tên đăng nhập phải bắt đầu bằng chữ cái, dài 2–50 ký tự, chỉ gồm a–z, 0–9, '.', '_', '-'.")
    return login


# --- logins -----------------------------------------------------------------------------

LoginKind = Literal["phone", "email", "id_number", "staff"]


@dataclass(frozen=True, slots=True)
class LoginName:
    kind: LoginKind
    value: str


def classify_login(raw: str) -> LoginName:
    """One login box for everyone: an email, else a phone number, else an ID number
    (12 digits; a CCCD starts with its province code 001–096, so never reads as a phone
    number), else a staff login (those start with a letter)."""
    text = raw.strip()
    if "@" in text:
        return LoginName("email", text.lower())
    try:
        return LoginName("phone", normalise_phone(text))
    except ValueError:
        pass
    try:
        return LoginName("id_number", normalise_id_number(text))
    except ValueError:
        return LoginName("staff", text.lower())


def login_delays_ms(*, delay_after: int, lock_after: int, base_s: float, max_s: float) -> list[int]:
    """How long the next attempt must wait after the n-th failed one, for n =
    delay_after .. lock_after - 1: doubling from `base_s`, capped at `max_s`. (From the
    lock_after-th on, the account is locked instead.)"""
    delays: list[int] = []
    for n in range(delay_after, lock_after):
        seconds = min(base_s * 2.0 ** min(n - delay_after, 60), max_s)
        delays.append(max(1, round(seconds * 1000)))
    return delays


def throttle_source(address: str | None) -> str:
    """What the throttles count by: an IPv4 address as it is; an IPv6 address by its /64,
    which one subscriber (one home, one phone) usually holds whole, so that walking the
    addresses of one's own /64 buys no fresh guesses; "unknown" when there is none."""
    if address is None:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


_DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,100}$")


def normalise_device_id(raw: str | None) -> str | None:
    """The web's X-Device-Id (a random id kept in the browser); anything else is ignored,
    as it only feeds the organisers' flags and must never block a sign-up."""
    if raw is None:
        return None
    value = raw.strip()
    return value if _DEVICE_ID.match(value) else None


# --- one-time codes and refresh tokens ---------------------------------------------------

CODE_DIGITS = 6
_CODE = re.compile(rf"^[0-9]{{{CODE_DIGITS}}}$")


def code_hash(code_id: uuid.UUID, code: str) -> bytes:
    """SHA-256 of a one-time code salted with its row id: a copied table does not show
    which codes are live at a glance. (Six digits are brute-forced offline anyway; what
    protects a code is its 10 minutes and 5 tries.)"""
    return hashlib.sha256(code_id.bytes + code.encode()).digest()


def is_code_shaped(raw: str) -> bool:
    return bool(_CODE.match(raw))


def refresh_token_hash(token: str) -> bytes:
    """Refresh tokens are 256 random bits: an unsalted SHA-256 is enough to make a copy
    of the table useless."""
    return hashlib.sha256(token.encode()).digest()


Channel = Literal["sms", "email"]


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: Channel
    recipient: str


def reset_delivery(
    login: LoginName, *, phone: str | None, email: str | None, requested: Channel | None
) -> Delivery | None:
    """Where a password-reset code goes: the channel asked for when the account has it;
    else email when the person typed their email; else SMS to their phone; else email.
    None when the account has no way to be reached."""
    if requested == "sms" and phone:
        return Delivery("sms", phone)
    if requested == "email" and email:
        return Delivery("email", email)
    if login.kind == "email" and email:
        return Delivery("email", email)
    if phone:
        return Delivery("sms", phone)
    if email:
        return Delivery("email", email)
    return None


# --- entry password -----------------------------------------------------------------------

def entry_password_matches(given: str | None, expected: str) -> bool:
    """Constant time, so the shared password cannot be found character by character."""
    return hmac.compare_digest(unicodedata.normalize("NFC", given or "").encode(),
                               unicodedata.normalize("NFC", expected).encode())


# --- unit invitations -------------------------------------------------------------------

def normalise_entry_code(raw: str) -> str:
    """The unit code carried by an entry link (`?unit=CODE`)."""
    code = raw.strip()
    if not _UNIT_CODE.match(code):
        raise ValueError("Mã đơn vị trong đường dẫn đăng ký không hợp lệ.")
    return code


def invite_link(public_base_url: str, unit_code: str) -> str:
    """The sign-up link printed as each unit's QR code."""
    return f"{public_base_url.rstrip('/')}/dang-ky?unit={quote(unit_code, safe='')}"


def invite_banner_html(*, link: str, image_url: str, unit_name: str) -> str:
    """A snippet a unit's portal pastes into a page: the QR code, linked to the entry
    link, with a call to action. Inline styles only, as the host page's CSS is unknown."""
    name = html.escape(unit_name)
    return (
        f'<a href="{html.escape(link)}" target="_blank" rel="noopener"'
        ' style="display:inline-block;max-width:320px;padding:12px;border:2px solid #c8102e;border-radius:8px;'
        'background:#fff;color:#c8102e;font:bold 16px/1.4 Arial,sans-serif;text-align:center;text-decoration:none">'
        f'<img src="{html.escape(image_url)}" alt="Mã QR đăng ký dự thi – {name}"'
        ' style="display:block;width:100%;max-width:240px;height:auto;margin:0 auto 8px">'
        "Tham gia cuộc thi trực tuyến!<br>"
        f'<span style="font-weight:normal;color:#333">Quét mã QR hoặc bấm vào đây để đăng ký dự thi cùng {name}.</span>'
        "</a>\n"
    )


# --- units ------------------------------------------------------------------------------

UNIT_COLUMNS = ("code", "name", "parent_code", "block", "headcount")
UNIT_BLOCKS = ("city", "district", "commune", "agency", "public_service", "school")
_UNIT_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")  # it goes into sign-up links
UNIT_NAME_MAX_LENGTH = 200
HEADCOUNT_MAX = 10_000_000
HEADER_ROW = 1
FIRST_DATA_ROW = 2


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class UnitRow:
    row: int
    code: str
    name: str
    parent_code: str | None
    block: str
    headcount: int

    @property
    def search_name(self) -> str:
        return search_key(self.name)


@dataclass(frozen=True, slots=True)
class UnitsCheck:
    """Either `errors` is empty and `units` holds every row, parents before children,
    or `errors` lists every problem found (and nothing may be imported)."""

    units: list[UnitRow]
    errors: list[RowError]


class UnitRowsInvalid(Exception):
    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"{len(errors)} error(s) in the units table")
        self.errors = list(errors)


def check_unit_rows(table: Table, existing_parents: Mapping[str, str | None] | None = None) -> UnitsCheck:
    """Validate the organisers' units table against itself and the units already stored
    (`existing_parents`: code → parent code), which the import keeps and may re-parent.

    Reports every error at once, so one upload shows the organiser everything to fix.
    """
    existing = dict(existing_parents or {})
    missing = [column for column in UNIT_COLUMNS if column not in table.header]
    if missing:
        return UnitsCheck([], [RowError(HEADER_ROW, column, f"Thiếu cột «{column}».") for column in missing])
    position = {column: table.header.index(column) for column in UNIT_COLUMNS}

    errors: list[RowError] = []
    first_row_of_code: dict[str, int] = {}
    parsed: list[tuple[int, dict[str, str]]] = []
    for index, cells in enumerate(table.rows):
        row_number = index + FIRST_DATA_ROW
        if not any(cells):
            continue  # blank lines between blocks are common in hand-made sheets
        values = {column: (cells[i] if i < len(cells) else "") for column, i in position.items()}
        parsed.append((row_number, values))

    if not parsed:
        return UnitsCheck([], [RowError(FIRST_DATA_ROW, "code", "Tệp không có đơn vị nào.")])

    # Codes first: parents may appear on later rows.
    for row_number, values in parsed:
        code = values["code"]
        if code and _UNIT_CODE.match(code) and code not in first_row_of_code:
            first_row_of_code[code] = row_number
    known_codes = set(first_row_of_code) | set(existing)

    candidates: list[UnitRow] = []
    parent_in_tree: dict[str, str | None] = dict(existing)
    for row_number, values in parsed:
        row_errors: list[RowError] = []
        code = values["code"]
        if not code:
            row_errors.append(RowError(row_number, "code", "Thiếu mã đơn vị."))
        elif not _UNIT_CODE.match(code):
            row_errors.append(RowError(
                row_number, "code", "Mã đơn vị chỉ gồm chữ cái không dấu, chữ số, '.', '_', '-' (tối đa 50 ký tự)."
            ))
        elif first_row_of_code[code] != row_number:
            row_errors.append(
                RowError(row_number, "code", f"Mã đơn vị «{code}» trùng với dòng {first_row_of_code[code]}.")
            )

        name = clean_text(values["name"])
        if not name:
            row_errors.append(RowError(row_number, "name", "Thiếu tên đơn vị."))
        elif len(name) > UNIT_NAME_MAX_LENGTH:
            row_errors.append(RowError(row_number, "name", f"Tên đơn vị dài quá {UNIT_NAME_MAX_LENGTH} ký tự."))

        parent_code = values["parent_code"] or None
        if parent_code is not None and parent_code not in known_codes:
            row_errors.append(RowError(row_number, "parent_code", f"Không có đơn vị cấp trên mã «{parent_code}»."))

        block = values["block"].lower()
        if block not in UNIT_BLOCKS:
            row_errors.append(RowError(
                row_number, "block", f"Khối phải là một trong: {', '.join(UNIT_BLOCKS)}." if block else "Thiếu khối."
            ))

        headcount = _headcount(values["headcount"])
        if isinstance(headcount, str):
            row_errors.append(RowError(row_number, "headcount", headcount))

        is_first_of_code = bool(code) and first_row_of_code.get(code) == row_number
        if is_first_of_code:
            parent_in_tree[code] = parent_code if parent_code in known_codes else None
        if not row_errors:
            assert isinstance(headcount, int)
            candidates.append(UnitRow(row_number, code, name, parent_code, block, headcount))
        errors.extend(row_errors)

    errors.extend(_cycle_errors(first_row_of_code, parent_in_tree))
    if errors:
        return UnitsCheck([], sorted(errors, key=lambda e: (e.row, _field_order(e.field))))
    return UnitsCheck(units_in_tree_order(candidates), [])


def _field_order(field: str) -> int:
    return UNIT_COLUMNS.index(field) if field in UNIT_COLUMNS else len(UNIT_COLUMNS)


def _headcount(raw: str) -> int | str:
    """The headcount, or a Vietnamese message saying what is wrong with it."""
    if not raw:
        return "Thiếu quân số (số người của đơn vị)."
    text = raw[:-2] if raw.endswith(".0") else raw  # Excel's 38.0
    if text.startswith("-") and text[1:].isdigit():
        return "Quân số không được âm."
    if not (text.isascii() and text.isdigit()):
        return "Quân số phải là số nguyên không âm, không có dấu phân cách."
    if len(text) > len(str(HEADCOUNT_MAX)) or int(text) > HEADCOUNT_MAX:
        return f"Quân số không được vượt quá {HEADCOUNT_MAX}."
    return int(text)


def _cycle_errors(rows_of_codes: Mapping[str, int], parent_of: Mapping[str, str | None]) -> list[RowError]:
    """An error on every file row whose unit would be its own ancestor."""
    errors: list[RowError] = []
    settled: set[str] = set()  # codes known to reach a root
    for start in rows_of_codes:
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        while node is not None and node not in settled and node not in on_path:
            path.append(node)
            on_path.add(node)
            node = parent_of.get(node)
        if node is not None and node in on_path:
            cycle = path[path.index(node):]
            shown = " → ".join([*cycle, node])
            for code in cycle:
                if code in rows_of_codes and code not in settled:
                    message = (
                        "Đơn vị không thể là cấp trên của chính nó."
                        if len(cycle) == 1
                        else f"Quan hệ cấp trên tạo thành vòng lặp: {shown}."
                    )
                    errors.append(RowError(rows_of_codes[code], "parent_code", message))
        settled.update(path)
    return errors


def units_in_tree_order(units: Sequence[UnitRow]) -> list[UnitRow]:
    """The same units, each after its parent when the parent is among them; otherwise in
    file order. Raises ValueError on a cycle (check_unit_rows reports those first)."""
    by_code = {unit.code: unit for unit in units}
    ordered: list[UnitRow] = []
    placed: set[str] = set()
    for unit in units:
        chain: list[UnitRow] = []
        seen: set[str] = set()
        current: UnitRow | None = unit
        while current is not None and current.code not in placed:
            if current.code in seen:
                raise ValueError(f"cycle through unit {current.code!r}")
            seen.add(current.code)
            chain.append(current)
            current = by_code.get(current.parent_code) if current.parent_code else None
        for link in reversed(chain):
            ordered.append(link)
            placed.add(link.code)
    return ordered


# --- organisers' search of participants ----------------------------------------------------

@dataclass(frozen=True, slots=True)
class ParticipantSearch:
    """What `q` on the participants list matches: every word in the name (diacritics
    ignored), or part of the email, or a phone or ID number."""

    words: tuple[str, ...]  # search_key words; empty: no search, everyone matches
    email_part: str | None  # a query without spaces may be part of an email
    phone: str | None  # a whole mobile number, normalised
    id_number: str | None  # a whole CCCD
    phone_digits: str | None  # 3+ digits anywhere in the phone; only where whole numbers are shown


def participant_search(query: str | None, *, partial_numbers: bool) -> ParticipantSearch:
    """`partial_numbers` only where the numbers are shown whole (the organisers' audited
    export). Where they are shown masked ('091****678') a partial number matches nobody
    by number, or adding digits to it one at a time would rebuild the masked ones."""
    text = (query or "").strip()
    key = search_key(text)
    if not key:
        return ParticipantSearch((), None, None, None, None)
    try:
        phone: str | None = normalise_phone(text)
    except ValueError:
        phone = None
    try:
        id_number: str | None = normalise_id_number(text)
    except ValueError:
        id_number = None
    digits: str | None = None
    if partial_numbers:
        digits = "".join(ch for ch in key if ch.isdigit())
        if key.startswith(("+84", "84")) and len(digits) > 2:
            digits = "0" + digits[2:]
        digits = digits if len(digits) >= 3 else None
    return ParticipantSearch(tuple(key.split()), key if " " not in key else None, phone, id_number, digits)


# --- exports of personal data (organisers only; every one is audited) ---------------------

PARTICIPANT_EXPORT_COLUMNS = (
    "id", "full_name", "birth_date", "phone", "email", "id_number", "unit_code", "unit_name", "group", "job",
    "registered_at",
)
