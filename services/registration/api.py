"""Registration routes (DESIGN.md "HTTP contract"): sign-up, login and sessions, password
reset, the unit picker with its QR codes and banner, and the organisers' and
coordinators' pages (units import, participants, exports, audit, flags, staff)."""

from __future__ import annotations

import asyncio
import io
import math
import secrets
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import IO, Annotated, Any, Literal
from uuid import UUID

import segno
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field, field_validator
from starlette.responses import Response, StreamingResponse

from services.core.auth import Principal, Role, TokenSigner
from services.core.http import ClientAddress, CurrentUser, Db, Organiser, Staff
from services.core.problems import Problem, wants_english
from services.core.spreadsheets import MEDIA_TYPES as SPREADSHEET_MEDIA_TYPES
from services.core.spreadsheets import XLSX_MEDIA_TYPE, TableExport
from services.core.uploads import read_uploaded_table
from services.registration import domain, store
from services.registration.passwords import Passwords
from services.registration.settings import RegistrationSettings
from services.registration.throttle import CodePacing, LimitCase, LoginThrottle, SourceLimits

router = APIRouter()

# code -> (title, Vietnamese, English) for the problems these routes raise.
MESSAGES: dict[str, tuple[str, str, str]] = {
    "phone_taken": (
        "Conflict",
        "Số điện thoại này đã được dùng để đăng ký. Hãy đăng nhập, hoặc dùng số khác.",
        "This phone number is already registered. Sign in, or use another number.",
    ),
    "email_taken": (
        "Conflict",
        "Địa chỉ email này đã được dùng để đăng ký.",
        "This email address is already registered.",
    ),
    "id_number_taken": (
        "Conflict",
        "Số căn cước công dân này đã được dùng để đăng ký.",
        "This identity card number is already registered.",
    ),
    "login_taken": (
        "Conflict",
        "Tên đăng nhập này đã được dùng cho một tài khoản cán bộ khác.",
        "This login is already used by another staff account.",
    ),
    "invalid_credentials": (
        "Unauthorized",
        "Tên đăng nhập hoặc mật khẩu không đúng.",
        "Wrong login or password.",
    ),
    "login_throttled": (
        "Too Many Requests",
        "Bạn đã đăng nhập sai nhiều lần. Vui lòng chờ một lát rồi thử lại.",
        "Too many failed sign-ins. Please wait a moment and try again.",
    ),
    "account_locked": (
        "Locked",
        "Tài khoản tạm thời bị khoá do đăng nhập sai nhiều lần. Vui lòng thử lại sau, hoặc đặt lại mật khẩu.",
        "The account is locked for a while after too many failed sign-ins. Try again later, or reset the password.",
    ),
    "account_protected": (
        "Locked",
        "Tài khoản đang được bảo vệ vì có nhiều lần đăng nhập sai từ nhiều nơi. Để đăng nhập trên thiết bị này,"
        " hãy đặt lại mật khẩu bằng mã gửi tới số điện thoại hoặc email của bạn.",
        "The account is protected after many failed sign-ins from many places. To sign in on this device,"
        " reset your password with a code sent to your phone or email.",
    ),
    "signup_throttled": (
        "Too Many Requests",
        "Có quá nhiều lượt đăng ký từ cùng một địa chỉ mạng. Vui lòng chờ một lát rồi thử lại.",
        "Too many sign-ups from this network address. Please wait a moment and try again.",
    ),
    "entry_password_throttled": (
        "Too Many Requests",
        "Đã nhập sai mật khẩu dự thi quá nhiều lần từ địa chỉ mạng này. Hãy hỏi lại Ban Tổ chức.",
        "The contest entry password was wrong too many times from this network address. Check it with the"
        " organisers.",
    ),
    "reset_throttled": (
        "Too Many Requests",
        "Có quá nhiều yêu cầu đặt lại mật khẩu từ địa chỉ mạng này.",
        "Too many password-reset requests from this network address.",
    ),
    "reset_code_throttled": (
        "Too Many Requests",
        "Đã nhập sai mã xác nhận quá nhiều lần từ địa chỉ mạng này.",
        "Too many wrong codes from this network address.",
    ),
    "number_search_throttled": (
        "Too Many Requests",
        "Bạn đã tìm theo số điện thoại hoặc số căn cước quá nhiều lần trong một giờ.",
        "Too many searches by phone or ID number within an hour.",
    ),
    "refresh_cookie_needs_header": (
        "Forbidden",
        "Cookie phiên đăng nhập chỉ được nhận cùng tiêu đề X-Refresh-Cookie.",
        "The session cookie is only accepted with the X-Refresh-Cookie header.",
    ),
    "cross_site_request": (
        "Forbidden",
        "Yêu cầu gửi từ một trang web khác bị từ chối.",
        "Requests sent from another site are refused.",
    ),
    "invalid_refresh_token": (
        "Unauthorized",
        "Phiên đăng nhập đã hết hạn hoặc đã đăng xuất. Vui lòng đăng nhập lại.",
        "The session has expired or was signed out. Please sign in again.",
    ),
    "refresh_token_reused": (
        "Unauthorized",
        "Phiên đăng nhập đã bị dùng ở nơi khác nên đã được kết thúc để bảo vệ tài khoản. Vui lòng đăng nhập lại.",
        "The session was used elsewhere and has been ended to protect the account. Please sign in again.",
    ),
    "invalid_code": (
        "Bad Request",
        "Mã xác nhận không đúng hoặc đã hết hạn. Hãy yêu cầu mã mới.",
        "The code is wrong or has expired. Request a new one.",
    ),
    "code_too_soon": (
        "Too Many Requests",
        "Mã vừa được gửi. Vui lòng chờ một lát trước khi yêu cầu mã mới.",
        "A code was just sent. Please wait before asking for another.",
    ),
    "signup_verification_off": (
        "Conflict",
        "Cuộc thi này không yêu cầu mã xác minh khi đăng ký.",
        "This contest does not use sign-up codes.",
    ),
    "units_invalid": (
        "Unprocessable Content",
        "Danh sách đơn vị có lỗi, chưa có dòng nào được nhập. Hãy sửa các dòng được liệt kê rồi tải lên lại.",
        "The units file has errors; nothing was imported. Fix the rows listed and upload it again.",
    ),
}


# --- dependencies -----------------------------------------------------------------------
# `async def`, though none awaits: FastAPI runs a plain `def` dependency in a worker
# thread, a hop that costs more than the dependency itself on every request.

async def _passwords(request: Request) -> Passwords:
    return request.app.state.passwords  # type: ignore[no-any-return]


async def _signer(request: Request) -> TokenSigner:
    return request.app.state.signer  # type: ignore[no-any-return]


async def _settings(request: Request) -> RegistrationSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _throttle(request: Request) -> LoginThrottle:
    return request.app.state.login_throttle  # type: ignore[no-any-return]


async def _code_pacing(request: Request) -> CodePacing:
    return request.app.state.code_pacing  # type: ignore[no-any-return]


async def _source_limits(request: Request) -> SourceLimits:
    return request.app.state.source_limits  # type: ignore[no-any-return]


async def _throttle_source(address: ClientAddress) -> str:
    return domain.throttle_source(address)


PasswordHashing = Annotated[Passwords, Depends(_passwords)]
Signer = Annotated[TokenSigner, Depends(_signer)]
Config = Annotated[RegistrationSettings, Depends(_settings)]
Throttle = Annotated[LoginThrottle, Depends(_throttle)]
Pacing = Annotated[CodePacing, Depends(_code_pacing)]
Limits = Annotated[SourceLimits, Depends(_source_limits)]
# What the throttles count by: the client's address (an IPv6 one by its /64).
Source = Annotated[str, Depends(_throttle_source)]


def scope_of(who: Principal) -> UUID | None:
    """The unit subtree a staff member sees: everything for organisers, their unit's
    subtree for coordinators (a coordinator without a unit sees nothing)."""
    if who.role == "organiser":
        return None
    if who.unit_id is None:
        raise Problem(403, "forbidden")
    return who.unit_id


# --- models at the edge -----------------------------------------------------------------

def _blank_means_absent(value: Any) -> Any:
    # HTML forms send optional fields as empty strings.
    return None if isinstance(value, str) and not value.strip() else value


class RegisterIn(BaseModel):
    full_name: str = Field(max_length=300)
    phone: str = Field(max_length=40)
    email: str | None = Field(default=None, max_length=254)
    id_number: str | None = Field(default=None, max_length=40)
    birth_date: date | None = None
    unit_id: UUID
    group: str | None = Field(default=None, max_length=200)
    job: str | None = Field(default=None, max_length=300)
    password: str = Field(max_length=1024)
    # The unit code of the entry link (QR code) the sign-up page was opened with.
    entry_code: str | None = Field(default=None, max_length=100)
    # The contest's shared entry password, when it has one (ENTRY_PASSWORD).
    entry_password: str | None = Field(default=None, max_length=200)
    # The one-time code sent by POST /api/auth/register/code (SIGNUP_VERIFICATION).
    verification_code: str | None = Field(default=None, max_length=20)

    @field_validator(
        "email", "id_number", "birth_date", "group", "job", "entry_code", "entry_password", "verification_code",
        mode="before",
    )
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return _blank_means_absent(value)

    @field_validator("full_name")
    @classmethod
    def _full_name(cls, value: str) -> str:
        return domain.normalise_full_name(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return domain.normalise_phone(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else domain.normalise_email(value)

    @field_validator("id_number")
    @classmethod
    def _id_number(cls, value: str | None) -> str | None:
        return None if value is None else domain.normalise_id_number(value)

    @field_validator("birth_date")
    @classmethod
    def _birth_date(cls, value: date | None) -> date | None:
        return None if value is None else domain.validate_birth_date(value, date.today())

    @field_validator("group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        return None if value is None else domain.normalise_group(value)

    @field_validator("job")
    @classmethod
    def _job(cls, value: str | None) -> str | None:
        return None if value is None else domain.normalise_job(value)

    @field_validator("entry_code")
    @classmethod
    def _entry_code(cls, value: str | None) -> str | None:
        return None if value is None else domain.normalise_entry_code(value)

    @field_validator("verification_code")
    @classmethod
    def _verification_code(cls, value: str | None) -> str | None:
        if value is not None and not domain.is_code_shaped(value.strip()):
            raise ValueError(f"Mã xác minh gồm {domain.CODE_DIGITS} chữ số.")
        return None if value is None else value.strip()

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return domain.validate_password(value)


class RegisteredOut(BaseModel):
    participant_id: UUID


class SignUpCodeIn(BaseModel):
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)

    @field_validator("phone", "email", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return _blank_means_absent(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else domain.normalise_phone(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else domain.normalise_email(value)


class CodeSentOut(BaseModel):
    expires_in: int


class LoginIn(BaseModel):
    login: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    # In the body for outside clients; a browser that asked for the cookie
    # (X-Refresh-Cookie: 1) gets it only there, out of reach of page scripts.
    refresh_token: str | None = None
    refresh_expires_in: int


class RefreshIn(BaseModel):
    # Absent when a browser's cookie carries it (X-Refresh-Cookie: 1).
    refresh_token: str | None = Field(default=None, min_length=16, max_length=200)


class ResetRequestIn(BaseModel):
    login: str = Field(min_length=1, max_length=254)
    channel: Literal["sms", "email"] | None = None


class ResetConfirmIn(BaseModel):
    login: str = Field(min_length=1, max_length=254)
    code: str = Field(max_length=20)
    new_password: str = Field(max_length=1024)

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not domain.is_code_shaped(value.strip()):
            raise ValueError(f"Mã xác nhận gồm {domain.CODE_DIGITS} chữ số.")
        return value.strip()

    @field_validator("new_password")
    @classmethod
    def _password(cls, value: str) -> str:
        return domain.validate_password(value)


class AcceptedOut(BaseModel):
    detail: str


class UnitRefOut(BaseModel):
    id: UUID
    code: str
    name: str


class MeOut(BaseModel):
    id: UUID
    role: Role
    full_name: str
    unit: UnitRefOut | None
    group: str | None
    phone: str | None  # masked
    email: str | None
    id_number: str | None  # masked
    birth_date: date | None
    job: str | None


class UnitOut(BaseModel):
    id: UUID
    code: str
    name: str
    parent_id: UUID | None
    block: str
    headcount: int


class UnitsImportOut(BaseModel):
    imported: int
    created: int
    updated: int
    unchanged: int


class InviteStatsOut(BaseModel):
    unit_id: UUID
    code: str
    link: str
    signups: int


class ParticipantOut(BaseModel):
    id: UUID
    full_name: str
    phone: str  # masked
    email: str | None
    id_number: str | None  # masked
    birth_date: date | None
    unit_id: UUID
    group: str | None
    job: str | None
    created_at: datetime


class ParticipantsPage(BaseModel):
    total: int
    items: list[ParticipantOut]


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor_id: UUID
    actor_name: str
    actor_role: str
    action: str
    filter: dict[str, Any]
    row_count: int


class AuditPage(BaseModel):
    total: int
    items: list[AuditOut]


class FlaggedParticipantOut(BaseModel):
    id: UUID
    full_name: str
    phone: str  # masked
    unit_id: UUID
    created_at: datetime


class DuplicateFlagOut(BaseModel):
    unit_id: UUID
    unit_name: str
    birth_date: date
    participants: list[FlaggedParticipantOut]


class BurstFlagOut(BaseModel):
    kind: Literal["ip", "device"]
    source: str
    accounts: int
    first_at: datetime
    last_at: datetime
    participants: list[FlaggedParticipantOut]


class FlagsOut(BaseModel):
    duplicates: list[DuplicateFlagOut]
    bursts: list[BurstFlagOut]


class StaffIn(BaseModel):
    login: str = Field(max_length=100)
    full_name: str = Field(max_length=300)
    role: Literal["organiser", "coordinator"]
    unit_id: UUID | None = None
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=40)
    password: str = Field(max_length=1024)

    @field_validator("email", "phone", "unit_id", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return _blank_means_absent(value)

    @field_validator("login")
    @classmethod
    def _login(cls, value: str) -> str:
        return domain.normalise_staff_login(value)

    @field_validator("full_name")
    @classmethod
    def _full_name(cls, value: str) -> str:
        return domain.normalise_full_name(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else domain.normalise_email(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else domain.normalise_phone(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return domain.validate_password(value)


class StaffCreatedOut(BaseModel):
    staff_id: UUID


class StaffOut(BaseModel):
    id: UUID
    login: str
    full_name: str
    role: Role
    unit_id: UUID | None
    email: str | None
    phone: str | None  # masked
    created_at: datetime


def _unit_out(unit: store.Unit) -> UnitOut:
    return UnitOut(
        id=unit.id, code=unit.code, name=unit.name, parent_id=unit.parent_id, block=unit.block, headcount=unit.headcount
    )


def _invalid(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _unknown_unit() -> Problem:
    return Problem(422, "validation", errors=[_invalid("unit_id", "Đơn vị không tồn tại.")])


def _mask_phone(phone: str | None) -> str | None:
    return domain.mask_phone(phone) if phone else None


def _mask_id_number(id_number: str | None) -> str | None:
    return domain.mask_id_number(id_number) if id_number else None


def _new_code() -> str:
    return f"{secrets.randbelow(10 ** domain.CODE_DIGITS):0{domain.CODE_DIGITS}d}"


def _wait_problem(request: Request, status: int, code: str, seconds: int) -> Problem:
    """A 423/429 that tells, in words and in Retry-After, how long to wait."""
    _, vietnamese, english = MESSAGES[code]
    if wants_english(request):
        when = f"{seconds} seconds" if seconds < 120 else f"{math.ceil(seconds / 60)} minutes"
        detail = f"{english} Try again in {when}."
    else:
        when = f"{seconds} giây" if seconds < 120 else f"{math.ceil(seconds / 60)} phút"
        detail = f"{vietnamese} Thử lại sau {when}."
    return Problem(status, code, detail=detail, headers={"Retry-After": str(seconds)}, retry_after=seconds)


async def _within_limit(request: Request, limits: SourceLimits, case: LimitCase, source: str, code: str) -> None:
    """Counts one more of `case` from `source`, or answers 429 `code` with the wait."""
    if wait_s := await limits.take(case, source):
        raise _wait_problem(request, 429, code, wait_s)


# --- sign-up ----------------------------------------------------------------------------

@router.post("/api/auth/register", status_code=201)
async def register(
    body: RegisterIn, request: Request, db: Db, passwords: PasswordHashing, settings: Config, address: ClientAddress,
    source: Source, limits: Limits,
) -> RegisteredOut:
    # Counted whatever the outcome: it also bounds finding out, by 409s, which phones have accounts.
    await _within_limit(request, limits, "signup", source, "signup_throttled")
    errors: list[dict[str, str]] = []
    if await store.unit_by_id(db, body.unit_id) is None:
        errors.append(_invalid("unit_id", "Đơn vị không tồn tại."))
    if settings.require_id_number and body.id_number is None:
        errors.append(_invalid("id_number", "Cuộc thi này yêu cầu số căn cước công dân (12 chữ số)."))
    if settings.entry_password is not None and settings.entry_password.get_secret_value():
        if body.entry_password is None:
            errors.append(_invalid("entry_password", "Cuộc thi này yêu cầu mật khẩu dự thi do Ban Tổ chức cung cấp."))
        else:
            # Counted before the comparison, so parallel guesses cannot slip past; a right one is given back.
            await _within_limit(request, limits, "entry_password", source, "entry_password_throttled")
            if domain.entry_password_matches(body.entry_password, settings.entry_password.get_secret_value()):
                await limits.refund("entry_password", source)
            else:
                errors.append(_invalid("entry_password", "Mật khẩu dự thi không đúng."))
    code_id: UUID | None = None
    if settings.signup_verification != "none":
        subject = _signup_subject(settings.signup_verification, body.phone, body.email)
        if subject is None:
            errors.append(_invalid("email", "Cần nhập email để nhận mã xác minh."))
        elif body.verification_code is None:
            errors.append(_invalid("verification_code", "Cần nhập mã xác minh đã được gửi cho bạn."))
        else:
            code_id = await store.verify_code(
                db, purpose="sign_up", subject=subject, code=body.verification_code,
                max_tries=settings.code_max_tries,
            )
            if code_id is None:
                errors.append(_invalid("verification_code", "Mã xác minh không đúng hoặc đã hết hạn."))
    if errors:
        raise Problem(422, "validation", errors=errors)

    new = store.NewParticipant(
        full_name=body.full_name,
        phone=body.phone,
        email=body.email,
        id_number=body.id_number,
        birth_date=body.birth_date,
        unit_id=body.unit_id,
        group=body.group,
        password_hash=await passwords.hash(body.password),
        job=body.job,
        signup_ip=address,
        device_id=domain.normalise_device_id(request.headers.get("x-device-id")),
        entry_code=body.entry_code,
        verification_code_id=code_id,
    )
    try:
        participant = await store.register_participant_with_outbox(db, new)
    except store.AlreadyRegistered as taken:
        # Says which field is taken (the form must point at it), never by whom.
        raise Problem(409, f"{taken.field}_taken", field=taken.field) from None
    except store.UnknownUnit:
        raise _unknown_unit() from None
    except store.CodeAlreadyUsed:
        raise Problem(
            422, "validation", errors=[_invalid("verification_code", "Mã xác minh đã được dùng.")]
        ) from None
    return RegisteredOut(participant_id=participant.id)


def _signup_subject(mode: str, phone: str | None, email: str | None) -> str | None:
    if mode == "sms":
        return f"sms:{phone}" if phone else None
    return f"email:{email}" if email else None


@router.post("/api/auth/register/code", status_code=202)
async def sign_up_code(
    body: SignUpCodeIn, db: Db, settings: Config, pacing: Pacing, request: Request, source: Source, limits: Limits
) -> CodeSentOut:
    """Sends the one-time code a sign-up needs when SIGNUP_VERIFICATION is sms or email."""
    await _within_limit(request, limits, "signup", source, "signup_throttled")
    mode = settings.signup_verification
    if mode == "none":
        raise Problem(409, "signup_verification_off")
    channel: domain.Channel = "sms" if mode == "sms" else "email"
    recipient = body.phone if channel == "sms" else body.email
    field = "phone" if channel == "sms" else "email"
    if recipient is None:
        message = "Cần nhập số điện thoại để nhận mã." if channel == "sms" else "Cần nhập email để nhận mã."
        raise Problem(422, "validation", errors=[_invalid(field, message)])
    # Registering will refuse it anyway; saying so now saves an SMS (and register says it too).
    if await store.account_by_login(db, domain.LoginName("phone" if channel == "sms" else "email", recipient)):
        raise Problem(409, f"{field}_taken", field=field)
    subject = f"{channel}:{recipient}"
    if wait_s := await pacing.claim("sign_up", subject, source):
        raise _wait_problem(request, 429, "code_too_soon", wait_s)
    try:
        await store.create_code_with_outbox(db, store.NewCode(
            purpose="sign_up", subject=subject, channel=channel, recipient=recipient, code=_new_code(),
            ttl_s=settings.code_ttl_s, full_name=None,
        ))
    except BaseException:
        await pacing.release("sign_up", subject)
        raise
    return CodeSentOut(expires_in=settings.code_ttl_s)


# --- login and sessions -----------------------------------------------------------------

def _account_key(login: domain.LoginName, account: store.Account | None) -> str:
    # Every login of an account (phone, email, ID number) shares one counter; a login that
    # names nobody gets its own, throttled exactly alike, so nothing tells them apart.
    return f"{account.role}:{account.id}" if account else f"{login.kind}:{login.value}"


async def _issue_tokens(db: Db, signer: TokenSigner, settings: RegistrationSettings, account: store.Account,
                        family_id: UUID | None = None, refresh_token: str | None = None) -> TokenOut:
    principal = Principal(
        id=account.id, role=account.role, name=account.full_name, unit_id=account.unit_id, group=account.group
    )
    if refresh_token is None:
        refresh_token = secrets.token_urlsafe(32)
        await store.issue_refresh_token(
            db, token_hash=domain.refresh_token_hash(refresh_token), account_id=account.id, role=account.role,
            ttl_s=settings.refresh_token_ttl_s, family_id=family_id,
        )
    return TokenOut(
        access_token=signer.issue(principal),
        expires_in=signer.ttl_s,
        refresh_token=refresh_token,
        refresh_expires_in=settings.refresh_token_ttl_s,
    )


# The browser's refresh token lives in this cookie: HttpOnly (no page script reads it),
# Secure, SameSite=Strict (no other site's page sends it), and sent only to these routes.
# The __Secure- prefix makes browsers refuse it unless it was set Secure. Chromium treats
# http://127.0.0.1 and http://localhost as secure, so `make run` works without TLS.
REFRESH_COOKIE = "__Secure-hoithi-refresh"
REFRESH_COOKIE_PATH = "/api/auth/"
# Sent by the web app on login (asks for the cookie instead of the body) and on refresh and
# logout (required to use the cookie): a page on another site cannot add a custom header
# to a request without a CORS preflight, which no route here answers.
COOKIE_MODE_HEADER = "x-refresh-cookie"


def _cookie_mode(request: Request) -> bool:
    return request.headers.get(COOKIE_MODE_HEADER) == "1"


def _refresh_cookie(token: str, max_age_s: int) -> str:
    return (
        f"{REFRESH_COOKIE}={token}; Max-Age={max_age_s}; Path={REFRESH_COOKIE_PATH}; HttpOnly; Secure;"
        " SameSite=Strict"
    )


_CLEAR_REFRESH_COOKIE = {"Set-Cookie": _refresh_cookie("", 0)}


def _answer_tokens(tokens: TokenOut, response: Response, cookie_mode: bool) -> TokenOut:
    response.headers["Cache-Control"] = "no-store"  # tokens never sit in a cache (RFC 6749 §5.1)
    if not cookie_mode or tokens.refresh_token is None:
        return tokens
    response.headers.append("Set-Cookie", _refresh_cookie(tokens.refresh_token, tokens.refresh_expires_in))
    return tokens.model_copy(update={"refresh_token": None})


def _presented_refresh_token(request: Request, body: RefreshIn | None) -> str | None:
    """The refresh token from the body (outside clients), else from the cookie when the
    request carries the cookie-mode header; None when the cookie is missing or cannot be one."""
    if body is not None and body.refresh_token is not None:
        return body.refresh_token
    cookie = request.cookies.get(REFRESH_COOKIE)
    if not _cookie_mode(request):
        if cookie is not None:
            raise Problem(403, "refresh_cookie_needs_header")
        raise Problem(422, "validation", errors=[_invalid("refresh_token", "Thiếu trường bắt buộc")])
    # Browsers that say where a request comes from: never from another site's page.
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Problem(403, "cross_site_request")
    return cookie if cookie and 16 <= len(cookie) <= 200 else None


@router.post("/api/auth/login", response_model_exclude_none=True)
async def login(
    body: LoginIn,
    request: Request,
    response: Response,
    db: Db,
    passwords: PasswordHashing,
    signer: Signer,
    settings: Config,
    throttle: Throttle,
    source: Source,
) -> TokenOut:
    login_name = domain.classify_login(body.login)
    account = await store.account_by_login(db, login_name)
    key = _account_key(login_name, account)
    verdict = await throttle.start_attempt(key, source)
    if verdict.verdict == "lock":
        raise _wait_problem(request, 423, "account_locked", verdict.retry_after_s)
    if verdict.verdict == "protected":
        raise _wait_problem(request, 423, "account_protected", verdict.retry_after_s)
    if not verdict.allowed:
        raise _wait_problem(request, 429, "login_throttled", verdict.retry_after_s)
    if account is None:
        await passwords.verify_decoy(body.password)
        await throttle.failed(source)
        raise Problem(401, "invalid_credentials")
    if not await passwords.verify(account.password_hash, body.password):
        await throttle.failed(source)
        raise Problem(401, "invalid_credentials")
    await throttle.succeeded(key, source)
    if passwords.needs_rehash(account.password_hash):
        await store.set_password_hash(db, account, await passwords.hash(body.password))
    return _answer_tokens(await _issue_tokens(db, signer, settings, account), response, _cookie_mode(request))


@router.post("/api/auth/refresh", response_model_exclude_none=True)
async def refresh(
    request: Request, response: Response, db: Db, signer: Signer, settings: Config, body: RefreshIn | None = None
) -> TokenOut:
    """A new access token and a new refresh token for a valid refresh token, which is
    used up. Presenting a used one ends the whole session (it was copied). A browser
    sends no body: its token comes in the cookie, and the next one goes back there."""
    cookie_mode = _cookie_mode(request)
    # A cookie that failed once fails again: the browser is told to drop it.
    failed = _CLEAR_REFRESH_COOKIE if cookie_mode else None
    presented = _presented_refresh_token(request, body)
    if presented is None:
        raise Problem(401, "invalid_refresh_token", headers=failed)
    new_token = secrets.token_urlsafe(32)
    outcome, grant = await store.rotate_refresh_token(
        db,
        old_hash=domain.refresh_token_hash(presented),
        new_hash=domain.refresh_token_hash(new_token),
        ttl_s=settings.refresh_token_ttl_s,
    )
    if outcome == "reused":
        raise Problem(401, "refresh_token_reused", headers=failed)
    if outcome != "rotated" or grant is None:
        raise Problem(401, "invalid_refresh_token", headers=failed)
    account = await store.account_by_id(db, grant.account_id, grant.role)
    if account is None:  # the account is gone
        await store.revoke_refresh_family(db, domain.refresh_token_hash(new_token))
        raise Problem(401, "invalid_refresh_token", headers=failed)
    tokens = await _issue_tokens(db, signer, settings, account, refresh_token=new_token)
    return _answer_tokens(tokens, response, cookie_mode)


@router.post("/api/auth/logout", status_code=204)
async def logout(request: Request, db: Db, body: RefreshIn | None = None) -> Response:
    """Ends the session the refresh token belongs to, and a browser's cookie with it.
    Idempotent; the access token in hand stays valid until it expires
    (ACCESS_TOKEN_TTL_S), as other services check it without asking us."""
    presented = _presented_refresh_token(request, body)
    if presented is not None:
        await store.revoke_refresh_family(db, domain.refresh_token_hash(presented))
    return Response(status_code=204, headers=_CLEAR_REFRESH_COOKIE if _cookie_mode(request) else None)


# --- password reset ---------------------------------------------------------------------

_RESET_ACCEPTED = "Nếu tài khoản tồn tại, mã xác nhận đã được gửi tới số điện thoại hoặc email của tài khoản."


@router.post("/api/auth/password-reset/request", status_code=202)
async def password_reset_request(
    body: ResetRequestIn, request: Request, db: Db, settings: Config, pacing: Pacing, source: Source, limits: Limits
) -> AcceptedOut:
    """202 whether or not the login names anyone, so that it cannot be used to find out
    who has an account (the per-source limit counts both alike)."""
    await _within_limit(request, limits, "reset_request", source, "reset_throttled")
    login_name = domain.classify_login(body.login)
    account = await store.account_by_login(db, login_name)
    if account is not None:
        contacts = await store.account_contacts(db, account)
        delivery = domain.reset_delivery(
            login_name, phone=contacts.phone, email=contacts.email, requested=body.channel
        )
        subject = f"{account.role}:{account.id}"
        # Over a limit, nothing is sent and the answer stays the same 202.
        if delivery is not None and not await pacing.claim("password_reset", subject, source):
            try:
                await store.create_code_with_outbox(db, store.NewCode(
                    purpose="password_reset", subject=subject, channel=delivery.channel,
                    recipient=delivery.recipient, code=_new_code(), ttl_s=settings.code_ttl_s,
                    full_name=contacts.full_name,
                ))
            except BaseException:
                await pacing.release("password_reset", subject)
                raise
    return AcceptedOut(detail=_RESET_ACCEPTED)


@router.post("/api/auth/password-reset/confirm", status_code=204)
async def password_reset_confirm(
    body: ResetConfirmIn, request: Request, db: Db, passwords: PasswordHashing, settings: Config, throttle: Throttle,
    source: Source, limits: Limits,
) -> Response:
    # Every try is counted before the code is compared, a right one given back: wrong codes
    # (on any account, existing or not) are what the limit bounds.
    await _within_limit(request, limits, "reset_code", source, "reset_code_throttled")
    login_name = domain.classify_login(body.login)
    account = await store.account_by_login(db, login_name)
    if account is None:
        raise Problem(400, "invalid_code")
    code_id = await store.verify_code(
        db, purpose="password_reset", subject=f"{account.role}:{account.id}", code=body.code,
        max_tries=settings.code_max_tries,
    )
    if code_id is None:
        raise Problem(400, "invalid_code")
    password_hash = await passwords.hash(body.new_password)
    if not await store.reset_password_with_code(db, code_id=code_id, account=account, password_hash=password_hash):
        raise Problem(400, "invalid_code")
    await limits.refund("reset_code", source)
    await throttle.forget_account(_account_key(login_name, account), source)
    return Response(status_code=204)


@router.get("/api/me")
async def me(who: CurrentUser, db: Db) -> MeOut:
    found = await store.profile(db, who.id, who.role)
    if found is None:
        raise Problem(404, "not_found")
    return MeOut(
        id=found.id,
        role=found.role,
        full_name=found.full_name,
        unit=UnitRefOut(id=found.unit.id, code=found.unit.code, name=found.unit.name) if found.unit else None,
        group=found.group,
        phone=_mask_phone(found.phone),
        email=found.email,
        id_number=_mask_id_number(found.id_number),
        birth_date=found.birth_date,
        job=found.job,
    )


# --- units ------------------------------------------------------------------------------

@router.get("/api/units")
async def units(
    db: Db,
    q: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[UnitOut]:
    return [_unit_out(unit) for unit in await store.search_units(db, q, limit)]


# Declared before /api/units/{unit_id}/...: "by-code" is not a unit id.
@router.get("/api/units/by-code/{code}")
async def unit_by_code(code: Annotated[str, Path(max_length=50)], db: Db) -> UnitOut:
    """The unit of an entry link (`/dang-ky?unit=CODE`), so the sign-up page preselects it."""
    unit = await store.unit_by_code(db, code)
    if unit is None:
        raise Problem(404, "not_found")
    return _unit_out(unit)


# The link behind a unit's QR code depends only on its code, which never changes.
_INVITE_CACHE = {"Cache-Control": "public, max-age=86400"}


@router.get("/api/units/{unit_id}/invite.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def unit_invite_png(unit_id: UUID, db: Db, settings: Config) -> Response:
    link = await _invite_link(db, settings, unit_id)
    image = io.BytesIO()
    segno.make(link, error="m").save(image, kind="png", scale=8, border=4)
    return Response(image.getvalue(), media_type="image/png", headers=_INVITE_CACHE)


@router.get(
    "/api/units/{unit_id}/invite.svg", response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}}
)
async def unit_invite_svg(unit_id: UUID, db: Db, settings: Config) -> Response:
    link = await _invite_link(db, settings, unit_id)
    image = io.BytesIO()
    segno.make(link, error="m").save(image, kind="svg", scale=8, border=4, xmldecl=False)
    return Response(image.getvalue(), media_type="image/svg+xml", headers=_INVITE_CACHE)


@router.get("/api/units/{unit_id}/banner", response_class=Response, responses={200: {"content": {"text/html": {}}}})
async def unit_banner(unit_id: UUID, db: Db, settings: Config) -> Response:
    """An HTML snippet for a unit's portal: its QR code, linked to its entry link."""
    unit = await store.unit_by_id(db, unit_id)
    if unit is None:
        raise Problem(404, "not_found")
    base = settings.public_base_url.rstrip("/")
    snippet = domain.invite_banner_html(
        link=domain.invite_link(base, unit.code),
        image_url=f"{base}/api/units/{unit.id}/invite.png",
        unit_name=unit.name,
    )
    # The name may change on re-import: cached for an hour, not a day.
    return Response(snippet, media_type="text/html; charset=utf-8", headers={"Cache-Control": "public, max-age=3600"})


async def _invite_link(db: Db, settings: RegistrationSettings, unit_id: UUID) -> str:
    unit = await store.unit_by_id(db, unit_id)
    if unit is None:
        raise Problem(404, "not_found")
    return domain.invite_link(settings.public_base_url, unit.code)


# --- organisers and coordinators --------------------------------------------------------

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary", "description": "CSV (UTF-8) or XLSX"}},
            "required": ["file"],
        }}},
    }
}


@router.post("/api/admin/units/import", openapi_extra=_UPLOAD_SCHEMA)
async def import_units(request: Request, who: Organiser, db: Db, settings: Config) -> UnitsImportOut:
    table = await read_uploaded_table(
        request, max_bytes=settings.units_import_max_bytes, max_rows=settings.units_import_max_rows
    )
    try:
        outcome = await store.import_units_with_outbox(db, table)
    except domain.UnitRowsInvalid as invalid:
        errors = [{"row": e.row, "field": e.field, "message": e.message} for e in invalid.errors]
        raise Problem(422, "units_invalid", errors=errors) from None
    return UnitsImportOut(
        imported=outcome.imported, created=outcome.created, updated=outcome.updated, unchanged=outcome.unchanged
    )


@router.get("/api/admin/units/{unit_id}/invite-stats")
async def invite_stats(unit_id: UUID, who: Staff, db: Db, settings: Config) -> InviteStatsOut:
    """How many people signed up through the unit's entry link (QR code)."""
    scope = scope_of(who)
    unit = await store.unit_by_id(db, unit_id)
    if unit is None or (scope is not None and not await store.unit_in_subtree(db, unit_id, scope)):
        raise Problem(404, "not_found")
    return InviteStatsOut(
        unit_id=unit.id, code=unit.code, link=domain.invite_link(settings.public_base_url, unit.code),
        signups=await store.invite_signups(db, unit.id),
    )


def _participant_out(p: store.ParticipantSummary) -> ParticipantOut:
    return ParticipantOut(
        id=p.id,
        full_name=p.full_name,
        phone=domain.mask_phone(p.phone),
        email=p.email,
        id_number=_mask_id_number(p.id_number),
        birth_date=p.birth_date,
        unit_id=p.unit_id,
        group=p.group,
        job=p.job,
        created_at=p.created_at,
    )


@router.get("/api/admin/participants")
async def participants(
    who: Staff,
    db: Db,
    request: Request,
    limits: Limits,
    unit_id: UUID | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ParticipantsPage:
    """Organisers see everyone, coordinators their unit's subtree; phone and ID numbers
    masked (the full data is only in the audited export), so `q` finds them by the whole
    number only. Every search (a `q`) is written to the audit log with what was asked."""
    search = domain.participant_search(q, partial_numbers=False)
    scope = scope_of(who)
    if search.phone or search.id_number:
        await _within_limit(request, limits, "number_search", f"staff:{who.id}", "number_search_throttled")
    if not search.words:
        total, found = await store.list_participants(
            db, unit_id=unit_id, search=search, limit=limit, offset=offset, scope_unit_id=scope
        )
    else:
        total, found = await store.search_participants_with_audit(
            db, unit_id=unit_id, search=search, limit=limit, offset=offset, scope_unit_id=scope,
            audit=store.AuditEntry(
                actor_id=who.id, actor_name=who.name, actor_role=who.role, action="participants.search",
                filter={"q": q, "unit_id": str(unit_id) if unit_id else None, "limit": limit, "offset": offset},
            ),
        )
    return ParticipantsPage(total=total, items=[_participant_out(p) for p in found])


@router.get(
    "/api/admin/participants/export",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, XLSX_MEDIA_TYPE: {}}}},
)
async def export_participants(
    who: Organiser,
    db: Db,
    format: Literal["csv", "xlsx"] = "csv",
    unit_id: UUID | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Every matching participant with full phone and ID numbers. Written to the audit
    log (who, when, which filter, how many rows) in the transaction that reads them."""
    spool = tempfile.TemporaryFile()
    try:
        export = TableExport(format, spool, domain.PARTICIPANT_EXPORT_COLUMNS, sheet_title="participants")

        async def write_chunk(rows: list[tuple[Any, ...]]) -> None:
            await asyncio.to_thread(export.add, rows)

        await store.export_participants_with_audit(
            db,
            scope_unit_id=None,
            unit_id=unit_id,
            query=q,
            audit=store.AuditEntry(
                actor_id=who.id, actor_name=who.name, actor_role=who.role, action="participants.export",
                filter={"format": format, "unit_id": str(unit_id) if unit_id else None, "q": q},
            ),
            write_chunk=write_chunk,
        )
        await asyncio.to_thread(export.finish)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        _stream_and_close(spool),
        media_type=SPREADSHEET_MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="participants-{stamp}.{format}"',
            "Cache-Control": "no-store",
        },
    )


async def _stream_and_close(spool: IO[bytes], chunk_bytes: int = 256 * 1024) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(spool.read, chunk_bytes):
            yield chunk
    finally:
        spool.close()


@router.get("/api/admin/audit")
async def audit(
    who: Organiser,
    db: Db,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AuditPage:
    total, records = await store.audit_log(db, limit=limit, offset=offset)
    return AuditPage(total=total, items=[AuditOut(
        id=r.id, at=r.at, actor_id=r.actor_id, actor_name=r.actor_name, actor_role=r.actor_role, action=r.action,
        filter=r.filter, row_count=r.row_count,
    ) for r in records])


def _flagged_out(p: store.FlaggedParticipant) -> FlaggedParticipantOut:
    return FlaggedParticipantOut(
        id=p.id, full_name=p.full_name, phone=domain.mask_phone(p.phone), unit_id=p.unit_id, created_at=p.created_at
    )


@router.get("/api/admin/flags")
async def flags(
    who: Staff, db: Db, settings: Config, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> FlagsOut:
    """Accounts worth a look: likely one person twice (same unit, name without
    diacritics, birth date), and many accounts from one address or device within
    FLAG_BURST_WINDOW_S. Coordinators see their subtree only."""
    scope = scope_of(who)
    duplicates = await store.likely_duplicates(db, scope_unit_id=scope, limit=limit)
    bursts = await store.account_bursts(
        db, scope_unit_id=scope, min_accounts=settings.flag_burst_accounts, window_s=settings.flag_burst_window_s,
        limit=limit,
    )
    return FlagsOut(
        duplicates=[DuplicateFlagOut(
            unit_id=d.unit_id, unit_name=d.unit_name, birth_date=d.birth_date,
            participants=[_flagged_out(p) for p in d.participants],
        ) for d in duplicates],
        bursts=[BurstFlagOut(
            kind="ip" if b.kind == "ip" else "device", source=b.source, accounts=len(b.participants),
            first_at=b.participants[0].created_at, last_at=b.participants[-1].created_at,
            participants=[_flagged_out(p) for p in b.participants],
        ) for b in bursts],
    )


@router.post("/api/admin/staff", status_code=201)
async def create_staff(body: StaffIn, who: Organiser, db: Db, passwords: PasswordHashing) -> StaffCreatedOut:
    if body.role == "coordinator" and body.unit_id is None:
        raise Problem(422, "validation", errors=[_invalid("unit_id", "Điều phối viên phải thuộc một đơn vị.")])
    new = store.NewStaff(
        login=body.login,
        full_name=body.full_name,
        role=body.role,
        unit_id=body.unit_id,
        email=body.email,
        phone=body.phone,
        password_hash=await passwords.hash(body.password),
    )
    try:
        staff_id = await store.create_staff_with_outbox(db, new)
    except store.StaffLoginTaken:
        raise Problem(409, "login_taken", field="login") from None
    except store.UnknownUnit:
        raise _unknown_unit() from None
    return StaffCreatedOut(staff_id=staff_id)


@router.get("/api/admin/staff")
async def list_staff(who: Organiser, db: Db) -> list[StaffOut]:
    return [StaffOut(
        id=s.id, login=s.login, full_name=s.full_name, role=s.role, unit_id=s.unit_id, email=s.email,
        phone=_mask_phone(s.phone), created_at=s.created_at,
    ) for s in await store.list_staff(db)]
