"""What a service believes of a request's headers: only what the gateway vouches for."""

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from services.core.gateway import KEY_HEADER, Gateway, generate_gateway_key, read_key

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
STAMP = {"x-request-start": "t=1796644800.125"}  # 2026-12-07 12:00:00.125 UTC
GATEWAY = Gateway.from_key("s3cret-key")


def test_the_stamp_counts_only_with_the_key() -> None:
    assert GATEWAY.arrival({**STAMP, KEY_HEADER: "s3cret-key"}, NOW) == datetime(2026, 12, 7, 12, 0, 0, 125000, UTC)
    assert GATEWAY.arrival(STAMP, NOW) == NOW
    assert GATEWAY.arrival({**STAMP, KEY_HEADER: "s3cret-kez"}, NOW) == NOW
    assert GATEWAY.arrival({**STAMP, KEY_HEADER: ""}, NOW) == NOW
    # No key configured: nobody is the gateway, whatever they send.
    assert Gateway.from_key(None).arrival({**STAMP, KEY_HEADER: ""}, NOW) == NOW
    assert Gateway.from_key("  ").arrival({**STAMP, KEY_HEADER: ""}, NOW) == NOW


def test_an_unreadable_stamp_means_now() -> None:
    for stamp in ("t=", "t=abc", "t=1e400", "t=-1e30", "yesterday", "t=nan"):
        arrived = GATEWAY.arrival({"x-request-start": stamp, KEY_HEADER: "s3cret-key"}, NOW)
        assert arrived == NOW, stamp


def test_the_client_address_is_the_gateways_only_with_the_key() -> None:
    vouched = {KEY_HEADER: "s3cret-key"}
    assert GATEWAY.client_address({**vouched, "x-real-ip": "203.0.113.7"}, "10.0.0.2") == "203.0.113.7"
    assert GATEWAY.client_address({"x-real-ip": "203.0.113.7"}, "10.0.0.2") == "10.0.0.2"
    assert GATEWAY.client_address({**vouched, "x-real-ip": "2001:DB8::1"}, None) == "2001:db8::1"
    assert GATEWAY.client_address({**vouched, "x-real-ip": "not an address"}, "::1") == "::1"
    assert GATEWAY.client_address({}, None) is None
    assert GATEWAY.client_address({}, "testclient") is None


@given(st.text(max_size=40))
def test_no_other_key_is_taken_for_the_gateways(offered: str) -> None:
    headers = {**STAMP, KEY_HEADER: offered}
    believed = GATEWAY.arrival(headers, NOW) != NOW
    assert believed == (offered == "s3cret-key")


def test_the_key_comes_from_the_environment_else_its_file(tmp_path: Path) -> None:
    path = generate_gateway_key(tmp_path)
    written = path.read_text().strip()
    assert len(written) >= 40 and path.stat().st_mode & 0o777 == 0o600
    assert generate_gateway_key(tmp_path).read_text().strip() == written  # kept if present
    assert read_key(None, path) == written
    assert read_key("from-env", path) == "from-env"
    assert read_key(None, tmp_path / "absent") is None
