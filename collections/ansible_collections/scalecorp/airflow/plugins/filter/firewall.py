# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""The host firewall (role firewall): flows from the inventory, one host's accepts.

firewall_flows: every connection the cluster needs, from groups and hostvars.
firewall_rules: the input accepts of one host, from those flows.
firewall_accepts: whether such accepts let an address in on a port.
Filters over plugins/module_utils/firewall.py; documentation in the .yml files beside.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.scalecorp.airflow.plugins.module_utils.firewall import (
    FirewallError,
    accepts,
    allowed_flows,
    rules_for_host,
)


def _host_view(host: str, hv) -> dict:
    """What the flows need of one host: its address (the one the roles bind to) and SSH port."""
    hv = hv if isinstance(hv, Mapping) else {}
    if "address" in hv:  # already a subset (address, ssh_port)
        return {"address": hv.get("address"), "ssh_port": hv.get("ssh_port")}
    facts = hv.get("ansible_facts") if "ansible_facts" in hv else None
    ipv4 = (facts or {}).get("default_ipv4") or (hv.get("ansible_default_ipv4") if "ansible_default_ipv4" in hv else None) or {}
    return {
        "address": ipv4.get("address"),
        "ssh_port": hv.get("ansible_port") if "ansible_port" in hv else None,
    }


def firewall_flows(groups, hostvars, settings=None):
    try:
        groups = {str(k): [str(h) for h in v or []] for k, v in dict(groups).items()}
        every = groups.get("all") or sorted({h for hosts in groups.values() for h in hosts})
        subset = {h: _host_view(h, hostvars.get(h)) for h in every}
        return allowed_flows(groups, subset, dict(settings or {}))
    except (FirewallError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"firewall_flows: {exc}") from exc


def firewall_rules(flows, host):
    try:
        return rules_for_host(str(host), [dict(f) for f in flows or []])
    except (FirewallError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"firewall_rules: {exc}") from exc


def firewall_accepts(rules, address, port, proto="tcp"):
    try:
        return accepts(dict(rules or {}), str(address), int(port), str(proto))
    except (FirewallError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"firewall_accepts: {exc}") from exc


class FilterModule:
    def filters(self):
        return {"firewall_flows": firewall_flows, "firewall_rules": firewall_rules, "firewall_accepts": firewall_accepts}
