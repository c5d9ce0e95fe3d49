from __future__ import annotations

import pytest

from ansible_collections.scalecorp.airflow.plugins.module_utils import airflow_metrics
from ansible_collections.scalecorp.airflow.plugins.module_utils.signals import SignalError


def test_agreeing_master_when_every_sentinel_names_the_same():
    views = {"a:26379": "10.0.0.1:6379", "b:26379": "10.0.0.1:6379", "c:26379": None}
    assert airflow_metrics.agreeing_master(views) == "10.0.0.1:6379"


def test_no_agreeing_master_when_sentinels_disagree_or_none_answers():
    assert airflow_metrics.agreeing_master({"a:26379": "10.0.0.1:6379", "b:26379": "10.0.0.2:6379"}) is None
    assert airflow_metrics.agreeing_master({"a:26379": None}) is None


def test_a_sentinel_that_does_not_answer_maps_to_none():
    pytest.importorskip("redis")
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    assert airflow_metrics.sentinel_views([("127.0.0.1", 9)], "airflow", None) == {"127.0.0.1:9": None}


def test_an_unreachable_database_is_a_signal_error():
    pytest.importorskip("psycopg2")
    with pytest.raises(SignalError, match="cannot connect to the metadata database"):
        airflow_metrics.database_metrics("host=127.0.0.1 port=9 dbname=airflow user=x connect_timeout=2")


def test_every_dag_reports_every_run_state():
    assert set(airflow_metrics.DAG_RUN_STATES) == {"queued", "running", "success", "failed"}
