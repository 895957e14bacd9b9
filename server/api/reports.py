"""``/reports`` routes: KPI reports of a branch, and of every branch of the tenant.

``/reports/branches`` needs ``reports.tenant``; ``/reports/branches/{id}`` needs
``reports.branch`` at that branch (or tenant-wide). Days are each branch's local
days; a range that ends before it starts is a 422 naming ``to``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.kpi import Distribution, KpiReport
from core.kpi_rows import Filters, GroupKey
from server.api.admin_common import not_found, require_at_branch
from server.api.deps import Principal, PrincipalDep, SessionDep, require
from server.db import session_scope
from server.models import Branch, Counter, Service, User
from server.services.kpi_facts import BranchRef, catch_up_behind
from server.services.reports import kpi_reports

router = APIRouter(prefix="/reports", tags=["reports"])

TenantReader = Annotated[Principal, Depends(require("reports.tenant"))]
BranchReader = Annotated[Principal, Depends(require_at_branch("reports.branch"))]


class DistributionOut(BaseModel):
    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, d: Distribution) -> DistributionOut:
        return cls(count=d.count, mean=d.mean, p50=d.p50, p90=d.p90, p95=d.p95, max=d.max)


class HourCount(BaseModel):
    hour: datetime
    served: int


class KpisOut(BaseModel):
    issued: int
    called: int
    served: int
    no_show: int
    cancelled: int
    abandoned: int
    transfers: int
    recalls: int
    wait_s: DistributionOut
    service_s: DistributionOut
    sla_eligible: int
    sla_met: int
    sla_attainment: float | None
    no_show_rate: float | None
    abandonment_rate: float | None
    pause_seconds_by_reason: dict[str, float]
    served_per_local_hour: list[HourCount]

    @classmethod
    def of(cls, r: KpiReport) -> KpisOut:
        return cls(
            issued=r.issued,
            called=r.called,
            served=r.served,
            no_show=r.no_show,
            cancelled=r.cancelled,
            abandoned=r.abandoned,
            transfers=r.transfers,
            recalls=r.recalls,
            wait_s=DistributionOut.of(r.wait),
            service_s=DistributionOut.of(r.service),
            sla_eligible=r.sla_eligible,
            sla_met=r.sla_met,
            sla_attainment=r.sla_attainment,
            no_show_rate=r.no_show_rate,
            abandonment_rate=r.abandonment_rate,
            pause_seconds_by_reason=r.pause_seconds_by_reason,
            served_per_local_hour=[
                HourCount(hour=h, served=n) for h, n in r.served_per_local_hour.items()
            ],
        )


class BranchKpis(BaseModel):
    branch_id: uuid.UUID
    code: str
    name: str
    time_zone: str
    kpis: KpisOut


class GroupKpis(BaseModel):
    key: str  # an ISO hour or day, or a service, counter or staff id
    kpis: KpisOut


class BranchReportOut(BaseModel):
    branch_id: uuid.UUID
    group_by: str | None
    groups: list[GroupKpis]


def _filters(
    principal: PrincipalDep,
    session: SessionDep,
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
    service_id: uuid.UUID | None = None,
    counter_id: uuid.UUID | None = None,
    staff_id: uuid.UUID | None = None,
) -> Filters:
    """The filters, each id known in the caller's tenant (another tenant's id is a 404)."""
    for kind, model, wanted in (
        ("service", Service, service_id),
        ("counter", Counter, counter_id),
        ("user", User, staff_id),
    ):
        if wanted is not None and not session.scalar(
            select(model.id).where(model.id == wanted, model.tenant_id == principal.tenant_id)
        ):
            raise not_found(kind, wanted)
    return Filters(
        first,
        last,
        str(service_id) if service_id else None,
        str(counter_id) if counter_id else None,
        str(staff_id) if staff_id else None,
    )


FiltersDep = Annotated[Filters, Depends(_filters)]


def _targets(session: Session, tenant_id: uuid.UUID) -> dict[str, int | None]:
    rows = session.execute(
        select(Service.id, Service.target_wait_s).where(Service.tenant_id == tenant_id)
    )
    return {str(service_id): target for service_id, target in rows}


def _read_caught_up(
    request: Request, session: Session, branches: list[BranchRef]
) -> sessionmaker[Session]:
    """Bring the report facts of ``branches`` up to the log; the factory to read them with.

    The request's own transaction (authentication, the filters) ends first, so on
    SQLite it does not hold the write lock the catch-up needs; the report then reads
    in a read-only transaction, which does not hold it for the whole aggregate.
    """
    session.commit()
    factory: sessionmaker[Session] = request.app.state.session_factory
    if branches:
        catch_up_behind(factory, branches[0].tenant_id, [b.branch_id for b in branches])
    reader: sessionmaker[Session] = request.app.state.read_session_factory
    return reader


@router.get("/branches", response_model=list[BranchKpis])
def by_branch(
    request: Request, principal: TenantReader, session: SessionDep, filters: FiltersDep
) -> list[BranchKpis]:
    """The KPIs of every branch of the tenant, by branch code."""
    branches = list(
        session.scalars(
            select(Branch).where(Branch.tenant_id == principal.tenant_id).order_by(Branch.code)
        )
    )
    targets = _targets(session, principal.tenant_id)
    refs = [BranchRef(b.tenant_id, b.id, b.time_zone) for b in branches]
    with session_scope(_read_caught_up(request, session, refs)) as reading:
        reports = kpi_reports(
            reading,
            tenant_id=principal.tenant_id,
            zones={b.id: b.time_zone for b in branches},
            targets=targets,
            filters=filters,
        )
    return [
        BranchKpis(
            branch_id=b.id,
            code=b.code,
            name=b.name,
            time_zone=b.time_zone,
            kpis=KpisOut.of(next(iter(reports[b.id].values()))),
        )
        for b in branches
    ]


@router.get("/branches/{branch_id}", response_model=BranchReportOut)
def of_branch(
    request: Request,
    branch_id: uuid.UUID,
    principal: BranchReader,
    session: SessionDep,
    filters: FiltersDep,
    group_by: Literal["hour", "day", "service", "counter", "staff"] | None = None,
) -> BranchReportOut:
    """One branch's KPIs, whole or grouped by local hour or day, service, counter or staff."""
    zone = session.scalar(
        select(Branch.time_zone).where(
            Branch.id == branch_id, Branch.tenant_id == principal.tenant_id
        )
    )
    assert zone is not None  # require_at_branch answered 404 otherwise
    targets = _targets(session, principal.tenant_id)
    ref = BranchRef(principal.tenant_id, branch_id, zone)
    with session_scope(_read_caught_up(request, session, [ref])) as reading:
        reports = kpi_reports(
            reading,
            tenant_id=principal.tenant_id,
            zones={branch_id: zone},
            targets=targets,
            key=group_by,
            filters=filters,
        )
    return BranchReportOut(
        branch_id=branch_id,
        group_by=group_by,
        groups=[
            GroupKpis(key=_key_text(k), kpis=KpisOut.of(r)) for k, r in reports[branch_id].items()
        ],
    )


def _key_text(key: GroupKey) -> str:
    return key.isoformat() if isinstance(key, date | datetime) else key
