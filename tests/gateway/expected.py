"""What every answer from the gateway carries (tests/gateway/test_*.py share it)."""

from __future__ import annotations

import httpx

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DENIED_FEATURES = ("camera", "microphone", "geolocation", "payment", "usb")


def assert_security_headers(answer: httpx.Response, *, tls: bool = False) -> None:
    headers = answer.headers
    # Exactly once each: a header added twice (by a location and the server) is as wrong
    # as one left out.
    assert headers.get_list("content-security-policy") == [CSP]
    assert headers.get_list("x-frame-options") == ["DENY"]
    assert headers.get_list("x-content-type-options") == ["nosniff"]
    assert headers.get_list("referrer-policy") == ["strict-origin-when-cross-origin"]
    [permissions] = headers.get_list("permissions-policy")
    assert {f"{feature}=()" for feature in DENIED_FEATURES} <= {p.strip() for p in permissions.split(",")}
    assert headers.get_list("strict-transport-security") == (["max-age=31536000"] if tls else [])
