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


def test_every_number_a_client_sends_is_bounded() -> None:
    # PostgreSQL refuses integers past int4/int8 (`offset=2^63`, `max_attempts=2^40`
    # came back as 500s): each number a route takes, in its path, query or body, has a
    # minimum and a maximum the database can hold, so the client hears which field.
    from fastapi import FastAPI

    from services.notify import api as notify_api
    from services.quiz import api as quiz_api
    from services.registration import api as registration_api
    from services.scoring import api as scoring_api

    unbounded: list[str] = []
    for api in (registration_api, quiz_api, scoring_api, notify_api):
        app = FastAPI()
        app.include_router(api.router)
        spec = app.openapi()
        components = spec.get("components", {}).get("schemas", {})
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                where = f"{method.upper()} {path}"
                for parameter in operation.get("parameters", []):
                    unbounded += _unbounded_numbers(parameter["schema"], f"{where} {parameter['name']}", components)
                for content in operation.get("requestBody", {}).get("content", {}).values():
                    unbounded += _unbounded_numbers(content["schema"], f"{where} body", components)
    assert unbounded == []


def _unbounded_numbers(schema: dict, where: str, components: dict, seen: frozenset[str] = frozenset()) -> list[str]:
    if ref := schema.get("$ref"):
        name = ref.rsplit("/", 1)[-1]
        return [] if name in seen else _unbounded_numbers(components[name], where, components, seen | {name})
    found: list[str] = []
    if schema.get("type") in ("integer", "number"):
        has_min = "minimum" in schema or "exclusiveMinimum" in schema
        has_max = "maximum" in schema or "exclusiveMaximum" in schema
        if not (has_min and has_max):
            found.append(where)
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            found += _unbounded_numbers(option, where, components, seen)
    for name, prop in schema.get("properties", {}).items():
        found += _unbounded_numbers(prop, f"{where}.{name}", components, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _unbounded_numbers(schema[key], f"{where}[]", components, seen)
    return found
