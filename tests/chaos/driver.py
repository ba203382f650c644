"""Participants through the gateway, behaving as the web app does (web/src/js/api.js,
pages/quiz.js): sign up, log in, start an attempt, autosave twice, submit, then poll the
result. A request that got no answer, a 429 or any 5xx is sent again with the same body
after the app's pauses (1, 2, 4, 8, 16, 30 s, ±20 %, at least Retry-After); a submit
answered `409 already_submitted` after such a retry means an earlier try reached the
server, which the app takes as sent. Each participant gives up a step after `give_up_s`
of retrying (a person would have left); that is reported, never hidden.

Every exchange is recorded (step, status, when, how long), and every acknowledged submit
with its attempt id and the answers sent, for the checks against PostgreSQL.
Bounded: a fixed number of participants, a deadline on every request and every retry.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

BACKOFF_S = (1, 2, 4, 8, 16, 30)
PASSWORD = "mat-khau-chaos-2026"
STEPS = ("register", "login", "start", "autosave", "submit", "result")


def retry_delay_s(tries: int, retry_after_s: float | None, rng: random.Random) -> float:
    """The web app's pause before retry number `tries` (1-based)."""
    base = BACKOFF_S[min(tries - 1, len(BACKOFF_S) - 1)]
    return max(base * (0.8 + rng.random() * 0.4), retry_after_s or 0.0)


def worth_retrying(status: int) -> bool:
    """No answer (0), busy (429) or a server error: the app keeps the body and sends it again."""
    return status == 0 or status == 429 or status >= 500


@dataclass(frozen=True, slots=True)
class Exchange:
    step: str
    status: int  # 0: no answer (refused, reset, timed out)
    sent_at: float  # time.monotonic()
    took_s: float


@dataclass
class Journey:
    number: int
    phone: str
    email: str
    name: str
    participant_id: str | None = None
    attempt_id: str | None = None
    answers: dict[str, list[str]] = field(default_factory=dict)
    prediction: int = 0
    # "202", or "409" (an earlier try got through), "refused <status> <code>", "abandoned at <step>"
    outcome: str = "not started"
    submit_acked_at: float | None = None
    result_seen_after_s: float | None = None
    # First try → success of each step (seconds), requests sent, and those sent again.
    waited_s: dict[str, float] = field(default_factory=dict)
    tries: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)

    @property
    def acknowledged(self) -> bool:
        return self.outcome in ("202", "409")


class GaveUp(Exception):
    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


class Refused(Exception):
    def __init__(self, step: str, status: int, code: str) -> None:
        super().__init__(f"{step}: {status} {code}")
        self.step, self.status, self.code = step, status, code


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", ""))
    except ValueError:
        return ""


@dataclass
class Load:
    """`count` participants of one round, arriving evenly over `arrival_s` seconds."""

    base_url: str
    round_id: str
    unit_ids: list[str]
    count: int
    arrival_s: float
    series: int  # tells this load's phone numbers and emails apart from another's
    seed: int = 11
    give_up_s: float = 120.0
    request_timeout_s: float = 30.0
    think_s: tuple[float, float] = (0.5, 2.0)
    result_poll_s: float = 20.0
    exchanges: list[Exchange] = field(default_factory=list)
    journeys: list[Journey] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed * 1000 + self.series)
        self.journeys = [
            Journey(
                number=i,
                phone=f"081{self.series:03d}{i:04d}",
                email=f"chaos{self.series}.{i}@example.vn",
                name=f"Người Thử Lỗi {self.series}-{i}",
            )
            for i in range(self.count)
        ]

    async def run(self) -> list[Journey]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.request_timeout_s, limits=limits) as client:
            await asyncio.gather(*(self._journey(client, j) for j in self.journeys))
        return self.journeys

    async def _send(
        self, client: httpx.AsyncClient, journey: Journey, step: str, method: str, path: str,
        *, ok: set[int], json_body: Any = None, token: str | None = None,
    ) -> httpx.Response:
        """Send until the answer is in `ok` (returned), or a refusal the app would show
        (a 4xx other than 429: returned as well, the caller decides); retries the rest."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        first_try = time.monotonic()
        tries = 0
        while True:
            tries += 1
            journey.tries[step] += 1
            if tries > 1:
                journey.retries[step] += 1
            sent = time.monotonic()
            retry_after: float | None = None
            try:
                response = await client.request(method, path, json=json_body, headers=headers)
                status = response.status_code
                try:
                    retry_after = float(response.headers.get("retry-after", ""))
                except ValueError:
                    retry_after = None
            except httpx.HTTPError:
                response, status = None, 0
            self.exchanges.append(Exchange(step, status, sent, time.monotonic() - sent))
            if response is not None and (status in ok or not worth_retrying(status)):
                if status in ok:
                    journey.waited_s[step] = time.monotonic() - first_try
                return response
            delay = retry_delay_s(tries, retry_after, self.rng)
            if time.monotonic() + delay - first_try > self.give_up_s:
                raise GaveUp(step)
            await asyncio.sleep(delay)

    async def _journey(self, client: httpx.AsyncClient, j: Journey) -> None:
        await asyncio.sleep(self.arrival_s * j.number / max(self.count, 1))
        try:
            await self._steps(client, j)
        except GaveUp as exc:
            j.outcome = f"abandoned at {exc.step}"
        except Refused as exc:
            j.outcome = f"refused at {exc.step}: {exc.status} {exc.code}"

    async def _think(self) -> None:
        await asyncio.sleep(self.rng.uniform(*self.think_s))

    async def _steps(self, client: httpx.AsyncClient, j: Journey) -> None:
        j.outcome = "started"
        registered = await self._send(client, j, "register", "POST", "/api/auth/register", ok={201}, json_body={
            "full_name": j.name, "phone": j.phone, "email": j.email, "password": PASSWORD,
            "unit_id": self.unit_ids[j.number % len(self.unit_ids)],
        })
        # 409 phone_taken after a retry: an earlier try created the account.
        if registered.status_code != 201 and not (registered.status_code == 409 and j.retries["register"]):
            raise Refused("register", registered.status_code, _code(registered))

        login = await self._send(client, j, "login", "POST", "/api/auth/login", ok={200},
                                 json_body={"login": j.phone, "password": PASSWORD})
        if login.status_code != 200:
            raise Refused("login", login.status_code, _code(login))
        token = str(login.json()["access_token"])
        j.participant_id = str(_claims(token)["sub"])

        started = await self._send(client, j, "start", "POST", f"/api/rounds/{self.round_id}/attempts",
                                   ok={200, 201}, token=token)
        if started.status_code not in (200, 201):
            raise Refused("start", started.status_code, _code(started))
        attempt = started.json()
        j.attempt_id = str(attempt["attempt_id"])
        j.answers = {q["id"]: [self.rng.choice(q["options"])["id"]] for q in attempt["questions"]}
        j.prediction = self.rng.randrange(1, 1000)

        question_ids = list(j.answers)
        for upto in (len(question_ids) // 3, 2 * len(question_ids) // 3):
            await self._think()
            partial = {q: j.answers[q] for q in question_ids[:upto]}
            saved = await self._send(client, j, "autosave", "PUT", f"/api/attempts/{j.attempt_id}/answers",
                                     ok={200}, json_body={"answers": partial}, token=token)
            if saved.status_code != 200:
                raise Refused("autosave", saved.status_code, _code(saved))

        await self._think()
        submitted = await self._send(client, j, "submit", "POST", f"/api/attempts/{j.attempt_id}/submit",
                                     ok={202}, json_body={"answers": j.answers, "prediction": j.prediction},
                                     token=token)
        if submitted.status_code == 202:
            j.outcome = "202"
        elif submitted.status_code == 409 and _code(submitted) == "already_submitted" and j.retries["submit"]:
            j.outcome = "409"
        else:
            raise Refused("submit", submitted.status_code, _code(submitted))
        j.submit_acked_at = time.monotonic()

        # The result page polls until scoring has the attempt (bounded: a person waits a while).
        deadline = time.monotonic() + self.result_poll_s
        while time.monotonic() < deadline:
            result = await self._send(client, j, "result", "GET", f"/api/attempts/{j.attempt_id}/result",
                                      ok={200}, token=token)
            if result.status_code == 200 and result.json().get("status") == "scored":
                j.result_seen_after_s = time.monotonic() - j.submit_acked_at
                return
            await asyncio.sleep(1.0)


def status_counts(exchanges: list[Exchange]) -> dict[str, dict[str, int]]:
    """step → {status: count}, status 0 written as `no answer`."""
    counts: dict[str, Counter[str]] = {}
    for e in exchanges:
        counts.setdefault(e.step, Counter())[str(e.status) if e.status else "no answer"] += 1
    return {step: dict(sorted(c.items())) for step, c in counts.items()}
