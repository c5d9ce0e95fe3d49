# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Cluster signals for monitoring that Airflow does not emit as StatsD.

Plain functions beside `signals.py` (which the scaling tier shares), used by
the collection's Airflow signals exporter (role `signals_exporter`):

- `database_metrics()`: in one read-only session of the metadata database (as
  `airflow_monitor`), the age of each scheduler's last heartbeat, the slots of
  every pool, the DAG runs by DAG and state (rows: a gauge), and, with an
  `EndedRuns`, the runs that ended since the exporter started (a counter);
- `sentinel_views()`: which master each Redis Sentinel names now, so that
  Sentinels that disagree (a split brain in the making) can be alerted on.

`psycopg2` and `redis` are imported only when their function is called.
"""

from __future__ import annotations

from .signals import TIMEOUT, SignalError, metadata_cursor

# Seconds of scheduler history to report: a scheduler host whose last
# heartbeat is older than this drops out of the metrics (decommissioned).
SCHEDULER_WINDOW_SECONDS = 86400

SCHEDULER_SQL = """
SELECT hostname, EXTRACT(EPOCH FROM (now() - max(latest_heartbeat))) AS age
FROM job
WHERE job_type = 'SchedulerJob' AND latest_heartbeat > now() - make_interval(secs => %s)
GROUP BY hostname
"""

POOL_SQL = """
SELECT p.pool, p.slots,
       COALESCE(SUM(ti.pool_slots) FILTER (WHERE ti.state = 'running'), 0)  AS running,
       COALESCE(SUM(ti.pool_slots) FILTER (WHERE ti.state = 'queued'), 0)   AS queued,
       COALESCE(SUM(ti.pool_slots) FILTER (WHERE ti.state = 'deferred'), 0) AS deferred
FROM slot_pool p
LEFT JOIN task_instance ti ON ti.pool = p.pool AND ti.state IN ('running', 'queued', 'deferred')
GROUP BY p.pool, p.slots
"""

DAG_RUN_SQL = "SELECT dag_id, state, count(*) FROM dag_run GROUP BY dag_id, state"
DAG_SQL = "SELECT dag_id FROM dag"

# Every DAG reports every run state, 0 included: a counter that appears only
# with its first failed run would hide that run from increase() and the
# failure-rate alert.
DAG_RUN_STATES = ("queued", "running", "success", "failed")


# The states a run ends in, each counted once when its end_date passes.
ENDED_STATES = ("success", "failed")
# How far behind the database's clock the count runs: a run whose end is written
# (by a scheduler host, with that host's clock) a little late, or with a clock a
# little behind, is still counted. More than chrony's skew and a commit's delay.
ENDED_LAG_SECONDS = 30
ENDED_UPTO_SQL = "SELECT now() - make_interval(secs => %s)"
ENDED_SQL = """
SELECT dag_id, state, count(*) FROM dag_run
WHERE state IN ('success', 'failed') AND end_date > %s AND end_date <= %s
GROUP BY dag_id, state
"""


class EndedRuns:
    """DAG runs that ended, per (dag_id, state), counted once each: a Prometheus counter.

    The rows of dag_run are not one: `airflow db clean`, a restore or a deleted run
    lower them, and increase() would read each fall as a counter reset and count
    the remaining rows again (a failure-rate alert on a healthy cluster). Here
    each scrape counts the runs whose end_date falls between the last scrape's
    mark and now (less ENDED_LAG_SECONDS), and moves the mark: deleting or
    restoring history never changes the count, and the count starts at 0 for
    every DAG and state when the exporter starts (increase() sees every run after).
    """

    def __init__(self, lag: float = ENDED_LAG_SECONDS) -> None:
        self.lag = float(lag)
        self.mark = None  # the database time counted up to
        self.counts: dict[tuple[str, str], int] = {}

    def update(self, cur, dag_ids) -> dict[tuple[str, str], int]:
        """Count the runs that ended since the last call (none on the first); the counts."""
        cur.execute(ENDED_UPTO_SQL, (self.lag,))
        upto = cur.fetchone()[0]
        found: list[tuple] = []
        if self.mark is not None and upto > self.mark:
            cur.execute(ENDED_SQL, (self.mark, upto))
            found = cur.fetchall()
        # Only once every query has answered: a failed scrape counts nothing and moves nothing.
        for dag_id, state, count in found:
            key = (str(dag_id), str(state))
            self.counts[key] = self.counts.get(key, 0) + int(count)
        if self.mark is None or upto > self.mark:
            self.mark = upto
        for dag_id in dag_ids:
            for state in ENDED_STATES:
                self.counts.setdefault((str(dag_id), state), 0)
        return dict(self.counts)


def database_metrics(dsn: str, scheduler_window: float = SCHEDULER_WINDOW_SECONDS, ended: EndedRuns | None = None) -> dict:
    """Scheduler heartbeats, pool slots and DAG runs, in one read-only session.

    Returns {'scheduler_heartbeat_age': {hostname: seconds},
    'pools': {pool: {'slots', 'running', 'queued', 'deferred'}},
    'dag_runs': {(dag_id, state): rows}, 'dag_runs_ended': {(dag_id, state): count}
    (empty without `ended`)}. Raises SignalError when the database cannot be read.
    """
    with metadata_cursor(dsn, "read the metadata database") as cur:
        cur.execute(SCHEDULER_SQL, (float(scheduler_window),))
        heartbeats = {str(host): max(0.0, float(age)) for host, age in cur.fetchall() if age is not None}
        cur.execute(POOL_SQL)
        pools = {
            str(pool): {"slots": int(slots), "running": int(running), "queued": int(queued), "deferred": int(deferred)}
            for pool, slots, running, queued, deferred in cur.fetchall()
        }
        cur.execute(DAG_SQL)
        dag_ids = [str(dag_id) for (dag_id,) in cur.fetchall()]
        dag_runs = {(dag_id, state): 0 for dag_id in dag_ids for state in DAG_RUN_STATES}
        cur.execute(DAG_RUN_SQL)
        dag_runs.update({(str(dag_id), str(state)): int(count) for dag_id, state, count in cur.fetchall()})
        dag_runs_ended = ended.update(cur, dag_ids) if ended is not None else {}
    return {"scheduler_heartbeat_age": heartbeats, "pools": pools, "dag_runs": dag_runs, "dag_runs_ended": dag_runs_ended}


def sentinel_views(
    sentinels: list[tuple[str, int]],
    master_name: str,
    sentinel_password: str | None,
    sentinel_username: str | None = None,
) -> dict[str, str | None]:
    """The master each Sentinel names for `master_name`: {"host:port": "ip:port"}.

    A Sentinel that does not answer (or knows no such master) maps to None.
    Raises SignalError only when the redis package is missing.
    """
    try:
        import redis
        from redis.exceptions import RedisError
    except ImportError as exc:  # pragma: no cover - depends on the interpreter
        raise SignalError(f"the redis Python package is required to ask the Sentinels: {exc}") from exc

    views: dict[str, str | None] = {}
    for host, port in sentinels:
        key = f"{host}:{int(port)}"
        client = redis.Redis(
            host=str(host),
            port=int(port),
            password=sentinel_password or None,
            username=sentinel_username or None,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
        )
        try:
            addr = client.execute_command("SENTINEL", "get-master-addr-by-name", master_name)
        except RedisError:
            addr = None
        finally:
            client.close()
        if addr and len(addr) == 2:
            ip, mport = (a.decode() if isinstance(a, bytes) else str(a) for a in addr)
            views[key] = f"{ip}:{mport}"
        else:
            views[key] = None
    return views


def agreeing_master(views: dict[str, str | None]) -> str | None:
    """The master every answering Sentinel names, or None when they disagree or none answers."""
    named = {v for v in views.values() if v}
    return named.pop() if len(named) == 1 else None
