# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""The signals worker scaling decides on, collected from the running cluster.

Plain functions, shared by the `scaling_signals` module (and through it
`scale.yml`) and by the Prometheus exporter of the monitoring tier:

- `queue_lengths()`: messages waiting in each Celery queue, `LLEN` on the Redis
  master that Sentinel names now (so it follows a failover);
- `task_counts()`: queued and running task instances and the age of the oldest
  queued one, from the metadata database (connect as the read-only
  `airflow_monitor` role);
- `host_utilisation()`: CPU and memory use of this host, sampled from /proc,
  with its core count and memory size.

`redis` and `psycopg2` are imported only when their function is called, so this
file imports anywhere (the Airflow virtualenv has both).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

# Kombu's Redis transport keeps a message of priority p > 0 in the list
# "<queue>\x06\x16<p>"; priority 0 (Airflow's default) is the plain "<queue>".
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)

# Seconds a connection attempt or a command may take before the signal fails.
TIMEOUT = 5.0

TASK_COUNTS_SQL = """
SELECT count(*) FILTER (WHERE state = 'queued')  AS queued,
       count(*) FILTER (WHERE state = 'running') AS running,
       EXTRACT(EPOCH FROM (now() - min(queued_dttm) FILTER (WHERE state = 'queued'))) AS oldest
FROM task_instance
WHERE state IN ('queued', 'running')
"""


class SignalError(Exception):
    """A signal could not be collected; the message says from where and why."""


def queue_keys(queue: str) -> list[str]:
    """The Redis lists that hold the messages of one Celery queue."""
    return [queue if p == 0 else f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS]


def queue_lengths(  # noqa: PLR0917 - the API the exporter shares
    sentinels: list[tuple[str, int]],
    master_name: str,
    password: str | None,
    sentinel_password: str | None,
    queues: list[str],
    username: str | None = None,
    sentinel_username: str | None = None,
) -> dict[str, int]:
    """Messages waiting in each Celery queue: {queue: length}.

    Asks the sentinels for the current master of `master_name`, then sums the
    `LLEN` of the queue's lists (one per Kombu priority step) in one pipeline.
    Raises SignalError when no sentinel answers or the master cannot be read.
    """
    try:
        from redis.exceptions import RedisError
        from redis.sentinel import Sentinel
    except ImportError as exc:  # pragma: no cover - depends on the interpreter
        raise SignalError(f"the redis Python package is required to read queue lengths: {exc}") from exc

    sentinel_kwargs = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    if sentinel_username:
        sentinel_kwargs["username"] = sentinel_username
    try:
        sentinel = Sentinel(
            [(str(h), int(p)) for h, p in sentinels],
            sentinel_kwargs=sentinel_kwargs,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            password=password or None,
            username=username or None,
        )
        master = sentinel.master_for(master_name, socket_timeout=TIMEOUT)
        pipe = master.pipeline(transaction=False)
        for queue in queues:
            for key in queue_keys(queue):
                pipe.llen(key)
        counts = pipe.execute()
    except RedisError as exc:
        where = ", ".join(f"{h}:{p}" for h, p in sentinels)
        raise SignalError(f"cannot read queue lengths of '{master_name}' through sentinels {where}: {exc}") from exc

    result: dict[str, int] = {}
    step = len(PRIORITY_STEPS)
    for i, queue in enumerate(queues):
        result[queue] = int(sum(counts[i * step : (i + 1) * step]))
    return result


def task_counts(dsn: str) -> dict:
    """Queued and running task instances, and the age of the oldest queued one.

    `dsn` is a libpq connection string (or URI) for the metadata database, as
    the read-only `airflow_monitor` role. Returns
    {'queued': int, 'running': int, 'oldest_queued_age_seconds': float | None}
    (None when nothing is queued). Raises SignalError when the query fails.
    """
    with metadata_cursor(dsn, "count task instances") as cur:
        cur.execute(TASK_COUNTS_SQL)
        queued, running, oldest = cur.fetchone()
    return {
        "queued": int(queued or 0),
        "running": int(running or 0),
        "oldest_queued_age_seconds": None if oldest is None else max(0.0, float(oldest)),
    }


@contextmanager
def metadata_cursor(dsn: str, what: str):
    """A cursor on the metadata database in a read-only session, bounded by TIMEOUT.

    Every reader of the metadata database goes through here (also
    airflow_metrics). A failed connection or query raises SignalError
    ("cannot <what>: ..."), never with the DSN (it holds the password).
    """
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover - depends on the interpreter
        raise SignalError(f"the psycopg2 Python package is required to read the metadata database: {exc}") from exc
    try:
        conn = psycopg2.connect(dsn, connect_timeout=int(TIMEOUT))
    except psycopg2.Error as exc:
        raise SignalError(f"cannot connect to the metadata database: {_first_line(exc)}") from exc
    try:
        conn.set_session(readonly=True, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = %s", (int(TIMEOUT * 1000),))
            yield cur
    except psycopg2.Error as exc:
        raise SignalError(f"cannot {what}: {_first_line(exc)}") from exc
    finally:
        conn.close()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_cpu_times(proc: str = "/proc") -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from <proc>/stat."""
    with open(os.path.join(proc, "stat"), encoding="ascii") as f:
        for line in f:
            if line.startswith("cpu "):
                fields = [int(x) for x in line.split()[1:]]
                break
        else:
            raise SignalError(f"no aggregate cpu line in {proc}/stat")
    # user nice system idle iowait irq softirq steal [guest guest_nice]: guest
    # time is already counted in user and nice.
    fields = (fields + [0] * 8)[:8]
    total = sum(fields)
    idle = fields[3] + fields[4]
    return total - idle, total


def read_meminfo(proc: str = "/proc") -> dict[str, int]:
    """<proc>/meminfo as {field: kB}."""
    info: dict[str, int] = {}
    with open(os.path.join(proc, "meminfo"), encoding="ascii") as f:
        for line in f:
            name, _sep, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                info[name] = int(parts[0])
    return info


def cpu_percent_between(before: tuple[int, int], after: tuple[int, int]) -> float:
    """CPU use in percent between two read_cpu_times() samples."""
    busy = after[0] - before[0]
    total = after[1] - before[1]
    if total <= 0:
        return 0.0
    return round(max(0.0, min(100.0, 100.0 * busy / total)), 1)


def memory_percent_of(info: dict[str, int]) -> float:
    """Memory in use (not available to new processes) in percent of MemTotal."""
    total = info.get("MemTotal", 0)
    if total <= 0:
        raise SignalError("MemTotal missing from meminfo")
    available = info.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0)
    return round(max(0.0, min(100.0, 100.0 * (total - available) / total)), 1)


def host_utilisation(interval: float = 1.0, proc: str = "/proc") -> dict:
    """This host's utilisation: CPU sampled over `interval` seconds, memory now.

    Returns {'cpu_percent': float, 'memory_percent': float, 'cores': int,
    'memory_mb': int}. A container without its own /proc view reports the
    machine it runs on.
    """
    before = read_cpu_times(proc)
    time.sleep(max(0.0, interval))
    after = read_cpu_times(proc)
    info = read_meminfo(proc)
    return {
        "cpu_percent": cpu_percent_between(before, after),
        "memory_percent": memory_percent_of(info),
        "cores": _cores(),
        "memory_mb": int(info.get("MemTotal", 0) // 1024),
    }


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


RUNNING_BY_HOST_SQL = """
SELECT hostname, count(*) FROM task_instance WHERE state = 'running' GROUP BY hostname
"""


def running_by_host(dsn: str) -> dict[str, int]:
    """Running task instances per worker host name (task_instance.hostname)."""
    with metadata_cursor(dsn, "count running task instances") as cur:
        cur.execute(RUNNING_BY_HOST_SQL)
        return {str(host or ""): int(n) for host, n in cur.fetchall()}
