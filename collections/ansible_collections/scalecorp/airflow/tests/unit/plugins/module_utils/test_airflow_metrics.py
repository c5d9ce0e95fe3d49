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


class FakeDatabase:
    """dag_run rows and a clock, answering EndedRuns' two queries as PostgreSQL would."""

    def __init__(self):
        self.now = 1000.0
        self.runs: list[tuple[str, str, float]] = []  # dag_id, state, end_date
        self.fail_next = False
        self.result = None

    def execute(self, sql, params):
        if self.fail_next:
            self.fail_next = False
            raise SignalError("cannot read the metadata database: timeout")
        if sql == airflow_metrics.ENDED_UPTO_SQL:
            self.result = [(self.now - params[0],)]
        elif sql == airflow_metrics.ENDED_SQL:
            low, high = params
            counts: dict[tuple[str, str], int] = {}
            for dag_id, state, end in self.runs:
                if state in ("success", "failed") and low < end <= high:
                    counts[(dag_id, state)] = counts.get((dag_id, state), 0) + 1
            self.result = [(d, s, n) for (d, s), n in counts.items()]
        else:
            raise AssertionError(sql)

    def fetchone(self):
        return self.result[0]

    def fetchall(self):
        return self.result


def test_ended_runs_count_each_run_once_and_ignore_deleted_and_restored_history():
    db, ended = FakeDatabase(), airflow_metrics.EndedRuns(lag=30)
    db.runs = [("etl", "failed", 900.0), ("etl", "success", 950.0)]  # history before the exporter
    # The first scrape counts nothing (it sets the mark), and every DAG starts at 0.
    assert ended.update(db, ["etl", "other"]) == {
        ("etl", "success"): 0,
        ("etl", "failed"): 0,
        ("other", "success"): 0,
        ("other", "failed"): 0,
    }
    db.now = 1060.0
    db.runs += [("etl", "success", 1000.0), ("etl", "failed", 1020.0), ("etl", "running", 1025.0)]
    counts = ended.update(db, ["etl", "other"])
    assert counts[("etl", "success")] == 1 and counts[("etl", "failed")] == 1
    # A run that ended within the lag is counted at the next scrape, once.
    db.runs.append(("etl", "success", 1045.0))
    assert ended.update(db, ["etl", "other"])[("etl", "success")] == 1
    db.now = 1120.0
    assert ended.update(db, ["etl", "other"])[("etl", "success")] == 2
    assert ended.update(db, ["etl", "other"])[("etl", "success")] == 2
    # `airflow db clean` deletes every row, a restore brings old rows back: no count moves.
    db.runs = []
    db.now = 1180.0
    assert ended.update(db, ["etl", "other"]) == {**counts, ("etl", "success"): 2}
    db.runs = [("etl", "failed", 900.0), ("etl", "failed", 1020.0)]
    db.now = 1240.0
    assert ended.update(db, ["etl", "other"])[("etl", "failed")] == 1


def test_a_failed_scrape_counts_nothing_and_loses_nothing():
    db, ended = FakeDatabase(), airflow_metrics.EndedRuns(lag=0)
    ended.update(db, ["etl"])
    db.runs.append(("etl", "failed", 1010.0))
    db.now = 1020.0
    db.fail_next = True
    with pytest.raises(SignalError):
        ended.update(db, ["etl"])
    assert ended.counts[("etl", "failed")] == 0
    db.now = 1030.0
    assert ended.update(db, ["etl"])[("etl", "failed")] == 1
