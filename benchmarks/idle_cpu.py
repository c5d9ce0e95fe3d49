#!/usr/bin/env python3
"""Where the lab's CPU goes while nothing is asked of it: per host and per systemd unit.

    .venv/bin/python benchmarks/idle_cpu.py [--seconds 60] [--name lab]

On 2 shared cores, what an idle cluster burns is taken from every Ansible run and
every test. Per host: the container's cgroup CPU time over the window (every process,
short-lived ones included: parsers, task processes, probes). Per unit: the CPU time of
the unit's processes that lived through the whole window (/proc/PID/stat); what is
left of the host's figure is "short-lived". Prints a table, busiest first, in percent
of one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from lab import docker, lab_containers  # noqa: E402  (tools/lab.py: the lab's containers)

# Run inside each host: CPU ticks per (pid, unit) of the processes alive now.
PROBE = r"""
import json, os, re
ticks = {}
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        stat = open(f'/proc/{pid}/stat').read()
        cg = open(f'/proc/{pid}/cgroup').read()
    except OSError:
        continue
    fields = stat.rsplit(')', 1)[1].split()
    m = re.search(r'name=systemd:.*/([^/\n]+\.(?:service|scope))', cg)
    ticks[pid] = [m.group(1) if m else '-', int(fields[11]) + int(fields[12]), fields[19]]
print(json.dumps({'hz': os.sysconf('SC_CLK_TCK'), 'ticks': ticks}))
"""


def container_ids(name: str) -> dict[str, str]:
    """container name -> full id (its cgroup's name), for the running hosts of the lab `name`."""
    fmt = "{{.State.Running}} {{.Id}}"
    states = {c: docker("inspect", "-f", fmt, c).stdout.split() for c in lab_containers(name)}
    return {c: cid for c, (running, cid) in states.items() if running == "true"}


def cgroup_ns(cid: str) -> int:
    for base in ("/sys/fs/cgroup/cpuacct/docker", "/sys/fs/cgroup/cpu,cpuacct/docker"):
        path = Path(base, cid, "cpuacct.usage")
        if path.exists():
            return int(path.read_text())
    stat = Path("/sys/fs/cgroup/system.slice", f"docker-{cid}.scope", "cpu.stat")  # cgroup v2
    usage = dict(line.split() for line in stat.read_text().splitlines())
    return int(usage["usage_usec"]) * 1000


def probe(container: str) -> dict:
    return json.loads(docker("exec", container, "python3", "-c", PROBE).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--name", default=os.environ.get("SCALECORP_LAB_NAME") or "lab")
    args = parser.parse_args()
    hosts = container_ids(args.name)
    if not hosts:
        sys.exit(f"no running host of the lab {args.name!r}: make lab first")
    with ThreadPoolExecutor(len(hosts)) as pool:
        before_cg = {h: cgroup_ns(cid) for h, cid in hosts.items()}
        before = dict(zip(hosts, pool.map(probe, hosts), strict=True))
        started = time.monotonic()
        time.sleep(args.seconds)
        after = dict(zip(hosts, pool.map(probe, hosts), strict=True))
        window = time.monotonic() - started
        after_cg = {h: cgroup_ns(cid) for h, cid in hosts.items()}

    rows = []
    total = 0.0
    for host in sorted(hosts):
        host_pct = (after_cg[host] - before_cg[host]) / 1e9 / window * 100
        total += host_pct
        hz = after[host]["hz"]
        units: dict[str, float] = {}
        for pid, (unit, ticks, start) in after[host]["ticks"].items():
            old = before[host]["ticks"].get(pid)
            if old and old[2] == start:  # the same process through the window
                units[unit] = units.get(unit, 0.0) + (ticks - old[1]) / hz / window * 100
        named = sum(units.values())
        rows.append((host, "(whole host)", host_pct))
        for unit, pct in sorted(units.items(), key=lambda kv: -kv[1]):
            if pct >= 0.5:
                rows.append((host, unit, pct))
        rows.append((host, "short-lived processes", max(0.0, host_pct - named)))
    print(f"lab {args.name}: CPU over {window:.0f} s, in % of one core (the machine has {os.cpu_count()})")
    print(f"{'host':<10} {'unit':<44} {'%':>6}")
    for host, unit, pct in rows:
        print(f"{host:<10} {unit:<44} {pct:6.1f}")
    print(f"{'all':<10} {'(whole lab)':<44} {total:6.1f}")


if __name__ == "__main__":
    main()
