"""Monitoring on the lab cluster, end to end (issue: monitoring).

Prometheus scrapes every target the inventory implies; the seed's five series
carry real values once the canary DAG has run; every dashboard panel's query
returns data; real faults (schedulers stopped, an exporter stopped, the Redis
master stopped) reach the test webhook receiver through Alertmanager and
resolve once repaired; bad Alertmanager input is refused with the running
configuration kept. The lab inventory shortens the alerts' for: durations
(inventories/lab/group_vars/all/monitoring.yml); production keeps the defaults.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from functools import cache

import pytest
from airflow_api import Airflow, container_ip
from conftest import LAB_INVENTORY, ROLES, ROOT, VENV_BIN, container, lab_secrets, on, playbook, run, why

pytestmark = pytest.mark.lab
CANARY = "scalecorp_canary"
RECEIVER_PORT = 19093  # alertmanager_webhook_urls in the lab inventory
RECEIVER_LOG = "/root/alerts.jsonl"
DASHBOARDS = ROLES / "grafana/files/dashboards"
JOBS = {  # prometheus_scrape_jobs: job -> inventory group
    "node": "all",
    "postgres": "postgresql",
    "redis": "redis",
    "nginx": "loadbalancer",
    "statsd": "airflow",
    "airflow_exporter": "prometheus",
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
}


@cache
def groups() -> dict[str, list[str]]:
    proc = run([str(VENV_BIN / "ansible-inventory"), "-i", str(LAB_INVENTORY), "--list"])
    data = json.loads(proc.stdout)
    out: dict[str, set[str]] = {}

    def walk(group: str) -> set[str]:
        if group not in out:
            hosts = set(data.get(group, {}).get("hosts", []))
            for child in data.get(group, {}).get("children", []):
                hosts |= walk(child)
            out[group] = hosts
        return out[group]

    for group in data:
        if group != "_meta":
            walk(group)
    return {g: sorted(h) for g, h in out.items()}


def first(group: str) -> str:
    return groups()[group][0]


HTTP_SCRIPT = """
import base64, sys, urllib.error, urllib.request
url, data, auth = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, data=data.encode() if data else None)
if auth:
    user, path = auth.split(":", 1)
    token = base64.b64encode(f"{user}:{open(path).read().strip()}".encode()).decode()
    req.add_header("Authorization", "Basic " + token)
try:
    with urllib.request.urlopen(req, timeout=20) as resp:
        print(resp.status)
        print(resp.read().decode())
except urllib.error.HTTPError as exc:
    print(exc.code)
"""


def http(host: str, url: str, data: bytes | None = None, auth: str | None = "prometheus") -> tuple[int, str]:
    """(status, body) of a GET (or POST) from inside a lab host (the monitoring services accept the
    cluster's hosts only). `auth`: the service whose credentials to send (admin and the password file
    the prometheus role writes, /etc/prometheus/<auth>.password), None for none."""
    cred = f"admin:/etc/prometheus/{auth}.password" if auth else ""
    proc = on(host, "python3", "-c", HTTP_SCRIPT, url, data.decode() if data is not None else "", cred)
    assert proc.returncode == 0, f"{url} from {host}: {proc.stderr[-500:]}"
    status, _, body = proc.stdout.partition("\n")
    return int(status), body


def http_on(host: str, url: str, data: bytes | None = None, auth: str | None = "prometheus") -> str:
    status, body = http(host, url, data, auth)
    assert status == 200, f"{url} from {host}: HTTP {status}"
    return body


def prom(query: str) -> list[dict]:
    host = first("prometheus")
    url = f"http://{container_ip(host)}:9090/api/v1/query?" + urllib.parse.urlencode({"query": query})
    body = json.loads(http_on(host, url))
    assert body["status"] == "success", body
    return body["data"]["result"]


def value(sample: dict) -> float:
    return float(sample["value"][1])


def wait_for(what: str, check, timeout: float = 120, every: float = 5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def systemctl(host: str, verb: str, unit: str) -> None:
    proc = on(host, "systemctl", verb, unit)
    assert proc.returncode == 0, f"systemctl {verb} {unit} on {host}: {proc.stderr}"


# --- the test webhook receiver on the Alertmanager host ---


@pytest.fixture(scope="module")
def receiver(lab):
    assert lab.returncode == 0, why(lab)
    host = first("alertmanager")
    source = ROOT / "tests/fixtures/alert_receiver.py"
    assert run(["docker", "cp", str(source), f"{container(host)}:/root/alert_receiver.py"]).returncode == 0
    on(host, "systemctl", "stop", "scalecorp-test-alert-receiver")
    on(host, "rm", "-f", RECEIVER_LOG)
    proc = on(
        host,
        "systemd-run",
        "--unit=scalecorp-test-alert-receiver",
        "--collect",
        "/usr/bin/python3",
        "/root/alert_receiver.py",
        str(RECEIVER_PORT),
        RECEIVER_LOG,
    )
    assert proc.returncode == 0, proc.stderr
    yield host
    on(host, "systemctl", "stop", "scalecorp-test-alert-receiver")


def notifications(host: str) -> list[dict]:
    proc = on(host, "cat", RECEIVER_LOG)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def wait_for_alert(host: str, alertname: str, status: str, since: float, timeout: float = 180, **labels: str) -> dict:
    """The first alert of that name and status (with these labels) posted to the receiver after `since`."""

    def find():
        for note in notifications(host):
            if note.get("received_at", 0) < since:
                continue
            for alert in note.get("alerts", []):
                lab = alert.get("labels", {})
                if lab.get("alertname") == alertname and alert.get("status") == status and all(lab.get(k) == v for k, v in labels.items()):
                    return alert
        return None

    return wait_for(f"{alertname} {status} {labels} at the webhook receiver", find, timeout=timeout, every=5)


@pytest.fixture(scope="module")
def healthy(lab):
    """Every scrape target up before a test starts a fault."""
    assert lab.returncode == 0, why(lab)
    wait_for("every scrape target up", lambda: prom("up") and all(value(s) == 1 for s in prom("up")), timeout=180)


# --- targets and the seed series ---


def test_every_scrape_target_is_up(healthy):
    expected = {(job, host) for job, group in JOBS.items() for host in groups().get(group, [])}
    samples = prom("up")
    seen = {(s["metric"]["job"], s["metric"]["instance"]) for s in samples}
    assert seen == expected
    down = [s["metric"] for s in samples if value(s) != 1]
    assert not down, f"targets down: {down}"


def test_prometheus_and_alertmanager_refuse_requests_without_credentials(healthy):
    """Every request needs the credentials, the probes too; a wrong password is refused like none."""
    prometheus, alertmanager = first("prometheus"), first("alertmanager")
    on(prometheus, "sh", "-c", "echo admin-guess > /etc/prometheus/wrong.password")
    try:
        for base, auth in (
            (f"http://{container_ip(prometheus)}:9090", "prometheus"),
            (f"http://{container_ip(alertmanager)}:9093", "alertmanager"),
        ):
            for path in ("/-/ready", "/api/v1/status/config" if auth == "prometheus" else "/api/v2/status", "/"):
                assert http(prometheus, base + path, auth=None)[0] == 401, f"{base}{path} answered without credentials"
                assert http(prometheus, base + path, auth="wrong")[0] == 401, f"{base}{path} took a wrong password"
            assert http(prometheus, base + "/-/ready", auth=auth)[0] == 200
    finally:
        on(prometheus, "rm", "-f", "/etc/prometheus/wrong.password")
    # Prometheus itself authenticates to both: they are scraped and alerts reach Alertmanager.
    up = {s["metric"]["job"]: value(s) for s in prom('up{job=~"prometheus|alertmanager"}')}
    assert up == {"prometheus": 1.0, "alertmanager": 1.0}
    assert value(prom("sum(prometheus_notifications_alertmanagers_discovered)")[0]) >= 1


@pytest.fixture(scope="module")
def canary_ran(healthy):
    """The canary DAG has run (after the dashboards' series were first scraped)."""
    before = prom(f'airflow_dag_run_total{{dag_id="{CANARY}",state="success"}}')
    ended = prom(f'airflow_dag_run_ended_total{{dag_id="{CANARY}",state="success"}}')
    api = Airflow(first("loadbalancer"))
    run_id = api.trigger(CANARY)
    assert api.wait_for_run(CANARY, run_id) == "success"
    return {"before": max((value(s) for s in before), default=0.0), "ended_before": max((value(s) for s in ended), default=0.0)}


def test_seed_series_have_real_values(canary_ran):
    schedulers = set(groups()["airflow_scheduler"])

    # DAG runs: the canary's success count grew.
    runs = wait_for(
        "the canary's run counted in airflow_dag_run_total",
        lambda: [s for s in prom(f'airflow_dag_run_total{{dag_id="{CANARY}",state="success"}}') if value(s) >= canary_ran["before"] + 1],
        timeout=60,
    )
    assert runs
    # ... and it was counted once as ended (the counter the failure-rate alert reads), within
    # the exporter's lag behind the database's clock (30 s) and a scrape.
    ended = wait_for(
        "the canary's run counted in airflow_dag_run_ended_total",
        lambda: [
            value(s)
            for s in prom(f'airflow_dag_run_ended_total{{dag_id="{CANARY}",state="success"}}')
            if value(s) >= canary_ran["ended_before"] + 1
        ],
        timeout=120,
    )
    assert ended

    # Task durations: every canary task that ran has a positive duration, in seconds.
    durations = wait_for(
        "canary task durations in airflow_task_duration_seconds",
        lambda: (
            {s["metric"]["task_id"]: value(s) for s in prom(f'airflow_task_duration_seconds{{dag_id="{CANARY}"}}')}
            if {"shards", "where", "collect"}
            <= {s["metric"].get("task_id") for s in prom(f'airflow_task_duration_seconds{{dag_id="{CANARY}"}}')}
            else None
        ),
        timeout=90,
    )
    assert all(0 < v < 600 for v in durations.values()), durations

    # Scheduler heartbeat: one growing counter per scheduler host, and a recent heartbeat in the database.
    beats = prom("rate(airflow_scheduler_heartbeat[1m])")
    assert {s["metric"]["instance"] for s in beats if value(s) > 0} == schedulers
    ages = {s["metric"]["hostname"]: value(s) for s in prom("airflow_scheduler_heartbeat_age_seconds")}
    assert schedulers <= set(ages), ages
    assert all(ages[h] < 30 for h in schedulers), ages

    # Queue length: the same as LLEN on the Redis master the Sentinels name.
    master_ip = sentinel_master()
    master = next(h for h in groups()["redis"] if container_ip(h) == master_ip)
    llen = int(redis_cli(master, "LLEN", "default"))
    queue = prom('airflow_celery_queue_length{queue="default"}')
    assert queue and all(abs(value(s) - llen) <= 2 for s in queue), (queue, llen)

    # Pool running slots: default_pool is reported, within its size.
    running = prom('airflow_pool_running_slots{pool="default_pool"}')
    slots = prom('airflow_pool_slots{pool="default_pool"}')
    assert running and slots
    assert 0 <= value(running[0]) <= value(slots[0])


def sentinel_master() -> str:
    host = first("redis_sentinel")
    proc = on(
        host,
        "env",
        f"REDISCLI_AUTH={lab_secrets()['redis_sentinel_password']}",
        "redis-cli",
        "-p",
        "26379",
        "--raw",
        "SENTINEL",
        "get-master-addr-by-name",
        "airflow",
    )
    return proc.stdout.split()[0]


def redis_cli(host: str, *cmd: str) -> str:
    proc = on(host, "env", f"REDISCLI_AUTH={lab_secrets()['redis_password']}", "redis-cli", "--raw", *cmd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_every_dashboard_panel_returns_data(canary_ran):
    empty = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if not prom(target["expr"]):
                    empty.append(f"{board['title']} / {panel['title']}: {target['expr']}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


# --- faults ---


@pytest.mark.drill
def test_stopped_schedulers_fire_scheduler_down_and_resolve(healthy, receiver):
    schedulers = groups()["airflow_scheduler"]
    since = time.time()
    try:
        for host in schedulers:
            systemctl(host, "stop", "airflow-scheduler")
        for host in schedulers:
            wait_for_alert(receiver, "SchedulerDown", "firing", since, instance=host)
    finally:
        for host in schedulers:
            systemctl(host, "start", "airflow-scheduler")
    restarted = time.time()
    for host in schedulers:
        wait_for_alert(receiver, "SchedulerDown", "resolved", restarted, instance=host)


@pytest.mark.drill
def test_stopped_exporter_fires_target_down_and_resolves(healthy, receiver):
    host = groups()["redis"][-1]
    since = time.time()
    try:
        systemctl(host, "stop", "prometheus-redis-exporter")
        alert = wait_for_alert(receiver, "TargetDown", "firing", since, instance=host, job="redis")
        assert alert["annotations"]["runbook_url"].endswith("docs/runbook.md#targetdown")
    finally:
        systemctl(host, "start", "prometheus-redis-exporter")
    wait_for_alert(receiver, "TargetDown", "resolved", time.time(), instance=host, job="redis")


@pytest.mark.parametrize(
    "extra, shown",
    [
        ({"slack_webhook_url": "hooks.slack.example/no-scheme"}, "unsupported scheme"),
        ({"alertmanager_routes": [{"receiver": "nobody", "matchers": ['severity="page"']}]}, 'undefined receiver "nobody"'),
    ],
    ids=["malformed-slack-url", "unknown-receiver"],
)
def test_bad_alertmanager_input_is_refused_and_the_running_config_kept(lab, extra, shown):
    host = first("alertmanager")
    before = on(host, "sha256sum", "/etc/prometheus/alertmanager.yml").stdout.split()[0]
    try:
        proc = playbook("tests/playbooks/alertmanager.yml", "-e", json.dumps(extra))
    finally:
        # The rejected candidate stays beside the running file; put the good one back
        # so that the next site.yml run finds nothing to change.
        on(host, "cp", "-p", "/etc/prometheus/alertmanager.yml", "/etc/prometheus/alertmanager.yml.candidate")
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    assert "amtool check-config rejected the new Alertmanager configuration" in out
    assert "keeps its current one" in out
    assert shown in out
    if "slack_webhook_url" in extra:
        assert extra["slack_webhook_url"] not in proc.stdout
    assert on(host, "sha256sum", "/etc/prometheus/alertmanager.yml").stdout.split()[0] == before
    assert on(host, "systemctl", "is-active", "prometheus-alertmanager").stdout.strip() == "active"
    http_on(host, f"http://{container_ip(host)}:9093/-/ready", auth="alertmanager")


@pytest.mark.drill
def test_flooded_queue_fires_celery_queue_long(healthy, receiver):
    """120 sleeping tasks on 4 worker slots: more than 100 wait in Redis, the alert fires.

    The run is then marked successful (its queued tasks with it), and the
    workers drain the queue of messages whose tasks are done.
    """
    api = Airflow(first("loadbalancer"))
    since = time.time()
    run_id = api.trigger("scalecorp_flood", {"count": 120, "sleep": 60})
    try:
        alert = wait_for_alert(receiver, "CeleryQueueLong", "firing", since, timeout=240, queue="default")
        assert alert["labels"]["severity"] == "warning"
        # The series is Redis itself: LLEN on the master and the exporter's value agree while it is full.
        master_ip = sentinel_master()
        master = next(h for h in groups()["redis"] if container_ip(h) == master_ip)
        llen = int(redis_cli(master, "LLEN", "default"))
        exported = value(prom('max(airflow_celery_queue_length{queue="default"})')[0])
        assert llen > 100 and exported > 100, (llen, exported)
        assert abs(exported - llen) <= 20, (exported, llen)
    finally:
        api.set_run_state("scalecorp_flood", run_id, "success")
    wait_for("the flood's messages drained", lambda: prom('max(airflow_celery_queue_length{queue="default"}) == 0'), timeout=300)


@pytest.mark.drill
def test_stopped_redis_master_fires_a_redis_alert(healthy, receiver):
    master_ip = sentinel_master()
    master = next(h for h in groups()["redis"] if container_ip(h) == master_ip)
    since = time.time()
    try:
        systemctl(master, "stop", "redis-server")
        wait_for_alert(receiver, "RedisDown", "firing", since, instance=master)
    finally:
        systemctl(master, "start", "redis-server")
    wait_for_alert(receiver, "RedisDown", "resolved", time.time(), instance=master)
    # The broker is whole again: one master named by every Sentinel, every target up.
    wait_for("the Sentinels agree on a master", lambda: prom("min(airflow_redis_sentinels_agree) == 1"), timeout=60)
    wait_for("every scrape target up", lambda: all(value(s) == 1 for s in prom("up")), timeout=60)
