# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""status_report: the cluster's status table and verdict (status.yml).

A filter over the pure functions of plugins/module_utils/status.py. Its
documentation is in status_report.yml beside this file.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.scalecorp.airflow.plugins.module_utils.status import report


def _hosts(hosts):
    if isinstance(hosts, dict):
        return {str(k): (dict(v) if v else None) for k, v in hosts.items()}
    return [dict(h) for h in hosts or []]


def status_report(hosts, cluster, settings=None, now=None):
    try:
        return report(_hosts(hosts), dict(cluster or {}), dict(settings or {}), None if now is None else float(now))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"status_report: {exc}") from exc


class FilterModule:
    def filters(self):
        return {"status_report": status_report}
