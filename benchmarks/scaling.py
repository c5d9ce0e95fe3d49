#!/usr/bin/env python3
"""Scaling benchmark: autoscaling reaction time vs one worker's own boot time.

    .venv/bin/python benchmarks/scaling.py [--threshold 20]

On the lab (up and converged, `make lab`), one run:
  1. boot: start one more airflow-worker@ instance by hand (systemctl start) and
     time until `celery inspect ping` answers from it;
  2. reaction: from MIN instances, flood the queue (scalecorp_flood), time from the
     moment the Celery queue's length crosses the scale-up threshold until a new
     instance has a task running, with `scale.yml -e mode=auto` started at the
     crossing (as an AWX schedule or the timer would, at best);
  3. the ratio reaction / boot (goal <= 2).
Prints a table; never part of pass/fail. Leaves the lab at MIN instances.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from airflow_api import Airflow  # noqa: E402
from conftest import on, playbook  # noqa: E402
from test_scaling import SCHEDULER, WORKERS, celery_ping, layout  # noqa: E402

CELERY = (
    "set -a; . /etc/airflow/airflow.env; set +a; "
    "exec setpriv --reuid=airflow --regid=airflow --init-groups env AIRFLOW_HOME=$AIRFLOW_HOME AIRFLOW_CONFIG=$AIRFLOW_CONFIG "
    "/opt/airflow/current/bin/celery -A airflow.providers.celery.executors.celery_executor.app {args}"
)
QUEUE = (
    "/opt/airflow/current/bin/python -c 'import json,sys; "
    'sys.path.insert(0, "/root"); from signals import queue_lengths; '
    'a=json.load(open("/root/signals-args.json")); print(sum(queue_lengths(**a).values()))\''
)


def queue_length() -> int:
    out = on(SCHEDULER, "sh", "-c", QUEUE, secret=True).stdout.strip().splitlines()
    return int(out[-1]) if out and out[-1].isdigit() else -1


def prepare_queue_probe() -> None:
    """Copy signals.py and its arguments (from the lab's secrets and inventory) to the scheduler host."""
    import yaml
    from conftest import container, lab_secrets

    src = ROOT / "collections/ansible_collections/scalecorp/airflow/plugins/module_utils/signals.py"
    subprocess.run(["docker", "cp", str(src), f"{container(SCHEDULER)}:/root/signals.py"], check=True)
    hosts = yaml.safe_load((ROOT / "inventories/lab/hosts.yml").read_text())
    sentinels = list(hosts["all"]["children"]["redis_sentinel"]["hosts"])
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    addrs = [
        subprocess.run(["docker", "inspect", "-f", fmt, container(h)], capture_output=True, text=True, check=True).stdout.strip()
        for h in sentinels
    ]
    s = lab_secrets()
    args = {
        "sentinels": [[a, 26379] for a in addrs],
        "master_name": "airflow",
        "password": s["redis_password"],
        "sentinel_password": s["redis_sentinel_password"],
        "queues": ["default"],
    }
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "signals-args.json"
    path.write_text(json.dumps(args))
    path.chmod(0o600)
    subprocess.run(["docker", "cp", str(path), f"{container(SCHEDULER)}:/root/signals-args.json"], check=True)
    path.unlink()


def active_nodes() -> dict[str, int]:
    proc = on(WORKERS[0], "sh", "-c", CELERY.format(args="inspect active --timeout 5 --json"), secret=True)  # holds task tokens
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return {node: len(tasks) for node, tasks in json.loads(lines[-1]).items()} if lines else {}


def boot_time() -> float:
    host = WORKERS[0]
    n = len([1 for _ in range(layout()[host])]) + 1
    node = f"worker{n}@{host}"
    started = time.monotonic()
    on(host, "systemctl", "start", f"airflow-worker@{n}")
    while node not in celery_ping():
        if time.monotonic() - started > 300:
            raise SystemExit(f"{node} did not answer within 300 s")
        time.sleep(1)
    took = time.monotonic() - started
    on(host, "systemctl", "stop", f"airflow-worker@{n}")
    return took


def reaction_time(threshold: int) -> tuple[float, float]:
    api = Airflow()
    before = set(celery_ping())
    api.trigger("scalecorp_flood", conf={"count": 60, "sleep": 30})
    while queue_length() <= threshold:
        time.sleep(0.5)
    crossed = time.monotonic()
    policy = [
        f"scaling_scale_up_queue_length={threshold}",
        "scaling_scale_up_cpu_percent=1000",
        "scaling_scale_down_cpu_percent=1000",
        "scaling_scale_up_memory_percent=1000",
        "scaling_scale_down_memory_percent=1000",
        "scaling_up_cooldown_seconds=0",
    ]
    extra = [arg for p in policy for arg in ("-e", p)]
    done: dict = {}

    def run_auto() -> None:
        done["rc"] = playbook("playbooks/scale.yml", "-e", "mode=auto", *extra).returncode
        done["at"] = time.monotonic() - crossed

    auto = threading.Thread(target=run_auto)
    auto.start()
    while True:
        busy = {node for node, n in active_nodes().items() if n > 0 and node not in before}
        if busy:
            reacted = time.monotonic() - crossed
            break
        if time.monotonic() - crossed > 900:
            raise SystemExit("no new worker consumed within 900 s")
        time.sleep(1)
    auto.join()
    if done.get("rc") != 0:
        raise SystemExit("scale.yml -e mode=auto failed")
    return reacted, done["at"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=int, default=20, help="scale-up queue length for the run (the lab has few slots)")
    args = parser.parse_args()
    minimum = len(WORKERS)
    assert playbook("playbooks/scale.yml", "-e", f"workers={minimum}").returncode == 0
    prepare_queue_probe()
    boot = boot_time()
    reacted, playbook_took = reaction_time(args.threshold)
    print()
    print("| measure | seconds | ratio | goal |")
    print("|---|---|---|---|")
    print(f"| one worker's boot (systemctl start -> answers celery ping) | {boot:.1f} | 1.00 | |")
    print(f"| scale.yml -e mode=auto run, from the crossing | {playbook_took:.1f} | {playbook_took / boot:.2f} x boot | |")
    print(f"| reaction: queue > {args.threshold} -> a new instance runs a task | {reacted:.1f} | {reacted / boot:.2f} x boot | <= 2 |")
    on(SCHEDULER, "rm", "-f", "/root/signals.py", "/root/signals-args.json")
    playbook("playbooks/scale.yml", "-e", f"workers={minimum}")


if __name__ == "__main__":
    main()
