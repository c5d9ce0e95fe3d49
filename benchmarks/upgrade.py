#!/usr/bin/env python3
"""Upgrade benchmark: the scheduling gap of a migrating upgrade vs `airflow db migrate` itself.

    .venv/bin/python benchmarks/upgrade.py [--count 600] [--sleep 1]

On the lab (up and converged at the new version, `make lab`), one run:
  1. the lab goes back to Airflow OLD on a new metadata database (as tests/test_upgrade.py
     does: tests/playbooks/airflow_reset.yml, then site.yml -e airflow_version=OLD);
  2. a flood run (scalecorp_flood, COUNT tasks of SLEEP s) keeps every worker slot busy;
  3. `upgrade.yml -e airflow_version=NEW` runs while the flood runs: backup, ordered
     stop, migration, start, verification;
  4. from the flood's task instances: the longest time between two task starts (the
     scheduling gap), against the migration's own time from the playbook's report.
Goal: gap <= migrate + 60 s. Prints a table; never part of pass/fail. Leaves the lab at NEW.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import sys
import time
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from airflow_api import Airflow  # noqa: E402
from conftest import playbook, run, why  # noqa: E402

OLD, NEW = "3.2.2", "3.3.2"
FLOOD = "scalecorp_flood"


def seconds(hms: str) -> float:
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def when(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--sleep", type=float, default=1.0)
    args = parser.parse_args()

    started = time.monotonic()
    for cmd in ([sys.executable, str(ROOT / "tools/wheelhouse.py"), OLD],):
        proc = run(cmd)
        assert proc.returncode == 0, why(proc)
    for step in (("tests/playbooks/airflow_reset.yml",), ("playbooks/site.yml", "-e", f"airflow_version={OLD}")):
        proc = playbook(*step)
        if proc.returncode != 0:
            print(why(proc), file=sys.stderr)
            return 1
    prepare = time.monotonic() - started

    api = Airflow()
    run_id = api.trigger(FLOOD, {"count": args.count, "sleep": args.sleep})
    # Let the flood reach steady state before the upgrade starts.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        tis = api.get(f"/api/v2/dags/{FLOOD}/dagRuns/{run_id}/taskInstances", params={"limit": 1000, "state": "success"})
        if tis["total_entries"] >= 20:
            break
        time.sleep(5)

    t0 = time.time()
    upgrade = playbook("playbooks/upgrade.yml", "-e", f"airflow_version={NEW}")
    t1 = time.time()
    if upgrade.returncode != 0:
        print(why(upgrade), file=sys.stderr)
        return 1
    migrate = re.search(r"airflow db migrate to \S+ took (\d+:\d+:[\d.]+)", upgrade.stdout)
    migrate_s = seconds(migrate.group(1)) if migrate else float("nan")

    api = Airflow()
    state = api.wait_for_run(FLOOD, run_id, timeout=3600)
    starts = []
    offset = 0
    while True:
        page = api.get(f"/api/v2/dags/{FLOOD}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": offset})
        starts += [when(ti["start_date"]) for ti in page["task_instances"] if ti.get("start_date")]
        offset += 100
        if offset >= page["total_entries"]:
            break
    starts.sort()
    gaps = [(b - a, a) for a, b in pairwise(starts) if b >= t0 - 60 and a <= t1 + 60]
    gap, gap_at = max(gaps) if gaps else (float("nan"), t0)
    normal = sorted(b - a for a, b in pairwise(starts) if b < t0)
    median = normal[len(normal) // 2] if normal else float("nan")

    rows = [
        ("lab back at Airflow " + OLD + " (reset + site.yml)", f"{prepare:.0f}", ""),
        (f"flood: {args.count} tasks x {args.sleep:g} s, run {state}", "", ""),
        ("median time between task starts before the upgrade", f"{median:.1f}", ""),
        (f"upgrade.yml {OLD} -> {NEW}, whole run", f"{t1 - t0:.0f}", ""),
        ("airflow db migrate (its own time)", f"{migrate_s:.1f}", ""),
        ("scheduling gap (longest time between two task starts)", f"{gap:.1f}", ""),
        ("gap - migrate", f"{gap - migrate_s:.1f}", "goal <= 60: " + ("met" if gap - migrate_s <= 60 else "missed")),
        ("gap / migrate", f"{gap / migrate_s:.2f} x" if not math.isnan(migrate_s) and migrate_s else "-", ""),
        ("gap began after the upgrade started (s)", f"{gap_at - t0:.0f}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | seconds | goal |")
    print(f"|{'-' * (width + 2)}|---------|------|")
    for name, value, goal in rows:
        print(f"| {name.ljust(width)} | {value:>7} | {goal} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
