"""Registration routes (DESIGN.md "HTTP contract"): sign-up, login, the unit picker and
its QR codes, and the organisers' unit import and participant list."""

from __future__ import annotations

import io
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import segno
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from pydantic import BaseModel, Field, field_validator
from starlette.responses import Response

from services.core.auth import Principal, Role, TokenSigner
from services.core.http import CurrentUser, Db, Organiser
from services.core.problems import Problem
from services.registration import domain, store
from services.registration.passwords import Passwords
from services.registration.settings import RegistrationSettings

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
    "invalid_credentials": (
        "Unauthorized",
        "Tên đăng nhập hoặc mật khẩu không đúng.",
        "Wrong login or password.",
    ),
    "unsupported_file_type": (
        "Unsupported Media Type",
        "Chỉ nhận tệp CSV (UTF-8) hoặc Excel (.xlsx).",
        "Only CSV (UTF-8) or Excel (.xlsx) files are accepted.",
    ),
    "unreadable_file": (
        "Unprocessable Content",
        "Không đọc được tệp tải lên.",
        "The uploaded file could not be read.",
    ),
    "units_invalid": (
        "Unprocessable Content",
        "Danh sách đơn vị có lỗi, chưa có dòng nào được nhập. Hãy sửa các dòng được liệt kê rồi tải lên lại.",
        "The units file has errors; nothing was imported. Fix the rows listed and upload it again.",
    ),
}


# --- dependencies -----------------------------------------------------------------------

def _passwords(request: Request) -> Passwords:
    return request.app.state.passwords  # type: ignore[no-any-return]


def _signer(request: Request) -> TokenSigner:
    return request.app.state.signer  # type: ignore[no-any-return]


def _settings(request: Request) -> RegistrationSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


PasswordHashing = Annotated[Passwords, Depends(_passwords)]
Signer = Annotated[TokenSigner, Depends(_signer)]
Config = Annotated[RegistrationSettings, Depends(_settings)]


# --- models at the edge -----------------------------------------------------------------

class RegisterIn(BaseModel):
    full_name: str = Field(max_length=300)
    phone: str = Field(max_length=40)
    email: str | None = Field(default=None, max_length=254)
    id_number: str | None = Field(default=None, max_length=40)
    birth_date: date | None = None
    unit_id: UUID
    group: str | None = Field(default=None, max_length=200)
    password: str = Field(max_length=1024)

    @field_validator("email", "id_number", "birth_date", "group", mode="before")
    @classmethod
    def _blank_means_absent(cls, value: Any) -> Any:
        # HTML forms send optional fields as empty strings.
        return None if isinstance(value, str) and not value.strip() else value

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

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return domain.validate_password(value)


class RegisteredOut(BaseModel):
    participant_id: UUID


class LoginIn(BaseModel):
    login: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


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


class ParticipantOut(BaseModel):
    id: UUID
    full_name: str
    phone: str  # masked
    email: str | None
    unit_id: UUID
    group: str | None
    created_at: datetime


class ParticipantsPage(BaseModel):
    total: int
    items: list[ParticipantOut]


def _unit_out(unit: store.Unit) -> UnitOut:
    return UnitOut(
        id=unit.id, code=unit.code, name=unit.name, parent_id=unit.parent_id, block=unit.block, headcount=unit.headcount
    )


def _unknown_unit() -> Problem:
    return Problem(422, "validation", errors=[{"field": "unit_id", "message": "Đơn vị không tồn tại."}])


# --- sign-up and login ------------------------------------------------------------------

@router.post("/api/auth/register", status_code=201)
async def register(body: RegisterIn, db: Db, passwords: PasswordHashing) -> RegisteredOut:
    if await store.unit_by_id(db, body.unit_id) is None:
        raise _unknown_unit()
    new = store.NewParticipant(
        full_name=body.full_name,
        phone=body.phone,
        email=body.email,
        id_number=body.id_number,
        birth_date=body.birth_date,
        unit_id=body.unit_id,
        group=body.group,
        password_hash=await passwords.hash(body.password),
    )
    try:
        participant = await store.register_participant_with_outbox(db, new)
    except store.AlreadyRegistered as taken:
        # Says which field is taken (the form must point at it), never by whom.
        raise Problem(409, f"{taken.field}_taken", field=taken.field) from None
    except store.UnknownUnit:
        raise _unknown_unit() from None
    return RegisteredOut(participant_id=participant.id)


@router.post("/api/auth/login")
async def login(body: LoginIn, db: Db, passwords: PasswordHashing, signer: Signer) -> TokenOut:
    account = await store.account_by_login(db, domain.classify_login(body.login))
    if account is None:
        await passwords.verify_decoy(body.password)
        raise Problem(401, "invalid_credentials")
    if not await passwords.verify(account.password_hash, body.password):
        raise Problem(401, "invalid_credentials")
    if passwords.needs_rehash(account.password_hash):
        await store.set_password_hash(db, account, await passwords.hash(body.password))
    principal = Principal(
        id=account.id, role=account.role, name=account.full_name, unit_id=account.unit_id, group=account.group
    )
    return TokenOut(access_token=signer.issue(principal), expires_in=signer.ttl_s)


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
        phone=domain.mask_phone(found.phone) if found.phone else None,
        email=found.email,
    )


# --- units ------------------------------------------------------------------------------

@router.get("/api/units")
async def units(
    db: Db,
    q: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[UnitOut]:
    return [_unit_out(unit) for unit in await store.search_units(db, q, limit)]


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


async def _invite_link(db: Db, settings: RegistrationSettings, unit_id: UUID) -> str:
    unit = await store.unit_by_id(db, unit_id)
    if unit is None:
        raise Problem(404, "not_found")
    return domain.invite_link(settings.public_base_url, unit.code)


# --- organisers -------------------------------------------------------------------------

@router.post("/api/admin/units/import")
async def import_units(
    who: Organiser, db: Db, settings: Config, file: Annotated[UploadFile, File(description="CSV (UTF-8) or XLSX")]
) -> UnitsImportOut:
    content = await file.read(settings.units_import_max_bytes + 1)
    if len(content) > settings.units_import_max_bytes:
        raise Problem(413, "payload_too_large")
    try:
        table = domain.read_table(file.filename, file.content_type, content)
    except domain.UnsupportedTable:
        raise Problem(415, "unsupported_file_type") from None
    except domain.UnreadableTable as unreadable:
        raise Problem(422, "unreadable_file", errors=[{"field": "file", "message": str(unreadable)}]) from None
    try:
        outcome = await store.import_units_with_outbox(db, table)
    except domain.UnitRowsInvalid as invalid:
        errors = [{"row": e.row, "field": e.field, "message": e.message} for e in invalid.errors]
        raise Problem(422, "units_invalid", errors=errors) from None
    return UnitsImportOut(
        imported=outcome.imported, created=outcome.created, updated=outcome.updated, unchanged=outcome.unchanged
    )


@router.get("/api/admin/participants")
async def participants(
    who: Organiser,
    db: Db,
    unit_id: UUID | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ParticipantsPage:
    total, found = await store.list_participants(db, unit_id=unit_id, query=q, limit=limit, offset=offset)
    return ParticipantsPage(
        total=total,
        items=[
            ParticipantOut(
                id=p.id,
                full_name=p.full_name,
                phone=domain.mask_phone(p.phone),
                email=p.email,
                unit_id=p.unit_id,
                group=p.group,
                created_at=p.created_at,
            )
            for p in found
        ],
    )
