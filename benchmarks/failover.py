#!/usr/bin/env python3
"""Failover benchmark: how long tasks stop flowing when one part dies, and what is lost.

    .venv/bin/python benchmarks/failover.py [--drills api,scheduler,redis,postgres] [--window 90]

On the lab (up and converged, `make lab`). A client triggers a run of a one-task
DAG (a no-op Python task, run by a Celery worker) every --period seconds through
the load balancer, all along. Each drill, after --warmup seconds of that flow:

  api        SIGKILL of airflow-api-server on lab-api1, kept down for the window
  scheduler  SIGKILL of airflow-scheduler on lab-api1, kept down for the window
  redis      `docker pause` of the Redis master's host (a hung VM: nothing restarts
             it), unpaused after the window
  postgres   pg-switchover.yml to the standby (planned, reported as is),
             and back to the inventory's primary after the window

Then the flow runs on for --window seconds, the part comes back, and every run
triggered is waited for. Per drill:

  before         the median gap between two task completions before the drill
  flow gap       the longest time without a task completing that began between
                 the drill's start and the end of the window (the drill start to
                 the first completion counts): "time until tasks flow again"
  flow resumed   whether that gap ended while the part was still broken (the
                 cluster carried on without it) or only after it came back
  lost           triggered runs that did not succeed (failed, or not done
                 --settle seconds after the window)
  retried        task instances that needed a second try
  trigger errors triggers the API refused or did not answer (nothing was
                 created: the client would retry)

Prints a table; never part of pass/fail. Leaves every component running and the
inventory's PostgreSQL primary in place.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import yaml  # noqa: E402
from airflow_api import Airflow, container_ip  # noqa: E402
from conftest import container, on, playbook, run, why  # noqa: E402
from pg_switchover import PG_HOSTS  # noqa: E402
from pg_switchover import primary as pg_primary_now  # noqa: E402
from test_monitoring import sentinel_master  # noqa: E402
from throughput import install_dag_file, parse, remove_dag_file  # noqa: E402

HOSTS = yaml.safe_load((ROOT / "inventories/lab/hosts.yml").read_text())["all"]["children"]
PG_PRIMARY = PG_HOSTS[0]  # the inventory's primary (postgresql_primary_host unset: the group's first host)
DAG_ID = "scalecorp_bench_tick"
DAG_FILE = f"/var/lib/airflow/dags/{DAG_ID}.py"
DAG_SOURCE = f'''"""Failover benchmark DAG (benchmarks/failover.py): one no-op task per run."""
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     max_active_runs=256, tags=["scalecorp", "benchmark"], default_args={{"retries": 2}})
def tick():
    @task
    def noop():
        return None

    noop()


tick()
'''


class Flow(threading.Thread):
    """Triggers a run every `period` seconds until stopped; records what was created."""

    def __init__(self, api: Airflow, period: float):
        super().__init__(daemon=True)
        self.api, self.period, self.stop = api, period, threading.Event()
        self.runs: list[str] = []
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                resp = self.api.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
                if resp.status_code == 200:
                    self.runs.append(resp.json()["dag_run_id"])
                else:
                    self.errors += 1
            except Exception:  # noqa: BLE001 - a refused or unanswered trigger is what we count
                self.errors += 1
            self.stop.wait(max(0.0, self.period - (time.monotonic() - started)))


def redis_master_host() -> str:
    address = sentinel_master()
    return next(h for h in HOSTS["redis"]["hosts"] if container_ip(h) == address)


def drill_actions(name: str) -> tuple[callable, callable]:
    """(break, mend) of a drill."""
    if name in ("api", "scheduler"):
        unit = {"api": "airflow-api-server", "scheduler": "airflow-scheduler"}[name]

        def brk() -> str:
            on("lab-api1", "systemctl", "kill", "--signal=SIGKILL", unit)
            on("lab-api1", "systemctl", "stop", unit)  # no restart by systemd: the other host carries on alone
            return f"SIGKILL {unit} on lab-api1"

        def mend() -> None:
            on("lab-api1", "systemctl", "start", unit)

        return brk, mend
    if name == "redis":
        state: dict = {}

        def brk() -> str:
            state["host"] = redis_master_host()
            run(["docker", "pause", container(state["host"])])
            return f"docker pause {state['host']} (the Redis master)"

        def mend() -> None:
            run(["docker", "unpause", container(state["host"])])

        return brk, mend
    if name == "postgres":

        def brk() -> str:
            was = pg_primary_now()
            started = time.monotonic()
            proc = playbook("pg-switchover.yml")
            if proc.returncode != 0:
                raise SystemExit("pg-switchover.yml failed:\n" + why(proc))
            return f"pg-switchover.yml from {was} (playbook {time.monotonic() - started:.0f} s)"

        def mend() -> None:
            if pg_primary_now() != PG_PRIMARY:
                proc = playbook("pg-switchover.yml", "-e", f"new_primary={PG_PRIMARY}")
                if proc.returncode != 0:
                    raise SystemExit("switching back failed:\n" + why(proc))

        return brk, mend
    raise SystemExit(f"unknown drill {name}")


def drill(api: Airflow, name: str, args: argparse.Namespace) -> dict:
    period, warmup, window, settle = args.period, args.warmup, args.window, args.settle
    brk, mend = drill_actions(name)
    flow = Flow(api, period)
    flow.start()
    time.sleep(warmup)
    t0 = time.time()
    what = brk()
    broken_for = time.time() - t0
    time.sleep(max(0.0, window - broken_for))
    t_end = time.time()
    mend()
    time.sleep(period * 5)
    flow.stop.set()
    flow.join()
    deadline = time.monotonic() + settle
    ends: list[float] = []
    lost = retried = 0
    for run_id in flow.runs:
        try:
            state = api.wait_for_run(DAG_ID, run_id, timeout=max(1.0, deadline - time.monotonic()))
        except AssertionError:  # not done within --settle
            state = "?"
        tis = api.task_instances(DAG_ID, run_id)
        if state != "success":
            lost += 1
        for ti in tis:
            retried += int(ti.get("try_number") or 1) > 1
            if ti["state"] == "success" and ti.get("end_date"):
                ends.append(parse(ti["end_date"]))
    ends.sort()
    before = [b - a for a, b in zip(ends, ends[1:], strict=False) if b < t0]
    # Gaps between completions from the drill's start on; the longest that began while the part
    # was broken is the outage (it may end only after the part came back: then `resumed` says so).
    points = [t0, *(t for t in ends if t >= t0)]
    gaps = [(b - a, b) for a, b in zip(points, points[1:], strict=False) if a <= t_end]
    gap, resumed_at = max(gaps) if gaps else (float("nan"), float("nan"))
    return {
        "drill": name,
        "what": what,
        "runs": len(flow.runs),
        "before": statistics.median(before) if before else float("nan"),
        "gap": gap,
        "resumed": "while broken" if resumed_at <= t_end else "after the part came back",
        "lost": lost,
        "retried": retried,
        "errors": flow.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drills", default="api,scheduler,redis,postgres")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between two triggered runs")
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--window", type=float, default=90, help="seconds the part stays broken (and the flow measured)")
    parser.add_argument("--settle", type=float, default=600, help="seconds to wait for the runs after a drill")
    args = parser.parse_args()
    api = Airflow()
    install_dag_file(DAG_FILE, DAG_SOURCE)
    results = []
    try:
        on("lab-api1", "systemctl", "restart", "airflow-dag-processor")  # parse the new file now
        api.wait_for_dag(DAG_ID, timeout=600)
        api.request("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
        for name in args.drills.split(","):
            results.append(drill(api, name, args))
            print(f"[{name}] {results[-1]}", flush=True)
            time.sleep(args.warmup)  # Sentinel: no second failover of a master within 2 x failover-timeout
    finally:
        remove_dag_file(DAG_FILE)
    print()
    print(f"one run every {args.period:.1f} s, {args.window:.0f} s window per drill, {time.strftime('%Y-%m-%d')}")
    print()
    print("| drill | runs | gap before (median) s | flow gap s | flow resumed | lost | retried | trigger errors | goal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        goal = "reported as is" if r["drill"] == "postgres" else "<= 30 s, 0 lost"
        cells = [r["what"], r["runs"], f"{r['before']:.1f}", f"{r['gap']:.1f}", r["resumed"], r["lost"], r["retried"], r["errors"], goal]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
