from __future__ import annotations

import pytest

from ansible_collections.scalecorp.airflow.plugins.modules.celery_workers import task_of

ID = "01a21834-423f-7a5b-b50d-19d31da0469a"


@pytest.mark.parametrize(
    ("title", "task"),
    [
        # Airflow 3.3 on a worker: the supervisor and its task child, one task.
        (f"airflow supervisor: {ID}", f"task {ID}"),
        (f"airflow worker -- {ID}", f"task {ID}"),
        # Airflow 2's command line.
        ("airflow tasks run flood sleep manual__1 --local", "airflow tasks run flood sleep manual__1 --local"),
        # Not tasks: the Celery worker itself, the log server, anything else.
        ("/opt/airflow/3.3.2/bin/python3 /opt/airflow/current/bin/airflow celery worker --celery-hostname w1@h --queues default", None),
        ("airflow serve-logs", None),
        ("/usr/sbin/sshd -D", None),
    ],
)
def test_task_of_names_each_task_once(title, task):
    assert task_of(title) == task
