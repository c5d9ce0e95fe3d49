#!/usr/bin/env python3
"""Backup benchmark: the collection's backup and restore vs pg_dump/pg_restore by hand and the seed.

    .venv/bin/python benchmarks/backup.py [--size-gb 1.0] [--keep-filler]

On the running lab (make lab; SCALECORP_LAB_NAME selects another lab), one run each:
  1. grows the metadata database to at least --size-gb with rows in Airflow's own
     `log` table (random text, so the dump compresses like real data);
  2. ours: playbooks/backup.yml, then playbooks/restore.yml with
     backup_restore_swap=false (checksums, pg_restore -j into a new database, row
     counts and alembic revision compared): backup + verify + restore;
  3. by hand, from the same backup host against the same nodes: pg_dump -Fc from the
     replica, then createdb + pg_restore -j into the primary;
  4. the seed: pg_dump to plain SQL, then psql < dump.sql into a new database.
Prints a table: whole playbooks (preflight and Ansible's overhead included) and the
modules' own work, as ratios to the hand-made commands. Never part of pass/fail.
Removes the databases, dumps and rows it made (the filler stays with --keep-filler).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LAB_NAME = os.environ.get("SCALECORP_LAB_NAME") or "lab"
ENV = dict(
    os.environ,
    ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
    PATH=f"{BIN}:{os.environ['PATH']}",
    ANSIBLE_FORCE_COLOR="0",
    SCALECORP_LAB_NAME=LAB_NAME,
    ANSIBLE_CACHE_PLUGIN_CONNECTION=str(ROOT / (".cache/facts" if LAB_NAME == "lab" else f".cache/facts-{LAB_NAME}")),
)
INVENTORY = ROOT / "inventories/lab"
GROUPS = yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]["children"]
BACKUP_HOST = next(iter(GROUPS["backup"]["hosts"]))
PG_HOSTS = list(GROUPS["postgresql"]["hosts"])
BACKUP_DIR = "/var/backups/airflow"
WORK = "/root/benchmark"


def container(host: str) -> str:
    return host if LAB_NAME == "lab" else f"{LAB_NAME}-{host}"


def sh(cmd: list[str], check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=env or ENV, text=True, capture_output=True, check=False)
    if check and proc.returncode != 0:
        sys.exit(f"$ {' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def on(host: str, script: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    extra = [item for key, value in (env or {}).items() for item in ("-e", f"{key}={value}")]
    return sh(["docker", "exec", *extra, container(host), "bash", "-c", script], check=check)


def timed(fn, *args, **kw) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = fn(*args, **kw)
    return time.monotonic() - started, result


def address(host: str) -> str:
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return sh(["docker", "inspect", "-f", fmt, container(host)]).stdout.strip()


def roles() -> tuple[str, str]:
    primary = replica = None
    for host in PG_HOSTS:
        state = on(host, "runuser -u postgres -- psql -XAtqc 'SELECT pg_is_in_recovery()'").stdout.strip()
        if state == "f":
            primary = host
        else:
            replica = host
    return primary, replica or primary


def psql(host: str, sql: str, db: str = "airflow") -> str:
    return on(host, f'runuser -u postgres -- psql -XAtq -d {db} -c "{sql}"').stdout.strip()


def playbook(name: str, *args: str) -> subprocess.CompletedProcess:
    return sh([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(ROOT / "playbooks" / name), *args])


def module_result(output: str, key: str) -> float:
    # callback_result_format = yaml (ansible.cfg): "key: 1.5"; json: "\"key\": 1.5"
    found = re.findall(rf'"?{key}"?: ([0-9.]+)', output)
    return float(found[-1]) if found else float("nan")


FILLERS = (
    # Two of the tables that grow in a real metadata database, so that the parallel
    # restore has more than one table to work on. Rows are marked for the cleanup.
    "INSERT INTO log (dttm, event, dag_id, owner, extra) SELECT now(), 'benchmark-filler', 'benchmark', 'benchmark', "
    + " || ".join(["md5(random()::text)"] * 8)
    + " FROM generate_series(1, {batch})",
    "INSERT INTO job (dag_id, state, job_type, start_date, end_date, latest_heartbeat, executor_class, hostname, unixname) "
    "SELECT 'benchmark', 'success', 'BenchmarkFiller', now(), now(), now(), 'CeleryExecutor', "
    + " || ".join(["md5(random()::text)"] * 4)
    + ", 'airflow' FROM generate_series(1, {batch})",
)
CLEANUP = ("DELETE FROM log WHERE event = 'benchmark-filler'", "DELETE FROM job WHERE job_type = 'BenchmarkFiller'")


def grow(primary: str, replica: str, size_gb: float) -> int:
    target = int(size_gb * 1024**3)
    size = int(psql(primary, "SELECT pg_database_size('airflow')"))
    batch = 500_000
    turn = 0
    while size < target:
        psql(primary, FILLERS[turn % len(FILLERS)].format(batch=batch))
        turn += 1
        size = int(psql(primary, "SELECT pg_database_size('airflow')"))
        print(f"  metadata database: {size / 1024**3:.2f} GiB", file=sys.stderr)
    psql(primary, "VACUUM ANALYZE log, job")
    # The replica must have it all before it is dumped from.
    deadline = time.monotonic() + 600
    while int(psql(replica, "SELECT pg_database_size('airflow')") or 0) < size * 0.95 and time.monotonic() < deadline:
        time.sleep(5)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--keep-filler", action="store_true")
    args = parser.parse_args()
    primary, replica = roles()
    secrets = yaml.safe_load((INVENTORY / "group_vars/all/secrets.yml").read_text())["scalecorp_secrets"]
    pg_env = {"PGPASSWORD": secrets["postgresql_backup_password"], "PGUSER": "airflow_backup", "PGSSLMODE": "require"}
    p_addr, r_addr = address(primary), address(replica)

    print(f"Growing the metadata database to {args.size_gb} GiB on {primary} ...", file=sys.stderr)
    size = grow(primary, replica, args.size_gb)
    rows = int(psql(primary, "SELECT count(*) FROM log"))
    rows_total = 0
    times: dict[str, float] = {}
    try:
        print("Ours: backup.yml, restore.yml (no swap) ...", file=sys.stderr)
        times["backup_play"], proc = timed(playbook, "backup.yml", "-v")
        times["backup_module"] = module_result(proc.stdout, "duration_seconds")
        backup_id = re.search(r"Backup (\d{8}T\d{6}Z) in ", proc.stdout).group(1)
        manifest = json.loads(on(BACKUP_HOST, f"cat {BACKUP_DIR}/{backup_id}/manifest.json").stdout)
        rows_total = sum(manifest["row_counts"].values())
        dump_bytes = manifest["total_bytes"]
        times["restore_play"], proc = timed(
            playbook, "restore.yml", "-v", "-e", f"backup_id={backup_id}", "-e", "backup_restore_swap=false"
        )
        times["restore_module"] = module_result(proc.stdout, "duration_seconds")
        psql(primary, f"DROP DATABASE IF EXISTS airflow_restore_{backup_id.lower()}", db="postgres")

        def restore_into(name: str, command: str) -> float:
            """Seconds of createdb + `command` restoring into it; its log rows are checked, then it is dropped.

            Errors of the restore itself are tolerated (extensions need a superuser), a short table is not."""
            seconds, _ = timed(on, BACKUP_HOST, f"createdb -h {p_addr} -O airflow {name} && {command} 2>/dev/null; true", env=pg_env)
            got = psql(primary, "SELECT count(*) FROM log", db=name)
            psql(primary, f"DROP DATABASE IF EXISTS {name}", db="postgres")
            if got != str(rows):
                sys.exit(f"{name}: {got} rows in log after the restore, {rows} expected: the baseline is not a restore")
            return seconds

        print("By hand: pg_dump -Fc, pg_restore -j 2 ...", file=sys.stderr)
        on(BACKUP_HOST, f"mkdir -p {WORK} && chmod 700 {WORK}")
        times["hand_dump"], _ = timed(on, BACKUP_HOST, f"pg_dump -Fc -h {r_addr} -d airflow -f {WORK}/raw.dump", env=pg_env)
        times["hand_restore"] = restore_into(
            "benchmark_hand", f"pg_restore -j 2 --no-owner --role=airflow -h {p_addr} -d benchmark_hand {WORK}/raw.dump"
        )

        print("The seed: pg_dump > dump.sql, psql < dump.sql ...", file=sys.stderr)
        times["seed_dump"], _ = timed(on, BACKUP_HOST, f"pg_dump -h {r_addr} -d airflow > {WORK}/dump.sql", env=pg_env)
        times["seed_restore"] = restore_into(
            "benchmark_seed", f"psql -q -h {p_addr} -d benchmark_seed -c 'SET ROLE airflow' -f {WORK}/dump.sql >/dev/null"
        )
    finally:
        on(BACKUP_HOST, f"rm -rf {WORK}", check=False)
        if not args.keep_filler:
            for sql in CLEANUP:
                psql(primary, sql)
            psql(primary, "VACUUM FULL log, job")

    ours_play = times["backup_play"] + times["restore_play"]
    ours_work = times["backup_module"] + times["restore_module"]
    hand = times["hand_dump"] + times["hand_restore"]
    print(
        f"\nMetadata database {size / 1024**3:.2f} GiB ({rows} rows in log, {rows_total} rows in all, "
        f"{len(FILLERS)} tables filled), dump {dump_bytes / 1024**2:.0f} MiB"
    )
    print(f"Dumped from {replica} (replica), restored on {primary}, from {BACKUP_HOST}; pg_restore -j 2\n")
    print("| measure | seconds | ratio | goal |")
    print("|---|---|---|---|")
    print(f"| by hand: pg_dump -Fc + pg_restore -j 2 (baseline) | {hand:.0f} | 1.00 | |")
    print(f"| ours, modules: backup + checksums + restore + row counts | {ours_work:.0f} | {ours_work / hand:.2f} x baseline | <= 1.3 |")
    print(
        f"| ours, whole playbooks (backup.yml + restore.yml, preflight included) | {ours_play:.0f} | {ours_play / hand:.2f} x baseline | |"
    )
    print(f"| seed restore: psql < dump.sql | {times['seed_restore']:.0f} | | |")
    print(
        f"| ours, restore module (checksums, pg_restore -j 2, verify) | {times['restore_module']:.0f} | "
        f"{times['seed_restore'] / times['restore_module']:.2f} x faster than the seed | >= 2 |"
    )
    print(
        f"| by hand: pg_restore -j 2 alone | {times['hand_restore']:.0f} | "
        f"{times['seed_restore'] / times['hand_restore']:.2f} x faster than the seed | |"
    )
    print(
        f"| (backup module {times['backup_module']:.0f} s, pg_dump -Fc by hand {times['hand_dump']:.0f} s, "
        f"seed pg_dump {times['seed_dump']:.0f} s) | | | |"
    )


if __name__ == "__main__":
    main()
