# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""The inventory contract between playbooks and roles, as a pure function.

`inventory_problems(groups, hostvars)` checks an inventory against the groups
the collection expects (docs/architecture.md, "Inventory groups") and returns
the errors that must be fixed before anything runs, and warnings about
layouts that work but are not highly available.
"""

from __future__ import annotations

AIRFLOW_GROUPS = (
    "airflow_api",
    "airflow_scheduler",
    "airflow_dag_processor",
    "airflow_triggerer",
    "airflow_worker",
    "airflow_flower",
)
REQUIRED_GROUPS = (
    "loadbalancer",
    "airflow_api",
    "airflow_scheduler",
    "airflow_dag_processor",
    "airflow_triggerer",
    "airflow_worker",
    "postgresql",
    "redis",
    "redis_sentinel",
)
HA_GROUPS = ("airflow_api", "airflow_scheduler", "postgresql", "redis")
# A host variable that designates a role inside a group: (variable, group, values, the one value).
ROLE_VARIABLES = (
    ("postgresql_role", "postgresql", ("primary", "replica"), "primary"),
    ("redis_role", "redis", ("master", "replica"), "master"),
)


def _members(groups: dict, name: str) -> list:
    return list(groups.get(name) or [])


def inventory_problems(groups: dict, hostvars: dict) -> dict:
    """Return {'errors': [...], 'warnings': [...]} for an inventory.

    groups: group name -> list of host names (Ansible's `groups`).
    hostvars: host name -> mapping of that host's variables (only the
    role variables in ROLE_VARIABLES are read).
    """
    errors: list[str] = []
    warnings: list[str] = []

    for name in REQUIRED_GROUPS:
        if not _members(groups, name):
            errors.append(f"group '{name}' has no host: add at least one host to it")

    airflow = set(_members(groups, "airflow"))
    for name in AIRFLOW_GROUPS:
        for host in _members(groups, name):
            if host not in airflow:
                errors.append(f"host '{host}' is in '{name}' but not in group 'airflow': make every airflow_* group a child of 'airflow'")

    for var, group, values, unique in ROLE_VARIABLES:
        members = _members(groups, group)
        chosen = []
        for host, hvars in sorted((h, hostvars[h]) for h in _all_hosts(groups)):
            value = hvars.get(var) if hasattr(hvars, "get") else None
            if host not in members:
                if value is not None:
                    errors.append(f"host '{host}' sets {var}={value} but is not in group '{group}': move it or drop the variable")
                continue
            if value not in values:
                errors.append(f"host '{host}' in group '{group}' needs {var} set to one of {', '.join(values)} (found {value!r})")
            elif value == unique:
                chosen.append(host)
        if members and len(chosen) != 1:
            found = ", ".join(chosen) if chosen else "none"
            errors.append(f"group '{group}' needs exactly one host with {var}={unique}; found {len(chosen)}: {found}")

    sentinels = _members(groups, "redis_sentinel")
    if sentinels and (len(sentinels) < 3 or len(sentinels) % 2 == 0):
        errors.append(
            "group 'redis_sentinel' needs an odd number of hosts, at least 3, for a majority quorum; "
            f"found {len(sentinels)}: {', '.join(sentinels)}"
        )

    backup = _members(groups, "backup")
    if len(backup) > 1:
        errors.append(f"group 'backup' holds at most one host (where backups are kept); found {len(backup)}: {', '.join(backup)}")
    for host in backup:
        if host in _members(groups, "postgresql"):
            warnings.append(f"backup host '{host}' is a PostgreSQL node: its backups are lost with it")

    for name in HA_GROUPS:
        count = len(_members(groups, name))
        if count == 1:
            warnings.append(f"group '{name}' has a single host: it is a single point of failure")
    return {"errors": errors, "warnings": warnings}


def _all_hosts(groups: dict) -> set:
    hosts: set = set()
    for name, members in groups.items():
        if name != "ungrouped" or members:
            hosts.update(members or [])
    return hosts
