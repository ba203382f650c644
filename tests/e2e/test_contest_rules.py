"""Issue 3's acceptance, through the gateway and the API alone: a 4-week contest with two
groups, 20 questions from 3 topics per group in 15 minutes, at most 3 attempts a week, a
prediction of participants, prizes 1/2/3/10 per group and one prize per person per
contest. The winners and the reports must come out exactly as the rules say."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openpyxl
import pytest

from tests.e2e.stack import Stack
from tests.e2e.support import QUESTIONS_CSV, answer_key_by_text, bearer, eventually, topic_by_text

pytestmark = pytest.mark.e2e

GROUPS = {
    "cong_chuc": ("Cán bộ, công chức", ["cai_cach_hanh_chinh", "dich_vu_cong", "chuyen_doi_so"]),
    "nhan_dan": ("Nhân dân", ["do_thi", "moi_truong", "cong_dan"]),
}
# 7 + 7 + 6 = 20 questions from each group's three topics.
TOPIC_QUOTAS = {t: n for _, topics in GROUPS.values() for t, n in zip(topics, (7, 7, 6), strict=True)}
PRIZES = [{"name": "Giải Nhất", "count": 1}, {"name": "Giải Nhì", "count": 2},
          {"name": "Giải Ba", "count": 3}, {"name": "Giải Khuyến khích", "count": 10}]


class Organiser:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        token = client.post("/api/auth/login", json={"login": "admin", "password": "admin"}).json()["access_token"]
        self.headers = bearer(token)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, headers=self.headers, **kwargs)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _contest(org: Organiser, slug: str) -> tuple[str, list[str]]:
    created = org.post("/api/admin/contests", json={
        "slug": slug,
        "title": "Hội thi tìm hiểu cải cách hành chính — bốn tuần",
        "prize_scope": "contest",
        "tie_break": ["correct", "prediction_error", "duration", "submitted_at"],
        "groups": [{"code": code, "name": name, "topics": topics} for code, (name, topics) in GROUPS.items()],
    })
    assert created.status_code == 201, created.text
    contest_id = created.json()["id"]
    with QUESTIONS_CSV.open("rb") as bank:
        imported = org.post(f"/api/admin/contests/{contest_id}/questions/import",
                            files={"file": ("questions.csv", bank, "text/csv")})
    assert imported.status_code == 200, imported.text
    now = datetime.now(UTC)
    rounds = []
    for week in range(4):
        opens = now - timedelta(hours=1) if week == 0 else now + timedelta(days=7 * week)
        body = {
            "number": week + 1, "title": f"Tuần {week + 1}",
            "opens_at": _iso(opens), "closes_at": _iso(opens + timedelta(days=7) - timedelta(hours=1)),
            "question_count": 20, "time_limit_s": 900, "grace_s": 30, "max_attempts": 3,
            "prediction": {"text": "Có bao nhiêu người tham gia tuần này?", "target": "participants"},
            "prizes": PRIZES,
            "quotas": {"topics": TOPIC_QUOTAS},
        }
        made = org.post(f"/api/admin/contests/{contest_id}/rounds", json=body)
        assert made.status_code == 201, made.text
        rounds.append(made.json()["id"])
    return contest_id, rounds


class Entrant:
    def __init__(self, client: httpx.Client, name: str, phone: str, group: str, unit_id: str) -> None:
        self.client, self.name, self.group = client, name, group
        made = client.post("/api/auth/register", json={
            "full_name": name, "phone": phone, "unit_id": unit_id, "group": group, "password": "mat-khau-2026"})
        assert made.status_code == 201, made.text
        self.id = made.json()["participant_id"]
        login = client.post("/api/auth/login", json={"login": phone, "password": "mat-khau-2026"})
        self.headers = bearer(login.json()["access_token"])

    def take(self, round_id: str, correct: int, prediction: int) -> httpx.Response:
        started = self.client.post(f"/api/rounds/{round_id}/attempts", headers=self.headers)
        if started.status_code not in (200, 201):
            return started
        attempt = started.json()
        topics = GROUPS[self.group][1]
        key = answer_key_by_text()
        answers = {}
        for i, q in enumerate(attempt["questions"]):
            right = key[q["text"]]
            answers[q["id"]] = right if i < correct else [o["id"] for o in q["options"] if o["id"] not in right][:1]
        assert len(attempt["questions"]) == 20
        topic_of = topic_by_text()
        drawn = {topic_of[q["text"]] for q in attempt["questions"]}
        assert drawn <= set(topics), drawn
        sent = self.client.post(f"/api/attempts/{attempt['attempt_id']}/submit",
                                json={"answers": answers, "prediction": prediction}, headers=self.headers)
        assert sent.status_code == 202, sent.text
        return started


def _final_winners(client: httpx.Client, round_id: str) -> list[tuple[str, str, int, str]]:
    def ready() -> dict[str, Any] | None:
        body = client.get(f"/api/rounds/{round_id}/winners").json()
        return body if body["status"] == "final" else None

    body = eventually(ready, timeout_s=60)
    return [(w["group"], w["name"], w["rank"], w["prize"]) for w in body["winners"]]


def test_a_four_week_contest_with_two_groups_runs_by_the_rules(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=15) as client:
        org = Organiser(client)
        slug = f"bon-tuan-{random.randint(1000, 9999)}"
        contest_id, rounds = _contest(org, slug)
        public = client.get(f"/api/contests/{slug}").json()
        assert [r["status"] for r in public["rounds"]] == ["open", "scheduled", "scheduled", "scheduled"]
        assert {g["code"] for g in public["groups"]} == set(GROUPS)
        unit = client.get("/api/units", params={"q": "phuong le chan"}).json()[0]

        phones = iter(f"09780000{n:02d}" for n in range(100))
        cc = [Entrant(client, f"Công chức {c}", next(phones), "cong_chuc", unit["id"]) for c in "ABCD"]
        nd = [Entrant(client, f"Người dân {c}", next(phones), "nhan_dan", unit["id"]) for c in "ABC"]

        # Week 1. Eight entrants take part (7 people + D's three attempts count once).
        # Truth of the prediction: 7 participants.
        cc[0].take(rounds[0], correct=20, prediction=100)
        cc[1].take(rounds[0], correct=15, prediction=8)      # |8-7| = 1
        cc[2].take(rounds[0], correct=15, prediction=20)     # |20-7| = 13
        for correct in (5, 10, 8):                            # best of three attempts counts
            cc[3].take(rounds[0], correct=correct, prediction=7)
        fourth = cc[3].take(rounds[0], correct=20, prediction=7)
        assert fourth.status_code == 409 and fourth.json()["code"] == "attempts_exhausted"
        nd[0].take(rounds[0], correct=12, prediction=7)
        nd[1].take(rounds[0], correct=12, prediction=6)       # same score, the prediction decides
        nd[2].take(rounds[0], correct=18, prediction=1)

        assert org.post(f"/api/admin/rounds/{rounds[0]}/close").status_code == 202
        week1 = _final_winners(client, rounds[0])
        assert week1 == [
            ("cong_chuc", "Công chức A", 1, "Giải Nhất"),
            ("cong_chuc", "Công chức B", 2, "Giải Nhì"),
            ("cong_chuc", "Công chức C", 3, "Giải Nhì"),
            ("cong_chuc", "Công chức D", 4, "Giải Ba"),
            ("nhan_dan", "Người dân C", 1, "Giải Nhất"),
            ("nhan_dan", "Người dân A", 2, "Giải Nhì"),
            ("nhan_dan", "Người dân B", 3, "Giải Nhì"),
        ]

        # Week 2 opens early (an organiser may move a scheduled round). Everyone who won a
        # prize in week 1 already has one for this contest; a newcomer takes the first prize.
        moved = client.patch(f"/api/admin/rounds/{rounds[1]}", headers=org.headers,
                             json={"opens_at": _iso(datetime.now(UTC) - timedelta(minutes=1))})
        assert moved.status_code == 200, moved.text
        eventually(lambda: client.get(f"/api/contests/{slug}").json()["rounds"][1]["status"] == "open")
        newcomer = Entrant(client, "Công chức E", next(phones), "cong_chuc", unit["id"])
        cc[0].take(rounds[1], correct=20, prediction=2)
        newcomer.take(rounds[1], correct=3, prediction=2)
        assert org.post(f"/api/admin/rounds/{rounds[1]}/close").status_code == 202
        assert _final_winners(client, rounds[1]) == [("cong_chuc", "Công chức E", 2, "Giải Nhất")]

        # Reports: the unit's participation, as JSON, CSV and XLSX.
        report = client.get("/api/reports/participation", params={"contest": contest_id, "round": rounds[0]},
                            headers=org.headers)
        assert report.status_code == 200, report.text
        row = next(u for u in report.json()["units"] if u["unit_id"] == unit["id"])
        assert (row["participants"], row["attempts"]) == (7, 9)
        assert report.json()["all_correct"] == 1
        as_csv = client.get("/api/reports/participation", params={"contest": contest_id, "round": rounds[0]},
                            headers={**org.headers, "Accept": "text/csv"})
        lines = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
        assert lines[0][0] == "Mã đơn vị" and any(r[0] == unit["code"] for r in lines[1:])
        as_xlsx = client.get("/api/reports/participation",
                             params={"contest": contest_id, "round": rounds[0], "format": "xlsx"}, headers=org.headers)
        book = openpyxl.load_workbook(io.BytesIO(as_xlsx.content), read_only=True)
        assert "Đơn vị" in book.sheetnames
