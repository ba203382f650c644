import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.events import Event, MalformedEvent
from services.core.logs import correlation_id

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(st.text(min_size=1, max_size=30), st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_envelope_round_trips(event_type: str, data: dict) -> None:
    event = Event(event_type, data, correlation_id="abc")
    assert Event.from_json(event.to_json()) == event


def test_envelope_has_the_design_fields() -> None:
    import orjson

    body = orjson.loads(Event("round.closed", {"round_id": str(uuid.uuid4())}).to_json())
    assert set(body) == {"id", "type", "version", "occurred_at", "correlation_id", "data"}
    assert datetime.fromisoformat(body["occurred_at"]).tzinfo == UTC


def test_new_event_takes_the_current_correlation_id() -> None:
    token = correlation_id.set("req-42")
    try:
        assert Event("x", {}).correlation_id == "req-42"
    finally:
        correlation_id.reset(token)


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"id": "nope", "type": "x", "version": 1}', b'{"type": "x"}'])
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        Event.from_json(body)
