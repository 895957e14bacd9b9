"""Sync routes of the consoles: push the outbox, pull the log, lease ticket numbers.

The schemas are the shared wire protocol (:mod:`sync.protocol`); the work is
in ``server.services.sync_*``. A push body is read and size-checked here
before it is parsed (413 for too many events or bytes), so an oversized batch
costs no parsing and its events are never half-applied. The live stream is
:mod:`server.api.sync_stream`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from server.api.deps import Principal, PrincipalDep, SessionDep
from server.api.params import MAX_SQL_INT
from server.api.problems import PROBLEM_RESPONSES, Problem
from server.api.queue_support import not_found_is_404
from server.api.sync_support import ReaderCall, SyncCall, open_sync_call
from server.services import sync_leases, sync_pull, sync_push
from sync.protocol import (
    DEFAULT_PULL_LIMIT,
    MAX_PULL_LIMIT,
    MAX_PUSH_BYTES,
    MAX_PUSH_EVENTS,
    LeaseRequest,
    LeaseResponse,
    PullResponse,
    PushRequest,
    PushResponse,
)

router = APIRouter(tags=["sync"])

_TOO_LARGE: Final[dict[int | str, dict[str, Any]]] = {
    413: {**PROBLEM_RESPONSES[422], "description": "Too many events or bytes"}
}
_PUSH_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PushRequest.model_json_schema()}},
    }
}


@router.post(
    "/sync/push", response_model=PushResponse, responses=_TOO_LARGE, openapi_extra=_PUSH_BODY
)
async def push(request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
    """Store a device's pending events in order; each gets accepted, rejected or duplicate.

    A gap in ``device_seq`` answers 409 with ``expected_device_seq``; a malformed
    event 422 naming its index and field; in both cases nothing is applied.
    """
    body = _push_request(await _read_limited(request))
    answer = await run_in_threadpool(_push, request, session, principal, body)
    # Serialized once, as built: through response_model the answer of a batch of 500
    # was dumped to dicts, validated again and serialized (about 2 ms a push).
    return Response(answer.model_dump_json(), media_type="application/json")


def _push(
    request: Request, session: Session, principal: Principal, body: PushRequest
) -> PushResponse:
    call = open_sync_call(request, session, principal, body.branch_id, body.device_id)
    assert call.device is not None
    try:
        events = sync_push.parse_batch(body.events, call.device.id)
        outcome = sync_push.push(
            session,
            branch=call.branch,
            device=call.device,
            events=events,
            actor=principal.actor(request),
        )
    except sync_push.MalformedBatch as exc:
        errors = [{"field": ".".join(["events", str(exc.index), *filter(None, [exc.field])]),
                   "message": exc.message}]  # fmt: skip
        raise Problem(
            422, str(exc), slug="malformed-event", index=exc.index, field=exc.field,
            event_id=exc.event_id, errors=errors,
        ) from None  # fmt: skip
    except sync_push.DeviceSeqGap as exc:
        raise Problem(
            409, str(exc), slug="device-seq-gap", expected_device_seq=exc.expected
        ) from None
    return outcome.response


async def _read_limited(request: Request) -> bytes:
    """The request body, refused with 413 past :data:`MAX_PUSH_BYTES` (declared or actual)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PUSH_BYTES:
        raise _too_large(f"The push body has {int(declared)} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_PUSH_BYTES:
            raise _too_large("The push body is larger")
        chunks.append(chunk)
    return b"".join(chunks)


def _push_request(raw: bytes) -> PushRequest:
    """Parse the body; a batch of too many events is 413 before its events are looked at."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": f"not valid JSON ({exc})", "type": "json_invalid"}]
        ) from None
    events = data.get("events") if isinstance(data, dict) else None
    if isinstance(events, list) and len(events) > MAX_PUSH_EVENTS:
        raise Problem(
            413,
            f"A push carries at most {MAX_PUSH_EVENTS} events; this one has {len(events)}. "
            "Send them in smaller batches.",
            slug="push-too-large",
        )
    try:
        return PushRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_context=False)]
        ) from None


def _too_large(what: str) -> Problem:
    return Problem(
        413,
        f"{what}; a push may carry at most {MAX_PUSH_BYTES} bytes. Send smaller batches.",
        slug="push-too-large",
    )


@router.get("/sync/pull", response_model=PullResponse)
def pull(
    call: ReaderCall,
    session: SessionDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_SQL_INT, description="The cursor of the last pull")
    ] = 0,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_SQL_INT,
            description=f"At most this many events (capped at {MAX_PULL_LIMIT})",
        ),
    ] = DEFAULT_PULL_LIMIT,
    ref_version: Annotated[
        str | None, Query(max_length=128, description="The reference data version held")
    ] = None,
    state: Annotated[
        bool,
        Query(
            description="A new device's first pull (after=0): also send the branch's state "
            "when the log is longer than this page, so the device need not fold it all"
        ),
    ] = False,
) -> Response:
    """Accepted events after ``after`` by ``server_seq``; reference data when it changed."""
    page = sync_pull.read_events(session, call.branch.id, after, min(limit, MAX_PULL_LIMIT))
    reference = sync_pull.reference_data(session, call.branch, call.principal.grants, _slot(call))
    changed = None if reference.version == ref_version else reference
    folded = None
    if state and after == 0 and page.has_more:
        with not_found_is_404():
            folded = sync_pull.branch_state(session, call.branch)
    # Written by hand around the stored event JSON (see EventPage); the shape is
    # PullResponse's, which documents it and which the tests parse it with.
    body = (
        f'{{"events":{page.events_array()},"cursor":{page.cursor},'
        f'"has_more":{"true" if page.has_more else "false"},'
        f'"last_device_seq":{call.device.last_device_seq if call.device else 0},'
        f'"reference":{changed.model_dump_json() if changed else "null"},'
        f'"state":{folded.model_dump_json() if folded else "null"}}}'
    )
    return Response(body, media_type="application/json")


@router.post("/sync/leases", response_model=LeaseResponse)
def leases(
    body: LeaseRequest, request: Request, principal: PrincipalDep, session: SessionDep
) -> LeaseResponse:
    """Top up the device's blocks of ticket numbers for offline issuing, per service and day."""
    call = open_sync_call(request, session, principal, body.branch_id, body.device_id)
    assert call.device is not None
    with not_found_is_404():
        blocks = sync_leases.lease_blocks(
            session,
            branch=call.branch,
            device=call.device,
            day=body.business_day or sync_leases.branch_today(call.branch),
            service_ids=body.service_ids,
            have=body.have,
            min_remaining=body.min_remaining,
        )
    return LeaseResponse(leases=blocks, device_slot=call.device.slot)


def _slot(call: SyncCall) -> int | None:
    return call.device.slot if call.device else None
