# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Filters of the maintenance runbook over plugins/module_utils/maintenance.py.

Their documentation is in the YAML files beside this one, one per filter.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.scalecorp.airflow.plugins.module_utils import maintenance as _m


def maintenance_table(rows, columns, empty="(none)"):
    try:
        return _m.render_table(list(columns), list(rows or []), empty)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"maintenance_table: {exc}") from exc


def maintenance_report(sections, title, generated_at=None):
    try:
        return _m.render_report(str(title), list(sections or []), generated_at)
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"maintenance_report: {exc}") from exc


def apt_security_upgrades(simulation, origin="Debian-Security"):
    return _m.apt_security_upgrades(str(simulation or ""), str(origin))


def db_clean_counts(output):
    return _m.db_clean_counts(str(output or ""))


def scaling_history_summary(history, now, hours=168):
    try:
        return _m.scaling_history_summary(history, float(now), float(hours))
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"scaling_history_summary: {exc}") from exc


def restart_plan(units, order, never=None):
    try:
        return _m.restart_plan(list(units or []), list(order or []), list(never or []))
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"restart_plan: {exc}") from exc


class FilterModule:
    def filters(self):
        return {
            "maintenance_table": maintenance_table,
            "maintenance_report": maintenance_report,
            "apt_security_upgrades": apt_security_upgrades,
            "db_clean_counts": db_clean_counts,
            "scaling_history_summary": scaling_history_summary,
            "restart_plan": restart_plan,
        }
