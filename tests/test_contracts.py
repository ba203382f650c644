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


def test_every_route_and_dependency_is_async() -> None:
    # FastAPI runs a plain `def` route or dependency in a worker thread: a thread hop on
    # every request. The profiles of `make bench` found three such dependencies costing
    # 6–9 % of the hot paths' CPU (issue 7); this keeps new ones out.
    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute

    from services.notify import api as notify_api
    from services.quiz import api as quiz_api
    from services.registration import api as registration_api
    from services.scoring import api as scoring_api

    def sync_calls(dependant: Dependant) -> list[str]:
        found = [] if dependant.call is None or _is_async(dependant.call) else [dependant.call.__qualname__]
        return found + [name for sub in dependant.dependencies for name in sync_calls(sub)]

    offenders = {
        f"{route.methods} {route.path}": calls
        for api in (registration_api, quiz_api, scoring_api, notify_api)
        for route in api.router.routes
        if isinstance(route, APIRoute) and (calls := sync_calls(route.dependant))
    }
    assert offenders == {}


def _is_async(call: object) -> bool:
    import inspect

    # A dependency may be an instance whose __call__ is the coroutine function.
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)
