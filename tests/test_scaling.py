"""Worker scaling on the lab (issue: worker scaling): scale.yml workers=N, status, auto, refusals.

The lab has two worker hosts (lab inventory: MIN 2, up to 6 instances of
concurrency 2 per host). The scale-up is the seed's command as a user types it. The auto test sets its policy through extra vars: a
queue threshold the flood crosses, CPU and memory thresholds out of reach
(lab containers see the whole machine, which other work loads), short
cooldowns.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml
from airflow_api import Airflow
from conftest import LAB_INVENTORY, ROOT, assert_refused, on, playbook, recap, run, why

pytestmark = pytest.mark.lab
FLOOD = "scalecorp_flood"
SCALE = "playbooks/scale.yml"
PLANNED = "Set this host's worker instances"


def inventory_group(name: str) -> list[str]:
    data = yaml.safe_load((LAB_INVENTORY / "hosts.yml").read_text())

    def walk(node: dict, inside: bool) -> list[str]:
        found = []
        for group, body in (node or {}).items():
            hit = inside or group == name
            if hit:
                found += list(((body or {}).get("hosts") or {}).keys())
            found += walk((body or {}).get("children") or {}, hit)
        return found

    return sorted(set(walk(data["all"].get("children") or {}, False)))


WORKERS = inventory_group("airflow_worker")
SCHEDULER = inventory_group("airflow_scheduler")[0]


def instances(host: str) -> list[int]:
    out = on(host, "systemctl", "list-units", "--plain", "--no-legend", "--state=active", "airflow-worker@*.service").stdout
    return sorted(int(n) for n in re.findall(r"airflow-worker@(\d+)\.service", out))


def enabled(host: str) -> list[int]:
    out = on(host, "sh", "-c", "ls /etc/systemd/system/multi-user.target.wants/ 2>/dev/null").stdout
    return sorted(int(n) for n in re.findall(r"airflow-worker@(\d+)\.service", out))


def celery_ping() -> set[str]:
    """Worker nodes that answer `celery inspect ping`, from a worker host."""
    cmd = (
        "set -a; . /etc/airflow/airflow.env; set +a; "
        "exec setpriv --reuid=airflow --regid=airflow --init-groups env AIRFLOW_HOME=$AIRFLOW_HOME AIRFLOW_CONFIG=$AIRFLOW_CONFIG "
        "/opt/airflow/current/bin/celery -A airflow.providers.celery.executors.celery_executor.app inspect ping --timeout 5 --json"
    )
    proc = on(WORKERS[0], "sh", "-c", cmd)
    line = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    assert line, f"celery inspect ping gave no JSON: {proc.stdout[-500:]} {proc.stderr[-500:]}"
    return set(json.loads(line[-1]))


def wait_ping(expected: set[str], timeout: float = 240) -> set[str]:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        seen = celery_ping()
        if seen == expected:
            return seen
        time.sleep(5)
    raise AssertionError(f"celery sees {sorted(seen)}, expected {sorted(expected)}")


def expected_nodes(layout: dict[str, int]) -> set[str]:
    return {f"worker{n}@{host}" for host, count in layout.items() for n in range(1, count + 1)}


def scale(*args: str):
    return playbook(SCALE, *args)


def layout() -> dict[str, int]:
    return {h: len(instances(h)) for h in WORKERS}


@pytest.fixture(scope="module")
def api(lab):
    assert lab.returncode == 0, why(lab)
    return Airflow()


@pytest.fixture(scope="module")
def back_to_min(lab):
    yield
    if layout() != {h: 1 for h in WORKERS}:
        scale("-e", f"workers={len(WORKERS)}")


def test_scale_up_keeps_the_count_then_down_mid_flood_loses_no_task(api, back_to_min):
    # Up, as the seed and the README write it (from the repository root, the default inventory):
    # 10 instances balanced across the 2 worker hosts (5 + 5), numbered from 1, enabled for boot,
    # the count recorded where site.yml reads it, and all 10 consuming.
    proc = run(["ansible-playbook", "scale.yml", "-e", "workers=10"], cwd=ROOT)
    assert proc.returncode == 0, why(proc)
    assert "2 -> 10 worker instances" in " ".join(proc.stdout.split())
    ten = layout()
    assert sum(ten.values()) == 10 and max(ten.values()) - min(ten.values()) <= 1
    for host in WORKERS:
        assert instances(host) == list(range(1, ten[host] + 1))
        assert enabled(host) == instances(host), "a rebooted host would run another count"
        assert on(host, "cat", "/etc/airflow/worker-count").stdout.strip() == str(ten[host])
    wait_ping(expected_nodes(ten))

    # Again: nothing to do. And site.yml (on the worker hosts) keeps the scaled count, changing nothing.
    again = scale("-e", "workers=10")
    assert again.returncode == 0
    assert {c["changed"] for c in recap(again.stdout).values()} == {0}
    site = playbook("playbooks/site.yml", "--limit", "airflow_worker")
    assert site.returncode == 0
    assert {c["changed"] for c in recap(site.stdout).values()} == {0}
    assert layout() == ten

    # Down while every slot is busy: the stopped instances finish their tasks first (warm shutdown).
    run_id = api.trigger(FLOOD, conf={"count": 40, "sleep": 15})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        running = [ti for ti in api.task_instances(FLOOD, run_id) if ti["state"] == "running"]
        if len(running) >= 8:
            break
        time.sleep(2)
    else:
        pytest.fail("the flood never got going")
    proc = scale("-e", "workers=2")
    assert proc.returncode == 0, why(proc)
    out = " ".join(proc.stdout.split())
    assert "10 -> 2 worker instances" in out
    # Each host drained its stopped instances, which were running tasks of the flood.
    drained = re.findall(r"(lab-wk\d) drained [^:]+: (\d+) running task\(s\) finished in ([0-9.]+) s", out)
    assert sorted(h for h, _, _ in drained) == sorted(h for h in WORKERS if ten[h] > 1), out[-3000:]
    assert sum(int(n) for _, n, _ in drained) > 0, "the stopped instances ran no task: the drill proved nothing"
    assert layout() == {h: 1 for h in WORKERS}
    assert api.wait_for_run(FLOOD, run_id, timeout=900) == "success"
    tis = [ti for ti in api.task_instances(FLOOD, run_id) if ti["task_id"] == "sleep"]
    assert len(tis) == 40
    assert all(ti["state"] == "success" for ti in tis)
    assert all(ti["try_number"] == 1 for ti in tis), "a task was killed or lost"
    wait_ping(expected_nodes({h: 1 for h in WORKERS}))


def test_status_shows_hosts_signals_and_the_decision(api, tmp_path):
    # With no fact cache (it expires; users bring their own ansible.cfg) and only the
    # worker hosts in the run: preflight gathers the other hosts' addresses itself.
    proc = playbook(SCALE, "-e", "mode=status", "--limit", "airflow_worker", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(tmp_path))
    assert proc.returncode == 0, why(proc)
    out = proc.stdout
    for host in WORKERS:
        assert host in out
    assert "busy/total slots" in out
    assert "queue length" in out and "oldest queued" in out
    assert re.search(r"auto would: (up|down|none) \d+ -> \d+ \(", out)
    assert {c["changed"] for c in recap(out).values()} == {0}


DOWN_COOLDOWN = 20
AUTO = [
    "-e", "mode=auto",
    "-e", "scaling_scale_up_queue_length=20",
    "-e", "scaling_scale_down_queue_length=5",
    "-e", "scaling_scale_up_cpu_percent=1000", "-e", "scaling_scale_down_cpu_percent=1000",
    "-e", "scaling_scale_up_memory_percent=1000", "-e", "scaling_scale_down_memory_percent=1000",
    "-e", "scaling_up_cooldown_seconds=0", "-e", f"scaling_down_cooldown_seconds={DOWN_COOLDOWN}",
    "-e", "scaling_max_step_down=10",
]  # fmt: skip


def test_auto_scales_up_under_a_flood_and_down_to_min_when_idle(api, back_to_min):
    if layout() != {h: 1 for h in WORKERS}:
        assert scale("-e", "workers=2").returncode == 0
    run_id = api.trigger(FLOOD, conf={"count": 50, "sleep": 5})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        queued = [ti for ti in api.task_instances(FLOOD, run_id) if ti["state"] == "queued"]
        if len(queued) > 25:
            break
        time.sleep(2)
    else:
        pytest.fail("the flood never filled the queue")
    up = scale(*AUTO)
    assert up.returncode == 0
    scaled_up = time.monotonic()
    text = " ".join(up.stdout.split())
    assert re.search(r"auto would: up 2 -> \d+ \(scale up: queue length \d+ > 20", text), text[-3000:]
    assert sum(layout().values()) > 2
    assert api.wait_for_run(FLOOD, run_id, timeout=600) == "success"

    # Idle, but within the down cooldown: held.
    held = scale(*AUTO, "-e", "scaling_down_cooldown_seconds=3600")
    assert held.returncode == 0
    assert "held by the cooldown" in held.stdout
    assert {c["changed"] for c in recap(held.stdout).values()} == {0}

    # Idle after the cooldown: down, never below MIN (2).
    time.sleep(max(0.0, DOWN_COOLDOWN - (time.monotonic() - scaled_up)))
    for _ in range(3):
        down = scale(*AUTO)
        assert down.returncode == 0
        if sum(layout().values()) == 2:
            break
        time.sleep(DOWN_COOLDOWN)
    assert layout() == {h: 1 for h in WORKERS}
    assert "scale down:" in down.stdout
    at_min = scale(*AUTO)
    assert "held at MIN 2" in at_min.stdout
    assert {c["changed"] for c in recap(at_min.stdout).values()} == {0}
    assert layout() == {h: 1 for h in WORKERS}


def test_a_count_the_hosts_cannot_take_is_refused_before_any_change(lab):
    # The request's own form (abc, 0, above MAX, ...) is refused before any host is
    # contacted (test_requests.py); what the hosts can take needs their facts.
    before = layout()
    proc = scale("-e", "workers=13")
    assert_refused(proc, "workers=13 is more than the worker hosts can take (12:", "Nothing was changed.", not_reached=PLANNED)
    assert layout() == before
