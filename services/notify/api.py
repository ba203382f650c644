"""Routes of notify: the organisers' delivery log and replay."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.core.http import Db, Organiser
from services.notify import domain, store

router = APIRouter(tags=["notifications"])


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    channel: str
    recipient: str
    template: str
    status: domain.DeliveryStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class ReplayIn(BaseModel):
    ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)


class ReplayOut(BaseModel):
    requeued: int


@router.get("/api/admin/notifications")
async def list_notifications(
    who: Organiser,
    db: Db,
    status: domain.DeliveryStatus | None = None,
    recipient: Annotated[str | None, Query(min_length=1, max_length=320)] = None,
    channel: domain.Channel | None = None,
    template: Annotated[str | None, Query(min_length=1, max_length=100, pattern=r"^[a-z_]+$")] = None,
    event_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[DeliveryOut]:
    """The delivery log, newest first; every filter given must match (`template`: winner,
    signup, code, nudge, organiser_summary)."""
    records = await store.list_deliveries(
        db,
        status=status,
        recipient=recipient.strip() if recipient else None,
        channel=channel,
        template=template,
        event_id=event_id,
        limit=limit,
        offset=offset,
    )
    return [DeliveryOut.model_validate(r, from_attributes=True) for r in records]


@router.post("/api/admin/notifications/replay", status_code=202)
async def replay_notifications(body: ReplayIn, who: Organiser, db: Db) -> ReplayOut:
    """Put `failed` and `dead` deliveries back in the queue; the worker sends them within
    seconds. Other ids (sent, queued, unknown) are left as they are and not counted."""
    requeued = await store.requeue(db, list(dict.fromkeys(body.ids)), domain.REPLAYABLE_STATUSES)
    return ReplayOut(requeued=requeued)
