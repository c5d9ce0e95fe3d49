# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Prometheus exporter of the Airflow cluster's own signals (scalecorp.airflow).

Serves, on every scrape, what Airflow does not emit as StatsD: the Celery queue
lengths (the Redis master that Sentinel names now), queued and running task
instances and the oldest queued wait, each scheduler's heartbeat age, the slots
of every pool, the DAG runs by state, and which master each Sentinel names.
It reads the metadata database as the read-only monitoring role and reuses the
collection's module_utils (`signals`, `airflow_metrics`), installed beside it.

    scalecorp_airflow_exporter.py --config FILE              serve
    scalecorp_airflow_exporter.py --config FILE --check      validate FILE and exit
    scalecorp_airflow_exporter.py --config FILE --once       print one scrape and exit
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from scalecorp_signals import airflow_metrics, signals

REQUIRED = {
    "listen_address": str,
    "port": int,
    "dsn": str,
    "sentinels": list,
    "master_name": str,
    "queues": list,
}
OPTIONAL = {
    "redis_username": (str, type(None)),
    "redis_password": (str, type(None)),
    "sentinel_username": (str, type(None)),
    "sentinel_password": (str, type(None)),
    "scheduler_window_seconds": (int, float),
}


def load_config(path: str) -> dict:
    """The exporter's JSON configuration, checked; exits with a clear message when it is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        sys.exit(f"{path}: cannot read the configuration: {exc}")
    problems = []
    if not isinstance(config, dict):
        sys.exit(f"{path}: the configuration must be a JSON object")
    for key, kind in REQUIRED.items():
        if key not in config:
            problems.append(f"'{key}' is missing")
        elif not isinstance(config[key], kind) or isinstance(config[key], bool):
            problems.append(f"'{key}' must be a {kind.__name__}")
    for key, kinds in OPTIONAL.items():
        if key in config and not isinstance(config[key], kinds):
            problems.append(f"'{key}' has the wrong type")
    for entry in config.get("sentinels") or []:
        host, _sep, port = str(entry).rpartition(":")
        if not (isinstance(entry, str) and host and port.isdigit()):
            problems.append(f"sentinel {entry!r} must be 'address:port'")
    if isinstance(config.get("sentinels"), list) and not config["sentinels"]:
        problems.append("'sentinels' is empty")
    if isinstance(config.get("queues"), list) and not all(isinstance(q, str) and q for q in config["queues"]):
        problems.append("'queues' must be a list of queue names")
    unknown = set(config) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        problems.append(f"unknown keys: {', '.join(sorted(unknown))}")
    if problems:
        sys.exit(f"{path}: " + "; ".join(problems))
    return config


class AirflowCollector:
    """Collects every signal on each scrape; a source that fails reports up=0 and no series."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.sentinels = [(s.rpartition(":")[0], int(s.rpartition(":")[2])) for s in config["sentinels"]]
        self.lock = threading.Lock()
        self.ended = airflow_metrics.EndedRuns()  # a counter: lives as long as the exporter

    def _timed(self, source, fn, durations, up, errors):
        start = time.monotonic()
        try:
            result = fn()
            up[source] = 1
        except signals.SignalError as exc:
            result = None
            up[source] = 0
            errors.append(f"{source}: {exc}")
        durations[source] = time.monotonic() - start
        return result

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        c = self.config
        durations: dict[str, float] = {}
        up: dict[str, int] = {}
        errors: list[str] = []
        with self.lock:
            queues = self._timed(
                "broker",
                lambda: signals.queue_lengths(
                    self.sentinels,
                    c["master_name"],
                    c.get("redis_password"),
                    c.get("sentinel_password"),
                    c["queues"],
                    username=c.get("redis_username"),
                    sentinel_username=c.get("sentinel_username"),
                ),
                durations,
                up,
                errors,
            )
            tasks = self._timed("tasks", lambda: signals.task_counts(c["dsn"]), durations, up, errors)
            db = self._timed(
                "database",
                lambda: airflow_metrics.database_metrics(
                    c["dsn"], c.get("scheduler_window_seconds", airflow_metrics.SCHEDULER_WINDOW_SECONDS), self.ended
                ),
                durations,
                up,
                errors,
            )
            views = self._timed(
                "sentinels",
                lambda: airflow_metrics.sentinel_views(
                    self.sentinels, c["master_name"], c.get("sentinel_password"), c.get("sentinel_username")
                ),
                durations,
                up,
                errors,
            )
        for line in errors:
            print(line, file=sys.stderr, flush=True)

        if queues is not None:
            g = GaugeMetricFamily(
                "airflow_celery_queue_length", "Messages waiting in each Celery queue (Redis master named by Sentinel)", labels=["queue"]
            )
            for queue, length in sorted(queues.items()):
                g.add_metric([queue], length)
            yield g
        if tasks is not None:
            g = GaugeMetricFamily("airflow_task_instances", "Task instances queued or running (metadata database)", labels=["state"])
            g.add_metric(["queued"], tasks["queued"])
            g.add_metric(["running"], tasks["running"])
            yield g
            yield GaugeMetricFamily(
                "airflow_oldest_queued_task_age_seconds",
                "Seconds the oldest queued task instance has waited (0 when none waits)",
                value=tasks["oldest_queued_age_seconds"] or 0.0,
            )
        if db is not None:
            g = GaugeMetricFamily(
                "airflow_scheduler_heartbeat_age_seconds", "Seconds since each scheduler host's last heartbeat", labels=["hostname"]
            )
            for host, age in sorted(db["scheduler_heartbeat_age"].items()):
                g.add_metric([host], age)
            yield g
            families = {
                "slots": GaugeMetricFamily("airflow_pool_slots", "Slots of each pool", labels=["pool"]),
                "running": GaugeMetricFamily(
                    "airflow_pool_running_slots", "Slots of each pool taken by running task instances", labels=["pool"]
                ),
                "queued": GaugeMetricFamily(
                    "airflow_pool_queued_slots", "Slots of each pool wanted by queued task instances", labels=["pool"]
                ),
                "deferred": GaugeMetricFamily(
                    "airflow_pool_deferred_slots", "Slots of each pool held by deferred task instances", labels=["pool"]
                ),
            }
            for pool, values in sorted(db["pools"].items()):
                for key, family in families.items():
                    family.add_metric([pool], values[key])
            yield from families.values()
            g = GaugeMetricFamily("airflow_dag_run_total", "DAG runs in the metadata database by DAG and state", labels=["dag_id", "state"])
            for (dag_id, state), count in sorted(db["dag_runs"].items()):
                g.add_metric([dag_id, state], count)
            yield g
            # Rates and the failure alert use this one: deleted or restored history never moves it.
            ended = CounterMetricFamily(
                "airflow_dag_run_ended", "DAG runs that ended, by DAG and state, since the exporter started", labels=["dag_id", "state"]
            )
            for (dag_id, state), count in sorted(db["dag_runs_ended"].items()):
                ended.add_metric([dag_id, state], count)
            yield ended
        if views is not None:
            s_up = GaugeMetricFamily("airflow_redis_sentinel_up", "1 when the Sentinel answered with a master", labels=["sentinel"])
            s_master = GaugeMetricFamily(
                "airflow_redis_sentinel_master", "The master each Sentinel names (value 1)", labels=["sentinel", "master"]
            )
            for sentinel, master in sorted(views.items()):
                s_up.add_metric([sentinel], 1 if master else 0)
                if master:
                    s_master.add_metric([sentinel, master], 1)
            yield s_up
            yield s_master
            agreed = airflow_metrics.agreeing_master(views)
            yield GaugeMetricFamily(
                "airflow_redis_sentinels_agree", "1 when every answering Sentinel names the same master", value=1 if agreed else 0
            )
        g = GaugeMetricFamily("airflow_exporter_source_up", "1 when the source could be read in this scrape", labels=["source"])
        d = GaugeMetricFamily(
            "airflow_exporter_collect_duration_seconds", "Seconds spent reading each source in this scrape", labels=["source"]
        )
        for source in sorted(up):
            g.add_metric([source], up[source])
            d.add_metric([source], durations[source])
        yield g
        yield d


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--once", action="store_true", help="print one scrape and exit")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if args.check:
        print(f"{args.config}: configuration is valid")
        return 0

    from prometheus_client import REGISTRY, generate_latest, start_http_server

    REGISTRY.register(AirflowCollector(config))
    if args.once:
        sys.stdout.write(generate_latest(REGISTRY).decode())
        return 0
    start_http_server(config["port"], addr=config["listen_address"])
    print(f"serving on {config['listen_address']}:{config['port']}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
