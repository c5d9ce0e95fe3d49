"""PostgreSQL switchover on the lab (issue: PostgreSQL tier).

The roles swap, the old primary streams from the new one, no committed row is
lost, and Airflow follows the new primary; site.yml follows the running primary
instead of the inventory's. (The role's ordering of restarts when the connection
budget is raised and lowered on a running cluster is proven by the molecule
scenario `postgresql`.) The module runs among the last (conftest.LAST_MODULES)
and leaves the standby as the primary: a lab kept after the session
(SCALECORP_KEEP_LAB=1) runs that way, as a cluster does after a real switchover.
"""

from __future__ import annotations

import time

import pytest
import yaml
from airflow_api import Airflow
from conftest import LAB_INVENTORY, assert_refused, on, playbook, recap, why

pytestmark = pytest.mark.lab
CANARY = "scalecorp_canary"
PG_HOSTS = sorted(yaml.safe_load((LAB_INVENTORY / "hosts.yml").read_text())["all"]["children"]["postgresql"]["hosts"])
AIRFLOW_HOSTS = ["lab-api1", "lab-api2", "lab-wk1", "lab-wk2"]
PROBE = "scalecorp_switchover_probe"


def psql(host: str, sql: str, db: str = "airflow") -> str:
    proc = on(host, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def roles() -> dict[str, str]:
    """host -> 'primary' | 'standby', read from the running servers."""
    return {host: "standby" if psql(host, "SELECT pg_is_in_recovery()") == "t" else "primary" for host in PG_HOSTS}


def primary_and_standby() -> tuple[str, str]:
    current = roles()
    primaries = [h for h, r in current.items() if r == "primary"]
    standbys = [h for h, r in current.items() if r == "standby"]
    assert len(primaries) == 1 and standbys, current
    return primaries[0], standbys[0]


def database_host(host: str) -> str:
    """The host in sql_alchemy_conn of an Airflow host (the line holds a password: only the host is read)."""
    proc = on(host, "sh", "-c", r"sed -n 's/^sql_alchemy_conn = .*@\([^:/]*\).*/\1/p' /etc/airflow/airflow.cfg")
    assert proc.returncode == 0, why(proc)
    return proc.stdout.strip()


def address(host: str) -> str:
    return on(host, "sh", "-c", "hostname -I | cut -d' ' -f1").stdout.strip()


def wait_for_row(host: str, sql: str, timeout: float = 5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if psql(host, sql) == "1":
            return time.monotonic() - started
        time.sleep(0.2)
    pytest.fail(f"{sql!r} did not return 1 on {host} within {timeout} s")


def check_switched(old: str, new: str, rows: int) -> None:
    assert roles() == {old: "standby", new: "primary"}
    # The old primary streams from the new one, through its slot.
    replication = psql(new, "SELECT client_addr, state, application_name FROM pg_stat_replication", "postgres").split("|")
    assert replication[:2] == [address(old), "streaming"], replication
    assert psql(new, f"SELECT count(*) FROM {PROBE}") == str(rows)
    psql(new, f"INSERT INTO {PROBE} (note) VALUES ('written on {new}')")
    wait_for_row(old, f"SELECT count(*) FROM {PROBE} WHERE note = 'written on {new}'")
    # Airflow was repointed everywhere, and runs DAGs on the new primary.
    assert {database_host(h) for h in AIRFLOW_HOSTS} in ({new}, {address(new)})


@pytest.fixture(scope="module")
def cluster(lab):
    assert lab.returncode == 0, why(lab)
    primary, standby = primary_and_standby()
    psql(primary, f"CREATE TABLE IF NOT EXISTS {PROBE} (id serial PRIMARY KEY, note text)")
    psql(primary, f"TRUNCATE {PROBE}")
    yield primary, standby
    psql(primary_and_standby()[0], f"DROP TABLE IF EXISTS {PROBE}")


def test_switchover_refuses_bad_input(cluster):
    primary, _ = cluster
    out = assert_refused(playbook("pg-switchover.yml", "-e", "mode=sideways"), "mode must be switchover (planned) or failover")
    assert "Promote the new primary" not in out
    # The running primary is not a standby it could switch to.
    proc = playbook("pg-switchover.yml", "-e", f"new_primary={primary}")
    assert_refused(proc, "must be a running standby", "Nothing was changed")
    # A failover while the primary runs would split the cluster.
    assert_refused(playbook("pg-switchover.yml", "-e", "mode=failover"), "A failover needs the old primary down")
    assert primary_and_standby()[0] == primary


def test_switchover_loses_no_committed_row_and_site_follows_the_new_primary(cluster):
    primary, standby = cluster
    psql(primary, f"INSERT INTO {PROBE} (note) SELECT 'before ' || g FROM generate_series(1, 500) g")
    wait_for_row(standby, f"SELECT (count(*) = 500)::int FROM {PROBE}")

    proc = playbook("pg-switchover.yml")
    assert proc.returncode == 0, why(proc)
    assert f"switchover: {primary} -> {standby}" in proc.stdout
    check_switched(primary, standby, rows=500)
    # The inventory still names the old primary: site.yml follows the running cluster
    # instead, and finds nothing to change. Its plays that read the primary are those of
    # the database and Airflow tiers (the other tiers name every PostgreSQL host or none).
    proc = playbook("playbooks/site.yml", "--limit", "postgresql,airflow")
    assert proc.returncode == 0, why(proc)
    assert {c["changed"] for c in recap(proc.stdout).values()} == {0}
    assert roles() == {primary: "standby", standby: "primary"}
    api = Airflow()
    run_id = api.trigger(CANARY)
    assert api.wait_for_run(CANARY, run_id) == "success"
