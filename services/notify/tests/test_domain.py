"""The pure rules: delivery plans, error classification, attempt outcomes, sweep backoff."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
