"""The maintenance runbook on the lab (issue: maintenance): daily, weekly and monthly.

Real runs of playbooks/maintenance.yml against the lab cluster. Each report is read
from the file the run names and asserted on values from the lab: every component in
the status table, a DAG run the test marked failed, every host with its disk use, a
statement of pg_stat_statements, a task log planted 40 days old deleted while a fresh
one stays, worker instances drained and restarted one host at a time, a metadata row
planted 400 days old archived by airflow db clean, the indexes of a table bloated on
purpose rebuilt, and the latest backup restored and verified. Bad input is refused
before anything changes.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from airflow_api import Airflow
from conftest import LAB_INVENTORY, on, playbook, recap, why

pytestmark = pytest.mark.lab
MAINTENANCE = "playbooks/maintenance.yml"
CANARY = "scalecorp_canary"
HOSTS = yaml.safe_load((LAB_INVENTORY / "hosts.yml").read_text())["all"]["children"]
BACKUP_HOST = next(iter(HOSTS["backup"]["hosts"]))
PG_HOSTS = list(HOSTS["postgresql"]["hosts"])
WORKERS = list(HOSTS["airflow"]["children"]["airflow_worker"]["hosts"])
SCHEDULER = next(iter(HOSTS["airflow"]["children"]["airflow_scheduler"]["hosts"]))
ALL_HOSTS = sorted(
    {h for g in HOSTS.values() for h in (g.get("hosts") or {})}
    | {h for g in HOSTS["airflow"]["children"].values() for h in (g.get("hosts") or {})}
)
LOGS = "/var/log/airflow/dag_id=scalecorp_maintenance_test/run_id=planted"
HISTORY = "/var/lib/scalecorp/scaling-history.jsonl"


@pytest.fixture(scope="module")
def api(lab):
    assert lab.returncode == 0, why(lab)
    return Airflow()


def maintenance(*args: str):
    return playbook(MAINTENANCE, *args)


def report_of(proc) -> str:
    """The report file the run names (and printed), read on the controller."""
    assert proc.returncode == 0, why(proc)
    m = re.search(r"Report: (\S+\.txt)", proc.stdout)
    assert m, "the run names no report file"
    path = Path(m.group(1))
    assert path.is_file()
    return path.read_text()


def section(report: str, title_start: str) -> str:
    """One section of a report: from its title to the next title."""
    parts = re.split(r"\n\n(?=[^\n]+\n-+\n)", report)
    found = [p for p in parts if p.startswith(title_start)]
    assert found, f"no section {title_start!r} in the report:\n{report}"
    return found[0]


def psql(sql: str, db: str = "airflow") -> str:
    for host in PG_HOSTS:
        if on(host, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-c", "SELECT pg_is_in_recovery()").stdout.strip() == "f":
            proc = on(host, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", db, "-c", sql)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout.strip()
    raise AssertionError("no primary answers")


# Bad settings and a run without a tag: refused before any host is contacted (test_requests.py).


def test_daily_reports_failed_runs_disk_and_memory_and_changes_nothing(api):
    # A run of the canary marked failed through the API: the daily report must list it.
    # Marked once finished: a run still being scheduled can be taken back by the scheduler
    # (marking failed skips the unstarted tasks, and a run of skipped tasks ends "success").
    run_id = api.trigger(CANARY)
    api.wait_for_run(CANARY, run_id)
    api.set_run_state(CANARY, run_id, "failed")
    assert api.get(f"/api/v2/dags/{CANARY}/dagRuns/{run_id}")["state"] == "failed"
    proc = maintenance("--tags", "daily")
    report = report_of(proc)
    assert {c["changed"] for c in recap(proc.stdout).values()} == {0}, "a report-only run changes nothing"
    components = section(report, "Components")
    assert re.search(r"\n\d+ checks: \d+ ok, \d+ warning\(s\), 0 unhealthy", components), components
    for host in ALL_HOSTS:
        assert re.search(rf"\n{host} +\S", components), f"{host} is not in the component table"
    assert "airflow-scheduler" in components and "airflow-worker@1" in components
    failed = section(report, "Failed DAG runs of the last 24 h")
    assert run_id in failed and CANARY in failed
    assert re.search(r"\| failed +\| +\d+ \|", section(report, "DAG runs of the last 24 h, by state"))
    disk = section(report, "Disk")
    memory = section(report, "Memory and load")
    for host in ALL_HOSTS:
        assert re.search(rf"\| {host} +\| / +\| +\d+ \| +\d+ \| +\d+ \| +\d+ \| (ok|WARN) +\|", disk), f"{host} has no disk row"
        assert re.search(rf"\| {host} +\| +\d+ \| +\d+ \| +\d+ \|", memory), f"{host} has no memory row"


def test_weekly_prunes_old_logs_reports_queries_and_restarts_host_by_host(api):
    wk = WORKERS[0]
    old, fresh = f"{LOGS}/task_id=old/attempt=1.log", f"{LOGS}/task_id=fresh/attempt=1.log"
    plant = f"mkdir -p {LOGS}/task_id=old {LOGS}/task_id=fresh && echo old > {old} && echo fresh > {fresh} && touch -d '40 days ago' {old}"
    assert on(wk, "sh", "-c", plant).returncode == 0
    # Two changes of the worker count in the autoscaler's history, as scale.yml appends them.
    now = time.time()
    lines = [
        {"time": now - 1800, "mode": "auto", "action": "up", "current": 2, "target": 4, "rule": "scale up: queue length 73 > 50"},
        {"time": now - 600, "mode": "auto", "action": "down", "current": 4, "target": 2, "rule": "scale down: planted by the test"},
    ]
    history = "\n".join(json.dumps(line) for line in lines)
    assert on(SCHEDULER, "sh", "-c", f"mkdir -p /var/lib/scalecorp && printf '%s\\n' '{history}' >> {HISTORY}").returncode == 0
    before = {h: on(h, "systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "airflow-worker@1").stdout for h in WORKERS}
    try:
        # A rolling restart of the workers on top: drained one host at a time.
        proc = maintenance("--tags", "weekly", "-e", '{"maintenance_patch_restart_services": ["airflow-worker@*"]}')
        report = report_of(proc)
    finally:
        unplant = f"grep -v -e 'planted by the test' -e 'queue length 73' {HISTORY} > {HISTORY}.t; mv {HISTORY}.t {HISTORY}"
        on(SCHEDULER, "sh", "-c", unplant)
    assert on(wk, "test", "-e", old).returncode != 0, "the 40-day-old log is deleted"
    assert on(wk, "test", "-e", fresh).returncode == 0, "the fresh log stays"
    logs = section(report, "Task logs older than 30 days")
    assert re.search(rf"\| {wk} +\| +1 \| +[0-9.]+ \| +4\d\.\d \| +1 \|", logs), logs
    top = section(report, "Top 10 statements by total time")
    rows = [r for r in top.splitlines() if r.startswith("| ") and "calls" not in r]
    assert len(rows) == 10, top
    assert any(re.search(r"\b(SELECT|UPDATE|INSERT)\b .*\b(job|dag_run|task_instance|dag)\b", r) for r in rows), top
    patch = section(report, "Security updates")
    for host in ALL_HOSTS:
        assert re.search(rf"\| {host} +\| ok ", patch), f"{host}: apt update did not run:\n{patch}"
    for host in WORKERS:
        assert re.search(rf"\| {host} +\|.*airflow-worker@1", patch), patch
        after = on(host, "systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "airflow-worker@1").stdout
        assert after != before[host], f"{host}'s worker was restarted"
        assert on(host, "systemctl", "is-active", "airflow-worker@1").stdout.strip() == "active"
    # One host at a time: wk1's workers were back and the cluster healthy before wk2's were drained.
    out = proc.stdout
    first, second = (out.index(f"[{h}] => (item=airflow-worker@1)") for h in WORKERS)
    assert first < out.index("Wait until the cluster is healthy again", first) < second
    scaling = section(report, "Autoscaler's changes")
    assert re.search(r"\| +\d+ \| +\d+ \| +\d+ \| +\d+ \| +2 \| +4 \|", scaling), scaling

    # Again, report only: nothing to prune, no restarts -> no change.
    proc = maintenance("--tags", "weekly")
    report = report_of(proc)
    assert {c["changed"] for c in recap(proc.stdout).values()} == {0}, why(proc)
    assert re.search(rf"\| {wk} +\| +0 \| +0\.0 \| +\| +0 \|", section(report, "Task logs older than 30 days"))


def test_monthly_cleans_vacuums_and_proves_a_backup_by_restoring_it(api):
    listing = on(BACKUP_HOST, "sh", "-c", "ls /var/backups/airflow 2>/dev/null").stdout.split()
    if not any(re.fullmatch(r"\d{8}T\d{6}Z", n) for n in listing):
        proc = playbook("playbooks/backup.yml")
        assert proc.returncode == 0, why(proc)
    # A metadata row older than the retention: airflow db clean must archive it. And bloat:
    # 200,000 recent rows in Airflow's log table, 98 % deleted again, leave its indexes' leaf
    # pages 2-5 % full (REINDEX warranted below 50 %).
    psql("INSERT INTO log (dttm, event, owner) VALUES (now() - interval '400 days', 'scalecorp-maintenance-test', 'test')")
    # Autovacuum would clean the dead rows before the run does (and the count below would be 0).
    psql("ALTER TABLE log SET (autovacuum_enabled = false)")
    psql(
        "INSERT INTO log (dttm, event, owner) SELECT now(), 'scalecorp-bloat', 'test' FROM generate_series(1, 200000); "
        "DELETE FROM log WHERE event = 'scalecorp-bloat' AND id % 50 <> 0"
    )
    archives_before = set(psql("SELECT tablename FROM pg_tables WHERE tablename LIKE '_airflow_deleted__log__%'").split())
    try:
        proc = maintenance("--tags", "monthly", "-e", "maintenance_reindex_min_mb=1")
        report = report_of(proc)
    finally:
        psql("DELETE FROM log WHERE event = 'scalecorp-bloat'")
        psql("ALTER TABLE log RESET (autovacuum_enabled)")
    clean = section(report, "airflow db clean")
    assert re.search(r"\| log +\| +1 \|", clean), clean
    assert "rows archived: 1" in clean
    archives = set(psql("SELECT tablename FROM pg_tables WHERE tablename LIKE '_airflow_deleted__log__%'").split()) - archives_before
    assert len(archives) == 1, archives
    archive = archives.pop()
    assert archive in clean
    assert psql(f"SELECT event FROM {archive}") == "scalecorp-maintenance-test"
    assert psql("SELECT count(*) FROM log WHERE event = 'scalecorp-maintenance-test'") == "0"
    vacuum = section(report, "VACUUM (ANALYZE)")
    assert "VACUUM (ANALYZE) ran: dead rows" in vacuum
    m = re.search(r"\| log +\| +\d+ \| +(\d+) \| +(\d+) \|", vacuum)
    assert m and int(m.group(1)) >= 190000 and int(m.group(2)) < 1000, vacuum
    bloat = section(report, "Index bloat")
    m = re.search(r"\| public\.log_pkey +\| log +\| +[0-9.]+ \| +([0-9.]+) \|", bloat)
    assert m and float(m.group(1)) < 10, bloat
    rebuilt = section(report, "REINDEX CONCURRENTLY")
    m = re.search(r"\| public\.log_pkey +\| +[0-9.]+ \| +([0-9.]+) \|", rebuilt)
    assert m and float(m.group(1)) > 50, rebuilt
    verify = section(report, "Backup verification")
    m = re.search(r"\| (\d{8}T\d{6}Z) \| (\S+) +\| +(\d+) \| +(\d+) \| +[0-9.]+ \| verified +\|", verify)
    assert m, verify
    newest = max(n for n in on(BACKUP_HOST, "ls", "/var/backups/airflow").stdout.split() if re.fullmatch(r"\d{8}T\d{6}Z", n))
    assert m.group(1) == newest and m.group(2) in PG_HOSTS and int(m.group(3)) > 20 and int(m.group(4)) > 0
    assert psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'airflow_verify_%'", db="postgres") == "0"
    psql(f"DROP TABLE {archive}")

    # Check mode: nothing archived, vacuumed or restored; nothing changed.
    proc = maintenance("--tags", "monthly", "--check")
    report = report_of(proc)
    assert {c["changed"] for c in recap(proc.stdout).values()} == {0}, why(proc)
    assert "check mode: would archive 0 rows" in section(report, "airflow db clean")
    assert "checked (check mode: checksums only, nothing restored)" in section(report, "Backup verification")
