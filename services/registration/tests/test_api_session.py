"""The browser's session through HTTP, in-process against the real PostgreSQL: the refresh
token in an HttpOnly cookie that page scripts never see, guarded against cross-site
requests, next to the body tokens outside clients keep using."""

from __future__ import annotations

import uuid
from http.cookies import SimpleCookie

import httpx

from services.core.auth import TokenVerifier
from services.registration import store
from services.registration.tests.conftest import PASSWORD, bearer, problem_fields, sign_up

COOKIE = "__Secure-hoithi-refresh"
# What the web app sends on login, refresh and logout (api.js).
COOKIE_MODE = {"X-Refresh-Cookie": "1"}


def set_cookie(response: httpx.Response) -> SimpleCookie:
    """The Set-Cookie of the refresh cookie in a response (exactly one)."""
    headers = [value for value in response.headers.get_list("set-cookie") if value.startswith(f"{COOKIE}=")]
    assert len(headers) == 1, response.headers.get_list("set-cookie")
    jar: SimpleCookie = SimpleCookie()
    jar.load(headers[0])
    return jar


def with_cookie(token: str, **headers: str) -> dict[str, str]:
    # Sent by hand: httpx's jar, like a browser's, would not send a Secure cookie to http://testserver.
    return {"Cookie": f"{COOKIE}={token}", **headers}


async def signed_up(client: httpx.AsyncClient, demo_units: dict[str, store.Unit]) -> None:
    assert (await client.post("/api/auth/register", json=sign_up(demo_units["LC-P01"].id))).status_code == 201


async def browser_login(client: httpx.AsyncClient) -> tuple[dict[str, object], str]:
    response = await client.post(
        "/api/auth/login", json={"login": "0912345678", "password": PASSWORD}, headers=COOKIE_MODE
    )
    assert response.status_code == 200, response.text
    return response.json(), set_cookie(response)[COOKIE].value


async def test_a_browser_login_puts_the_refresh_token_in_a_strict_httponly_cookie(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit], token_verifier: TokenVerifier
) -> None:
    await signed_up(client, demo_units)
    response = await client.post(
        "/api/auth/login", json={"login": "0912345678", "password": PASSWORD}, headers=COOKIE_MODE
    )
    assert response.status_code == 200, response.text
    body = response.json()
    # Nothing a page script could read: the body has the access token only.
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_expires_in"}
    assert token_verifier.verify(body["access_token"]).role == "participant"
    assert response.headers["cache-control"] == "no-store"
    morsel = set_cookie(response)[COOKIE]
    assert len(morsel.value) >= 40
    assert (morsel["httponly"], morsel["secure"], morsel["samesite"]) == (True, True, "Strict")
    assert morsel["path"] == "/api/auth/"
    assert morsel["max-age"] == "2592000"  # REFRESH_TOKEN_TTL_S
    assert morsel["domain"] == ""  # this host only


async def test_outside_clients_keep_the_body_contract(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit]
) -> None:
    await signed_up(client, demo_units)
    login = await client.post("/api/auth/login", json={"login": "0912345678", "password": PASSWORD})
    assert login.status_code == 200
    assert "set-cookie" not in login.headers
    body = login.json()
    assert {"access_token", "token_type", "expires_in", "refresh_token"} <= set(body)
    assert body["token_type"] == "bearer"
    rotated = await client.post("/api/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert rotated.status_code == 200 and "set-cookie" not in rotated.headers
    assert rotated.json()["refresh_token"] != body["refresh_token"]
    assert (await client.post("/api/auth/logout", json={"refresh_token": rotated.json()["refresh_token"]})
            ).status_code == 204


async def test_the_cookie_refreshes_and_rotates(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit], token_verifier: TokenVerifier
) -> None:
    await signed_up(client, demo_units)
    _, first = await browser_login(client)
    refreshed = await client.post("/api/auth/refresh", headers=with_cookie(first, **COOKIE_MODE))
    assert refreshed.status_code == 200, refreshed.text
    assert set(refreshed.json()) == {"access_token", "token_type", "expires_in", "refresh_expires_in"}
    access = refreshed.json()["access_token"]
    assert (await client.get("/api/me", headers=bearer(access))).status_code == 200
    second = set_cookie(refreshed)[COOKIE]
    assert second.value != first and second["httponly"] and second["path"] == "/api/auth/"

    # The first, used already, comes back: a copy. The session ends and the cookie goes.
    reused = await client.post("/api/auth/refresh", headers=with_cookie(first, **COOKIE_MODE))
    assert reused.status_code == 401 and reused.json()["code"] == "refresh_token_reused"
    assert set_cookie(reused)[COOKIE]["max-age"] == "0"
    ended = await client.post("/api/auth/refresh", headers=with_cookie(second.value, **COOKIE_MODE))
    assert ended.status_code == 401


async def test_the_cookie_alone_is_not_enough(client: httpx.AsyncClient, demo_units: dict[str, store.Unit]) -> None:
    """What a page on another site can make a browser send (a form post, a no-cors fetch):
    the cookie, if SameSite let it through, but never a custom header."""
    await signed_up(client, demo_units)
    _, token = await browser_login(client)
    for path in ("/api/auth/refresh", "/api/auth/logout"):
        forged = await client.post(path, headers=with_cookie(token, **{"Content-Type": "text/plain"}))
        assert forged.status_code == 403, forged.text
        assert forged.json()["code"] == "refresh_cookie_needs_header"
        cross_site = await client.post(
            path, headers=with_cookie(token, **COOKIE_MODE, **{"Sec-Fetch-Site": "cross-site"})
        )
        assert cross_site.status_code == 403 and cross_site.json()["code"] == "cross_site_request"
    # Neither ended nor rotated the session.
    assert (await client.post("/api/auth/refresh", headers=with_cookie(token, **COOKIE_MODE))).status_code == 200


async def test_logout_clears_the_cookie_and_ends_the_session(
    client: httpx.AsyncClient, demo_units: dict[str, store.Unit]
) -> None:
    await signed_up(client, demo_units)
    _, token = await browser_login(client)
    logout = await client.post("/api/auth/logout", headers=with_cookie(token, **COOKIE_MODE))
    assert logout.status_code == 204
    cleared = set_cookie(logout)[COOKIE]
    assert (cleared.value, cleared["max-age"], cleared["path"]) == ("", "0", "/api/auth/")
    after = await client.post("/api/auth/refresh", headers=with_cookie(token, **COOKIE_MODE))
    assert after.status_code == 401 and after.json()["code"] == "invalid_refresh_token"
    # Signing out twice, or without a session, is fine.
    assert (await client.post("/api/auth/logout", headers=COOKIE_MODE)).status_code == 204


async def test_refresh_without_a_token_names_the_field(client: httpx.AsyncClient) -> None:
    assert problem_fields(await client.post("/api/auth/refresh", json={})) == ["refresh_token"]
    assert problem_fields(await client.post("/api/auth/refresh")) == ["refresh_token"]
    no_cookie = await client.post("/api/auth/refresh", headers=COOKIE_MODE)
    assert no_cookie.status_code == 401 and no_cookie.json()["code"] == "invalid_refresh_token"
    garbage = await client.post("/api/auth/refresh", headers=with_cookie("x" * 43, **COOKIE_MODE))
    assert garbage.status_code == 401
    assert set_cookie(garbage)[COOKIE]["max-age"] == "0"  # a dead cookie is not sent again
    assert (await client.post("/api/auth/refresh", headers=with_cookie(str(uuid.uuid4()) * 9, **COOKIE_MODE))
            ).status_code == 401
