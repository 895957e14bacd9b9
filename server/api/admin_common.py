"""Shared pieces of the administration routes: service errors as problems, paging, refusals.

The service layer raises :class:`~server.services.errors.NotFound` and
:class:`~server.services.errors.Conflict`; routes run service calls inside
:func:`service_errors` so those become 404 and 409 problem documents.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidValue
from server.api.deps import Principal, PrincipalDep, SessionDep, require
from server.api.problems import Problem
from server.models import Branch
from server.services import audit
from server.services.errors import Conflict, NotFound

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 200


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn the service layer's NotFound into a 404 and Conflict into a 409 problem."""
    try:
        yield
    except NotFound as exc:
        raise Problem(404, _sentence(exc)) from None
    except Conflict as exc:
        raise Problem(409, _sentence(exc), slug="conflict") from None


@contextmanager
def field_names(**renamed: str) -> Iterator[None]:
    """Report a core InvalidValue under the request's field name (service_code -> code)."""
    try:
        yield
    except InvalidValue as exc:
        if exc.field not in renamed:
            raise
        raise InvalidValue(renamed[exc.field], exc.message) from None


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def not_found(kind: str, object_id: object) -> Problem:
    """The 404 for an id that is unknown or belongs to another tenant (indistinguishable)."""
    return Problem(404, f"No {kind} {object_id}.")


def refuse(
    session: Session, request: Request, principal: Principal, permission: str, detail: str
) -> Problem:
    """A 403 for a refusal decided inside a route, audited like those of ``require``."""
    audit.record_as(
        session,
        principal.actor(request),
        tenant_id=principal.tenant_id,
        action="authz.denied",
        result="denied",
        reason=permission,
        details={"method": request.method, "path": request.url.path},
    )
    session.commit()
    return Problem(403, detail, slug="forbidden")


def require_at_branch(permission: str) -> Callable[..., Principal]:
    """Like ``require(permission, branch_param="branch_id")``, after finding the branch.

    The branch is looked up in the caller's tenant first, so another tenant's
    branch is a 404 for everyone rather than a 403 for some.
    """
    check = require(permission, branch_param="branch_id")

    def dependency(
        branch_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
    ) -> Principal:
        found = session.scalar(
            select(Branch.id).where(Branch.id == branch_id, Branch.tenant_id == principal.tenant_id)
        )
        if found is None:
            raise not_found("branch", branch_id)
        return check(request, principal, session)

    dependency.__name__ = f"require_{permission.replace('.', '_')}_at_branch"
    return dependency
