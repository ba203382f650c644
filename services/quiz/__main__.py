"""`python -m services.quiz migrate` · `python -m services.quiz seed-demo`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.core.db import create_database_if_missing, create_pool, migrate_service
from services.core.logs import configure_logging
from services.core.tables import read_table
from services.quiz import domain, store
from services.quiz.domain import Prediction, Prize
from services.quiz.settings import QuizSettings

SEED_QUESTIONS = Path(__file__).resolve().parent / "seed" / "questions.csv"
DEMO_SLUG = "demo"
DEMO_TITLE = "Hội thi trực tuyến tìm hiểu cải cách hành chính và đời sống đô thị"
DEMO_RULES = (
    "Mỗi vòng thi kéo dài một tuần. Mỗi lượt thi gồm 20 câu hỏi trắc nghiệm được chọn ngẫu nhiên "
    "từ ngân hàng câu hỏi, làm trong 15 phút; câu hỏi có nhiều đáp án đúng chỉ được tính khi chọn đủ "
    "và đúng tất cả các đáp án. Mỗi người được thi tối đa 3 lượt trong một vòng, lượt có kết quả cao "
    "nhất được tính (nếu bằng nhau, tính lượt sớm hơn). Cuối bài thi, người dự thi dự đoán số người "
    "tham gia vòng thi. Khi nhiều người bằng nhau, thứ hạng được xét lần lượt theo: số câu trả lời "
    "đúng nhiều hơn, dự đoán gần với số người tham gia thực tế hơn, thời gian làm bài ngắn hơn, "
    "thời điểm nộp bài sớm hơn."
)


async def seed_demo(settings: QuizSettings) -> str:
    """Create the demo contest, its bank and an open first round, or leave them as they are."""
    pool = await create_pool(settings.database_url, "quiz", min_size=1, max_size=2)
    try:
        await store.create_contest(
            pool, slug=DEMO_SLUG, title=DEMO_TITLE, rules=DEMO_RULES, tie_break=domain.DEFAULT_TIE_BREAK,
            prize_scope="round",
        )
        contest = await store.contest_by_slug(pool, DEMO_SLUG)
        assert contest is not None
        # The bank goes in before the round exists, so the round's snapshot is never empty.
        # One import is all or nothing, so a bank that has questions is the whole file.
        imported = 0
        if await store.question_count(pool, contest.id) == 0:
            imported = await store.import_questions(pool, contest.id, read_table(SEED_QUESTIONS.read_bytes()).records())
        if not (await store.rounds_of(pool, [contest.id]))[contest.id]:
            now = datetime.now(UTC).replace(microsecond=0)
            try:
                await store.create_round(
                    pool, contest.id, number=1, title="Tuần 1", opens_at=now - timedelta(days=1),
                    closes_at=now + timedelta(days=7), question_count=20, time_limit_s=900, grace_s=30,
                    max_attempts=3,
                    prediction=Prediction("Theo bạn, sẽ có bao nhiêu người tham gia tuần thi này?", "participants"),
                    prizes=[Prize("Giải Nhất", 1), Prize("Giải Nhì", 2), Prize("Giải Ba", 3),
                            Prize("Giải Khuyến khích", 10)],
                )
            except store.DuplicateRoundNumber:
                pass  # a second seed-demo running at the same moment made it
        return f"demo contest {contest.id}: {imported} question(s) imported"
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.quiz")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or update the quiz schema")
    sub.add_parser("seed-demo", help="the demo contest with an open round (not in production)")
    args = parser.parse_args()
    settings = QuizSettings()
    configure_logging("quiz", settings.log_level)
    if args.command == "migrate":
        async def migrate() -> list[str]:
            await create_database_if_missing(settings.database_url)
            return await migrate_service(settings.database_url, "quiz")

        applied = asyncio.run(migrate())
        print(f"quiz: {len(applied)} migration(s) applied", file=sys.stderr)
    elif args.command == "seed-demo":
        if settings.is_production:
            print("seed-demo refuses to run with APP_ENV=production", file=sys.stderr)
            sys.exit(2)
        print(asyncio.run(seed_demo(settings)), file=sys.stderr)


if __name__ == "__main__":
    main()
