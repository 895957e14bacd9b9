"""The central service's tables as SQLAlchemy models, one module per concern.

Importing this package registers every table on ``Base.metadata``, which is what
Alembic compares against.
"""

from server.models.audit import AuditLog
from server.models.auth import ApiKey, LoginThrottle, RefreshToken, RevokedToken, SigningKey
from server.models.base import Base, UTCDateTime, utc_now
from server.models.devices import Device
from server.models.identity import (
    Permission,
    Role,
    User,
    UserRole,
    normalize_username,
    role_permissions,
)
from server.models.messaging import Integration, NotificationTemplate, Webhook, WebhookDelivery
from server.models.operations import Alert, Backup
from server.models.queue import (
    BranchSequence,
    NumberLease,
    QueueEvent,
    Ticket,
    allocate_server_seqs,
)
from server.models.reports import KpiFact, KpiFactMark, KpiPause, KpiSummary
from server.models.tenancy import Branch, Counter, PauseReason, Service, Tenant

__all__ = [
    "Alert",
    "ApiKey",
    "AuditLog",
    "Backup",
    "Base",
    "Branch",
    "BranchSequence",
    "Counter",
    "Device",
    "Integration",
    "KpiFact",
    "KpiFactMark",
    "KpiPause",
    "KpiSummary",
    "LoginThrottle",
    "NotificationTemplate",
    "NumberLease",
    "PauseReason",
    "Permission",
    "QueueEvent",
    "RefreshToken",
    "RevokedToken",
    "Role",
    "Service",
    "SigningKey",
    "Tenant",
    "Ticket",
    "UTCDateTime",
    "User",
    "UserRole",
    "Webhook",
    "WebhookDelivery",
    "allocate_server_seqs",
    "normalize_username",
    "role_permissions",
    "utc_now",
]
