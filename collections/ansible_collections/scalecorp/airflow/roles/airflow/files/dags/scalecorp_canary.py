"""Canary DAG shipped by scalecorp.airflow: proves the cluster runs tasks on Celery.

Eight mapped tasks each report the worker host they ran on; a last task
collects them. Triggered by the tests and by status.yml; never scheduled.
With `connection` or `variable` in the run's conf, the last task also reads
that connection or variable as any task does (through the Execution API) and
prints what it found (never a password): proof that configuration as code
reaches the tasks.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="scalecorp_canary",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["scalecorp", "canary"],
    params={"sleep": 0, "width": 8, "connection": "", "variable": ""},
    # A task lost with its worker is failed by the scheduler and tried again.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
)
def scalecorp_canary():
    @task
    def shards(params=None) -> list[int]:
        return list(range(int(params["width"])))

    @task
    def where(shard: int, params=None) -> str:
        time.sleep(float(params["sleep"]))
        print(f"CANARY shard {shard} ran on {socket.gethostname()}")  # read back from the task log
        return f"{shard}:{socket.gethostname()}"

    @task
    def collect(results: list[str], params=None) -> list[str]:
        hosts = sorted({r.split(":", 1)[1] for r in results})
        print(f"CANARY ran {len(results)} tasks on hosts: {', '.join(hosts)}")
        print(f"CANARY environment SCALECORP_CLUSTER={os.environ.get('SCALECORP_CLUSTER', '')}")  # airflow_extra_env
        if params.get("connection"):
            from airflow.sdk import Connection

            conn = Connection.get(params["connection"])
            print(f"CANARY connection {conn.conn_id}: type {conn.conn_type} host {conn.host} port {conn.port} login {conn.login}")
        if params.get("variable"):
            from airflow.sdk import Variable

            print(f"CANARY variable {params['variable']}: {Variable.get(params['variable'])}")
        return hosts

    collect(where.expand(shard=shards()))


scalecorp_canary()
