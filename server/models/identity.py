"""Users, roles, the permission catalogue and role assignments.

A role is granted to a user either tenant-wide (``branch_id`` NULL) or at one
branch. Permission codes come from :mod:`core.permissions`.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from server.models.base import Base, UTCDateTime, created_at, tenant_fk, uuid_pk


def normalize_username(username: str) -> str:
    """The case- and width-insensitive form usernames are unique and looked up by."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


class Permission(Base):
    """One permission code of the catalogue, seeded from core.permissions."""

    __tablename__ = "permissions"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(String(200), default="")


role_permissions = Table(
    "role_permissions",
    Base.metadata,
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "permission_code",
        ForeignKey("permissions.code", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)


class Role(Base):
    """A named set of permissions of one tenant; built-in roles are seeded per tenant."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    is_builtin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    permissions: Mapped[list[Permission]] = relationship(
        secondary=role_permissions, lazy="selectin", order_by=Permission.code
    )


class User(Base):
    """A person who signs in; ``token_version`` is bumped to end all their sessions."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "username_normalized"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    username: Mapped[str] = mapped_column(String(150))
    # Kept in step with ``username`` by the validator below.
    username_normalized: Mapped[str] = mapped_column(String(150))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(Text)
    password_changed_at: Mapped[datetime] = created_at()
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = created_at()
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # Loaded on access (list endpoints use selectinload): every authenticated
    # request reads the user, and must not pay for its grants' rows each time.
    role_assignments: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    @validates("username")
    def _normalize(self, _key: str, username: str) -> str:
        self.username_normalized = normalize_username(username)
        return username


class UserRole(Base):
    """A role granted to a user, tenant-wide (``branch_id`` NULL) or at one branch."""

    __tablename__ = "user_roles"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "branch_id"],
            ["branches.tenant_id", "branches.id"],
            ondelete="CASCADE",
        ),
        UniqueConstraint("user_id", "role_id", "branch_id"),
        # NULLs are distinct in a UNIQUE constraint, so the tenant-wide grant
        # needs its own partial index to be unique too.
        Index(
            "uq_user_roles_user_id_role_id_tenant_wide",
            "user_id",
            "role_id",
            unique=True,
            sqlite_where=text("branch_id IS NULL"),
            postgresql_where=text("branch_id IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), index=True
    )
    branch_id: Mapped[uuid.UUID | None] = mapped_column(index=True)

    user: Mapped[User] = relationship(back_populates="role_assignments")
    role: Mapped[Role] = relationship(lazy="selectin")
