"""playbooks/status.yml on the lab (issue: operations runbooks): one table of every component.

A healthy lab gives rc 0 and real values, from an empty fact cache, with --limit and in
check mode, changing nothing; a stopped component gives rc != 0 with its host and unit
named, and the lab is healthy again once it runs.
"""

from __future__ import annotations

import re
import time

import pytest
import yaml
from conftest import LAB_INVENTORY, on, playbook, recap, why

pytestmark = pytest.mark.lab
STATUS = "playbooks/status.yml"
HEADER = re.compile(r"^(?P<indent>\s*)HOST\s+COMPONENT\s+STATE\s+DETAIL")


def inventory_groups() -> dict[str, list[str]]:
    data = yaml.safe_load((LAB_INVENTORY / "hosts.yml").read_text())
    found: dict[str, set[str]] = {}

    def walk(node: dict) -> set[str]:
        hosts: set[str] = set()
        for group, body in (node or {}).items():
            mine = set(((body or {}).get("hosts") or {}).keys()) | walk((body or {}).get("children") or {})
            found.setdefault(group, set()).update(mine)
            hosts |= mine
        return hosts

    found["all"] = walk(data["all"].get("children") or {})
    return {g: sorted(h) for g, h in found.items()}


GROUPS = inventory_groups()


def status(*args: str, tmp_path=None):
    """Run status.yml; with tmp_path, from an empty fact cache."""
    extra = {"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "facts")} if tmp_path is not None else {}
    return playbook(STATUS, *args, **extra)


def table(proc) -> list[dict]:
    """The rows of the printed table: host, component, state, mark, detail."""
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if HEADER.match(line))
    indent = len(HEADER.match(lines[start])["indent"])
    rows = []
    for line in lines[start + 1 :]:
        text = line[indent:]
        if re.match(r"^\d+ checks: ", text):
            break
        cells = re.split(r"\s{2,}", text.strip(), maxsplit=4)
        cells += [""] * (5 - len(cells))
        rows.append(dict(zip(("host", "component", "state", "mark", "detail"), cells, strict=True)))
    return rows


def row(rows: list[dict], host: str, component: str) -> dict:
    hit = [r for r in rows if r["host"] == host and r["component"] == component]
    assert hit, f"no row {host} {component} in {[(r['host'], r['component']) for r in rows]}"
    return hit[0]


def wait_healthy(timeout: float = 300):
    """status.yml until it says healthy (alerts resolve and heartbeats refresh after a fault)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = status()
        if proc.returncode == 0 or time.monotonic() > deadline:
            return proc
        time.sleep(15)


@pytest.fixture(scope="module")
def healthy(lab):
    assert lab.returncode == 0, why(lab)
    proc = wait_healthy()
    assert proc.returncode == 0, why(proc)
    return proc


def test_healthy_lab_every_host_and_component_with_real_values(healthy, tmp_path):
    proc = status(tmp_path=tmp_path)
    assert proc.returncode == 0, why(proc)
    assert {c["changed"] for c in recap(proc.stdout).values()} == {0}
    rows = table(proc)
    assert {r["host"] for r in rows} >= set(GROUPS["all"])
    assert all(r["mark"] in ("ok", "WARN") for r in rows), [r for r in rows if r["mark"] == "FAIL"]
    expected_units = {
        "loadbalancer": ["nginx"],
        "airflow_api": ["airflow-api-server", "api health"],
        "airflow_scheduler": ["airflow-scheduler", "scheduler heartbeat"],
        "airflow_dag_processor": ["airflow-dag-processor"],
        "airflow_triggerer": ["airflow-triggerer"],
        "airflow_worker": ["airflow-worker@1", "celery workers"],
        "redis": ["redis-server", "redis role"],
        "redis_sentinel": ["redis-sentinel", "sentinel master"],
        "postgresql": ["postgresql role"],
        "prometheus": ["prometheus"],
        "alertmanager": ["prometheus-alertmanager"],
    }
    for group, components in expected_units.items():
        for host in GROUPS[group]:
            for component in components:
                assert row(rows, host, component)["mark"] == "ok"
    for host in GROUPS["all"]:
        assert row(rows, host, "prometheus-node-exporter")["state"] == "active"
    # PostgreSQL: one primary, the replica with a numeric lag.
    roles = {h: row(rows, h, "postgresql role") for h in GROUPS["postgresql"]}
    assert sorted(r["state"] for r in roles.values()) == ["primary", "replica"]
    replica = next(r for r in roles.values() if r["state"] == "replica")
    assert re.match(r"lag \d+ s, [\d.]+ [kMG]?B to replay, wal receiver streaming", replica["detail"]), replica
    # Redis: the master every sentinel names is the Redis master's address.
    master = next(h for h in GROUPS["redis"] if row(rows, h, "redis role")["state"] == "master")
    address = on(master, "hostname", "-I").stdout.split()[0]
    for host in GROUPS["redis_sentinel"]:
        assert row(rows, host, "sentinel master")["state"] == f"{address}:6379"
    # Workers: busy/total slots; the queue, the backups and the alerts.
    for host in GROUPS["airflow_worker"]:
        assert re.match(r"slots busy/total \d+/\d+$", row(rows, host, "celery workers")["detail"])
    assert re.match(r"\d+ waiting", row(rows, GROUPS["airflow_scheduler"][0], "celery queue")["state"])
    assert row(rows, GROUPS["backup"][0], "last backup")["mark"] in ("ok", "WARN")
    assert row(rows, GROUPS["prometheus"][0], "alerts firing")["mark"] in ("ok", "WARN")
    assert re.match(r"\d+ s ago", row(rows, GROUPS["airflow_scheduler"][0], "scheduler heartbeat")["state"])


def test_limit_and_check_mode_from_an_empty_fact_cache(healthy, tmp_path):
    proc = status("--limit", "airflow_worker", "--check", tmp_path=tmp_path)
    assert proc.returncode == 0, why(proc)
    assert {c["changed"] for c in recap(proc.stdout).values()} == {0}
    rows = table(proc)
    hosts = {r["host"] for r in rows}
    assert set(GROUPS["airflow_worker"]) <= hosts
    assert not hosts & set(GROUPS["postgresql"]), "hosts outside --limit have no rows of their own"
    # Read once for the cluster, on hosts outside the limit.
    assert re.match(r"\d+ waiting", row(rows, GROUPS["airflow_scheduler"][0], "celery queue")["state"])


@pytest.mark.drill
@pytest.mark.parametrize(
    ("group", "unit"),
    [("airflow_triggerer", "airflow-triggerer"), ("redis", "redis-server")],
    ids=["triggerer", "redis-replica"],
)
def test_a_stopped_component_is_named_and_fails(healthy, group, unit):
    if group == "redis":
        rows = table(healthy)
        host = next(h for h in GROUPS["redis"] if row(rows, h, "redis role")["state"] == "replica")
    else:
        host = GROUPS[group][0]
    assert on(host, "systemctl", "stop", unit).returncode == 0
    try:
        proc = status()
        assert proc.returncode != 0
        out = " ".join(proc.stdout.split())
        assert f"{host} {unit} (inactive)" in out
        assert re.search(rf"unhealthy: .*{re.escape(host)} {re.escape(unit)} \(inactive\)", out), why(proc)
        assert row(table(proc), host, unit)["mark"] == "FAIL"
        assert {c["changed"] for c in recap(proc.stdout).values()} == {0}
    finally:
        on(host, "systemctl", "start", unit)
    proc = wait_healthy()
    assert proc.returncode == 0, why(proc)
