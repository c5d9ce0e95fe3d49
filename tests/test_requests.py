"""Bad requests to the runbooks are refused on the controller, before any host is contacted.

Each runbook names the checks of its request (-e values, --tags) where it imports
preflight.yml (preflight_request_checks); preflight runs them right after the
inventory's, before it pings a host. So these run in the quick tier, with or without
the lab: the refusal must come before "Check that every host answers".
"""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT, assert_refused, awx_runner, playbook, run

pytestmark = pytest.mark.controller

NOT_CONTACTED = "Check that every host answers"

CASES = {
    "scale-abc": ("scale.yml", ["-e", "workers=abc"], ['workers must be a whole number of worker instances, not "abc"']),
    "scale-minus-one": ("scale.yml", ["-e", "workers=-1"], ['workers must be a whole number of worker instances, not "-1"']),
    "scale-zero": ("scale.yml", ["-e", "workers=0"], ["workers=0 would stop every worker"]),
    "scale-above-max": ("scale.yml", ["-e", "workers=51"], ["workers=51 is above MAX (scaling_max_workers=50)"]),
    "scale-unknown-mode": ("scale.yml", ["-e", "mode=unknown"], ["Unknown mode=unknown"]),
    "scale-nothing-asked": ("scale.yml", [], ["Say what to do: -e workers=N"]),
    "restore-malformed-id": ("restore.yml", ["-e", "backup_id=yesterday"], ["Give -e backup_id=<id>"]),
    "restore-no-id": ("restore.yml", [], ["Give -e backup_id=<id>"]),
    "restore-unknown-mode": ("restore.yml", ["-e", "mode=sideways", "-e", "backup_id=latest"], ["mode=sideways"]),
    "maintenance-retention": (
        "maintenance.yml",
        ["--tags", "weekly", "-e", "maintenance_log_retention_days=-1"],
        ['maintenance_log_retention_days must be a whole number of days, at least 1, not "-1"'],
    ),
    "maintenance-no-tag": ("maintenance.yml", [], ["Say which maintenance to run: --tags daily, weekly or monthly"]),
    "site-unknown-version": (
        "site.yml",
        ["-e", "airflow_version=9.9.9"],
        ["No lockfile for Airflow 9.9.9 on any Python", "3.3.2 (Python 3.11)"],
    ),
    # Configuration as code: a malformed entry is named with what to fix, and no value is shown.
    "site-malformed-connection": (
        "site.yml",
        ["-e", '{"airflow_connections": [{"conn_id": "warehouse", "port": "eighty", "password": "hunter2-never-shown"}]}'],
        ["airflow_connections warehouse: conn_type is required", "port must be a number from 1 to 65535"],
    ),
    "site-pool-declared-twice": (
        "site.yml",
        ["-e", '{"airflow_pools": [{"name": "etl", "slots": 4}, {"name": "etl", "slots": 8}]}'],
        ["airflow_pools etl: declared twice"],
    ),
    "site-extra-env-unquotable": (
        "site.yml",
        ["-e", '{"airflow_extra_env": {"VAULT_TOKEN": "hunter2-never-shown$", "2FA": "x"}}'],
        ["airflow_extra_env VAULT_TOKEN: the value holds a newline, quote, backslash, dollar or backtick", "airflow_extra_env '2FA'"],
    ),
    "upgrade-unknown-version": ("upgrade.yml", ["-e", "airflow_version=9.9.9"], ["No lockfile for Airflow 9.9.9 on any Python"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_request_is_refused_before_any_host_is_contacted(case):
    name, args, messages = CASES[case]
    # The runbook as users name it: the repository root's import of the collection's playbook.
    proc = playbook(name, *args)
    assert_refused(proc, *messages, "Nothing was changed", not_reached=NOT_CONTACTED)
    assert "hunter2-never-shown" not in proc.stdout + proc.stderr


def test_the_command_as_typed_from_the_repository_root():
    """`ansible-playbook scale.yml -e workers=abc`, word for word, in the repository root (the
    default inventory of its ansible.cfg, the lab's): refused before any host is contacted."""
    proc = run(["ansible-playbook", "scale.yml", "-e", "workers=abc"], cwd=ROOT)
    assert_refused(proc, 'workers must be a whole number of worker instances, not "abc"', "Nothing was changed", not_reached=NOT_CONTACTED)


# AWX runs the same playbooks with ansible-runner: a survey answer out of bounds is refused the same way.
TEMPLATES = {t["name"]: t for t in yaml.safe_load((ROOT / "awx/templates.yml").read_text())["awx_job_templates"]}


def test_awx_scale_refuses_workers_above_the_survey_max(tmp_path):
    (workers,) = TEMPLATES["Airflow | scale"]["survey"]
    proc = awx_runner(tmp_path, TEMPLATES["Airflow | scale"], workers=str(workers["max"] * 10))
    assert_refused(proc, f"workers={workers['max'] * 10} is above MAX (scaling_max_workers={workers['max']}).", not_reached=NOT_CONTACTED)


def test_awx_restore_refuses_a_malformed_backup_id(tmp_path):
    proc = awx_runner(tmp_path, TEMPLATES["Airflow | restore"], backup_id="2026-11-26")
    assert_refused(proc, "Nothing was changed. Give -e backup_id=<id>", not_reached=NOT_CONTACTED)


def test_awx_upgrade_refuses_a_version_without_lockfile(tmp_path):
    proc = awx_runner(tmp_path, TEMPLATES["Airflow | upgrade"], airflow_version="9.9.9")
    assert_refused(proc, "No lockfile for Airflow 9.9.9", not_reached=NOT_CONTACTED)
