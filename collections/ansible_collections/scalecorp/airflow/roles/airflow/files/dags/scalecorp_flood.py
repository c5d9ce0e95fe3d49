"""Flood DAG shipped by scalecorp.airflow: many sleeping tasks, for scaling drills.

`count` mapped tasks each sleep `sleep` seconds and report the worker host they
ran on. No retries: a task killed by a scale-down fails the run. Triggered by
the scaling tests and benchmark; never scheduled.
"""

from __future__ import annotations

import socket
import time

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="scalecorp_flood",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    # Every task may be queued at once, so the Celery queue fills up.
    max_active_tasks=512,
    tags=["scalecorp", "scaling"],
    params={"count": 50, "sleep": 20},
    default_args={"retries": 0},
)
def scalecorp_flood():
    @task
    def items(params=None) -> list[int]:
        return list(range(int(params["count"])))

    @task
    def sleep(item: int, params=None) -> str:
        time.sleep(float(params["sleep"]))
        return f"{item}:{socket.gethostname()}"

    sleep.expand(item=items())


scalecorp_flood()
