"""The pure rules: delivery plans, error classification, attempt outcomes, sweep backoff."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core import phones
from services.notify import domain
from services.notify.domain import Contact, SendError, Winner, WinnersAnnouncement

EVENT_ID = uuid.UUID("00000000-0000-0000-0000-0000000000e1")
T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


def announcement(*winners: Winner, event_id: uuid.UUID = EVENT_ID) -> WinnersAnnouncement:
    return WinnersAnnouncement(event_id, "winners.announced", uuid.uuid4(), "Tìm hiểu Hiến pháp", "Tuần 2", winners)


def winner(rank: int = 1, prize: str = "Giải Nhất", name: str = "Trần Thị Bình") -> Winner:
    return Winner(uuid.uuid4(), name, rank, prize, correct=19, duration_ms=300_000)


def contact_of(w: Winner, email: str | None = "binh@example.vn", full_name: str = "Trần Thị Bình") -> Contact:
    return Contact(w.participant_id, "participant", full_name, email, "0987654321", T0)


# --- the plan ---------------------------------------------------------------------------------

def test_plan_emails_winners_with_an_address_and_reports_the_others() -> None:
    with_email, without_email, unknown = winner(1), winner(2, "Giải Nhì"), winner(3, "Giải Ba")
    contacts = {c.person_id: c for c in (contact_of(with_email), contact_of(without_email, email=None))}

    plan = domain.plan_winner_emails(announcement(with_email, without_email, unknown), contacts)

    assert [d.person_id for d in plan.deliveries] == [with_email.participant_id]
    assert plan.without_email == (without_email.participant_id,)
    assert plan.unknown_contacts == (unknown.participant_id,)


def test_planned_delivery_carries_key_recipient_and_context() -> None:
    w = winner(2, "Giải Nhì")
    plan = domain.plan_winner_emails(announcement(w), {w.participant_id: contact_of(w, email="  binh@example.vn ")})

    (delivery,) = plan.deliveries
    assert delivery.idempotency_key == f"{EVENT_ID}:{w.participant_id}:email"
    assert delivery.id == domain.delivery_id(delivery.idempotency_key)
    assert delivery.recipient == "binh@example.vn"
    assert delivery.channel == "email"
    assert delivery.template == domain.WINNER_TEMPLATE
    assert delivery.event_type == "winners.announced"
    assert delivery.context == {
        "full_name": "Trần Thị Bình",
        "prize": "Giải Nhì",
        "rank": 2,
        "contest_title": "Tìm hiểu Hiến pháp",
        "round_title": "Tuần 2",
        "correct": 19,
    }


def test_planning_the_same_event_twice_gives_the_same_keys_and_ids() -> None:
    w = winner()
    contacts = {w.participant_id: contact_of(w)}
    first = domain.plan_winner_emails(announcement(w), contacts)
    again = domain.plan_winner_emails(announcement(w), contacts)
    other_event = domain.plan_winner_emails(announcement(w, event_id=uuid.uuid4()), contacts)

    def ids(plan: domain.DeliveryPlan) -> list[tuple[uuid.UUID, str]]:
        return [(d.id, d.idempotency_key) for d in plan.deliveries]

    assert ids(first) == ids(again)
    assert first.deliveries[0].id != other_event.deliveries[0].id


def test_a_winner_listed_twice_is_mailed_once() -> None:
    w = winner()
    plan = domain.plan_winner_emails(announcement(w, w), {w.participant_id: contact_of(w)})
    assert len(plan.deliveries) == 1


@pytest.mark.parametrize("address", [None, "", "   ", "not-an-address"])
def test_no_usable_address_means_no_delivery(address: str | None) -> None:
    w = winner()
    plan = domain.plan_winner_emails(announcement(w), {w.participant_id: contact_of(w, email=address)})
    assert plan.deliveries == ()
    assert plan.without_email == (w.participant_id,)


def test_the_contact_name_is_used_and_the_event_name_when_the_contact_has_none() -> None:
    w = winner(name="Lê Văn Cường")
    named = domain.plan_winner_emails(announcement(w), {w.participant_id: contact_of(w, full_name="Lê Văn Cường (CA)")})
    unnamed = domain.plan_winner_emails(announcement(w), {w.participant_id: contact_of(w, full_name=" ")})
    assert named.deliveries[0].context["full_name"] == "Lê Văn Cường (CA)"
    assert unnamed.deliveries[0].context["full_name"] == "Lê Văn Cường"


@given(
    st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from(["known", "no-email", "unknown"])), min_size=0, max_size=30
    )
)
def test_every_winner_lands_in_exactly_one_bucket(rows: list[tuple[int, str]]) -> None:
    ids = [uuid.UUID(int=i + 1) for i in range(10)]
    state = dict((ids[i], kind) for i, kind in rows)  # the last word on each person wins
    winners = [Winner(ids[i], "X", rank, "Giải") for rank, (i, _) in enumerate(rows, start=1)]
    contacts = {
        pid: Contact(pid, "participant", "X", "x@example.com" if kind == "known" else None, None, T0)
        for pid, kind in state.items()
        if kind != "unknown"
    }

    plan = domain.plan_winner_emails(announcement(*winners), contacts)

    planned = [d.person_id for d in plan.deliveries]
    assert sorted(planned + list(plan.unknown_contacts) + list(plan.without_email)) == sorted(state)
    assert set(planned) == {p for p, k in state.items() if k == "known"}
    assert len({d.idempotency_key for d in plan.deliveries}) == len(plan.deliveries)


def test_newest_contacts_keeps_the_latest_change_per_person() -> None:
    pid = uuid.uuid4()
    old = Contact(pid, "participant", "Old", "old@example.com", None, T0)
    new = Contact(pid, "participant", "New", "new@example.com", None, T0 + timedelta(minutes=1))
    other = Contact(uuid.uuid4(), "staff", "Other", None, None, T0)

    assert sorted(c.full_name for c in domain.newest_contacts([new, old, other])) == ["New", "Other"]
    assert sorted(c.full_name for c in domain.newest_contacts([old, new, other])) == ["New", "Other"]


# --- classification of send errors ------------------------------------------------------------

@pytest.mark.parametrize(
    ("type_name", "code", "expected"),
    [
        ("SMTPRecipientRefused", 550, "permanent"),
        ("SMTPRecipientRefused", 553, "permanent"),
        ("SMTPRecipientRefused", 450, "transient"),
        ("SMTPRecipientRefused", 452, "transient"),
        ("SMTPSenderRefused", 451, "transient"),
        ("SMTPDataError", 554, "permanent"),
        ("SMTPDataError", 421, "transient"),
        ("SMTPAuthenticationError", 535, "permanent"),
        ("SMTPConnectResponseError", 421, "transient"),
        ("SMTPConnectError", None, "transient"),
        ("SMTPConnectTimeoutError", None, "transient"),
        ("SMTPReadTimeoutError", None, "transient"),
        ("SMTPTimeoutError", None, "transient"),
        ("SMTPServerDisconnected", None, "transient"),
        ("ConnectionRefusedError", None, "transient"),
        ("TimeoutError", None, "transient"),
        ("OSError", None, "transient"),
        ("SMTPNotSupported", None, "permanent"),
        ("TemplateRenderError", None, "permanent"),
        ("SomethingUnexpected", None, "transient"),
        ("SMTPResponseException", 250, "transient"),
    ],
)
def test_classification_table(type_name: str, code: int | None, expected: str) -> None:
    assert domain.classify_send_error(type_name, code) == expected


@given(st.text(max_size=30), st.integers(400, 499))
def test_any_4xx_reply_is_transient(type_name: str, code: int) -> None:
    assert domain.classify_send_error(type_name, code) == "transient"


@given(st.text(max_size=30), st.integers(500, 599))
def test_any_5xx_reply_is_permanent(type_name: str, code: int) -> None:
    assert domain.classify_send_error(type_name, code) == "permanent"


def test_send_error_description_names_the_code_or_the_type_and_is_bounded() -> None:
    assert SendError("SMTPRecipientRefused", 550, "5.1.1 No such user").describe() == "550 5.1.1 No such user"
    assert SendError("SMTPConnectError", None, "refused").describe() == "SMTPConnectError: refused"
    assert len(SendError("X", None, "y" * 2000).describe()) == domain.LAST_ERROR_MAX_CHARS


# --- outcome of an attempt --------------------------------------------------------------------

TRANSIENT = SendError("SMTPConnectError", None, "Connection refused")
PERMANENT = SendError("SMTPRecipientRefused", 550, "No such user")


def test_success_is_sent_and_keeps_the_previous_error() -> None:
    assert domain.outcome_of_attempt(2, None, 5) == domain.AttemptOutcome("sent", 3, None)


def test_permanent_error_fails_at_once() -> None:
    assert domain.outcome_of_attempt(0, PERMANENT, 5) == domain.AttemptOutcome("failed", 1, "550 No such user")


def test_transient_error_stays_queued_until_the_last_attempt_then_dead() -> None:
    assert domain.outcome_of_attempt(0, TRANSIENT, 3).status == "queued"
    assert domain.outcome_of_attempt(1, TRANSIENT, 3).status == "queued"
    last = domain.outcome_of_attempt(2, TRANSIENT, 3)
    assert (last.status, last.attempts, last.last_error) == ("dead", 3, "SMTPConnectError: Connection refused")


@given(st.integers(0, 50), st.integers(1, 20))
def test_attempts_always_grow_by_one_and_dead_only_at_the_limit(before: int, limit: int) -> None:
    outcome = domain.outcome_of_attempt(before, TRANSIENT, limit)
    assert outcome.attempts == before + 1
    assert (outcome.status == "dead") == (before + 1 >= limit)


# --- sweep backoff ----------------------------------------------------------------------------

def test_backoff_doubles_with_attempts_up_to_the_cap() -> None:
    assert [domain.retry_backoff_s(a, 10, 600) for a in range(8)] == [10, 20, 40, 80, 160, 320, 600, 600]
    assert domain.retry_backoff_s(10_000, 10, 600) == 600


def test_due_for_sweep_once_idle_long_enough() -> None:
    assert not domain.is_due_for_sweep(2, 39.9, 10, 600)
    assert domain.is_due_for_sweep(2, 40, 10, 600)
    assert domain.is_due_for_sweep(0, 0, 0, 600)


# --- winners on both channels, organisers' summary ------------------------------------------

def test_winner_messages_go_by_email_and_sms_where_the_winner_can_be_reached() -> None:
    both, phone_only, email_only = winner(1), winner(2), winner(3)
    contacts = {
        both.participant_id: contact_of(both),
        phone_only.participant_id: contact_of(phone_only, email=None),
        email_only.participant_id: Contact(email_only.participant_id, "participant", "C", "c@example.vn", " ", T0),
    }
    plan = domain.plan_winner_messages(announcement(both, phone_only, email_only), contacts)

    assert sorted((d.person_id == both.participant_id, d.channel) for d in plan.deliveries) == [
        (False, "email"), (False, "sms"), (True, "email"), (True, "sms")
    ]
    assert plan.without_email == (phone_only.participant_id,)
    assert plan.without_phone == (email_only.participant_id,)
    sms = next(d for d in plan.deliveries if d.channel == "sms" and d.person_id == both.participant_id)
    assert sms.recipient == "0987654321"
    assert sms.idempotency_key == f"{EVENT_ID}:{both.participant_id}:sms"
    assert sms.context["prize"] == "Giải Nhất"


def test_a_winner_with_an_english_locale_is_written_to_in_english() -> None:
    w = winner()
    english = Contact(w.participant_id, "participant", "Anna", "anna@example.com", None, T0, locale="en_US")
    (delivery,) = domain.plan_winner_messages(announcement(w), {w.participant_id: english}).deliveries
    assert delivery.language == "en"


@pytest.mark.parametrize(
    ("locale", "language"),
    [(None, "vi"), ("", "vi"), ("vi", "vi"), ("en", "en"), ("en-GB", "en"), ("EN_us", "en"), ("fr", "fr"),
     ("🙂", "vi"), ("english", "vi")],
)
def test_language_of_a_locale(locale: str | None, language: str) -> None:
    assert domain.language_of(locale) == language


def staff(role: str, email: str | None = "x@example.vn", unit_id: uuid.UUID | None = None, **kw: str) -> Contact:
    return Contact(uuid.uuid4(), "staff", kw.get("name", "Cán bộ"), email, kw.get("phone"), T0, role=role,
                   unit_id=unit_id)


def test_the_round_summary_goes_to_organisers_with_an_address_only() -> None:
    first, second = winner(1, "Giải Nhất", "An"), winner(2, "Giải Nhì", "Bình")
    summary = domain.RoundSummary(participants=1000, attempts=2500, all_correct=12)
    a = WinnersAnnouncement(EVENT_ID, "winners.announced", uuid.uuid4(), "Hiến pháp", "Tuần 2", (second, first),
                            summary=summary)
    organiser, no_email, coordinator = staff("organiser"), staff("organiser", email=None), staff("coordinator")
    participant = Contact(uuid.uuid4(), "participant", "P", "p@example.vn", None, T0, role="organiser")

    planned = domain.plan_organiser_summary(a, [organiser, no_email, coordinator, participant])

    (delivery,) = planned
    assert (delivery.person_id, delivery.channel, delivery.template) == (organiser.person_id, "email",
                                                                         "organiser_summary")
    assert delivery.context["participants"] == 1000 and delivery.context["all_correct"] == 12
    assert [w["name"] for w in delivery.context["winners"]] == ["An", "Bình"]  # by rank


def test_the_round_summary_without_figures_says_so() -> None:
    a = WinnersAnnouncement(EVENT_ID, "winners.announced", uuid.uuid4(), "Hiến pháp", "Tuần 2", ())
    (delivery,) = domain.plan_organiser_summary(a, [staff("organiser")])
    assert (delivery.context["participants"], delivery.context["attempts"], delivery.context["winners"]) == (
        None, None, []
    )


# --- sign-up, codes -----------------------------------------------------------------------

def test_sign_up_confirmation_only_with_an_address() -> None:
    with_email = Contact(uuid.uuid4(), "participant", "Hà", "ha@example.vn", "0912345678", T0)
    without = Contact(uuid.uuid4(), "participant", "Hà", None, "0912345678", T0)
    planned = domain.plan_signup(EVENT_ID, "participant.registered", with_email, "https://x.vn")
    assert planned is not None
    assert (planned.channel, planned.template, planned.recipient) == ("email", "signup", "ha@example.vn")
    assert planned.context == {"full_name": "Hà", "phone": "0912345678", "email": "ha@example.vn",
                               "site_url": "https://x.vn"}
    assert domain.plan_signup(EVENT_ID, "participant.registered", without, "https://x.vn") is None


def code(channel: domain.Channel = "sms", recipient: str = " 0912345678 ", minutes: float = 10) -> domain.CodeRequest:
    return domain.CodeRequest(EVENT_ID, "code.requested", uuid.UUID(int=77), "sign_up", channel, recipient, "123456",
                              T0, T0 + timedelta(minutes=minutes), "Thu", "en")


def test_a_code_is_planned_to_its_recipient_with_its_expiry() -> None:
    planned = domain.plan_code(code())
    assert planned.idempotency_key == f"{EVENT_ID}:{uuid.UUID(int=77)}:sms"
    assert (planned.recipient, planned.person_id, planned.language) == ("0912345678", None, "en")
    assert planned.expires_at == T0 + timedelta(minutes=10)
    assert planned.context == {"code": "123456", "purpose": "sign_up", "full_name": "Thu", "minutes_valid": 10}
    assert "code" in domain.SECRET_CONTEXT_KEYS


@pytest.mark.parametrize(("minutes", "shown"), [(10, 10), (4.5, 5), (0.1, 1), (0, 1), (-3, 1), (60, 60)])
def test_minutes_valid_rounds_up_and_is_at_least_one(minutes: float, shown: int) -> None:
    assert domain.minutes_valid(T0, T0 + timedelta(minutes=minutes)) == shown


# --- nudges -------------------------------------------------------------------------------

def unit(participants: int = 30, headcount: int = 100, unit_id: uuid.UUID | None = None) -> domain.UnitParticipation:
    return domain.UnitParticipation(unit_id or uuid.uuid4(), "U1", "Phường 1", participants, headcount,
                                    participants / headcount)


def test_nudge_writes_to_each_coordinator_of_each_listed_unit_by_email_and_sms() -> None:
    u1, u2, u3 = unit(), unit(), unit()
    c1 = staff("coordinator", unit_id=u1.unit_id, phone="0971111111")
    c2 = staff("coordinator", unit_id=u1.unit_id, email=None, phone="0972222222")
    c3 = staff("coordinator", unit_id=u2.unit_id, phone=None)
    organiser_of_u1 = staff("organiser", unit_id=u1.unit_id, phone="0973333333")
    elsewhere = staff("coordinator", unit_id=uuid.uuid4(), phone="0974444444")
    nudge = domain.Nudge(EVENT_ID, "participation.nudge", "Hiến pháp", "Tuần 1", 0.8, (u1, u2, u3, u1))

    plan = domain.plan_nudge(nudge, [c1, c2, c3, organiser_of_u1, elsewhere])

    assert sorted((d.person_id, d.channel) for d in plan.deliveries) == sorted(
        [(c1.person_id, "email"), (c1.person_id, "sms"), (c2.person_id, "sms"), (c3.person_id, "email")]
    )
    assert plan.units_without_coordinator == (u3.unit_id,)
    context = next(d.context for d in plan.deliveries if d.person_id == c3.person_id)
    assert context["unit_name"] == "Phường 1" and context["target_rate"] == 0.8 and context["missing"] == 50
    assert len({d.idempotency_key for d in plan.deliveries}) == len(plan.deliveries)


@pytest.mark.parametrize(
    ("participants", "headcount", "target", "missing"),
    [(30, 100, 0.8, 50), (80, 100, 0.8, 0), (95, 100, 0.8, 0), (0, 7, 1.0, 7), (1, 3, 0.5, 1), (0, 0, 1.0, 0),
     (56, 70, 0.8, 0), (55, 70, 0.8, 1)],
)
def test_missing_participants_to_reach_the_target(participants: int, headcount: int, target: float,
                                                  missing: int) -> None:
    u = domain.UnitParticipation(uuid.uuid4(), "U", "U", participants, headcount, 0.0)
    assert domain.missing_participants(u, target) == missing


@given(st.integers(0, 10_000), st.integers(1, 10_000), st.floats(0, 1))
def test_reaching_the_missing_number_reaches_the_target(participants: int, headcount: int, target: float) -> None:
    u = unit(min(participants, headcount), headcount)
    missing = domain.missing_participants(u, target)
    assert (u.participants + missing) / headcount >= target - 1e-9
    if missing > 0:
        assert (u.participants + missing - 1) / headcount < target


# --- numbers in messages ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "vi", "en"),
    [(0, "0", "0"), (999, "999", "999"), (1234, "1.234", "1,234"), (1_234_567, "1.234.567", "1,234,567"),
     (None, "—", "—"), (12.5, "12,5", "12.5"), (1234.0, "1.234", "1,234")],
)
def test_format_number(value: int | float | None, vi: str, en: str) -> None:
    assert (domain.format_number(value, "vi"), domain.format_number(value, "en")) == (vi, en)


@pytest.mark.parametrize(
    ("rate", "vi", "en"),
    [(0.0, "0%", "0%"), (1.0, "100%", "100%"), (0.455, "45,5%", "45.5%"), (0.8, "80%", "80%"),
     (1 / 3, "33,3%", "33.3%"), (None, "—", "—"), (0.99999, "100%", "100%")],
)
def test_format_percent(rate: float | None, vi: str, en: str) -> None:
    assert (domain.format_percent(rate, "vi"), domain.format_percent(rate, "en")) == (vi, en)


# --- phone numbers ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "national"),
    [("0912345678", "0912345678"), ("+84 912 345 678", "0912345678"), ("84912345678", "0912345678"),
     ("0912.345.678", "0912345678"), ("(091) 234-5678", "0912345678"), ("+84 (0)912345678", "0912345678"),
     ("0321234567", "0321234567"), ("0559876543", "0559876543"), ("0701234567", "0701234567"),
     ("0861234567", "0861234567"), ("0991234567", "0991234567")],
)
def test_vietnamese_mobile_numbers_are_normalised(raw: str, national: str) -> None:
    assert domain.vietnamese_mobile(raw) == national


@pytest.mark.parametrize(
    "raw",
    [None, "", "12345", "091234567", "09123456789", "0241234567", "0281234567", "0311234567", "0801234567",
     "0511234567", "0711234567", "+1 202 555 0143", "+849123456", "０９１２３４５６７８", "091234567a",
     "+84 024 1234567", "84 91 234 567"],
)
def test_anything_else_is_not_a_vietnamese_mobile_number(raw: str | None) -> None:
    assert domain.vietnamese_mobile(raw) is None


@given(st.sampled_from(sorted(phones.MOBILE_PREFIXES)), st.integers(0, 9_999_999))
def test_every_mobile_prefix_in_every_spelling_is_the_same_number(prefix: str, subscriber: int) -> None:
    national = f"{prefix}{subscriber:07d}"
    spellings = [national, "+84" + national[1:], "84" + national[1:], f"{national[:4]} {national[4:7]} {national[7:]}"]
    assert {domain.vietnamese_mobile(s) for s in spellings} == {national}
    assert domain.format_phone(national, "e164") == "+84" + national[1:]
    assert domain.format_phone(national, "international") == "84" + national[1:]
    assert domain.format_phone(national, "national") == national


@given(st.text(max_size=20))
def test_whatever_comes_in_a_result_is_ten_ascii_digits_with_a_mobile_prefix(raw: str) -> None:
    result = domain.vietnamese_mobile(raw)
    assert result is None or (len(result) == 10 and result.isascii() and result.isdigit()
                              and result[:3] in phones.MOBILE_PREFIXES)


# --- GSM-7 and segments ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "gsm7"),
    [
        ("Chúc mừng Đặng Thị Ánh đạt Giải Nhất", "Chuc mung Dang Thi Anh dat Giai Nhat"),
        ("đường Đồng Khởi, quận 1", "duong Dong Khoi, quan 1"),
        ("ƯỚC MƠ Ơ Ư ă Ă â Ê ô", "UOC MO O U a A a E o"),
        ("Lễ hội – “Tết” … ‘xuân’", 'Le hoi - "Tet" ... \'xuan\''),
        ("ỹ ỵ ỷ ý ỳ Ỹ", "y y y y y Y"),
        ("café é è ñ Ü", "cafe e e n U"),  # accents GSM-7 has go too: half-accented reads worse
        ("giá 100€ [x] {y} ~z^ |w| \\", "gia 100€ [x] {y} ~z^ |w| \\"),
        ("Tab\there\u00a0nbsp", "Tab here nbsp"),
        ("emoji 🙂 và 中文", "emoji ? va ??"),
        ("Ø å Æ ß @ £ $ ¥ § ¿ ¡", "Ø a Æ ß @ £ $ ¥ § ¿ ¡"),
    ],
)
def test_to_gsm7(text: str, gsm7: str) -> None:
    assert domain.to_gsm7(text) == gsm7
    assert domain.is_gsm7(domain.to_gsm7(text))


@given(st.text(max_size=200))
def test_to_gsm7_always_yields_gsm7_and_is_idempotent(text: str) -> None:
    once = domain.to_gsm7(text)
    assert domain.is_gsm7(once)
    assert domain.to_gsm7(once) == once


@given(st.text(alphabet=st.characters(codec="ascii", categories=("L", "N", "Zs")), max_size=100))
def test_to_gsm7_leaves_plain_ascii_letters_digits_and_spaces_alone(text: str) -> None:
    assert domain.to_gsm7(text) == text


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "gsm7", 0, 1),
        ("a" * 160, "gsm7", 160, 1),
        ("a" * 161, "gsm7", 161, 2),
        ("a" * 306, "gsm7", 306, 2),
        ("a" * 307, "gsm7", 307, 3),
        ("€" * 80, "gsm7", 160, 1),  # extension characters count twice
        ("€" * 81, "gsm7", 162, 2),
        ("ạ" * 70, "ucs2", 70, 1),
        ("ạ" * 71, "ucs2", 71, 2),
        ("ạ" * 134, "ucs2", 134, 2),
        ("ạ" * 135, "ucs2", 135, 3),
        ("🙂" * 35, "ucs2", 70, 1),  # outside the BMP: two UTF-16 units each
        ("a" * 159 + "ạ", "ucs2", 160, 3),  # one Vietnamese letter makes it all UCS-2
    ],
)
def test_encoding_units_and_segments(text: str, encoding: str, units: int, segments: int) -> None:
    assert domain.sms_encoding(text) == encoding
    assert domain.sms_units(text, domain.sms_encoding(text)) == units
    assert domain.sms_segments(text) == segments


def test_capacity_of_segments() -> None:
    assert [domain.sms_capacity(n, "gsm7") for n in (1, 2, 3)] == [160, 306, 459]
    assert [domain.sms_capacity(n, "ucs2") for n in (1, 2, 3)] == [70, 134, 201]


def test_fit_sms_keeps_a_short_text_and_strips_it_for_gsm7() -> None:
    fitted = domain.fit_sms("  Chúc mừng bạn!  \n", gsm7=True, max_segments=1)
    assert fitted == domain.SmsText("Chuc mung ban!", "gsm7", 1, truncated=False)
    kept = domain.fit_sms("Chúc mừng bạn!", gsm7=False, max_segments=1)
    assert kept == domain.SmsText("Chúc mừng bạn!", "ucs2", 1, truncated=False)


def test_fit_sms_cuts_a_long_text_at_a_word_with_an_ellipsis() -> None:
    words = "Ban To chuc se lien he huong dan nhan giai " * 10
    fitted = domain.fit_sms(words, gsm7=True, max_segments=1)
    assert fitted.truncated and fitted.segments == 1
    assert fitted.text.endswith("...") and len(fitted.text) <= 160
    assert words.startswith(fitted.text[:-3]) and not fitted.text[:-3].endswith(" ")
    assert words[len(fitted.text) - 3] == " "  # cut between words

    ucs2 = domain.fit_sms("Chúc mừng " * 40, gsm7=False, max_segments=2)
    assert (ucs2.encoding, ucs2.segments, ucs2.truncated) == ("ucs2", 2, True)
    assert ucs2.text.endswith("…") and len(ucs2.text) <= 134


def test_fit_sms_never_splits_a_character_that_takes_two_units() -> None:
    fitted = domain.fit_sms("€" * 100, gsm7=True, max_segments=1)
    assert fitted.text == "€" * 78 + "..."  # 156 + 3 septets
    emoji = domain.fit_sms("🙂" * 50, gsm7=False, max_segments=1)
    assert emoji.text == "🙂" * 34 + "…"  # 68 + 1 units


def test_fit_sms_refuses_zero_segments() -> None:
    with pytest.raises(ValueError, match="max_segments"):
        domain.fit_sms("x", gsm7=True, max_segments=0)


@given(st.text(max_size=800), st.booleans(), st.integers(1, 6))
def test_fit_sms_always_fits_and_only_cuts_when_it_must(text: str, gsm7: bool, max_segments: int) -> None:
    fitted = domain.fit_sms(text, gsm7=gsm7, max_segments=max_segments)
    assert fitted.segments == domain.sms_segments(fitted.text) <= max_segments
    assert fitted.encoding == domain.sms_encoding(fitted.text)
    if gsm7:
        assert fitted.encoding == "gsm7"
    whole = "\n".join(line.rstrip() for line in text.strip().splitlines())
    whole = domain.to_gsm7(whole) if gsm7 else whole
    if fitted.truncated:
        ellipsis = "..." if fitted.encoding == "gsm7" else "…"
        assert fitted.text.endswith(ellipsis) and whole.startswith(fitted.text.removesuffix(ellipsis))
        assert domain.sms_segments(whole) > max_segments
    else:
        assert fitted.text == whole


# --- failed sends over HTTP, Retry-After ----------------------------------------------------

@pytest.mark.parametrize(
    ("type_name", "code", "expected"),
    [
        ("SmsRejected", 400, "permanent"),
        ("SmsRejected", 401, "permanent"),
        ("SmsRejected", 403, "permanent"),
        ("SmsRejected", 404, "permanent"),
        ("SmsRejected", 422, "permanent"),
        ("SmsRejected", 408, "transient"),
        ("SmsRejected", 425, "transient"),
        ("SmsRejected", 429, "transient"),
        ("SmsRejected", 500, "transient"),
        ("SmsRejected", 502, "transient"),
        ("SmsRejected", 503, "transient"),
        ("SmsRejected", 302, "transient"),
        ("ReadTimeout", None, "transient"),
        ("ConnectTimeout", None, "transient"),
        ("ConnectError", None, "transient"),
        ("RemoteProtocolError", None, "transient"),
        ("InvalidPhoneNumber", None, "permanent"),
        ("TemplateRenderError", None, "permanent"),
        ("Expired", None, "permanent"),
    ],
)
def test_http_classification_table(type_name: str, code: int | None, expected: str) -> None:
    assert domain.classify_send_error(type_name, code, "http") == expected


@given(st.integers(400, 499).filter(lambda c: c not in (408, 425, 429)))
def test_http_4xx_is_permanent_but_smtp_4xx_is_transient(code: int) -> None:
    assert domain.classify_send_error("X", code, "http") == "permanent"
    assert domain.classify_send_error("X", code, "smtp") == "transient"


@given(st.integers(500, 599))
def test_http_5xx_is_transient_but_smtp_5xx_is_permanent(code: int) -> None:
    assert domain.classify_send_error("X", code, "http") == "transient"
    assert domain.classify_send_error("X", code, "smtp") == "permanent"


def test_http_errors_describe_themselves_with_the_status() -> None:
    assert SendError("SmsRejected", 429, "slow down", "http").describe() == "HTTP 429 slow down"
    assert SendError("SmsRejected", 500, "", "http").describe() == "HTTP 500"
    assert SendError("ReadTimeout", None, "timed out", "http").describe() == "ReadTimeout: timed out"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("", None), ("  ", None), ("120", 120.0), (" 0 ", 0.0), ("-5", None), ("soon", None),
     ("Mon, 03 Mar 2025 10:02:00 GMT", 120.0), ("Mon, 03 Mar 2025 09:00:00 GMT", 0.0), ("1.5", None)],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert domain.parse_retry_after(value, T0) == seconds


def test_a_transient_error_with_retry_after_holds_the_delivery_back_bounded() -> None:
    slow = SendError("SmsRejected", 429, "slow down", "http", retry_after_s=30)
    assert domain.outcome_of_attempt(0, slow, 5) == domain.AttemptOutcome("queued", 1, "HTTP 429 slow down", 30)
    huge = SendError("SmsRejected", 429, "", "http", retry_after_s=10**9)
    assert domain.outcome_of_attempt(0, huge, 5).retry_after_s == domain.MAX_RETRY_AFTER_S
    assert domain.outcome_of_attempt(4, slow, 5).status == "dead"  # no waiting once attempts are used up
    assert domain.outcome_of_attempt(4, slow, 5).retry_after_s is None


# --- the token bucket ---------------------------------------------------------------------

def test_token_bucket_grants_one_then_spaces_by_the_rate() -> None:
    first = domain.take_token(None, 0.0, 4.0)
    assert first.granted and first.bucket == domain.TokenBucket(0.0, 0.0)
    denied = domain.take_token(first.bucket, 0.1, 4.0)
    assert not denied.granted and denied.wait_s == pytest.approx(0.15)
    assert domain.take_token(denied.bucket, 0.25, 4.0).granted


def test_token_bucket_holds_at_most_its_burst() -> None:
    bucket = domain.take_token(None, 0.0, 10.0, burst=3).bucket  # 2 left
    later = domain.take_token(bucket, 100.0, 10.0, burst=3)  # idle for long: full (3), one taken
    assert later.bucket.tokens == pytest.approx(2.0)


def test_token_bucket_rejects_a_zero_rate() -> None:
    with pytest.raises(ValueError):
        domain.take_token(None, 0.0, 0.0)


@given(
    st.floats(0.1, 100), st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=200),
)
def test_token_bucket_never_grants_more_than_the_rate_allows(rate: float, arrivals: list[float]) -> None:
    bucket: domain.TokenBucket | None = None
    granted: list[float] = []
    for now in sorted(arrivals):
        decision = domain.take_token(bucket, now, rate)
        bucket = decision.bucket
        if decision.granted:
            granted.append(now)
        else:
            assert 0 < decision.wait_s <= 1 / rate + 1e-9
    # burst 1: any two grants are at least 1/rate apart
    assert all(b - a >= 1 / rate - 1e-6 for a, b in itertools.pairwise(granted))
