"""The HA Airflow cluster of the lab, end to end through nginx (issue: Airflow tier)."""

from __future__ import annotations

import json
import time

import pytest
import requests
from airflow_api import Airflow, container_ip
from conftest import lab_secrets, on, run, why

pytestmark = pytest.mark.lab
CANARY = "scalecorp_canary"
UNITS = {
    "lab-api1": ["airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"],
    "lab-api2": ["airflow-api-server", "airflow-scheduler", "airflow-flower"],
    "lab-wk1": ["airflow-worker@1", "airflow-log-server"],
    "lab-wk2": ["airflow-worker@1", "airflow-log-server"],
}


def unit_state(host: str, unit: str) -> str:
    return on(host, "systemctl", "is-active", unit).stdout.strip()


def systemctl(host: str, verb: str, unit: str) -> None:
    assert on(host, "systemctl", *verb.split(), unit).returncode == 0


@pytest.fixture(scope="module")
def api(lab):
    assert lab.returncode == 0, why(lab)
    return Airflow()


def test_every_component_runs_where_the_inventory_puts_it(lab):
    for host, units in UNITS.items():
        for unit in units:
            assert unit_state(host, unit) == "active", f"{unit} on {host}"


# Configuration as code in the lab inventory (inventories/lab/group_vars/all/lab.yml):
# the canary's last task reads this connection and variable as any task does.
CONNECTION, VARIABLE = "scalecorp_metadata_ro", "scalecorp_environment"


@pytest.fixture(scope="module")
def canary_run(api) -> str:
    run_id = api.trigger(CANARY, conf={"connection": CONNECTION, "variable": VARIABLE})
    assert api.wait_for_run(CANARY, run_id) == "success"
    return run_id


def test_canary_runs_on_celery_across_worker_hosts(api, canary_run):
    run_id = canary_run
    tis = api.task_instances(CANARY, run_id)
    mapped = [ti for ti in tis if ti["task_id"] == "where"]
    assert len(mapped) == 8
    assert all(ti["state"] == "success" for ti in tis)
    assert all(ti["executor"] in (None, "CeleryExecutor") for ti in tis)
    hosts = {ti["hostname"] for ti in mapped}
    assert hosts <= {"lab-wk1", "lab-wk2"}
    assert len(hosts) == 2, f"mapped tasks ran on {hosts} only"


def test_task_logs_are_read_in_the_api_from_each_worker_host_also_with_its_workers_stopped(api, canary_run):
    # The API server (behind nginx) reads a finished task's log from the host that ran it:
    # its log server (unit airflow-log-server), through the firewall.
    tis = [ti for ti in api.task_instances(CANARY, canary_run) if ti["task_id"] == "where"]
    one_per_host = {ti["hostname"]: ti for ti in tis}
    assert set(one_per_host) == {"lab-wk1", "lab-wk2"}, one_per_host.keys()

    def log_of(ti: dict) -> str:
        return api.task_log(CANARY, canary_run, "where", ti["map_index"], ti["try_number"])

    for host, ti in sorted(one_per_host.items()):
        text = log_of(ti)
        assert f"CANARY shard {ti['map_index']} ran on {host}" in text, f"log of the task on {host}:\n{text[-2000:]}"
    # A host whose worker instances are all stopped (scaled down, restarting) still serves its logs.
    host, ti = "lab-wk1", one_per_host["lab-wk1"]
    stopped = [
        u
        for u in on(host, "systemctl", "list-units", "--plain", "--no-legend", "--state=active", "airflow-worker@*").stdout.split()
        if u.startswith("airflow-worker@")
    ]
    assert stopped, f"no worker instance runs on {host}"
    try:
        for unit in stopped:
            systemctl(host, "stop", unit)
        text = log_of(ti)
        assert f"CANARY shard {ti['map_index']} ran on {host}" in text, f"log with the workers of {host} stopped:\n{text[-2000:]}"
    finally:
        for unit in stopped:
            systemctl(host, "start", unit)


def test_declared_connections_variables_pools_and_environment_reach_the_api_and_the_tasks(api, canary_run):
    secrets = lab_secrets()
    conn = api.get(f"/api/v2/connections/{CONNECTION}")
    assert (conn["conn_type"], conn["port"], conn["login"], conn["schema"]) == ("postgres", 5432, "airflow_monitor", "airflow")
    assert json.loads(conn["extra"]) == {"sslmode": "verify-full"}
    assert conn.get("password") in (None, "", "***")  # the API never hands a password out
    assert api.get(f"/api/v2/variables/{VARIABLE}")["value"] == "lab"
    assert json.loads(api.get("/api/v2/variables/scalecorp_limits")["value"]) == {"max_workers": 12}
    pool = api.get("/api/v2/pools/scalecorp_lab")
    assert (pool["slots"], pool["description"]) == (4, "lab: configuration as code")
    # A task read them through the Execution API (the canary's last task prints what it got).
    text = api.task_log(CANARY, canary_run, "collect")
    assert f"CANARY connection {CONNECTION}: type postgres host {conn['host']} port 5432 login airflow_monitor" in text, text[-2000:]
    assert f"CANARY variable {VARIABLE}: lab" in text, text[-2000:]
    # airflow_extra_env reaches the tasks (the worker units' environment) and the airflow command.
    assert "CANARY environment SCALECORP_CLUSTER=lab" in text, text[-2000:]
    assert on("lab-api1", "/usr/local/bin/airflow", "config", "get-value", "scalecorp", "cluster").stdout.strip() == "lab"
    assert secrets["postgresql_monitor_password"] not in text


def test_objects_module_plans_in_check_mode_applies_and_removes(lab):
    """scalecorp.airflow.airflow_objects on the first scheduler, as site.yml runs it: check mode
    reports without writing, a run writes, the same run again finds nothing, state=absent removes.
    A pool the inventory does not declare, so the declared ones (and site.yml's changed=0) stay."""
    host = "lab-api1"

    def objects(pools: list, *options: str) -> dict:
        args = json.dumps({"pools": pools})
        cmd = ["ansible", host, "-b", "-m", "scalecorp.airflow.airflow_objects", "-a", args, *options]
        proc = run(cmd, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
        assert proc.returncode == 0, why(proc)
        return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"][host]

    def pool_exists() -> bool:
        out = on(host, "/usr/local/bin/airflow", "pools", "list", "--output", "json").stdout
        return "scalecorp_probe" in out

    probe = [{"name": "scalecorp_probe", "slots": 2}]
    try:
        planned = objects(probe, "--check")
        assert planned["changed"] and planned["changes"] == ["pool scalecorp_probe: create"], planned
        assert not pool_exists()
        applied = objects(probe)
        assert applied["changed"] and applied["changes"] == ["pool scalecorp_probe: create"], applied
        assert pool_exists()
        again = objects(probe)
        assert not again["changed"] and again["changes"] == [], again
    finally:
        gone = objects([{"name": "scalecorp_probe", "state": "absent"}])
    assert gone["changes"] == ["pool scalecorp_probe: delete"], gone
    assert not pool_exists()


def test_api_refuses_requests_without_a_token(api):
    resp = requests.get(f"{api.base}/api/v2/dags", verify=api.ca, timeout=30)
    assert resp.status_code == 401
    resp = requests.get(f"{api.base}/api/v2/dags", headers={"Authorization": "Bearer not-a-token"}, verify=api.ca, timeout=30)
    assert resp.status_code in (401, 403)


def test_security_headers_on_every_response(api):
    lb = container_ip("lab-lb1")
    responses = [
        requests.get(f"{api.base}/", verify=api.ca, timeout=30, allow_redirects=False),
        requests.get(f"{api.base}/api/v2/dags", verify=api.ca, timeout=30),
        requests.get(f"{api.base}/no/such/page", verify=api.ca, timeout=30),
        requests.get(f"http://{lb}/", timeout=30, allow_redirects=False),
    ]
    assert responses[-1].status_code == 301
    assert responses[-1].headers["Location"].startswith("https://")
    for resp in responses:
        assert resp.headers.get("X-Frame-Options") == "SAMEORIGIN"
        assert resp.headers.get("X-Content-Type-Options") == "nosniff"
        assert resp.headers.get("Referrer-Policy")
        assert "max-age=" in resp.headers.get("Strict-Transport-Security", "")
        assert "default-src 'self'" in resp.headers.get("Content-Security-Policy", "")


def test_execution_api_is_internal_only(api):
    # Public HTTPS listener: refused; internal listener: open to Airflow hosts only.
    assert requests.get(f"{api.base}/execution/health", verify=api.ca, timeout=30).status_code == 404
    lb = container_ip("lab-lb1")
    probe = ["curl", "-s", "--connect-timeout", "5", "-o", "/dev/null", "-w", "%{http_code}", f"http://{lb}:8081/execution/health"]
    assert on("lab-wk1", *probe).stdout == "200"
    # Two layers: the host firewall drops other hosts (no answer at all), and nginx's
    # allow-list refuses what passes it but is no worker (the load balancer itself).
    assert on("lab-pg1", *probe).stdout == "000"
    assert on("lab-lb1", *probe).stdout == "403"


@pytest.mark.drill
def test_one_api_server_down_requests_keep_succeeding(api):
    systemctl("lab-api1", "stop", "airflow-api-server")
    try:
        codes = [api.request("GET", "/api/v2/dags").status_code for _ in range(20)]
        assert codes == [200] * 20
    finally:
        systemctl("lab-api1", "start", "airflow-api-server")


@pytest.mark.drill
def test_one_scheduler_down_a_new_run_still_completes(api):
    systemctl("lab-api2", "stop", "airflow-scheduler")
    try:
        run_id = api.trigger(CANARY)
        assert api.wait_for_run(CANARY, run_id) == "success"
    finally:
        systemctl("lab-api2", "start", "airflow-scheduler")


@pytest.mark.drill
def test_worker_restart_waits_for_a_running_task(api):
    # Only one worker host, so the long task lands on the worker we restart.
    systemctl("lab-wk2", "stop", "airflow-worker@1")
    try:
        run_id = api.trigger(CANARY, conf={"sleep": 45, "width": 1})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tis = [ti for ti in api.task_instances(CANARY, run_id) if ti["task_id"] == "where"]
            if tis and tis[0]["state"] == "running":
                break
            time.sleep(1)
        else:
            pytest.fail("the long task never started")
        started = time.monotonic()
        systemctl("lab-wk1", "restart", "airflow-worker@1")
        waited = time.monotonic() - started
        assert waited > 20, f"restart returned after {waited:.0f} s: it did not wait for the running task"
        assert api.wait_for_run(CANARY, run_id) == "success"
        where = [ti for ti in api.task_instances(CANARY, run_id) if ti["task_id"] == "where"][0]
        assert where["try_number"] == 1
    finally:
        systemctl("lab-wk2", "start", "airflow-worker@1")


@pytest.mark.drill
def test_killed_worker_loses_no_task(api):
    run_id = api.trigger(CANARY, conf={"sleep": 30, "width": 4})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        on_wk2 = [ti for ti in api.task_instances(CANARY, run_id) if ti["task_id"] == "where" and ti["hostname"] == "lab-wk2"]
        if any(ti["state"] == "running" for ti in on_wk2):
            break
        time.sleep(1)
    else:
        pytest.fail("no task started on lab-wk2")
    # Every process of the worker, task processes included, dies at once; systemd restarts the worker.
    systemctl("lab-wk2", "kill --signal=SIGKILL", "airflow-worker@1")
    assert api.wait_for_run(CANARY, run_id, timeout=420) == "success"
    where = [ti for ti in api.task_instances(CANARY, run_id) if ti["task_id"] == "where"]
    assert len(where) == 4
    assert all(ti["state"] == "success" for ti in where)
    assert any(ti["try_number"] > 1 for ti in where), "no task was lost with the worker: the drill proved nothing"
    assert unit_state("lab-wk2", "airflow-worker@1") == "active"


def test_airflow_config_is_identical_on_every_host(lab):
    digests = {host: on(host, "sha256sum", "/etc/airflow/airflow.cfg").stdout.split()[0] for host in UNITS}
    assert len(set(digests.values())) == 1, digests
    cfg = on("lab-wk1", "cat", "/etc/airflow/airflow.cfg", secret=True).stdout
    secrets = lab_secrets()
    for line, name in (
        ("fernet_key = ", "airflow_fernet_key"),
        ("secret_key = ", "airflow_api_secret_key"),
        ("jwt_secret = ", "airflow_jwt_secret"),
    ):
        found = f"{line}{secrets[name]}\n" in cfg  # a bare bool: pytest must not print the secret
        assert found, f"{name} is not the inventory's"
