"""A small client of the Airflow REST API through the lab's nginx, for the tests."""

from __future__ import annotations

import time

import requests
from conftest import LAB_INVENTORY, container, lab_secrets, run


def container_ip(host: str) -> str:
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return run(["docker", "inspect", "-f", fmt, container(host)]).stdout.strip()


class Airflow:
    """Airflow's API at https://<load balancer>/, authenticated as the admin user (or another)."""

    def __init__(self, lb_host: str = "lab-lb1", user: str = "admin", secret: str = "airflow_admin_password"):
        self.user, self.secret = user, secret
        self.base = f"https://{container_ip(lb_host)}"
        # Verify TLS against the cluster CA, which signed nginx's certificate (secrets role).
        self.ca = str(LAB_INVENTORY / "group_vars/all/secrets.ca.crt")
        self.session = requests.Session()
        self._token: str | None = None

    def token(self, timeout: float = 180) -> str:
        """A token for the user; waits while the API servers (re)start (nginx answers 502/503)."""
        deadline = time.monotonic() + timeout
        while self._token is None:
            try:
                resp = self.session.post(
                    f"{self.base}/auth/token",
                    json={"username": self.user, "password": lab_secrets()[self.secret]},
                    timeout=30,
                    verify=self.ca,
                )
            except requests.ConnectionError:
                resp = None
            if resp is not None and resp.status_code not in (502, 503, 504):
                resp.raise_for_status()
                self._token = resp.json()["access_token"]
            elif time.monotonic() > deadline:
                raise AssertionError(f"no API server answered /auth/token within {timeout} s")
            else:
                time.sleep(3)
        return self._token

    def request(self, method: str, path: str, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        headers["Authorization"] = f"Bearer {self.token()}"
        return self.session.request(method, f"{self.base}{path}", headers=headers, timeout=30, verify=self.ca, **kw)

    def get(self, path: str, **kw) -> dict:
        resp = self.request("GET", path, **kw)
        resp.raise_for_status()
        return resp.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            resp = self.request("GET", f"/api/v2/dags/{dag_id}")
            if resp.status_code == 200:
                return resp.json()
            if time.monotonic() > deadline:
                raise AssertionError(f"DAG {dag_id} not parsed within {timeout} s: {resp.status_code} {resp.text[:200]}")
            time.sleep(3)

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        self.wait_for_dag(dag_id)
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        resp = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        resp.raise_for_status()
        return resp.json()["dag_run_id"]

    def set_run_state(self, dag_id: str, run_id: str, state: str, attempts: int = 4) -> None:
        """Mark a run; a PATCH racing the scheduler on the same run's rows can get a
        500 "Database error" (a lock conflict), which a client retries."""
        for attempt in range(1, attempts + 1):
            resp = self.request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": state})
            if resp.status_code == 200 or resp.status_code != 500 or attempt == attempts:
                break
            time.sleep(2 * attempt)
        assert resp.status_code == 200, f"{dag_id}/{run_id} -> {state}: {resp.status_code} {resp.text[:300]}"

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """The run's end state. A poll that times out is polled again (an API server busy
        with a restart or a loaded host answers the next one); the run must still end
        within `timeout`."""
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            try:
                state = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            except requests.Timeout as exc:
                state = f"unknown (the last poll timed out: {exc})"
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise AssertionError(f"run {run_id} of {dag_id} still {state} after {timeout} s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1) -> str:
        """A task try's log as the UI shows it (the API server reads it from the host that ran it).

        Airflow answers 200 also when it could not reach that host, with the reason in the
        content ("Could not read served logs: ..."), so callers look for a line of the task.
        """
        resp = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": "true"},
            headers={"Accept": "application/json"},
        )
        assert resp.status_code == 200, f"log of {task_id}[{map_index}] in {run_id}: {resp.status_code} {resp.text[:300]}"
        content = resp.json().get("content")
        entries = content if isinstance(content, list) else [content]
        return "\n".join(e.get("event", str(e)) if isinstance(e, dict) else str(e) for e in entries)
