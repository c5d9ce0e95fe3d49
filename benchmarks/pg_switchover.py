#!/usr/bin/env python3
"""PostgreSQL switchover benchmark: write outage and Airflow recovery, vs a restart.

    make lab && .venv/bin/python benchmarks/pg_switchover.py [--rounds 2]

On the running lab, with a write probe on an Airflow worker host (a libpq
client that inserts a row every 0.1 s, connecting to every PostgreSQL node with
target_session_attrs=read-write, as a client that follows the primary would):
  1. replication lag at rest (bytes and replay_lag from pg_stat_replication);
  2. baseline: `systemctl restart` of the primary's PostgreSQL: the longest gap
     between two acknowledged writes;
  3. `pg-switchover.yml` there and back (--rounds): the same gap, the
     fence-to-promotion time the playbook reports, its wall-clock time, and the
     time until a canary DAG run started after it succeeds;
  4. rows lost: acknowledged inserts missing from the table afterwards.
Prints a table; never part of pass/fail. Leaves the inventory's primary in place.
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
sys.path.insert(0, str(ROOT / "tests"))
from airflow_api import Airflow  # noqa: E402  (the tests' API client)
from conftest import container, lab_secrets, on, playbook  # noqa: E402

PROBE_HOST = "lab-wk1"
PG_HOSTS = sorted(yaml.safe_load((ROOT / "inventories/lab/hosts.yml").read_text())["all"]["children"]["postgresql"]["hosts"])
PROBE = r"""
import json, os, sys, time
import psycopg2
dsn = sys.stdin.readline().strip()
acked, errors, conn = [], 0, None
while not os.path.exists("/root/probe.stop"):
    try:
        if conn is None:
            conn = psycopg2.connect(dsn)
            conn.autocommit = True
        with conn.cursor() as cur:
            now = time.time()
            cur.execute("INSERT INTO scalecorp_bench_probe VALUES (%s)", (now,))
        acked.append(now)
    except Exception:
        errors += 1
        try:
            conn.close()
        except Exception:
            pass
        conn = None
    time.sleep(0.1)
print(json.dumps({"acked": acked, "errors": errors}))
"""


def psql(host: str, sql: str, db: str = "airflow") -> str:
    proc = on(host, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", db, "-c", sql)
    if proc.returncode != 0:
        sys.exit(f"psql on {host}: {proc.stderr}")
    return proc.stdout.strip()


def primary() -> str:
    return next(h for h in PG_HOSTS if psql(h, "SELECT pg_is_in_recovery()", "postgres") == "f")


class Probe:
    """The write probe, running on PROBE_HOST with Airflow's own virtualenv (psycopg2)."""

    def __init__(self) -> None:
        on(PROBE_HOST, "rm", "-f", "/root/probe.stop")
        password = lab_secrets()["postgresql_airflow_password"]
        self.dsn = (
            f"host={','.join(PG_HOSTS)} dbname=airflow user=airflow password={password} "
            "target_session_attrs=read-write connect_timeout=2 sslmode=prefer"
        )
        self.proc = subprocess.Popen(
            ["docker", "exec", "-i", container(PROBE_HOST), "/opt/airflow/current/bin/python", "-c", PROBE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.proc.stdin.write(self.dsn + "\n")
        self.proc.stdin.flush()

    def stop(self) -> dict:
        on(PROBE_HOST, "touch", "/root/probe.stop")
        out, _ = self.proc.communicate(timeout=60)
        return json.loads(out)


def longest_gap(acked: list[float]) -> float:
    return max((b - a for a, b in zip(acked, acked[1:], strict=False)), default=0.0)


def measured(action) -> dict:
    """Run `action` under the write probe: its result plus the probe's figures."""
    probe = Probe()
    time.sleep(3)
    result = action()
    time.sleep(3)
    data = probe.stop()
    acked = data["acked"]
    stored = int(psql(primary(), f"SELECT count(*) FROM scalecorp_bench_probe WHERE t >= {acked[0]} AND t <= {acked[-1]}"))
    return {**result, "gap": longest_gap(acked), "acked": len(acked), "lost": len(acked) - stored, "errors": data["errors"]}


def restart_primary() -> dict:
    host = primary()
    started = time.monotonic()
    on(host, "systemctl", "restart", "postgresql")
    return {"what": f"restart postgresql on {host}", "wall": time.monotonic() - started}


def switchover(to: str | None = None) -> dict:
    api = Airflow()
    args = ["-e", f"new_primary={to}"] if to else []
    started = time.monotonic()
    proc = playbook("pg-switchover.yml", *args)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit("pg-switchover.yml failed: see its output above")
    moved = re.search(r"switchover: (\S+) -> ([^\s']+)", proc.stdout)
    fence = re.search(r"writes stopped for ([\d.]+) s", proc.stdout)
    run_id = api.trigger("scalecorp_canary")
    state = api.wait_for_run("scalecorp_canary", run_id)
    return {
        "what": f"pg-switchover.yml {moved[1]} -> {moved[2]}",
        "wall": wall,
        "fence": float(fence[1]),
        "airflow": time.monotonic() - started,
        "canary": state,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="switchovers (there and back alternate)")
    parser.add_argument("--lag-samples", type=int, default=20)
    args = parser.parse_args()

    home = primary()
    psql(home, "CREATE TABLE IF NOT EXISTS scalecorp_bench_probe (t double precision); ALTER TABLE scalecorp_bench_probe OWNER TO airflow")

    lags = []
    for _ in range(args.lag_samples):
        sql = "SELECT pg_wal_lsn_diff(sent_lsn, replay_lsn), coalesce(extract(epoch FROM replay_lag), 0) FROM pg_stat_replication"
        row = psql(home, sql)
        lags.append(tuple(float(x) for x in row.split("\n")[0].split("|")))
        time.sleep(0.5)

    rows = [measured(restart_primary)]
    for i in range(args.rounds):
        rows.append(measured(lambda i=i: switchover(None if i % 2 == 0 else home)))
    if primary() != home:
        switchover(home)
    psql(primary(), "DROP TABLE scalecorp_bench_probe")

    print(f"\nPostgreSQL switchover on the lab ({os.cpu_count()} cores shared by every host), {time.strftime('%Y-%m-%d')}")
    print(
        f"replication lag at rest over {len(lags)} samples: max {max(b for b, _ in lags):.0f} bytes, "
        f"max replay_lag {max(s for _, s in lags) * 1000:.1f} ms"
    )
    base = rows[0]["gap"]
    print(f"\n{'action':42} {'write gap s':>11} {'x restart':>9} {'fence s':>8} {'playbook s':>10} {'canary ok s':>11} {'lost':>5}")
    for r in rows:
        print(
            f"{r['what']:42} {r['gap']:11.1f} {r['gap'] / base:9.1f} {r.get('fence', float('nan')):8.1f} "
            f"{r['wall']:10.1f} {r.get('airflow', float('nan')):11.1f} {r['lost']:5d}"
        )
    print("\nwrite gap: longest pause between two acknowledged inserts of a client that follows the primary;")
    print("canary ok: from the playbook's start until a canary DAG run triggered after it succeeded.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
