"""The permission catalogue and default roles are consistent data."""

import re

from core.permissions import (
    ALL_PERMISSIONS,
    BRANCH_MANAGER,
    DEFAULT_ROLES,
    DEVICE,
    STAFF,
    TENANT_ADMIN,
    unknown_permissions,
)


def test_every_default_role_uses_only_catalogued_permissions():
    for role in DEFAULT_ROLES.values():
        assert unknown_permissions(role.permissions) == set(), role.name


def test_codes_are_dotted_lowercase_names():
    for code in ALL_PERMISSIONS:
        assert re.fullmatch(r"[a-z_]+\.[a-z_]+", code), code


def test_roles_are_ordered_by_reach():
    admin = DEFAULT_ROLES[TENANT_ADMIN].permissions
    manager = DEFAULT_ROLES[BRANCH_MANAGER].permissions
    staff = DEFAULT_ROLES[STAFF].permissions
    device = DEFAULT_ROLES[DEVICE].permissions
    assert admin == ALL_PERMISSIONS
    assert device < staff < manager < admin


def test_only_the_tenant_admin_is_tenant_wide_and_can_administer():
    assert not DEFAULT_ROLES[TENANT_ADMIN].branch_scoped
    for name in (BRANCH_MANAGER, STAFF, DEVICE):
        role = DEFAULT_ROLES[name]
        assert role.branch_scoped
        assert not role.permissions & {"roles.manage", "users.manage", "api_keys.manage"}


def test_staff_can_work_a_counter_but_not_read_reports():
    staff = DEFAULT_ROLES[STAFF].permissions
    assert {"tickets.call", "tickets.serve", "counters.operate"} <= staff
    assert "reports.branch" not in staff


def test_unknown_permissions_are_reported():
    assert unknown_permissions({"queue.view", "bogus.thing"}) == {"bogus.thing"}
