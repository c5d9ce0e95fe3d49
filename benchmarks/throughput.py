#!/usr/bin/env python3
"""Throughput benchmark: the seed's tuning vs Airflow's stock settings, one invocation.

    .venv/bin/python benchmarks/throughput.py [--dags 10] [--tasks-per-dag 50] [--workers 4]

On the lab (up and converged, `make lab`), both configurations in one run, on the
same hosts and the same worker layout (--workers instances of concurrency 16):

  stock  Airflow's defaults: parallelism 32, max_active_tasks_per_dag 16,
         max_active_runs_per_dag 16, worker_concurrency 16, StatsD off, no
         worker child recycling (Celery's default: none; 100000 here, never
         reached in a run);
  tuned  the seed's tuning (group_vars/all.yml): parallelism 256,
         max_active_runs_per_dag 16, worker_concurrency 16,
         worker_max_tasks_per_child 1000, StatsD on.

Each configuration is applied with `site.yml -e ...` (the role restarts what the
change concerns), then --dags DAGs of --tasks-per-dag no-op Python tasks each
(real Celery tasks, not EmptyOperator, which the scheduler never sends) are
triggered at once and timed to the last task's end, after a warm-up run of one
DAG (not counted) that the restarted workers' first tasks do not weigh on. From every task instance:

  tasks/min       tasks / (last end - first queued) x 60
  queued->running p50 and p95 of start_date - queued_when

Prints a table; never part of pass/fail. Leaves the lab at its inventory's
settings and the worker count it found.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from airflow_api import Airflow  # noqa: E402
from conftest import container, on, playbook, why  # noqa: E402
from test_scaling import WORKERS, layout  # noqa: E402

AIRFLOW_HOSTS = ["lab-api1", "lab-api2", *WORKERS]
DAG_FILE = "/var/lib/airflow/dags/scalecorp_bench_noop.py"
DAG_PREFIX = "scalecorp_bench_noop_"
DAG_SOURCE = '''"""Throughput benchmark DAGs (benchmarks/throughput.py): {dags} DAGs of {tasks} no-op tasks."""
import pendulum
from airflow.sdk import dag, task


def make(i):
    @dag(dag_id=f"{prefix}{{i}}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         catchup=False, tags=["scalecorp", "benchmark"], default_args={{"retries": 0}})
    def bench():
        @task
        def noop():
            return None

        for j in range({tasks}):
            noop.override(task_id=f"t{{j}}")()

    return bench()


for i in range({dags}):
    globals()[f"dag_{{i}}"] = make(i)
'''
COMMON = {"airflow_worker_concurrency": 16, "airflow_max_active_runs_per_dag": 16, "airflow_max_active_tasks_per_dag": 16}
CONFIGS = {
    "stock": {**COMMON, "airflow_parallelism": 32, "airflow_worker_max_tasks_per_child": 100000, "airflow_statsd_on": False},
    "tuned": {**COMMON, "airflow_parallelism": 256, "airflow_worker_max_tasks_per_child": 1000, "airflow_statsd_on": True},
}


def parse(ts: str | None) -> float | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() if ts else None


def install_dag_file(path: str, text: str) -> None:
    """A DAG file on every Airflow host (the dag-processor parses it, the workers run it)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(text)
    for host in AIRFLOW_HOSTS:
        subprocess.run(["docker", "cp", fh.name, f"{container(host)}:{path}"], check=True)
        on(host, "chmod", "0644", path)
    os.unlink(fh.name)


def remove_dag_file(path: str) -> None:
    for host in AIRFLOW_HOSTS:
        on(host, "rm", "-f", path)


def configure(values: dict) -> float:
    """site.yml with these settings; returns its duration."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(values, fh)
    started = time.monotonic()
    proc = playbook("playbooks/site.yml", "-e", f"@{fh.name}")
    os.unlink(fh.name)
    if proc.returncode != 0:
        raise SystemExit("site.yml failed:\n" + why(proc))
    return time.monotonic() - started


def measure(api: Airflow, dags: int, tasks: int, timeout: float) -> dict:
    runs = {}
    for i in range(dags):
        api.wait_for_dag(f"{DAG_PREFIX}{i}", timeout=600)
    for i in range(dags):
        runs[f"{DAG_PREFIX}{i}"] = api.trigger(f"{DAG_PREFIX}{i}")
    deadline = time.monotonic() + timeout
    for dag_id, run_id in runs.items():
        state = api.wait_for_run(dag_id, run_id, timeout=max(1.0, deadline - time.monotonic()))
        if state != "success":
            raise SystemExit(f"{dag_id} run {run_id}: {state}")
    tis = []
    for dag_id, run_id in runs.items():
        got = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})["task_instances"]
        tis.extend(got)
    if len(tis) != dags * tasks or any(ti["state"] != "success" for ti in tis):
        raise SystemExit(f"expected {dags * tasks} successful task instances, got {len(tis)}")
    queued = [parse(ti.get("queued_when")) for ti in tis]
    starts = [parse(ti["start_date"]) for ti in tis]
    ends = [parse(ti["end_date"]) for ti in tis]
    waits = sorted(s - q for q, s in zip(queued, starts, strict=True) if q is not None and s is not None)
    wall = max(ends) - min(q for q in queued if q is not None)
    return {
        "tasks": len(tis),
        "wall": wall,
        "per_min": len(tis) / wall * 60,
        "p50": statistics.median(waits),
        "p95": statistics.quantiles(waits, n=20)[18] if len(waits) >= 20 else max(waits),
        "waits": len(waits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dags", type=int, default=10)
    parser.add_argument("--tasks-per-dag", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4, help="worker instances (concurrency 16 each) for both runs")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for one configuration's runs")
    parser.add_argument("--order", default="stock,tuned", help="configurations, in run order")
    args = parser.parse_args()
    found = sum(layout().values())
    results: dict[str, dict] = {}
    install_dag_file(DAG_FILE, DAG_SOURCE.format(dags=args.dags, tasks=args.tasks_per_dag, prefix=DAG_PREFIX))
    try:
        scaled = playbook("playbooks/scale.yml", "-e", f"workers={args.workers}")
        if scaled.returncode != 0:
            raise SystemExit("scale.yml failed:\n" + why(scaled))
        for name in args.order.split(","):
            took = configure(CONFIGS[name])
            print(f"[{name}] site.yml applied in {took:.0f} s", flush=True)
            api = Airflow()
            measure(api, 1, args.tasks_per_dag, args.timeout)  # warm-up, not counted: fresh workers' first tasks
            results[name] = measure(api, args.dags, args.tasks_per_dag, args.timeout)
            print(f"[{name}] {results[name]}", flush=True)
    finally:
        remove_dag_file(DAG_FILE)
        configure({})
        playbook("playbooks/scale.yml", "-e", f"workers={found}")
    base = results.get("stock")
    print()
    print(f"{args.dags} DAGs x {args.tasks_per_dag} no-op tasks, {args.workers} worker instances x 16 slots")
    print()
    print("| configuration | tasks | seconds | tasks/min | ratio | queued->running p50 s | p95 s | goal |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ratio = f"{r['per_min'] / base['per_min']:.2f} x stock" if base else ""
        goal = ">= 1.2 x stock, p95 <= 5 s" if name == "tuned" else "p95 <= 5 s"
        print(f"| {name} | {r['tasks']} | {r['wall']:.0f} | {r['per_min']:.0f} | {ratio} | {r['p50']:.1f} | {r['p95']:.1f} | {goal} |")


if __name__ == "__main__":
    main()
