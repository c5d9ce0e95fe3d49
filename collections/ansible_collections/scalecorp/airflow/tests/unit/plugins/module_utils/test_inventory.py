from __future__ import annotations

import copy

import pytest

from ansible_collections.scalecorp.airflow.plugins.module_utils.inventory import inventory_problems

GROUPS = {
    "all": ["lb", "api1", "api2", "w1", "pg1", "pg2", "rd1", "rd2", "s3"],
    "loadbalancer": ["lb"],
    "airflow": ["api1", "api2", "w1"],
    "airflow_api": ["api1", "api2"],
    "airflow_scheduler": ["api1", "api2"],
    "airflow_dag_processor": ["api1"],
    "airflow_triggerer": ["api1"],
    "airflow_flower": [],
    "airflow_worker": ["w1"],
    "postgresql": ["pg1", "pg2"],
    "redis": ["rd1", "rd2"],
    "redis_sentinel": ["rd1", "rd2", "s3"],
}
HOSTVARS = {
    "pg1": {"postgresql_role": "primary"},
    "pg2": {"postgresql_role": "replica"},
    "rd1": {"redis_role": "master"},
    "rd2": {"redis_role": "replica"},
}


def check(groups=None, hostvars=None):
    hv = {h: {} for h in (groups or GROUPS)["all"]}
    hv.update(copy.deepcopy(HOSTVARS if hostvars is None else hostvars))
    return inventory_problems(groups or GROUPS, hv)


def test_valid_inventory_has_no_errors_or_warnings():
    assert check() == {"errors": [], "warnings": []}


@pytest.mark.parametrize("group", ["loadbalancer", "airflow_api", "airflow_worker", "postgresql", "redis", "redis_sentinel"])
def test_every_required_group_needs_a_host(group):
    groups = dict(GROUPS, **{group: []})
    assert any(f"group '{group}' has no host" in e for e in check(groups)["errors"])


def test_flower_group_may_be_empty():
    assert check(dict(GROUPS, airflow_flower=[]))["errors"] == []


@pytest.mark.parametrize(("count", "ok"), [(1, False), (2, False), (3, True), (4, False), (5, True)])
def test_sentinels_must_be_odd_and_at_least_three(count, ok):
    sentinels = [f"s{i}" for i in range(count)]
    groups = dict(GROUPS, redis_sentinel=sentinels, all=GROUPS["all"] + sentinels)
    errors = check(groups)["errors"]
    assert (errors == []) is ok
    if not ok:
        assert f"odd number of hosts, at least 3, for a majority quorum; found {count}" in errors[0]


def test_two_primaries():
    hv = dict(HOSTVARS, pg2={"postgresql_role": "primary"})
    assert check(hostvars=hv)["errors"] == ["group 'postgresql' needs exactly one host with postgresql_role=primary; found 2: pg1, pg2"]


def test_no_master_and_missing_role_variable():
    hv = dict(HOSTVARS, rd1={})
    errors = check(hostvars=hv)["errors"]
    assert "host 'rd1' in group 'redis' needs redis_role set to one of master, replica (found None)" in errors
    assert "group 'redis' needs exactly one host with redis_role=master; found 0: none" in errors


def test_invalid_role_value():
    hv = dict(HOSTVARS, pg2={"postgresql_role": "standby"})
    assert (
        "host 'pg2' in group 'postgresql' needs postgresql_role set to one of primary, replica (found 'standby')"
        in check(hostvars=hv)["errors"]
    )


def test_role_variable_on_a_host_outside_its_group():
    hv = dict(HOSTVARS, w1={"redis_role": "replica"})
    assert check(hostvars=hv)["errors"] == ["host 'w1' sets redis_role=replica but is not in group 'redis': move it or drop the variable"]


def test_airflow_groups_must_be_children_of_airflow():
    groups = dict(GROUPS, airflow=["api1", "api2"])
    assert check(groups)["errors"] == [
        "host 'w1' is in 'airflow_worker' but not in group 'airflow': make every airflow_* group a child of 'airflow'"
    ]


def test_single_hosts_are_warnings_not_errors():
    groups = dict(GROUPS, airflow_api=["api1"], airflow_scheduler=["api1"])
    result = check(groups)
    assert result["errors"] == []
    assert result["warnings"] == [
        "group 'airflow_api' has a single host: it is a single point of failure",
        "group 'airflow_scheduler' has a single host: it is a single point of failure",
    ]


def test_backup_group_is_optional_and_holds_at_most_one_host():
    assert check(dict(GROUPS, backup=["lb"])) == {"errors": [], "warnings": []}
    result = check(dict(GROUPS, backup=["lb", "api1"]))
    assert result["errors"] == ["group 'backup' holds at most one host (where backups are kept); found 2: lb, api1"]


def test_backup_on_a_database_node_is_a_warning():
    result = check(dict(GROUPS, backup=["pg2"]))
    assert result["errors"] == []
    assert result["warnings"] == ["backup host 'pg2' is a PostgreSQL node: its backups are lost with it"]
