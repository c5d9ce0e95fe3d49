# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Filters over the pure scaling functions (plugins/module_utils/scaling.py).

Their documentation is in the YAML files beside this one, one per filter.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.scalecorp.airflow.plugins.module_utils.scaling import (
    PolicyError,
    decide,
    host_limit,
    next_state,
    place,
    plan,
)


def scaling_decision(signals, policy, state=None):
    try:
        return decide(dict(signals), dict(policy), dict(state or {}))
    except (PolicyError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"scaling_decision: {exc}") from exc


def worker_limit(host, worker_memory_mb, reserved_memory_mb=0, workers_per_core=1.0, max_per_host=0):
    """host: {'memory_mb', 'cores'} (the scaling_signals host result)."""
    try:
        return host_limit(
            int(host["memory_mb"]),
            int(host["cores"]),
            int(worker_memory_mb),
            reserved_memory_mb=int(reserved_memory_mb),
            workers_per_core=float(workers_per_core),
            max_per_host=int(max_per_host) or None,
        )
    except (PolicyError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"worker_limit: {exc}") from exc


def worker_placement(n, hosts):
    try:
        return place(int(n), {str(k): dict(v) for k, v in dict(hosts).items()})
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"worker_placement: {exc}") from exc


def scaling_plan(hosts, cluster, policy, state, mode, workers, now):  # noqa: PLR0917 - a filter's arguments are positional
    try:
        return plan(
            str(mode),
            None if workers in (None, "") else int(workers),
            {str(k): dict(v) for k, v in dict(hosts).items()},
            dict(cluster or {}),
            dict(policy),
            state=dict(state or {}),
            now=float(now),
        )
    except (PolicyError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"scaling_plan: {exc}") from exc


def scaling_state(state, decision, now):
    return next_state(dict(state or {}), dict(decision), float(now))


def scaling_state_after(decision, state, now):
    """The same, with the decision first (for `decision | scaling_state_after(state, now)`)."""
    return next_state(dict(state or {}), dict(decision), float(now))


class FilterModule:
    def filters(self):
        return {
            "scaling_decision": scaling_decision,
            "worker_limit": worker_limit,
            "worker_placement": worker_placement,
            "scaling_state": scaling_state,
            "scaling_plan": scaling_plan,
            "scaling_state_after": scaling_state_after,
        }
