"""The deadline surge: participants arriving by their unit's link in the last minutes
of a round, and organisers watching the participation dashboard.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080            # web UI
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --headless \\
        --peak-users 300 --baseline-users 20 --surge-s 240 --csv var/surge --html var/surge.html

Targets only the host given (use 127.0.0.1); the shape ends the run by itself after
--surge-s seconds plus the close. Participants follow the real path: sign up (or log in
when they came before), start an attempt, answer with think time while autosaving,
predict, submit, poll the result, look at the leaderboard. After the round's close the
starts, and the submits of stragglers past their time limit (--late-share, --late-by-s),
must get 409, never 5xx: a 409 is counted as a success under its own name.
`make bench` (loadtests/bench.py) runs this headless against its own stack and round.
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime
from typing import Any, ClassVar

from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.exception import StopUser

CONTEST_SLUG = "demo"
PASSWORD = "mat-khau-tai-2026"


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--contest", default=CONTEST_SLUG, help="contest slug")
    parser.add_argument("--baseline-users", type=int, default=10, help="users before the surge")
    parser.add_argument("--peak-users", type=int, default=200, help="users at the peak")
    parser.add_argument("--surge-s", type=int, default=180, help="length of the whole run in seconds")
    parser.add_argument("--think-scale", type=float, default=1.0, help="multiplies think times (0 = none)")
    parser.add_argument("--organisers", type=int, default=2, help="organisers polling the dashboard")
    parser.add_argument("--late-share", type=float, default=0.01,
                        help="share of attempts submitted after their time limit and grace (must get 409)")
    parser.add_argument("--late-by-s", type=float, default=40.0,
                        help="how long after its deadline a straggler submits: more than the round's grace_s")
    parser.add_argument("--submit-log", default="",
                        help="append 'attempt_id,epoch seconds' of every 202 submit to this file (.<pid> added):"
                             " what `make bench` measures the scoring lag from")


_submit_log: Any = None


def _log_submit(environment: Any, attempt_id: str) -> None:
    """When the 202 arrived, by the wall clock the database also uses (same machine)."""
    global _submit_log
    path = environment.parsed_options.submit_log if environment.parsed_options else ""
    if not path:
        return
    if _submit_log is None:
        _submit_log = open(f"{path}.{os.getpid()}", "a", buffering=1)  # kept open for the whole run
    _submit_log.write(f"{attempt_id},{time.time():.6f}\n")


def _phone() -> str:
    # A Vietnamese mobile number no real person is likely to have in a test database.
    return "09" + "".join(random.choices("0123456789", k=8))


class Participant(FastHttpUser):
    weight = 100
    wait_time = between(1, 5)
    units: ClassVar[list[dict[str, Any]]] = []
    contest: ClassVar[dict[str, Any] | None] = None

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.think = options.think_scale if options else 1.0
        self.late_share = options.late_share if options else 0.0
        self.late_by_s = options.late_by_s if options else 40.0
        slug = options.contest if options else CONTEST_SLUG
        if not Participant.units:
            Participant.units = self.client.get("/api/units?limit=500", name="/api/units").json()
        if Participant.contest is None:
            Participant.contest = self.client.get(f"/api/contests/{slug}", name="/api/contests/[slug]").json()
        unit = random.choice([u for u in Participant.units if u["headcount"] > 0] or Participant.units)
        self.phone = _phone()
        self.client.get(f"/api/units?q={unit['code']}", name="/api/units?q= (entry link)")
        with self.client.post(
            "/api/auth/register",
            json={"full_name": "Người Thử Tải", "phone": self.phone, "unit_id": unit["id"], "password": PASSWORD},
            name="/api/auth/register",
            catch_response=True,
        ) as response:
            if response.status_code in (201, 409):  # 409: a returning participant
                response.success()
        login = self.client.post("/api/auth/login", json={"login": self.phone, "password": PASSWORD},
                                 name="/api/auth/login")
        if login.status_code != 200:
            raise StopUser()
        self.headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    def _pause(self, low: float, high: float) -> None:
        if self.think > 0:
            time.sleep(random.uniform(low, high) * self.think)

    def _open_round(self) -> dict[str, Any] | None:
        rounds = (Participant.contest or {}).get("rounds", [])
        return next((r for r in rounds if r["status"] == "open"), rounds[0] if rounds else None)

    @task
    def take_the_round(self) -> None:
        round_ = self._open_round()
        if round_ is None:
            raise StopUser()
        with self.client.post(f"/api/rounds/{round_['id']}/attempts", headers=self.headers,
                              name="/api/rounds/[id]/attempts", catch_response=True) as started:
            if started.status_code == 409:  # no attempts left, or the round has closed
                started.success()
                started.request_meta["name"] = "/api/rounds/[id]/attempts (refused: 409)"
                raise StopUser()
        attempt = started.json()
        answers: dict[str, list[str]] = {}
        for i, question in enumerate(attempt["questions"]):
            options = [o["id"] for o in question["options"]]
            chosen = random.sample(options, 2) if question.get("multiple") else [random.choice(options)]
            answers[question["id"]] = chosen
            if i % 4 == 3:
                self.client.put(f"/api/attempts/{attempt['attempt_id']}/answers", json={"answers": answers},
                                headers=self.headers, name="/api/attempts/[id]/answers")
                self._pause(2, 6)
        self._pause(1, 3)
        if random.random() < self.late_share:
            # A straggler: submits after the attempt's time limit and grace are over. It
            # must get 409, never 5xx, and never count.
            deadline = datetime.fromisoformat(attempt["deadline_at"]).timestamp()
            time.sleep(min(600.0, max(0.0, deadline + self.late_by_s - time.time())))
        with self.client.post(f"/api/attempts/{attempt['attempt_id']}/submit",
                              json={"answers": answers, "prediction": random.randint(100, 5000)},
                              headers=self.headers, name="/api/attempts/[id]/submit", catch_response=True) as sent:
            if sent.status_code == 409:
                sent.success()
                sent.request_meta["name"] = "/api/attempts/[id]/submit (late: 409)"
                return
            if sent.status_code == 202:
                _log_submit(self.environment, attempt["attempt_id"])
        for _ in range(20):
            result = self.client.get(f"/api/attempts/{attempt['attempt_id']}/result", headers=self.headers,
                                     name="/api/attempts/[id]/result").json()
            if result.get("status") == "scored":
                break
            time.sleep(0.5)
        self.client.get(f"/api/rounds/{round_['id']}/leaderboard/me", headers=self.headers,
                        name="/api/rounds/[id]/leaderboard/me")
        self.client.get(f"/api/rounds/{round_['id']}/leaderboard?limit=100", name="/api/rounds/[id]/leaderboard")


class Organiser(FastHttpUser):
    weight = 1
    wait_time = between(5, 10)
    fixed_count = 0

    def on_start(self) -> None:
        login = self.client.post("/api/auth/login", json={"login": "admin", "password": "admin"},
                                 name="/api/auth/login (organiser)")
        if login.status_code != 200:
            raise StopUser()
        self.headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        options = self.environment.parsed_options
        slug = options.contest if options else CONTEST_SLUG
        contest = self.client.get(f"/api/contests/{slug}", name="/api/contests/[slug]").json()
        self.contest_id = contest["id"]

    @task
    def watch_participation(self) -> None:
        self.client.get(f"/api/reports/participation?contest={self.contest_id}", headers=self.headers,
                        name="/api/reports/participation")


@events.init.add_listener
def _organiser_count(environment: Any, **_: Any) -> None:
    # --organisers: that many Organiser users whatever the total (the rest are participants).
    if environment.parsed_options is not None:
        Organiser.fixed_count = environment.parsed_options.organisers


class DeadlineSurge(LoadTestShape):
    """A quiet baseline for the first quarter, a ramp to the peak over the second quarter
    (the final minutes before the close), the peak for the third, then the close: users
    keep arriving, and their late submits must be refused cleanly (409)."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        total = options.surge_s if options else 180
        baseline = options.baseline_users if options else 10
        peak = options.peak_users if options else 200
        t = self.get_run_time()
        if t >= total:
            return None
        quarter = total / 4
        if t < quarter:
            return baseline, max(1.0, baseline / 5)
        if t < 2 * quarter:
            users = baseline + (peak - baseline) * (t - quarter) / quarter
            return round(users), max(1.0, peak / quarter)
        return peak, max(1.0, peak / quarter)
