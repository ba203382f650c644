"""Issue 2's story through the gateway, every hop real: a participant registers, logs in,
takes the demo round, submits and sees the scored result and rank; the organiser closes
the round, it turns final, the winners are named and announced, and each winner's email
reaches the SMTP server and shows as `sent` in the delivery log."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.e2e.support import answer_key_by_text, bearer, eventually

pytestmark = pytest.mark.e2e

def register_and_login(client: httpx.Client, unit_id: str, name: str, phone: str, email: str) -> str:
    created = client.post(
        "/api/auth/register",
        json={"full_name": name, "phone": phone, "email": email, "unit_id": unit_id, "password": "mat-khau-2026"},
    )
    assert created.status_code == 201, created.text
    login = client.post("/api/auth/login", json={"login": phone, "password": "mat-khau-2026"})
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


def test_the_whole_contest_story(stack: Stack) -> None:
    key = answer_key_by_text()
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        contest = client.get("/api/contests/demo").json()
        round_ = next(r for r in contest["rounds"] if r["status"] == "open")
        units = client.get("/api/units", params={"q": "phuong le chan"}).json()
        assert [u["name"] for u in units] == ["Phường Lê Chân"]
        unit_id = units[0]["id"]

        people = {
            "best": ("Nguyễn Thị Ánh", "0912345671", "anh@example.vn", 1.0),
            "middle": ("Trần Văn Bình", "+84 912 345 672", "binh@example.vn", 0.5),
            "last": ("Lê Hoàng Cường", "84912345673", "cuong@example.vn", 0.0),
        }
        tokens = {who: register_and_login(client, unit_id, *p[:3]) for who, p in people.items()}

        # Admin routes refuse participants and anonymous callers alike.
        assert client.post(f"/api/admin/rounds/{round_['id']}/close", headers=bearer(tokens["last"])).status_code == 403
        assert client.post(f"/api/admin/rounds/{round_['id']}/close").status_code == 401

        attempts: dict[str, str] = {}
        for who, (_, _, _, share) in people.items():
            started = client.post(f"/api/rounds/{round_['id']}/attempts", headers=bearer(tokens[who]))
            assert started.status_code == 201, started.text
            attempt = started.json()
            attempts[who] = attempt["attempt_id"]
            questions = attempt["questions"]
            assert len(questions) == 20
            right = int(len(questions) * share)
            answers = {}
            for i, q in enumerate(questions):
                correct = key[q["text"]]
                wrong = [o["id"] for o in q["options"] if o["id"] not in correct][:1]
                answers[q["id"]] = correct if i < right else wrong
            # Autosave, then a reload resumes the same attempt with the saved answers.
            first_two = dict(list(answers.items())[:2])
            saved = client.put(f"/api/attempts/{attempt['attempt_id']}/answers", json={"answers": first_two},
                               headers=bearer(tokens[who]))
            assert saved.status_code == 200, saved.text
            resumed = client.post(f"/api/rounds/{round_['id']}/attempts", headers=bearer(tokens[who])).json()
            assert resumed["attempt_id"] == attempt["attempt_id"] and resumed["answers"] == first_two
            submitted = client.post(f"/api/attempts/{attempt['attempt_id']}/submit",
                                    json={"answers": answers, "prediction": 3}, headers=bearer(tokens[who]))
            assert submitted.status_code == 202, submitted.text

        # A second submit is refused, and another participant's attempt does not exist for you.
        again = client.post(f"/api/attempts/{attempts['best']}/submit", json={"answers": {}, "prediction": 1},
                            headers=bearer(tokens["best"]))
        assert again.status_code == 409
        assert client.put(f"/api/attempts/{attempts['best']}/answers", json={"answers": {}},
                          headers=bearer(tokens["last"])).status_code == 404

        def scored(who: str) -> dict[str, Any] | None:
            body = client.get(f"/api/attempts/{attempts[who]}/result", headers=bearer(tokens[who])).json()
            return body if body["status"] == "scored" else None

        best = eventually(lambda: scored("best"))
        assert (best["correct"], best["total"], best["rank"]) == (20, 20, 1)
        assert eventually(lambda: scored("middle"))["correct"] == 10
        assert eventually(lambda: scored("last"))["rank"] == 3

        board = client.get(f"/api/rounds/{round_['id']}/leaderboard", params={"limit": 10}).json()["entries"]
        assert [e["name"] for e in board] == ["Nguyễn Thị Ánh", "Trần Văn Bình", "Lê Hoàng Cường"]
        assert [e["rank"] for e in board] == [1, 2, 3] and board[0]["unit"] == "Phường Lê Chân"
        me = client.get(f"/api/rounds/{round_['id']}/leaderboard/me", headers=bearer(tokens["middle"])).json()
        assert me["rank"] == 2

        # The organiser closes the round; with every attempt submitted it turns final.
        admin = client.post("/api/auth/login", json={"login": "admin", "password": "admin"}).json()["access_token"]
        closed = client.post(f"/api/admin/rounds/{round_['id']}/close", headers=bearer(admin))
        assert closed.status_code == 202, closed.text

        def status() -> str | None:
            rounds = client.get("/api/contests/demo").json()["rounds"]
            found = next(r for r in rounds if r["id"] == round_["id"])["status"]
            return found if found == "final" else None

        eventually(status)
        winners = eventually(lambda: (w := client.get(f"/api/rounds/{round_['id']}/winners").json())["winners"] and w)
        assert [(w["rank"], w["name"], w["prize"]) for w in winners["winners"]] == [
            (1, "Nguyễn Thị Ánh", "Giải Nhất"),
            (2, "Trần Văn Bình", "Giải Nhì"),
            (3, "Lê Hoàng Cường", "Giải Nhì"),
        ]
        started_late = client.post(f"/api/rounds/{round_['id']}/attempts", headers=bearer(tokens["best"]))
        assert started_late.status_code == 409

        announced = client.post(f"/api/admin/rounds/{round_['id']}/announce", headers=bearer(admin))
        assert announced.status_code == 202, announced.text
        assert client.post(f"/api/admin/rounds/{round_['id']}/announce", headers=bearer(admin)).status_code == 409

        def winner_letters() -> dict[str, Any]:
            # Winners also got a sign-up confirmation, organisers a round summary: the prize
            # letter is the one that congratulates.
            letters = {}
            for message in stack.mailbox.messages:
                if str(message["Subject"]).startswith("Chúc mừng"):
                    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
                    letters.setdefault(str(message["To"]), []).append(text)
            return letters

        by_recipient = eventually(lambda: (letters := winner_letters()) and len(letters) == 3 and letters)
        assert set(by_recipient) == {"anh@example.vn", "binh@example.vn", "cuong@example.vn"}
        text = by_recipient["anh@example.vn"][0]
        assert "Nguyễn Thị Ánh" in text and "Giải Nhất" in text

        def sent_log() -> list[dict[str, Any]] | None:
            rows = client.get("/api/admin/notifications", params={"status": "sent"}, headers=bearer(admin)).json()
            rows = [r for r in rows if r["template"] == "winner" and r["channel"] == "email"]
            return rows if len(rows) == 3 else None

        log = eventually(sent_log)
        assert {r["recipient"] for r in log} == set(by_recipient)
        assert all(r["channel"] == "email" and r["attempts"] == 1 for r in log)
        time.sleep(1)
        assert all(len(letters) == 1 for letters in winner_letters().values())  # nothing doubled


def test_bad_input_is_refused_with_problem_json(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        bad = client.post("/api/auth/register", json={"full_name": "A", "phone": "12345", "password": "x"})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        fields = {e["field"] for e in bad.json()["errors"]}
        assert "phone" in fields or "unit_id" in fields
        unknown = client.get(f"/api/attempts/{uuid.uuid4()}", headers={"Authorization": "Bearer nope"})
        assert unknown.status_code == 401
        assert client.get("/api/nowhere").status_code == 404
