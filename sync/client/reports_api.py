"""The service's report endpoints, for the console's branch comparison.

``GET /api/v1/reports/branches`` (permission ``reports.tenant``) answers the KPIs of
every branch of the caller's tenant for a range of branch-local days. The answer
is parsed into :class:`core.kpi.KpiReport` values, the same type local reports
use, so the console shows both with one set of widgets. Failures are the
:class:`~sync.client.api.ClientError` family of the sync calls (``Offline`` when
the service cannot be reached: the comparison needs it, local reports do not).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from core.kpi import Distribution, KpiReport
from core.kpi_rows import Filters
from sync.client.api import ServerError, TokenSource, response_failure, transport_failure

REPORTS_PATH = "/api/v1/reports"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DistributionIn(_Wire):
    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    max: float | None

    def value(self) -> Distribution:
        return Distribution(self.count, self.mean, self.p50, self.p90, self.p95, self.max)


class HourCountIn(_Wire):
    hour: datetime
    served: int


class KpisIn(_Wire):
    issued: int
    called: int
    served: int
    no_show: int
    cancelled: int
    abandoned: int
    transfers: int
    recalls: int
    wait_s: DistributionIn
    service_s: DistributionIn
    sla_eligible: int
    sla_met: int
    sla_attainment: float | None
    no_show_rate: float | None
    abandonment_rate: float | None
    pause_seconds_by_reason: dict[str, float]
    served_per_local_hour: list[HourCountIn]

    def value(self) -> KpiReport:
        return KpiReport(
            issued=self.issued,
            called=self.called,
            served=self.served,
            no_show=self.no_show,
            cancelled=self.cancelled,
            abandoned=self.abandoned,
            transfers=self.transfers,
            recalls=self.recalls,
            wait=self.wait_s.value(),
            service=self.service_s.value(),
            sla_eligible=self.sla_eligible,
            sla_met=self.sla_met,
            sla_attainment=self.sla_attainment,
            no_show_rate=self.no_show_rate,
            abandonment_rate=self.abandonment_rate,
            pause_seconds_by_reason=dict(self.pause_seconds_by_reason),
            served_per_local_hour={h.hour: h.served for h in self.served_per_local_hour},
        )


class BranchKpisIn(_Wire):
    branch_id: uuid.UUID
    code: str
    name: str
    time_zone: str
    kpis: KpisIn


@dataclass(frozen=True, slots=True)
class BranchRow:
    """One branch of the comparison."""

    branch_id: uuid.UUID
    code: str
    name: str
    time_zone: str
    kpis: KpiReport


def query_params(filters: Filters) -> dict[str, str]:
    params: dict[str, str] = {}
    days: tuple[tuple[str, date | None], ...] = (
        ("from", filters.first_day),
        ("to", filters.last_day),
    )
    for name, day in days:
        if day is not None:
            params[name] = day.isoformat()
    for name, wanted in (
        ("service_id", filters.service_id),
        ("counter_id", filters.counter_id),
        ("staff_id", filters.staff_id),
    ):
        if wanted is not None:
            params[name] = wanted
    return params


async def branch_comparison(
    client: httpx.AsyncClient, tokens: TokenSource, filters: Filters
) -> list[BranchRow]:
    """The KPIs of every branch of the tenant for ``filters``, by branch code."""
    params = query_params(filters)
    token = await tokens.access_token()
    response = await _get(client, token, params)
    if response.status_code == 401:
        response = await _get(client, await tokens.refresh(stale_access=token), params)
    if not response.is_success:
        raise response_failure(response)
    try:
        rows = [BranchKpisIn.model_validate(item) for item in response.json()]
    except (ValueError, TypeError, ValidationError) as exc:
        raise ServerError(200, f"The server's branch report is not readable: {exc}") from exc
    return [BranchRow(r.branch_id, r.code, r.name, r.time_zone, r.kpis.value()) for r in rows]


async def _get(client: httpx.AsyncClient, token: str, params: dict[str, str]) -> httpx.Response:
    try:
        return await client.get(
            f"{REPORTS_PATH}/branches",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        )
    except httpx.TransportError as exc:
        raise transport_failure(exc) from exc
