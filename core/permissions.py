"""The permission catalogue and the default roles, as data.

The central service seeds its Permission table from :data:`PERMISSIONS` and
every new tenant's roles from :data:`DEFAULT_ROLES`; tenants may then edit
their roles. The console uses the same codes to hide what a user may not do.
Branch-scoped roles apply only at the branches they are assigned for.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Permission:
    code: str
    description: str


_CATALOGUE = (
    # queue work at a branch
    Permission("queue.view", "See the live queue and counters of a branch"),
    Permission("tickets.issue", "Issue tickets (reception, kiosk, remote join)"),
    Permission("tickets.call", "Call the next or a specific ticket at a counter, and recall"),
    Permission("tickets.serve", "Start, complete and mark tickets as no-show"),
    Permission("tickets.transfer", "Transfer tickets to another service"),
    Permission("tickets.park", "Park tickets and return them to the queue"),
    Permission("tickets.cancel", "Cancel tickets"),
    Permission("counters.operate", "Open, pause, resume and close a counter"),
    Permission("sync.device", "Synchronise a device's events with the service"),
    # reports
    Permission("reports.branch", "Read reports and the dashboard of a branch"),
    Permission("reports.tenant", "Read reports across all branches of the tenant"),
    # administration
    Permission("branches.manage", "Create and edit branches"),
    Permission("services.manage", "Create and edit services and their SLA targets"),
    Permission("counters.manage", "Create and edit counters and their work profiles"),
    Permission("users.view", "List users"),
    Permission("users.manage", "Create, edit and disable users and assign roles"),
    Permission("roles.manage", "Create and edit roles and their permissions"),
    Permission("api_keys.manage", "Create and revoke API keys"),
    Permission("devices.manage", "Register and revoke devices"),
    Permission("audit.view", "Read the audit log"),
    Permission("webhooks.manage", "Manage webhooks"),
    Permission("templates.manage", "Manage notification templates"),
    Permission("integrations.manage", "Manage e-mail, SMS and WhatsApp integrations"),
    Permission("alerts.view", "See alerts"),
    Permission("alerts.manage", "Acknowledge and configure alerts"),
    Permission("backups.manage", "Create and restore backups"),
)

PERMISSIONS: MappingProxyType[str, Permission] = MappingProxyType({p.code: p for p in _CATALOGUE})
ALL_PERMISSIONS: frozenset[str] = frozenset(PERMISSIONS)

_COUNTER_WORK = frozenset(
    {
        "queue.view",
        "tickets.issue",
        "tickets.call",
        "tickets.serve",
        "tickets.transfer",
        "tickets.park",
        "tickets.cancel",
        "counters.operate",
        "sync.device",
        "alerts.view",
    }
)


@dataclass(frozen=True, slots=True)
class RoleTemplate:
    name: str
    description: str
    permissions: frozenset[str]
    branch_scoped: bool  # assigned per branch (True) or tenant-wide (False)


TENANT_ADMIN = "tenant_admin"
BRANCH_MANAGER = "branch_manager"
STAFF = "staff"
DEVICE = "device"

_ROLES = (
    RoleTemplate(TENANT_ADMIN, "Administers the whole tenant", ALL_PERMISSIONS, False),
    RoleTemplate(
        BRANCH_MANAGER,
        "Runs a branch: queue work, reports, counters and services",
        _COUNTER_WORK
        | {"reports.branch", "services.manage", "counters.manage", "users.view", "alerts.manage"},
        True,
    ),
    RoleTemplate(STAFF, "Serves customers at a counter", _COUNTER_WORK, True),
    RoleTemplate(
        DEVICE,
        "A kiosk or display: issues tickets and shows the queue",
        frozenset({"queue.view", "tickets.issue", "sync.device"}),
        True,
    ),
)

DEFAULT_ROLES: MappingProxyType[str, RoleTemplate] = MappingProxyType({r.name: r for r in _ROLES})


def unknown_permissions(codes: set[str] | frozenset[str]) -> set[str]:
    """The codes in ``codes`` that the catalogue does not define."""
    return set(codes) - ALL_PERMISSIONS
