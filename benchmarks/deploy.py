#!/usr/bin/env python3
"""Deploy benchmark: cold site.yml vs the bare installs, a rerun, and memory.

    .venv/bin/python benchmarks/deploy.py [--skip-baseline]

Measures, on the lab's hosts (2 cores, one run, same machine):
  1. baseline: fresh hosts, only the package installs site.yml would do (apt
     for every tier, the Airflow virtualenvs from the wheelhouse), in parallel
     across hosts as Ansible does;
  2. cold `site.yml` on fresh hosts, with the slowest tasks (profile_tasks);
  3. a second `site.yml` run on the converged hosts;
  4. RSS of every Airflow component and of each host, summed per systemd unit.
Prints a table; never part of pass/fail. Destroys and recreates the lab.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LAB = [sys.executable, str(ROOT / "tools/lab.py")]
ENV = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0")
# What site.yml installs on each lab host (apt), read from the hosts' apt history after a
# cold run (2026-12-07): the baseline installs the same, in one transaction per host.
APT = {
    "common": "acl ca-certificates curl gnupg jq locales lsof rsync tzdata chrony nftables prometheus-node-exporter",
    "lab-pg1": "postgresql-15 python3-psycopg2 python3-cryptography prometheus-postgres-exporter",
    "lab-pg2": "postgresql-15 python3-psycopg2 python3-cryptography prometheus-postgres-exporter",
    "lab-rd1": "redis-server redis-sentinel prometheus-redis-exporter",
    "lab-rd2": "redis-server redis-sentinel prometheus-redis-exporter",
    "lab-lb1": (
        "redis-sentinel nginx python3-cryptography prometheus-nginx-exporter python3-prometheus-client"
        " python3-psycopg2 python3-redis prometheus-alertmanager prometheus"
    ),
    "airflow": "python3-venv libpq5 collectd-core libprotobuf-c1 libmicrohttpd12",
}
AIRFLOW_HOSTS = ["lab-api1", "lab-api2", "lab-wk1", "lab-wk2"]
HOSTS = ["lab-api1", "lab-api2", "lab-lb1", "lab-pg1", "lab-pg2", "lab-rd1", "lab-rd2", "lab-wk1", "lab-wk2"]


def sh(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env or ENV, text=True, capture_output=True, check=False)


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    proc = sh(cmd, env)
    return time.monotonic() - started, proc


def fresh_lab() -> None:
    sh([*LAB, "down"])
    proc = sh([*LAB, "up", "--inventory", "inventories/lab"])
    if proc.returncode != 0:
        sys.exit(proc.stderr)


def baseline(version: str) -> float:
    fresh_lab()
    wheelhouse = ROOT / f".cache/wheelhouse/apache-airflow-{version}-py3.11.tar.gz"

    def install(host: str) -> None:
        packages = APT["common"] + " " + APT.get(host, "") + (" " + APT["airflow"] if host in AIRFLOW_HOSTS else "")
        script = f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {packages} >/dev/null"
        if host in AIRFLOW_HOSTS:
            lock = (
                ROOT
                / f"collections/ansible_collections/scalecorp/airflow/roles/airflow/files/lockfiles/apache-airflow-{version}-py3.11.txt"
            )
            sh(["docker", "cp", str(wheelhouse), f"{host}:/root/wh.tar.gz"])
            sh(["docker", "cp", str(lock), f"{host}:/root/lock.txt"])
            script += (
                f" && mkdir -p /opt/airflow && tar -C /opt/airflow -xzf /root/wh.tar.gz"
                f" && python3 -m venv /opt/airflow/{version}"
                f" && /opt/airflow/{version}/bin/pip install -q --no-deps --no-index"
                f" --find-links /opt/airflow/wheelhouse-{version} -r /root/lock.txt"
            )
        proc = sh(["docker", "exec", host, "bash", "-c", script])
        if proc.returncode != 0:
            raise RuntimeError(f"{host}: {proc.stderr[-2000:]}")

    started = time.monotonic()
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        list(pool.map(install, HOSTS))
    return time.monotonic() - started


def rss_table() -> list[tuple[str, str, float]]:
    rows = []
    for host in HOSTS:
        out = sh(["docker", "exec", host, "ps", "-eo", "rss=,unit="]).stdout
        per_unit: dict[str, int] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2:
                per_unit[parts[1]] = per_unit.get(parts[1], 0) + int(parts[0])
        for unit, kb in sorted(per_unit.items()):
            if unit.startswith(("airflow", "postgresql", "redis", "nginx", "prometheus", "alertmanager", "grafana", "scalecorp")):
                rows.append((host, unit, kb / 1024))
        rows.append((host, "(whole host)", sum(per_unit.values()) / 1024))
    return rows


def slowest(output: str, count: int = 8) -> list[str]:
    found = re.findall(r"^(.+?) -+ (\d+\.\d+)s$", output, re.M)
    found.sort(key=lambda row: float(row[1]), reverse=True)
    return [f"{float(t):7.1f} s  {name.strip()[:90]}" for name, t in found[:count]]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="3.3.2")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="only the memory table, of the running lab (nothing destroyed)")
    args = parser.parse_args()
    if args.memory_only:
        print_memory()
        return 0
    sh([sys.executable, "tools/wheelhouse.py", args.version])

    base = None if args.skip_baseline else baseline(args.version)
    if base is not None:
        print(f"baseline installs: {base:.0f} s", file=sys.stderr, flush=True)
    fresh_lab()
    profile = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "100"}
    cold, cold_proc = timed([str(BIN / "ansible-playbook"), "playbooks/site.yml"], env={**ENV, **profile})
    if cold_proc.returncode != 0:
        sys.exit("cold site.yml failed:\n" + cold_proc.stdout[-3000:])
    warm, warm_proc = timed([str(BIN / "ansible-playbook"), "playbooks/site.yml"])
    changed = sorted(set(re.findall(r"changed=(\d+)", warm_proc.stdout)))

    print(f"\nDeploy on the lab ({len(HOSTS)} hosts, {os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}")
    print(f"{'measure':44} {'seconds':>8} {'ratio':>8} goal")
    if base is not None:
        print(f"{'apt + pip installs alone (baseline)':44} {base:8.0f} {1:8.2f}")
        print(f"{'cold site.yml':44} {cold:8.0f} {cold / base:8.2f} <= 1.5 x baseline")
    else:
        print(f"{'cold site.yml':44} {cold:8.0f}")
    print(f"{'second site.yml (changed=' + ','.join(changed) + ')':44} {warm:8.0f} {warm / cold:8.2f} <= 0.25 x cold")
    print("\nSlowest tasks of the cold run")
    for line in slowest(cold_proc.stdout):
        print("  " + line)
    print_memory()
    return 0


def print_memory() -> None:
    """RSS per unit, per host and per tier (the inventory's groups), and the whole cluster."""
    rows = rss_table()
    print(f"\nResident memory (MB), summed per systemd unit, {time.strftime('%Y-%m-%d %H:%M')}")
    for host, unit, mb in rows:
        print(f"  {host:10} {unit:34} {mb:8.0f}")
    hosts = {host: mb for host, unit, mb in rows if unit == "(whole host)"}
    tiers = {
        "load balancer + monitoring (lb1)": ["lab-lb1"],
        "API + scheduler hosts": ["lab-api1", "lab-api2"],
        "workers": ["lab-wk1", "lab-wk2"],
        "Redis + Sentinel": ["lab-rd1", "lab-rd2"],
        "PostgreSQL": ["lab-pg1", "lab-pg2"],
    }
    print("\n| tier | hosts | MB |\n|---|---|---|")
    for tier, members in tiers.items():
        print(f"| {tier} | {len(members)} | {sum(hosts.get(h, 0) for h in members):.0f} |")
    print(f"| whole HA cluster | {len(hosts)} | {sum(hosts.values()):.0f} |")


if __name__ == "__main__":
    sys.exit(main())
