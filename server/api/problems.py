"""Errors as RFC 9457 problem+json, and the handlers that turn exceptions into them.

Every error a client sees has ``type``, ``title``, ``status`` and ``detail``;
validation errors add ``errors`` naming each bad field. Domain refusals carry the
core's own sentence ("A042 is being served at Counter 3; it cannot be called").
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import DomainError, InvalidValue, MalformedEvent, UnknownTicket

MEDIA_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    503: "Unavailable",
}


class Problem(Exception):  # noqa: N818 - it is what RFC 9457 calls it
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _TITLES.get(status, "error").lower().replace(" ", "-")
        self.title = title or _TITLES.get(status, "Error")
        self.headers = headers
        self.extra = extra


def problem_response(problem: Problem) -> JSONResponse:
    body = {
        "type": f"/problems/{problem.slug}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        **problem.extra,
    }
    return JSONResponse(
        body, status_code=problem.status, media_type=MEDIA_TYPE, headers=problem.headers
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        errors.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", ""))})
    return errors


def install(app: FastAPI) -> None:
    """Register the exception handlers that answer in problem+json."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(Problem(422, detail, slug="validation", errors=errors))

    @app.exception_handler(InvalidValue)
    async def _invalid(_: Request, exc: InvalidValue) -> JSONResponse:
        errors = [{"field": exc.field, "message": exc.message}]
        return problem_response(Problem(422, str(exc), slug="validation", errors=errors))

    @app.exception_handler(MalformedEvent)
    async def _malformed(_: Request, exc: MalformedEvent) -> JSONResponse:
        return problem_response(
            Problem(422, str(exc), slug="malformed-event", field=exc.field, event_id=exc.event_id)
        )

    @app.exception_handler(UnknownTicket)
    async def _unknown(_: Request, exc: UnknownTicket) -> JSONResponse:
        return problem_response(Problem(404, str(exc)))

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem_response(Problem(409, str(exc), slug="domain-conflict"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(Problem(exc.status_code, str(exc.detail), headers=headers))


class ProblemDocument(BaseModel):
    """The body of every error response (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


def _documented(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": ProblemDocument,
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDocument"}}},
    }


# Documented on every API route, so clients (and schema checks) know what errors look like.
# FastAPI adds its own 422 only when a route documents none, so this one replaces it.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _documented("Not authenticated"),
    403: _documented("Not allowed"),
    404: _documented("Not found"),
    409: _documented("Refused by the current state"),
    422: _documented("Invalid input; `errors` names each field"),
}
