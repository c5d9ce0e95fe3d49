from __future__ import annotations

import datetime as dt

from ansible_collections.scalecorp.airflow.plugins.module_utils import status

NOW = dt.datetime(2026, 11, 26, 17, 0, 0, tzinfo=dt.UTC).timestamp()


def show(*units: tuple[str, str, str]) -> str:
    return "\n\n".join(f"Id={u}.service\nLoadState=loaded\nActiveState={a}\nSubState={s}" for u, a, s in units)


def health(**states: str) -> dict:
    body = {p: {"status": states.get(p, "healthy")} for p in status.HEALTH_PARTS}
    body["scheduler"]["latest_scheduler_heartbeat"] = "2026-11-26T16:59:57+00:00"
    return {"status": 200, "json": body}


def healthy_hosts() -> list[dict]:
    return [
        {
            "host": "api1",
            "address": "10.0.0.2",
            "units_expected": ["airflow-api-server", "airflow-scheduler", "airflow-triggerer"],
            "units": show(
                ("airflow-api-server", "active", "running"),
                ("airflow-scheduler", "active", "running"),
                ("airflow-triggerer", "active", "running"),
            ),
            "api_health": health(),
            "scheduler_fqdn": "api1.lab",
        },
        {
            "host": "wk1",
            "address": "10.0.0.3",
            "units_expected": ["airflow-worker@1", "airflow-worker@2"],
            "units": show(("airflow-worker@1", "active", "running"), ("airflow-worker@2", "active", "running")),
            "workers": {"recorded": 2, "running": [1, 2], "concurrency": 2, "hostname": "wk1.lab"},
        },
        {
            "host": "rd1",
            "address": "10.0.0.4",
            "units_expected": ["redis-server", "redis-sentinel"],
            "units": show(("redis-server", "active", "running"), ("redis-sentinel", "active", "running")),
            "redis": {"info": "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n", "error": ""},
            "sentinel": {"answer": "OK\n10.0.0.4\n6379\n", "error": ""},
        },
        {
            "host": "rd2",
            "address": "10.0.0.5",
            "units_expected": ["redis-server", "redis-sentinel"],
            "units": show(("redis-server", "active", "running"), ("redis-sentinel", "active", "running")),
            "redis": {"info": "role:slave\nmaster_host:10.0.0.4\nmaster_port:6379\nmaster_link_status:up\n", "error": ""},
            "sentinel": {"answer": "10.0.0.4\n6379\n", "error": ""},
        },
        {"host": "pg1", "address": "10.0.0.6", "units_expected": [], "units": "", "postgresql": {"line": "primary||0|0|1", "error": ""}},
        {
            "host": "pg2",
            "address": "10.0.0.7",
            "units_expected": [],
            "units": "",
            "postgresql": {"line": "replica|streaming|0|0|0", "error": ""},
        },
    ]


def cluster(**extra) -> dict:
    base = {
        "time": NOW,
        "postgresql_hosts": 2,
        "redis_hosts": 2,
        "signals_host": "api1",
        "signals": {
            "queue_length": 3,
            "queues": {"default": 3},
            "tasks": {"queued": 3, "running": 1, "running_by_host": {"wk1.lab": 1}},
            "scheduler_heartbeat_age": {"api1.lab": 2.5},
        },
        "backups": {"host": "lb1", "ids": ["20261126T120000Z", "20261125T120000Z"]},
        "alerts": {"host": "lb1", "alerts": []},
    }
    base.update(extra)
    return base


def by(rows, host, component):
    return next(r for r in rows if r["host"] == host and r["component"] == component)


def test_a_healthy_cluster_has_no_problem_and_real_values():
    result = status.report(healthy_hosts(), cluster())
    assert result["healthy"], result["problems"]
    rows = result["rows"]
    assert by(rows, "wk1", "celery workers")["detail"] == "slots busy/total 1/4"
    assert by(rows, "pg2", "postgresql role")["detail"].startswith("lag 0 s")
    assert by(rows, "pg1", "postgresql role")["detail"] == "1 of 1 replica(s) streaming"
    assert by(rows, "rd2", "sentinel master")["state"] == "10.0.0.4:6379"
    assert by(rows, "rd2", "sentinel master")["detail"] == "= rd1, the Redis master"
    assert by(rows, "api1", "scheduler heartbeat")["state"] == "2 s ago"
    assert by(rows, "lb1", "last backup")["state"] == "5.0 h ago"
    assert by(rows, "api1", "celery queue")["state"] == "3 waiting"
    assert "api1" in result["table"] and result["table"].splitlines()[-1].endswith("0 unhealthy")


def test_a_stopped_unit_is_named_with_its_host():
    hosts = healthy_hosts()
    hosts[0]["units"] = show(
        ("airflow-api-server", "active", "running"), ("airflow-scheduler", "active", "running"), ("airflow-triggerer", "inactive", "dead")
    )
    hosts[0]["api_health"] = health(triggerer="unhealthy")
    result = status.report(hosts, cluster())
    assert not result["healthy"]
    assert "api1 airflow-triggerer (inactive)" in result["problems"]
    assert "api1 api health (unhealthy: triggerer)" in result["problems"]


def test_a_missing_unit_is_not_installed():
    rows = status.unit_rows("h", ["nope"], "Id=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead")
    assert rows[0]["state"] == "not installed" and rows[0]["level"] == status.FAIL


def test_a_stopped_redis_replica_and_sentinel():
    hosts = healthy_hosts()
    hosts[3]["units"] = show(("redis-server", "inactive", "dead"), ("redis-sentinel", "inactive", "dead"))
    hosts[3]["redis"] = {"info": "", "error": "Could not connect to Redis at 127.0.0.1:6379: Connection refused"}
    hosts[3]["sentinel"] = {"answer": "", "error": "Could not connect to Redis at 127.0.0.1:26379: Connection refused"}
    problems = status.report(hosts, cluster())["problems"]
    assert "rd2 redis-server (inactive)" in problems
    assert "rd2 redis role (unreachable)" in problems
    assert "rd2 sentinel master (unreachable)" in problems


def test_sentinels_that_disagree_or_name_a_replica():
    hosts = healthy_hosts()
    hosts[3]["sentinel"] = {"answer": "10.0.0.5\n6379", "error": ""}
    rows = status.report(hosts, cluster())["rows"]
    assert by(rows, "rd1", "sentinel master")["detail"].startswith("sentinels disagree")
    assert by(rows, "rd2", "sentinel master")["level"] == status.FAIL
    hosts = healthy_hosts()
    for h in hosts[2:4]:
        h["sentinel"] = {"answer": "10.0.0.5\n6379", "error": ""}
    rows = status.report(hosts, cluster())["rows"]
    assert by(rows, "rd1", "sentinel master")["detail"] == "not the Redis master (rd1)"


def test_two_redis_masters_and_none():
    hosts = healthy_hosts()
    hosts[3]["redis"] = {"info": "role:master\nconnected_slaves:0", "error": ""}
    assert "cluster redis masters (2)" in status.report(hosts, cluster())["problems"]
    hosts = healthy_hosts()
    for h in hosts[2:4]:
        h["redis"] = {"info": "role:slave\nmaster_link_status:down", "error": ""}
    assert "cluster redis masters (0)" in status.report(hosts, cluster())["problems"]


def test_replication_lag_and_missing_replica():
    hosts = healthy_hosts()
    hosts[5]["postgresql"] = {"line": "replica|streaming|900|123456|0", "error": ""}
    hosts[4]["postgresql"] = {"line": "primary||0|0|0", "error": ""}
    rows = status.report(hosts, cluster())["rows"]
    assert by(rows, "pg2", "postgresql role")["level"] == status.FAIL
    assert "120.6 kB" in by(rows, "pg2", "postgresql role")["detail"]
    assert by(rows, "pg1", "postgresql role")["detail"] == "0 of 1 replica(s) streaming"


def test_stale_heartbeat_stopped_worker_old_backup_and_critical_alert():
    hosts = healthy_hosts()
    hosts[1]["workers"]["running"] = [1]
    c = cluster(
        backups={"host": "lb1", "ids": ["20261120T000000Z"]},
        alerts={"host": "lb1", "alerts": [{"state": "firing", "labels": {"alertname": "RedisDown", "severity": "critical"}}]},
    )
    c["signals"]["scheduler_heartbeat_age"] = {"api1.lab": 600}
    problems = status.report(hosts, c)["problems"]
    assert "api1 scheduler heartbeat (10 min ago)" in problems
    assert "wk1 celery workers (1/2 instances)" in problems
    assert "lb1 last backup (6.7 d ago)" in problems
    assert "lb1 alerts firing (1: RedisDown)" in problems


def test_warnings_do_not_fail():
    c = cluster(
        backups={"host": "lb1", "ids": []},
        alerts={"host": "lb1", "alerts": [{"state": "firing", "labels": {"alertname": "CeleryQueueLong", "severity": "warning"}}]},
    )
    c["signals"]["queue_length"] = 500
    result = status.report(healthy_hosts(), c)
    assert result["healthy"]
    levels = {r["component"]: r["level"] for r in result["rows"] if r["host"] in ("lb1", "api1")}
    assert levels["last backup"] == levels["alerts firing"] == levels["celery queue"] == status.WARN
    assert not status.report(healthy_hosts(), c, {"backup_required": True})["healthy"]


def test_unreadable_signals_and_unreachable_host():
    c = cluster(signals={"error": "cannot read the signals on api1: connection refused"})
    hosts = {h["host"]: h for h in healthy_hosts()}
    hosts["lb1"] = None
    result = status.report(hosts, c)
    assert "lb1 status (not collected)" in result["problems"]
    assert "api1 celery queue (unknown)" in result["problems"]
    assert "api1 scheduler heartbeat (unknown)" in result["problems"]
    assert by(result["rows"], "wk1", "celery workers")["detail"] == "slots busy/total ?/4"


def test_unreachable_health_endpoint():
    row = status.health_row("lb1", "nginx -> api health", {"status": -1, "msg": "Connection refused"}, NOW)
    assert (row["state"], row["detail"], row["level"]) == ("unreachable", "Connection refused", status.FAIL)


def test_table_aligns_columns():
    text = status.table([status._row("a", "b", "c", "d"), status._row("long-host", "component", "state", "", status.FAIL)])
    lines = text.splitlines()
    assert lines[0].startswith("HOST       COMPONENT  STATE")
    assert lines[2].startswith("long-host  component  state  FAIL")
    assert lines[-1] == "2 checks: 1 ok, 0 warning(s), 1 unhealthy"


def test_a_sentinel_that_refuses_the_password():
    row = status.report(
        [{"host": "s", "sentinel": {"answer": "WRONGPASS invalid password\nNOAUTH Authentication required.", "error": ""}}], {}
    )
    assert "s sentinel master (unreachable)" in row["problems"]
