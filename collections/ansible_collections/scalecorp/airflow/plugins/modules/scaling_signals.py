#!/usr/bin/python
# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)

from __future__ import annotations

DOCUMENTATION = r"""
module: scaling_signals
short_description: Collect the signals worker scaling decides on
version_added: 0.2.0
description:
  - C(host) - this host's CPU use (sampled over O(interval) seconds from /proc), memory use, cores and memory size.
  - C(queues) - messages waiting in each Celery queue, C(LLEN) on the Redis master that the sentinels name now.
    Needs the C(redis) Python package (run it with the Airflow virtualenv's interpreter).
  - C(tasks) - queued and running task instances, the age of the oldest queued one, and running
    task instances per worker host name, from the metadata database. Needs C(psycopg2) (the Airflow virtualenv has it).
  - C(schedulers) - the age of each scheduler host's last heartbeat, from the metadata database
    (the query the Airflow signals exporter uses). Needs C(psycopg2) and O(dsn).
  - Reads only; never changes anything. The logic lives in C(module_utils/signals.py), shared with the Prometheus exporter.
options:
  collect:
    description: Which signals to collect.
    type: list
    elements: str
    choices: [host, queues, tasks, schedulers]
    default: [host]
  interval:
    description: Seconds over which CPU use is sampled.
    type: float
    default: 1.0
  sentinels:
    description: Sentinels as C(host:port), for O(collect=queues).
    type: list
    elements: str
    default: []
  master_name:
    description: The name the sentinels monitor the Redis master under.
    type: str
    default: airflow
  redis_username:
    description: Redis user of the broker's clients (none for the default user).
    type: str
  redis_password:
    description: Password of the Redis master.
    type: str
  sentinel_username:
    description: User on the sentinels (none for the default user).
    type: str
  sentinel_password:
    description: Password of the sentinels.
    type: str
  queues:
    description: Celery queues to measure.
    type: list
    elements: str
    default: [default]
  dsn:
    description: libpq connection string of the metadata database, for O(collect=tasks) and O(collect=schedulers); connect as the
      read-only monitoring role (C(airflow_monitor)).
    type: str
attributes:
  check_mode:
    description: Reads only, in check mode too.
    support: full
  diff_mode:
    description: Not applicable.
    support: none
  platform:
    description: Linux hosts (/proc).
    support: full
    platforms: posix
author:
  - ScaleCorp Platform Team (@scalecorp)
"""

EXAMPLES = r"""
- name: Utilisation of every worker host
  scalecorp.airflow.scaling_signals:
    collect: [host]
  register: host_signals

- name: Queue length and task counts, from an Airflow host (its virtualenv has redis and psycopg2)
  scalecorp.airflow.scaling_signals:
    collect: [queues, tasks]
    sentinels: ["10.0.0.11:26379", "10.0.0.12:26379", "10.0.0.13:26379"]
    master_name: airflow
    redis_password: "{{ scalecorp_secrets.redis_password }}"
    sentinel_password: "{{ scalecorp_secrets.redis_sentinel_password }}"
    dsn: "host=10.0.0.21 dbname=airflow user=airflow_monitor password={{ scalecorp_secrets.postgresql_monitor_password }}"
  vars:
    ansible_python_interpreter: /opt/airflow/current/bin/python
  run_once: true
  no_log: true
"""

RETURN = r"""
time:
  description: When the signals were collected, epoch seconds.
  returned: always
  type: float
host:
  description: This host's C(cpu_percent), C(memory_percent), C(cores), C(memory_mb).
  returned: when host is collected
  type: dict
hostname:
  description: This host's name as Airflow records it for the tasks it runs (fully qualified).
  returned: when host is collected
  type: str
queues:
  description: Messages waiting per Celery queue.
  returned: when queues are collected
  type: dict
queue_length:
  description: Messages waiting in all the queues.
  returned: when queues are collected
  type: int
scheduler_heartbeat_age:
  description: Seconds since each scheduler host's last heartbeat (host name as Airflow records it).
  returned: when schedulers are collected
  type: dict
tasks:
  description: C(queued), C(running), C(oldest_queued_age_seconds) (null when nothing is queued),
    and C(running_by_host) (worker host name to running task instances).
  returned: when tasks are collected
  type: dict
"""

import socket
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalecorp.airflow.plugins.module_utils.airflow_metrics import database_metrics
from ansible_collections.scalecorp.airflow.plugins.module_utils.signals import (
    SignalError,
    host_utilisation,
    queue_lengths,
    running_by_host,
    task_counts,
)


def parse_sentinel(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"a sentinel must be host:port, not {text!r}")
    return host.strip("[]"), int(port)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "collect": {"type": "list", "elements": "str", "choices": ["host", "queues", "tasks", "schedulers"], "default": ["host"]},
            "interval": {"type": "float", "default": 1.0},
            "sentinels": {"type": "list", "elements": "str", "default": []},
            "master_name": {"type": "str", "default": "airflow"},
            "redis_username": {"type": "str"},
            "redis_password": {"type": "str", "no_log": True},
            "sentinel_username": {"type": "str"},
            "sentinel_password": {"type": "str", "no_log": True},
            "queues": {"type": "list", "elements": "str", "default": ["default"]},
            "dsn": {"type": "str", "no_log": True},
        },
        required_if=[("collect", "queues", ("sentinels",), True)],
        supports_check_mode=True,
    )
    p = module.params
    result: dict = {"changed": False, "time": time.time()}
    try:
        if "queues" in p["collect"]:
            if not p["sentinels"]:
                module.fail_json(msg="collect=queues needs sentinels")
            sentinels = [parse_sentinel(s) for s in p["sentinels"]]
            result["queues"] = queue_lengths(
                sentinels,
                p["master_name"],
                p["redis_password"],
                p["sentinel_password"],
                p["queues"],
                username=p["redis_username"],
                sentinel_username=p["sentinel_username"],
            )
            result["queue_length"] = sum(result["queues"].values())
        if "tasks" in p["collect"]:
            if not p["dsn"]:
                module.fail_json(msg="collect=tasks needs dsn")
            result["tasks"] = task_counts(p["dsn"])
            result["tasks"]["running_by_host"] = running_by_host(p["dsn"])
        if "schedulers" in p["collect"]:
            if not p["dsn"]:
                module.fail_json(msg="collect=schedulers needs dsn")
            result["scheduler_heartbeat_age"] = database_metrics(p["dsn"])["scheduler_heartbeat_age"]
        if "host" in p["collect"]:
            result["host"] = host_utilisation(interval=p["interval"])
            result["hostname"] = socket.getfqdn()
    except (SignalError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
