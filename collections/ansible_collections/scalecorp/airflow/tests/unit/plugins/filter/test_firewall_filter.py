from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.scalecorp.airflow.plugins.filter.firewall import (
    FilterModule,
    firewall_accepts,
    firewall_flows,
    firewall_rules,
)

GROUPS = {
    "all": ["lb", "api", "wk", "pg", "rd"],
    "loadbalancer": ["lb"],
    "airflow": ["api", "wk"],
    "airflow_api": ["api"],
    "airflow_worker": ["wk"],
    "postgresql": ["pg"],
    "redis": ["rd"],
    "redis_sentinel": ["rd"],
}


def hostvars(**extra):
    """Shaped like Ansible's hostvars: facts under ansible_facts, the SSH port as ansible_port."""
    hv = {h: {"ansible_facts": {"default_ipv4": {"address": f"10.2.0.{i}"}}} for i, h in enumerate(GROUPS["all"], start=1)}
    for host, values in extra.items():
        hv[host].update(values)
    return hv


def test_the_filters_read_ansible_hostvars():
    flows = firewall_flows(GROUPS, hostvars(pg={"ansible_port": 2222}), {"admin_sources": ["192.0.2.1"]})
    rules = firewall_rules(flows, "pg")
    assert list(rules) == ["2222/tcp", "5432/tcp"]
    assert rules["5432/tcp"]["sources"] == ["10.2.0.2", "10.2.0.3"]
    assert firewall_accepts(rules, "192.0.2.1", 2222)
    assert not firewall_accepts(rules, "192.0.2.1", "22")
    assert FilterModule().filters() == {
        "firewall_flows": firewall_flows,
        "firewall_rules": firewall_rules,
        "firewall_accepts": firewall_accepts,
    }


def test_injected_facts_count_too():
    hv = hostvars()
    hv["wk"] = {"ansible_default_ipv4": {"address": "10.2.0.99"}}
    flows = firewall_flows(GROUPS, hv)
    assert firewall_rules(flows, "pg")["5432/tcp"]["sources"] == ["10.2.0.2", "10.2.0.99"]


def test_errors_are_filter_errors():
    hv = hostvars()
    del hv["rd"]
    with pytest.raises(AnsibleFilterError, match="firewall_flows: host rd has no address"):
        firewall_flows(GROUPS, hv)
    with pytest.raises(AnsibleFilterError, match="firewall_accepts: 'somewhere' is not an IP address"):
        firewall_accepts({"22/tcp": {"sources": ["192.0.2.1"]}}, "somewhere", 22)
    with pytest.raises(AnsibleFilterError, match="firewall_rules"):
        firewall_rules([{"dst_host": "pg"}], "pg")
