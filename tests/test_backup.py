"""Backup and restore of the metadata database on the lab (issue: PostgreSQL backup and restore).

Real runs of playbooks/backup.yml and playbooks/restore.yml against the lab
cluster: DAG runs deleted and brought back by a restore with swap, refusals that
change nothing, retention across several backups, verify mode. The cluster is left
healthy (the canary DAG runs at the end of the restore test) for the files after it.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml
from airflow_api import Airflow
from conftest import LAB_INVENTORY, assert_refused, on, playbook, recap, why

pytestmark = pytest.mark.lab
CANARY = "scalecorp_canary"
HOSTS = yaml.safe_load((LAB_INVENTORY / "hosts.yml").read_text())["all"]["children"]
BACKUP_HOST = next(iter(HOSTS["backup"]["hosts"]))
PG_HOSTS = list(HOSTS["postgresql"]["hosts"])
BACKUP_DIR = "/var/backups/airflow"
ID = re.compile(r"Backup (\d{8}T\d{6}Z) in ")


@pytest.fixture(scope="module")
def api(lab):
    assert lab.returncode == 0, why(lab)
    return Airflow()


@pytest.fixture(scope="module")
def state():
    return {}


def backup(*args: str):
    proc = playbook("playbooks/backup.yml", *args)
    return proc


def backup_id(proc) -> str:
    assert proc.returncode == 0, why(proc)
    return ID.search(proc.stdout).group(1)


def restore(*args: str):
    return playbook("playbooks/restore.yml", *args)


def backups() -> list[str]:
    out = on(BACKUP_HOST, "sh", "-c", f"ls {BACKUP_DIR}").stdout.split()
    return sorted(n for n in out if re.fullmatch(r"\d{8}T\d{6}Z", n))


def manifest(id_: str) -> dict:
    return json.loads(on(BACKUP_HOST, "cat", f"{BACKUP_DIR}/{id_}/manifest.json").stdout)


def psql(sql: str, db: str = "postgres") -> list[str]:
    """Rows of a query on the running primary, as the postgres superuser."""
    for host in PG_HOSTS:
        rec = on(host, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-c", "SELECT pg_is_in_recovery()")
        if rec.stdout.strip() == "f":
            proc = on(host, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", db, "-c", sql)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout.split()
    raise AssertionError("no primary answers")


def databases() -> list[str]:
    return sorted(psql("SELECT datname FROM pg_database WHERE NOT datistemplate"))


def test_restore_with_swap_brings_deleted_runs_back(api, state):
    runs = [api.trigger(CANARY) for _ in range(2)]
    for run_id in runs:
        assert api.wait_for_run(CANARY, run_id) == "success"

    proc = backup()
    id_ = backup_id(proc)
    state["id"] = id_
    m = manifest(id_)
    assert m["id"] == id_
    assert m["airflow_version"] == "3.3.2"
    assert re.fullmatch(r"[0-9a-f]{12}", m["alembic_revision"])
    assert m["postgresql_major"] == 15
    assert m["source"]["role"] == "replica", "a caught-up replica is dumped from"
    assert m["row_counts"]["public.dag_run"] >= 2
    assert m["row_counts"]["public.task_instance"] >= 18
    assert set(m["files"]) == {"airflow.dump", "config.tar.gz"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in m["files"].values())
    members = on(BACKUP_HOST, "tar", "-tzf", f"{BACKUP_DIR}/{id_}/config.tar.gz").stdout.split()
    assert "lab-api1/etc/airflow/airflow.cfg" in members
    assert "lab-lb1/etc/nginx/nginx.conf" in members
    assert "lab-wk1/etc/systemd/system/airflow-worker@.service" in members
    # The lab's secrets file is not vault-encrypted: it stays out of the backup.
    assert not any(name.startswith("controller/") for name in members)
    assert "secrets file is not vault-encrypted: it is not kept" in " ".join(proc.stdout.split())
    modes = on(BACKUP_HOST, "stat", "-c", "%a %U", BACKUP_DIR, f"{BACKUP_DIR}/{id_}/airflow.dump").stdout.split("\n")
    assert modes[0] == "700 root" and modes[1] == "600 root"

    for run_id in runs:
        assert api.request("DELETE", f"/api/v2/dags/{CANARY}/dagRuns/{run_id}").status_code == 204
        assert api.request("GET", f"/api/v2/dags/{CANARY}/dagRuns/{run_id}").status_code == 404

    before = databases()
    proc = restore("-e", f"backup_id={id_}")
    assert proc.returncode == 0, why(proc)
    assert all(c["failed"] == 0 for c in recap(proc.stdout).values())
    out = " ".join(proc.stdout.split())
    assert f"restored into airflow_restore_{id_.lower()}" in out
    previous = sorted(set(databases()) - set(before))
    assert len(previous) == 1 and previous[0].startswith("airflow_before_"), previous
    assert f"previous database is kept as {previous[0]}" in out

    api = Airflow()  # the same users and secrets: a new token from the restored database
    for run_id in runs:
        assert api.get(f"/api/v2/dags/{CANARY}/dagRuns/{run_id}")["state"] == "success"
    assert psql("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'", db="airflow") == ["1"]
    # The cluster runs the canary afterwards.
    run_id = api.trigger(CANARY)
    assert api.wait_for_run(CANARY, run_id) == "success"
    psql(f"DROP DATABASE {previous[0]}")


def test_corrupt_backup_is_refused_before_anything_changes(api, state):
    id_ = state["id"]
    dump = f"{BACKUP_DIR}/{id_}/airflow.dump"
    flip = (
        "import os,sys; p=sys.argv[1]; f=open(p,'r+b'); n=os.path.getsize(p)//2; f.seek(n); "
        "b=f.read(1); f.seek(n); f.write(bytes([b[0]^1])); f.close()"
    )
    assert on(BACKUP_HOST, "python3", "-c", flip, dump).returncode == 0
    try:
        before = databases()
        proc = restore("-e", f"backup_id={id_}")
        assert_refused(
            proc, f"backup {id_} is damaged, checksums do not match its manifest: airflow.dump: sha256", not_reached="Restore | into"
        )
        assert databases() == before
    finally:
        assert on(BACKUP_HOST, "python3", "-c", flip, dump).returncode == 0  # the same byte back


def test_unknown_id_is_refused(api, state):
    proc = restore("-e", "backup_id=20000101T000000Z")
    assert_refused(proc, "unknown backup id 20000101T000000Z in /var/backups/airflow; known backups:", not_reached="Restore | into")
    # A malformed id or none: refused before any host is contacted (test_requests.py).


def test_restore_refused_while_another_runs_and_without_disk(api, state):
    lock = f"{BACKUP_DIR}/.restore.lock"
    # The holder is a process group of its own (flock and the sleep that inherits the lock), ended by the test.
    holder = on(BACKUP_HOST, "sh", "-c", f"setsid flock {lock} sleep 300 >/dev/null 2>&1 & echo $!")
    pgid = holder.stdout.strip()
    assert holder.returncode == 0 and pgid.isdigit()
    try:
        deadline = time.monotonic() + 30
        while on(BACKUP_HOST, "flock", "-n", lock, "true").returncode == 0:
            assert time.monotonic() < deadline, "the test's lock holder never took the lock"
            time.sleep(0.5)
        proc = restore("-e", "backup_id=latest")
        assert_refused(proc, "another restore is running", not_reached="Restore | into")
    finally:
        on(BACKUP_HOST, "kill", "--", f"-{pgid}")
        deadline = time.monotonic() + 30
        while on(BACKUP_HOST, "flock", "-n", lock, "true").returncode != 0:
            assert time.monotonic() < deadline, "the test's lock holder did not end"
            time.sleep(1)
    proc = restore("-e", "backup_id=latest", "-e", "backup_restore_min_free_mb=100000000")
    assert_refused(proc, "not enough disk for restoring", not_reached="Restore | into")
    proc = backup("-e", "backup_min_free_mb=100000000")
    assert_refused(proc, "Nothing was backed up: not enough disk for a dump of airflow", not_reached="Backup | the configuration")


def test_retention_keeps_exactly_what_it_promises(api, state):
    # History older than today (copies of a real backup under older ids): Monday and
    # Tuesday of ISO weeks 2 and 3 of 2026.
    old = ["20260105T010000Z", "20260106T010000Z", "20260112T010000Z", "20260113T010000Z"]
    src = state["id"]
    for id_ in old:
        script = (
            f'cp -a {BACKUP_DIR}/{src} {BACKUP_DIR}/{id_} && python3 -c "import json,sys; p=sys.argv[1]; '
            f"m=json.load(open(p)); m['id']='{id_}'; json.dump(m, open(p,'w'))\" {BACKUP_DIR}/{id_}/manifest.json"
        )
        assert on(BACKUP_HOST, "sh", "-c", script).returncode == 0
    rules = ("-e", "backup_keep_last=2", "-e", "backup_keep_daily=2", "-e", "backup_keep_weekly=3")
    today = [i for i in backups() if i not in old]
    for _round in range(2):
        new = backup_id(backup(*rules))
        today.append(new)
        # last 2: today's two newest; daily 2: today's newest and 2026-01-13;
        # weekly 3: this week's newest, 2026-W03 (01-13) and 2026-W02 (01-06).
        assert backups() == sorted([*today[-2:], "20260106T010000Z", "20260113T010000Z"])
    m = manifest(today[-1])
    assert m["id"] == today[-1]


def test_verify_mode_restores_compares_and_drops(api, state):
    before = databases()
    proc = restore("-e", "mode=verify")
    assert proc.returncode == 0, why(proc)
    out = " ".join(proc.stdout.split())
    latest = backups()[-1]
    assert f"Backup {latest} restored into a scratch database" in out and "verified and dropped" in out
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values())
    assert databases() == before


def test_restore_without_swap_is_idempotent(api, state):
    latest = backups()[-1]
    name = f"airflow_restore_{latest.lower()}"
    args = ("-e", "backup_id=latest", "-e", "backup_restore_swap=false")
    first = restore(*args)
    assert first.returncode == 0
    assert name in databases()
    assert recap(first.stdout)[BACKUP_HOST]["changed"] >= 1
    again = restore(*args)
    assert again.returncode == 0
    assert all(c["changed"] == 0 for c in recap(again.stdout).values())
    psql(f"DROP DATABASE {name}")
    assert name not in databases()


def test_directory_format_dumps_in_parallel_and_restores(api, state):
    """The large-database format: pg_dump -Fd -j, a checksum per file, verified by a scratch restore."""
    proc = backup("-e", "backup_dump_format=directory", "-e", "backup_jobs=2")
    id_ = backup_id(proc)
    m = manifest(id_)
    assert m["dump_format"] == "directory"
    dumped = [name for name in m["files"] if name.startswith("airflow.dir/")]
    assert "airflow.dir/toc.dat" in dumped
    assert len(dumped) > 10, dumped  # one file per table's data
    before = databases()
    proc = restore("-e", "mode=verify", "-e", f"backup_id={id_}")
    assert proc.returncode == 0, why(proc)
    assert f"Backup {id_} restored into a scratch database" in " ".join(proc.stdout.split())
    assert databases() == before
    # One byte of one table's file: refused, naming the file.
    victim = max((n for n in dumped if n != "airflow.dir/toc.dat"), key=lambda n: m["files"][n]["size"])
    path = f"{BACKUP_DIR}/{id_}/{victim}"
    flip = "import sys; p=sys.argv[1]; d=bytearray(open(p,'rb').read()); d[len(d)//2]^=1; open(p,'wb').write(d)"
    assert on(BACKUP_HOST, "python3", "-c", flip, path).returncode == 0
    try:
        proc = restore("-e", "mode=verify", "-e", f"backup_id={id_}")
        damaged = f"backup {id_} is damaged, checksums do not match its manifest: {victim}: sha256"
        assert_refused(proc, damaged, not_reached="Restore | into")
        assert databases() == before
    finally:  # the same byte back: later tests (maintenance's monthly check) verify the newest backup
        assert on(BACKUP_HOST, "python3", "-c", flip, path).returncode == 0


def test_backup_of_another_postgresql_major_is_refused(api, state):
    """A backup made on another major version is refused before anything changes."""
    source, copy = backups()[-1], "20000102T000000Z"
    edit = (
        "import json,sys; p=sys.argv[1]; m=json.load(open(p)); m['id']=sys.argv[2]; "
        "m['postgresql_major']+=1; m['postgresql_version']=str(m['postgresql_major'])+'.0'; json.dump(m,open(p,'w'))"
    )
    assert on(BACKUP_HOST, "cp", "-a", f"{BACKUP_DIR}/{source}", f"{BACKUP_DIR}/{copy}").returncode == 0
    try:
        assert on(BACKUP_HOST, "python3", "-c", edit, f"{BACKUP_DIR}/{copy}/manifest.json", copy).returncode == 0
        before = databases()
        proc = restore("-e", f"backup_id={copy}")
        other = manifest(source)["postgresql_major"] + 1
        assert_refused(proc, f"backup {copy} is of PostgreSQL {other}, the primary", not_reached="Restore | into")
        assert "restore it on a cluster of the same major version" in " ".join(proc.stdout.split())
        assert databases() == before
    finally:
        on(BACKUP_HOST, "rm", "-rf", f"{BACKUP_DIR}/{copy}")
