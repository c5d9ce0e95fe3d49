#!/usr/bin/python
# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)

from __future__ import annotations

DOCUMENTATION = r"""
module: celery_workers
short_description: Set the number of Celery worker instances (airflow-worker@N) on a host
version_added: 0.2.0
description:
  - Runs instances C(1..count) of the systemd template unit C(<unit>@.service) on the host, enabled
    at boot, and records the count in O(count_file) so that the C(airflow) role (site.yml) keeps it.
  - Scale-up enables and starts the missing instances.
  - "Scale-down disables the instances above O(count) and stops them, the highest-numbered first,
    all at once. Stopping is the unit's warm shutdown (C(KillMode=mixed), SIGTERM to the Celery main
    process): the worker takes no new task and waits for its running tasks. The module waits up to
    O(stop_timeout) seconds for them and reports, for each stopped instance, the task processes it
    was running and how long it waited. On timeout it fails, naming what still runs; systemd
    keeps stopping those instances (up to the unit's C(TimeoutStopSec))."
  - Without O(count), the count recorded on the host is kept, or O(default_count) on a host without one.
options:
  count:
    description: Instances to run on this host. 0 stops them all.
    type: int
  default_count:
    description: The count for a host that has none recorded, when O(count) is not given.
    type: int
    default: 1
  unit:
    description: Name of the template unit, without C(@.service).
    type: str
    default: airflow-worker
  stop_timeout:
    description: Seconds to wait for stopped instances to finish their running tasks.
    type: int
    default: 3600
  count_file:
    description: Where the host's count is recorded (one integer).
    type: path
    default: /etc/airflow/worker-count
attributes:
  check_mode:
    description: Reports the plan (instances to start and stop, with the tasks the stopped ones run) and changes nothing.
    support: full
  diff_mode:
    description: Not supported.
    support: none
  platform:
    description: Hosts with systemd.
    support: full
    platforms: posix
author:
  - ScaleCorp Platform Team (@scalecorp)
"""

EXAMPLES = r"""
- name: Run three worker instances on this host
  scalecorp.airflow.celery_workers:
    count: 3

- name: Keep the host's recorded count (one instance on a new host)
  scalecorp.airflow.celery_workers:
    default_count: 1

- name: Stop all but the first, waiting up to 10 minutes for running tasks
  scalecorp.airflow.celery_workers:
    count: 1
    stop_timeout: 600
  register: scaled
"""

RETURN = r"""
before:
  description: Instances running before (active, starting or stopping).
  returned: always
  type: int
after:
  description: Instances running after (in check mode, that would run).
  returned: always
  type: int
instances_before:
  description: Instance numbers running before.
  returned: always
  type: list
  elements: int
instances_after:
  description: Instance numbers running after.
  returned: always
  type: list
  elements: int
started:
  description: Units enabled and started (or only enabled, when they already ran).
  returned: always
  type: list
  elements: str
stopped:
  description: Units stopped, each with the task processes it ran when asked to stop, and the
    seconds its warm shutdown took (null in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - unit: airflow-worker@3.service
      tasks: ["task 01a21834-423f-7a5b-b50d-19d31da0469a"]
      waited_seconds: 41.2
disabled:
  description: Units only disabled (they were not running).
  returned: always
  type: list
  elements: str
recorded:
  description: The count recorded in O(count_file) after the run.
  returned: always
  type: int
waited_seconds:
  description: Seconds the module waited for the stopped instances.
  returned: always
  type: float
"""

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalecorp.airflow.plugins.module_utils.scaling import instance_plan

# An Airflow 3 task runs as a supervisor process ("airflow supervisor: <ti id>") and
# its child ("airflow worker -- <ti id>"): one task, counted once by its id. Older
# lines name the command ("airflow tasks run ...").
TASK_TITLE = re.compile(r"airflow (?:supervisor:|worker --|task runner:?)\s*(?P<id>\S+)|(?P<cmd>airflow tasks run .*)")
RUNNING_STATES = ("active", "activating", "deactivating", "reloading")
CGROUP_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd")


def task_of(title: str) -> str | None:
    """The task a process title belongs to ("task <id>", or the command line), or None."""
    if "celery worker" in title:
        return None
    m = TASK_TITLE.search(title)
    if not m:
        return None
    return f"task {m.group('id')}" if m.group("id") else m.group("cmd").strip()


class Workers:
    def __init__(self, module: AnsibleModule, unit: str):
        self.module = module
        self.unit = unit
        self.systemctl = module.get_bin_path("systemctl", required=True)

    def name(self, n: int) -> str:
        return f"{self.unit}@{n}.service"

    def _run(self, *args: str, check: bool = True) -> tuple[int, str]:
        rc, out, err = self.module.run_command([self.systemctl, *args])
        if check and rc != 0:
            self.module.fail_json(msg=f"systemctl {' '.join(args)} failed: {(err or out).strip()}")
        return rc, out

    def template_installed(self) -> bool:
        rc, out = self._run("list-unit-files", "--no-legend", "--plain", f"{self.unit}@.service", check=False)
        return rc == 0 and f"{self.unit}@.service" in out

    def _numbers(self, text: str) -> set[int]:
        pattern = re.compile(rf"^{re.escape(self.unit)}@(\d+)\.service$")
        found = set()
        for word in text.split():
            m = pattern.match(word)
            if m:
                found.add(int(m.group(1)))
        return found

    def active(self) -> list[int]:
        _rc, out = self._run("list-units", "--all", "--plain", "--no-legend", "--no-pager", f"{self.unit}@*.service", check=False)
        running = set()
        for line in out.splitlines():
            parts = line.split()
            # UNIT LOAD ACTIVE SUB DESCRIPTION
            if len(parts) >= 4 and parts[2] in RUNNING_STATES:
                running |= self._numbers(parts[0])
        return sorted(running)

    def enabled(self) -> list[int]:
        found = set()
        root = "/etc/systemd/system"
        if os.path.isdir(root):
            for entry in os.listdir(root):
                if entry.endswith(".wants") or entry.endswith(".requires"):
                    path = os.path.join(root, entry)
                    if os.path.isdir(path):
                        found |= self._numbers(" ".join(os.listdir(path)))
        return sorted(found)

    def state(self, n: int) -> str:
        _rc, out = self._run("is-active", self.name(n), check=False)
        return out.strip() or "unknown"

    def tasks(self, n: int) -> list[str]:
        """Task processes running in the instance's control group now."""
        _rc, out = self._run("show", "-p", "ControlGroup", "--value", self.name(n), check=False)
        cgroup = out.strip()
        if not cgroup:
            return []
        pids = None
        # cgroup v2 (Debian's default), then the hybrid and v1 layouts' systemd hierarchy.
        for root in CGROUP_ROOTS:
            try:
                with open(os.path.join(root, cgroup.lstrip("/"), "cgroup.procs"), encoding="ascii") as f:
                    pids = [p.strip() for p in f if p.strip()]
                break
            except OSError:
                continue
        if pids is None:
            return []
        found = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    title = f.read().replace(b"\x00", b" ").decode("utf-8", "replace").strip()
            except OSError:
                continue
            task = task_of(title)
            if task and task not in found:
                found.append(task)
        return found


def read_count(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def write_count(path: str, count: int) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{count}\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "count": {"type": "int"},
            "default_count": {"type": "int", "default": 1},
            "unit": {"type": "str", "default": "airflow-worker"},
            "stop_timeout": {"type": "int", "default": 3600},
            "count_file": {"type": "path", "default": "/etc/airflow/worker-count"},
        },
        supports_check_mode=True,
    )
    p = module.params
    recorded = read_count(p["count_file"])
    count = p["count"] if p["count"] is not None else (recorded if recorded is not None else p["default_count"])
    if count < 0:
        module.fail_json(msg=f"count must be 0 or more, not {count}")
    if p["stop_timeout"] < 0:
        module.fail_json(msg="stop_timeout cannot be negative")

    workers = Workers(module, p["unit"])
    if not workers.template_installed():
        if module.check_mode:
            # A first run in check mode: the role has not written the unit yet.
            module.exit_json(
                changed=True,
                before=0,
                after=count,
                instances_before=[],
                instances_after=list(range(1, count + 1)),
                started=[workers.name(n) for n in range(1, count + 1)],
                stopped=[],
                disabled=[],
                recorded=count,
                waited_seconds=0.0,
                msg=f"{p['unit']}@.service is not installed yet",
            )
        module.fail_json(msg=f"{p['unit']}@.service is not installed on this host: run site.yml first")

    active = workers.active()
    plan = instance_plan(count, active, workers.enabled())
    after = sorted((set(active) - set(plan["stop"])) | set(range(1, count + 1)))
    result = {
        "before": len(active),
        "after": len(after),
        "instances_before": active,
        "instances_after": after,
        "started": [workers.name(n) for n in plan["start"]],
        "stopped": [{"unit": workers.name(n), "tasks": workers.tasks(n), "waited_seconds": None} for n in plan["stop"]],
        "disabled": [workers.name(n) for n in plan["disable"]],
        "recorded": count,
        "waited_seconds": 0.0,
    }
    changed = bool(plan["start"] or plan["stop"] or plan["disable"] or recorded != count)
    if module.check_mode or not changed:
        module.exit_json(changed=changed, **result)

    # Record first: a site.yml run that overlaps keeps the new count.
    if recorded != count:
        write_count(p["count_file"], count)
    for n in plan["disable"]:
        workers._run("disable", "--quiet", workers.name(n))
    if plan["stop"]:
        units = [workers.name(n) for n in plan["stop"]]
        workers._run("disable", "--quiet", *units)
        # --no-block: every instance starts its warm shutdown now, in parallel.
        workers._run("stop", "--no-block", *units)
    if plan["start"]:
        workers._run("enable", "--quiet", "--now", *[workers.name(n) for n in plan["start"]])

    started_wait = time.monotonic()
    pending = dict(zip(plan["stop"], result["stopped"], strict=True))
    while pending:
        for n in list(pending):
            if workers.state(n) not in RUNNING_STATES:
                pending.pop(n)["waited_seconds"] = round(time.monotonic() - started_wait, 1)
        if not pending:
            break
        if time.monotonic() - started_wait > p["stop_timeout"]:
            still = {workers.name(n): workers.tasks(n) for n in pending}
            result["waited_seconds"] = round(time.monotonic() - started_wait, 1)
            module.fail_json(
                msg=f"after {p['stop_timeout']} s these instances still finish their tasks (systemd keeps stopping them): "
                + "; ".join(f"{u}: {', '.join(t) or 'no task process seen'}" for u, t in still.items()),
                changed=True,
                still_stopping=still,
                **result,
            )
        time.sleep(1)
    result["waited_seconds"] = round(time.monotonic() - started_wait, 1) if plan["stop"] else 0.0
    result["instances_after"] = workers.active()
    result["after"] = len(result["instances_after"])
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
