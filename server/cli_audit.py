"""The ``audit`` command: ``audit verify [--tenant SLUG]`` checks the hash chains.

Exit status 0 when every chain is intact, 1 when one is broken (each broken
tenant is named with the first seq that cannot be trusted and why), 2 when the
command cannot run.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.cli import Subparsers

EXIT_BROKEN = 1


def _verify(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from server.cli_admin import open_database, service_errors
    from server.db import session_scope
    from server.models import Tenant
    from server.services import audit, tenants

    with open_database(args, read_only=True) as factory, session_scope(factory) as session:
        tenant_id = None
        if args.tenant is not None:
            with service_errors():
                tenant_id = tenants.tenant_by_slug(session, args.tenant).id
        reports = audit.verify(session, tenant_id)
        slugs = {row.id: row.slug for row in session.execute(select(Tenant.id, Tenant.slug))}
        rows = audit.count_rows(session, tenant_id)
    broken = [(tid, report) for tid, report in reports if not report.ok]
    for tid, report in broken:
        seq = report.first_broken_seq
        reason = report.reason.removeprefix(f"seq {seq}: ")
        print(f"audit chain broken: tenant {slugs.get(tid, tid)} at seq {seq}: {reason}")
    if broken:
        return EXIT_BROKEN
    where = f" (tenant {args.tenant})" if args.tenant else f" ({len(reports)} tenants)"
    print(f"audit chain intact: {rows} rows{where}")
    return 0


def register_audit(subparsers: Subparsers) -> None:
    from server.cli import add_command, add_database_option

    parser = subparsers.add_parser(
        "audit", help="work with the audit log", description="Work with the audit log."
    )
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True
    verify = add_command(
        actions,
        "verify",
        _verify,
        help="check that no audit row was edited, deleted or reordered",
    )
    verify.add_argument("--tenant", metavar="SLUG", help="check only this tenant")
    add_database_option(verify)
