# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Decisions of upgrade.yml, as pure functions of what the play read on the hosts.

upgrade_request: what a run is asked to do (upgrade, refused downgrade, rollback,
nothing) and the problems that refuse it. upgrade_schema_change: whether a
version change crosses a schema migration. upgrade_backup_fresh: whether the newest
backup can serve as the pre-upgrade backup. Documentation: the .yml files beside.
"""

from __future__ import annotations

import datetime as dt
import re

from ansible.errors import AnsibleFilterError

_VERSION = re.compile(r"^\d+(\.\d+){1,2}([a-z]+\d*)?$")


def version_key(version: str) -> tuple:
    """Sortable key of an Airflow version such as 3.3.2 or 3.4.0rc1 (a pre-release sorts first)."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise AnsibleFilterError(f"not an Airflow version: {version!r}")
    numbers = re.match(r"^[\d.]+", version).group(0).rstrip(".")
    parts = [int(p) for p in numbers.split(".")] + [0] * (3 - len(numbers.split(".")))
    suffix = version[len(numbers) :]
    return (*parts, 0 if suffix else 1, suffix)


def upgrade_schema_change(versions: list, old: str, new: str) -> list:
    """The versions with a migration between two versions: in (lower, higher]; empty when none."""
    low, high = sorted((old, new), key=version_key)
    found = {v for v in versions if version_key(low) < version_key(v) <= version_key(high)}
    return sorted(found, key=version_key)


def upgrade_request(running: dict, target: str, rollback: bool = False, state: dict | None = None) -> dict:
    """What the run does: {'action': none|upgrade|rollback, 'from', 'to', 'problems': [...]}.

    running: host -> the version its `current` link selects ('' when none).
    state: the upgrade state file of the last upgrade ({} when there is none).
    """
    state = state or {}
    versions = sorted({v for v in running.values() if v}, key=version_key)
    missing = sorted(h for h, v in running.items() if not v)
    plan = {"action": "none", "from": versions[-1] if len(versions) == 1 else "", "to": target, "downgrade": False, "problems": []}
    problems = plan["problems"]
    if rollback:
        previous, upgraded = state.get("from", ""), state.get("to", "")
        if not previous:
            problems.append("there is no record of an upgrade to roll back (the upgrade state file is missing or empty)")
            return plan
        plan.update({"from": upgraded, "to": previous})
        if state.get("rolled_back") and not missing and versions == [previous]:
            return plan  # already rolled back: nothing to do
        plan["action"] = "rollback"
        return plan
    if missing:
        problems.append(f"Airflow is not installed on {', '.join(missing)}: run site.yml first")
    if len(versions) > 1:
        where = "; ".join(f"{v} on {', '.join(sorted(h for h, hv in running.items() if hv == v))}" for v in versions)
        problems.append(
            f"the hosts run different versions ({where}): finish the interrupted upgrade (upgrade.yml -e airflow_version=...)"
            " or roll it back (upgrade.yml -e rollback=true)"
        )
    version_key(target)
    if problems or plan["from"] == target:
        return plan
    plan["action"] = "upgrade"
    plan["downgrade"] = version_key(target) < version_key(plan["from"])
    return plan


def upgrade_backup_fresh(manifest: dict | None, version: str, now: str, max_age: int) -> dict:
    """Whether the newest backup serves as the pre-upgrade backup: {'fresh': bool, 'id', 'why'}."""
    if not manifest:
        return {"fresh": False, "id": "", "why": "there is no backup"}
    backup_id = manifest.get("id", "")
    taken = dt.datetime.fromisoformat(manifest["time"].replace("Z", "+00:00"))
    at = dt.datetime.fromisoformat(now.replace("Z", "+00:00"))
    if taken.tzinfo is None or at.tzinfo is None:
        raise AnsibleFilterError("upgrade_backup_fresh: both times need a time zone")
    age = (at - taken).total_seconds()
    if manifest.get("airflow_version") != version:
        return {
            "fresh": False,
            "id": backup_id,
            "why": f"backup {backup_id} is of Airflow {manifest.get('airflow_version')}, not {version}",
        }
    if age > int(max_age):
        return {"fresh": False, "id": backup_id, "why": f"backup {backup_id} is {int(age)} s old (more than {int(max_age)} s)"}
    return {"fresh": True, "id": backup_id, "why": f"backup {backup_id} of Airflow {version}, {int(age)} s old"}


class FilterModule:
    def filters(self):
        return {
            "upgrade_request": upgrade_request,
            "upgrade_schema_change": upgrade_schema_change,
            "upgrade_backup_fresh": upgrade_backup_fresh,
        }
