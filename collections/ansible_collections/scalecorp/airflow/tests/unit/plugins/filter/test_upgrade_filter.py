from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.scalecorp.airflow.plugins.filter.upgrade import (
    FilterModule,
    upgrade_backup_fresh,
    upgrade_request,
    upgrade_schema_change,
    version_key,
)

HOSTS = {"api1": "3.2.2", "api2": "3.2.2", "wk1": "3.2.2"}


def test_versions_sort_as_releases():
    ordered = ["2.10.5", "3.0.0", "3.2.2", "3.3.0rc1", "3.3.0", "3.3.2", "3.10.0"]
    assert sorted(reversed(ordered), key=version_key) == ordered
    with pytest.raises(AnsibleFilterError, match="not an Airflow version"):
        version_key("latest")


def test_an_upgrade_of_every_host():
    plan = upgrade_request(HOSTS, "3.3.2")
    assert plan == {"action": "upgrade", "from": "3.2.2", "to": "3.3.2", "downgrade": False, "problems": []}
    assert upgrade_request(HOSTS, "3.2.1")["downgrade"] is True


def test_the_running_version_is_nothing_to_do():
    assert upgrade_request(HOSTS, "3.2.2")["action"] == "none"


def test_mixed_versions_and_missing_installs_are_refused_with_the_hosts_named():
    plan = upgrade_request({**HOSTS, "wk1": "3.3.2", "wk2": ""}, "3.3.2")
    assert plan["action"] == "none"
    assert any("not installed on wk2" in p for p in plan["problems"])
    assert any("3.2.2 on api1, api2; 3.3.2 on wk1" in p and "rollback=true" in p for p in plan["problems"])


def test_a_bad_target_is_an_error():
    with pytest.raises(AnsibleFilterError):
        upgrade_request(HOSTS, "3.x")


def test_rollback_needs_the_record_of_an_upgrade():
    plan = upgrade_request(HOSTS, "3.3.2", True, {})
    assert plan["action"] == "none" and "no record of an upgrade" in plan["problems"][0]


def test_rollback_goes_back_to_the_recorded_version_even_from_mixed_hosts():
    state = {"from": "3.2.2", "to": "3.3.2", "backup_id": "20261126T170000Z"}
    plan = upgrade_request({"api1": "3.3.2", "wk1": "3.2.2"}, "3.3.2", True, state)
    assert plan == {"action": "rollback", "from": "3.3.2", "to": "3.2.2", "downgrade": False, "problems": []}


def test_a_finished_rollback_is_not_done_twice():
    state = {"from": "3.2.2", "to": "3.3.2", "rolled_back": True}
    assert upgrade_request(HOSTS, "3.3.2", True, state)["action"] == "none"
    # ...unless a host still runs the upgraded version
    assert upgrade_request({**HOSTS, "wk1": "3.3.2"}, "3.3.2", True, state)["action"] == "rollback"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("3.2.2", "3.3.2", ["3.3.0"]),
        ("3.3.2", "3.2.2", ["3.3.0"]),  # a downgrade crosses the same migration
        ("3.3.0", "3.3.2", []),  # a patch release: rolling
        ("3.0.1", "3.3.2", ["3.1.0", "3.2.0", "3.3.0"]),
    ],
)
def test_schema_changes_between_two_versions(old, new, expected):
    assert upgrade_schema_change(["3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.0.0"], old, new) == expected


MANIFEST = {"id": "20261126T160000Z", "time": "2026-11-26T16:00:00Z", "airflow_version": "3.2.2"}


def test_a_recent_backup_of_the_running_version_is_fresh():
    got = upgrade_backup_fresh(MANIFEST, "3.2.2", "2026-11-26T16:30:00Z", 3600)
    assert got["fresh"] is True and got["id"] == MANIFEST["id"] and "1800 s old" in got["why"]


@pytest.mark.parametrize(
    ("manifest", "version", "now", "why"),
    [
        ({}, "3.2.2", "2026-11-26T16:30:00Z", "there is no backup"),
        (MANIFEST, "3.2.2", "2026-11-26T18:00:00Z", "7200 s old"),
        (MANIFEST, "3.3.2", "2026-11-26T16:30:00Z", "is of Airflow 3.2.2, not 3.3.2"),
    ],
)
def test_old_missing_or_other_version_backups_are_not_fresh(manifest, version, now, why):
    got = upgrade_backup_fresh(manifest, version, now, 3600)
    assert got["fresh"] is False and why in got["why"]


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"upgrade_request", "upgrade_schema_change", "upgrade_backup_fresh"}
