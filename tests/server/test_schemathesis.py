"""Property-based checks of the API against its own OpenAPI document, with Schemathesis.

Every operation of ``/openapi.json`` is called in process (ASGI) with
generated input, signed in as the tenant administrator, and every answer must
not be a server error and must match the response schema the document gives.
Each operation runs twice: with generated path ids (mostly unknown ones) and
with the ids of seeded resources, so the routes get past their lookups.
Examples are few per operation so the whole run stays within about a minute.

Schemathesis' own pytest plugin (``from_fixture(...).parametrize()``) fails
under this pytest (it sets ``request.node._nodeid``), so the operations are
driven here with their Hypothesis strategies.

SQLite only: the point is the contract of the routes, not the backend.
"""

from __future__ import annotations

from typing import Any, Final

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.server.api_support import (
    TENANT,
    bearer,
    path_kinds,
    running_app,
    seed_branch_resources,
    seed_tenant_resources,
)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

MAX_EXAMPLES: Final = 12
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Both end the administrator's session (logout revokes it; a password change
# ends every session), which would turn every later case into a 401.
# The sync stream is an endless text/event-stream with no schema to check (its
# messages are tested in test_sync_stream.py).
EXCLUDED: Final = frozenset({"/api/v1/auth/logout", "/api/v1/auth/password", "/api/v1/sync/stream"})
PROBES: Final = "/api/v1/_probe"  # test-only routes of running_app, one of them fails on purpose


def _fuzz(operation: Any, headers: dict[str, str], **fixed: Any) -> str | None:
    """None when every example passes, else the failure with its reproduction."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(**fixed))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except (AssertionError, FailureGroup) as exc:
        return f"{operation.label}: {exc}"
    except Exception as exc:  # the in-process client lets a route's exception through
        return f"{operation.label}: server error {exc!r}"
    return None


def test_api_honours_its_openapi_document(db_url: str) -> None:
    with running_app(db_url) as world:
        with world.session() as session:
            ids = {
                **seed_tenant_resources(session, world.tenant_id, world.branch_id, "t"),
                **seed_branch_resources(session, world.tenant_id, world.branch_id, "x"),
            }
        headers = bearer(world.client, TENANT, "admin")
        schema = schemathesis.openapi.from_asgi("/openapi.json", world.app)
        failures: list[str] = []
        operations = 0
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            if operation.path in EXCLUDED or operation.path.startswith(PROBES):
                continue
            operations += 1
            failures.append(_fuzz(operation, headers) or "")
            kinds = path_kinds(operation.path)
            if kinds and all(kind in ids for kind in kinds.values()):
                known = {name: str(ids[kind]) for name, kind in kinds.items()}
                failures.append(_fuzz(operation, headers, path_parameters=known) or "")
        assert operations
        failures = [f for f in failures if f]
        assert not failures, "\n\n".join(failures)
