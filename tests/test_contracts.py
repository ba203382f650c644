"""Contracts between the services that no single service's tests can see."""

from services.core.events import SUBSCRIPTIONS
from services.notify import worker as notify_worker
from services.scoring import worker as scoring_worker


def test_each_worker_handles_exactly_the_events_its_queue_is_bound_to() -> None:
    # A handler for an unbound event would never run; a bound event without a handler
    # would go to the dead-letter queue.
    scoring = scoring_worker.ScoringConsumer(pool=None, boards=None).handlers()  # type: ignore[arg-type]
    notify = notify_worker.handlers(pool=None, sender=None)  # type: ignore[arg-type]
    assert sorted(scoring) == sorted(SUBSCRIPTIONS["scoring"])
    assert sorted(notify) == sorted(SUBSCRIPTIONS["notify"])
