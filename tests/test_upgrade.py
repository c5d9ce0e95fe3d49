"""upgrade.yml on the lab: Airflow 3.2.2 -> 3.3.2, a failed verification rolled back, the refusals.

The lab is taken back to Airflow 3.2.2 first (its metadata database dropped and
installed again by site.yml), so this module runs last (conftest orders it) and
leaves the lab at 3.3.2, as the inventory has it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import pytest
from airflow_api import Airflow
from conftest import LAB_SECRETS, ROOT, Prefetch, assert_refused, on, playbook, recap, run, why

pytestmark = pytest.mark.lab

OLD, NEW = "3.2.2", "3.3.2"
CANARY = "scalecorp_canary"
AIRFLOW_HOSTS = ("lab-api1", "lab-api2", "lab-wk1", "lab-wk2")
BACKUP_HOST = "lab-lb1"


# The old version's wheelhouse, downloaded while the earlier tests run (conftest Prefetch).
PREFETCH = {f"wheelhouse-{OLD}": [sys.executable, str(ROOT / "tools/wheelhouse.py"), OLD]}


def secrets_digest() -> str:
    return hashlib.sha256(LAB_SECRETS.read_bytes()).hexdigest()


def active_version(host: str) -> str:
    return on(host, "readlink", "/opt/airflow/current").stdout.strip().rsplit("/", 1)[-1]


def canary_runs(api: Airflow) -> set[str]:
    runs = api.get(f"/api/v2/dags/{CANARY}/dagRuns", params={"limit": 100})["dag_runs"]
    return {r["dag_run_id"] for r in runs if r["state"] == "success"}


def record() -> dict:
    return json.loads(on("lab-api1", "cat", "/etc/airflow/upgrade.json").stdout)


@pytest.fixture(scope="module")
def old_cluster(lab):
    """The lab at Airflow 3.2.2 on a new metadata database, with two canary runs done."""
    Prefetch.wait(f"wheelhouse-{OLD}")
    wheels = run([sys.executable, str(ROOT / "tools/wheelhouse.py"), OLD], timeout=1800)  # at once when prefetched
    assert wheels.returncode == 0, why(wheels)
    reset = playbook("tests/playbooks/airflow_reset.yml")
    assert reset.returncode == 0, why(reset)
    # The tiers the reset touched: the database (created again) and Airflow.
    # The lab finds its wheelhouse in .cache/ beside ansible.cfg (lab.yml); named here all the same.
    wheelhouse = ROOT / f".cache/wheelhouse/apache-airflow-{OLD}-py3.11.tar.gz"
    install = playbook("tests/playbooks/airflow_install.yml", "-e", f"airflow_version={OLD}", "-e", f"airflow_wheelhouse={wheelhouse}")
    assert install.returncode == 0, why(install)
    api = Airflow()
    assert api.get("/api/v2/version")["version"] == OLD
    done = set()
    for _ in range(2):
        run_id = api.trigger(CANARY)
        assert api.wait_for_run(CANARY, run_id) == "success"
        done.add(run_id)
    yield {"runs": done, "secrets": secrets_digest()}
    # Whatever failed above, leave the lab at the inventory's version for the next `make lab`.
    if {active_version(h) for h in AIRFLOW_HOSTS} != {NEW}:
        assert playbook("tests/playbooks/airflow_reset.yml").returncode == 0
        assert playbook("playbooks/site.yml").returncode == 0


def test_upgrade_refused_while_a_restore_runs(old_cluster):
    lock = "/var/backups/airflow/.restore.lock"
    on(BACKUP_HOST, "mkdir", "-p", "/var/backups/airflow")
    # The holder is a process group of its own: flock and the sleep that inherits the lock.
    holder = on(BACKUP_HOST, "sh", "-c", f"setsid flock {lock} sleep 120 >/dev/null 2>&1 & echo $!")
    pgid = holder.stdout.strip()
    assert holder.returncode == 0 and pgid.isdigit()
    try:
        proc = playbook("playbooks/upgrade.yml", "-e", f"airflow_version={NEW}")
        assert_refused(proc, "A restore is running", not_reached="Upgrade | install")
    finally:
        on(BACKUP_HOST, "kill", "--", f"-{pgid}")
    deadline = time.monotonic() + 30
    while on(BACKUP_HOST, "flock", "-n", lock, "true").returncode != 0:
        assert time.monotonic() < deadline, "the test's lock holder did not end"
        time.sleep(1)
    assert {active_version(h) for h in AIRFLOW_HOSTS} == {OLD}


def test_a_failed_verification_is_rolled_back_to_a_working_old_version(old_cluster):
    # The upgrade migrates and starts 3.3.2, then its verification fails (the canary it is told to run does not exist).
    proc = playbook(
        "playbooks/upgrade.yml",
        "-e",
        f"airflow_version={NEW}",
        "-e",
        "airflow_canary_dag_id=scalecorp_missing",
        "-e",
        "airflow_canary_timeout=20",
        # A backup of this database now: the backups already on the backup host are of the lab's earlier one.
        "-e",
        "airflow_upgrade_backup_max_age=1",
    )
    assert proc.returncode != 0, why(proc)
    out = " ".join(proc.stdout.split())
    assert "did not verify" in out and "-e rollback=true" in out, why(proc)
    assert {active_version(h) for h in AIRFLOW_HOSTS} == {NEW}
    state = record()
    assert state["from"] == OLD and state["to"] == NEW and state["migrated"] is True and state["verified"] is False
    assert state["backup_id"], state
    # The pre-upgrade backup is of the old version.
    manifest = json.loads(on(BACKUP_HOST, "cat", f"/var/backups/airflow/{state['backup_id']}/manifest.json").stdout)
    assert manifest["airflow_version"] == OLD

    back = playbook("playbooks/upgrade.yml", "-e", "rollback=true", "-e", f"airflow_version={OLD}")
    assert back.returncode == 0, why(back)
    assert f"Backup {state['backup_id']}" in back.stdout  # the pre-upgrade backup was restored
    assert {active_version(h) for h in AIRFLOW_HOSTS} == {OLD}
    api = Airflow()
    assert api.get("/api/v2/version")["version"] == OLD
    assert old_cluster["runs"] <= canary_runs(api)
    run_id = api.trigger(CANARY)
    assert api.wait_for_run(CANARY, run_id) == "success"
    old_cluster["runs"].add(run_id)
    assert record()["rolled_back"] is True

    # A second rollback has nothing to do.
    again = playbook("playbooks/upgrade.yml", "-e", "rollback=true", "-e", f"airflow_version={OLD}")
    assert again.returncode == 0, why(again)
    assert "rolled back already" in again.stdout
    assert {c["changed"] for c in recap(again.stdout).values()} == {0}


def test_upgrade_keeps_history_and_secrets_and_runs_the_canary_on_the_new_version(old_cluster):
    proc = playbook("playbooks/upgrade.yml", "-e", f"airflow_version={NEW}")
    assert proc.returncode == 0, why(proc)
    out = " ".join(proc.stdout.split())
    assert "Airflow stops for the migration" in out
    assert "airflow db migrate to 3.3.2 took" in out
    assert {active_version(h) for h in AIRFLOW_HOSTS} == {NEW}
    for host in AIRFLOW_HOSTS:  # the old virtualenv stays for a rollback
        assert on(host, "test", "-x", f"/opt/airflow/{OLD}/bin/airflow").returncode == 0
    api = Airflow()
    assert api.get("/api/v2/version")["version"] == NEW
    assert old_cluster["runs"] <= canary_runs(api)  # DAG run history kept
    assert secrets_digest() == old_cluster["secrets"]
    state = record()
    assert state["verified"] is True and state["from"] == OLD and state["to"] == NEW

    rerun = playbook("playbooks/upgrade.yml", "-e", f"airflow_version={NEW}")
    assert rerun.returncode == 0, why(rerun)
    assert "runs on every host already" in rerun.stdout
    assert {c["changed"] for c in recap(rerun.stdout).values()} == {0}


def test_a_downgrade_across_the_migration_is_refused(old_cluster):
    proc = playbook("playbooks/upgrade.yml", "-e", f"airflow_version={OLD}")
    assert_refused(proc, f"Airflow {OLD} is older than the running {NEW}", "migrations of 3.3.0", not_reached="Upgrade | install")


def test_other_playbooks_refuse_to_change_the_version(old_cluster):
    proc = playbook("playbooks/site.yml", "-e", f"airflow_version={OLD}")
    assert_refused(proc, f"runs Airflow {NEW}; this run asks for {OLD}", f"ansible-playbook upgrade.yml -e airflow_version={OLD}")
