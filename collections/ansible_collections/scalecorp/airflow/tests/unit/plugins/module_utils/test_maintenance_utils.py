from __future__ import annotations

import json

from ansible_collections.scalecorp.airflow.plugins.module_utils.maintenance import (
    apt_security_upgrades,
    db_clean_counts,
    render_report,
    render_table,
    restart_plan,
    scaling_history_summary,
)

APT = """NOTE: This is only a simulation!
Reading package lists...
Inst libc6 [2.36-9+deb12u7] (2.36-9+deb12u8 Debian-Security:12/stable-security [amd64]) []
Inst tzdata [2024a-0+deb12u1] (2024b-0+deb12u1 Debian:12.8/stable, Debian-Security:12/stable-security [all])
Inst nginx [1.22.1-9] (1.22.1-9+deb12u1 Debian:12.8/stable [amd64])
Conf libc6 (2.36-9+deb12u8 Debian-Security:12/stable-security [amd64])
"""

CLEAN = """Performing dry run for db cleanup.

Performing dry run for table log
Checking table log
Found 3 rows meeting deletion criteria.

Checking table dag_run
Found 0 rows meeting deletion criteria.
Moving data to table _airflow_deleted__log__20261126120000
Finished Performing Delete
"""


def test_table_aligns_and_right_aligns_numbers():
    text = render_table(["host", "used %"], [["lab-pg1", "12"], {"host": "lab-lb1", "used %": "7"}])
    lines = text.splitlines()
    assert lines[0] == "| host    | used % |"
    assert lines[1] == "|---------|-------:|"
    assert lines[2] == "| lab-pg1 |     12 |"
    assert lines[3] == "| lab-lb1 |      7 |"
    assert render_table([["k", "key"], "n"], [{"k": "x", "n": 1.5}]).splitlines()[0] == "| key |   n |"
    assert render_table(["a"], []) == "(none)"
    assert render_table(["a"], [], empty="nothing") == "nothing"


def test_report_has_title_sections_and_notes():
    sections = [{"title": "Disk", "columns": ["h"], "rows": [["x"]], "notes": ["fine"]}]
    text = render_report("Maintenance: daily", sections, "2026-11-26T17:00Z")
    assert text.startswith("Maintenance: daily\n==================\ngenerated 2026-11-26T17:00Z\n\nDisk\n----\n| h |")
    assert text.endswith("- fine\n")


def test_apt_security_upgrades_keeps_the_security_origin_only():
    pending = apt_security_upgrades(APT)
    assert [p["package"] for p in pending] == ["libc6", "tzdata"]
    assert pending[0] == {
        "package": "libc6",
        "installed": "2.36-9+deb12u7",
        "candidate": "2.36-9+deb12u8",
        "origins": "Debian-Security:12/stable-security",
    }
    assert apt_security_upgrades("Reading package lists...\n0 upgraded") == []
    assert [p["package"] for p in apt_security_upgrades(APT, origin="Debian")] == ["tzdata", "nginx"]


def test_db_clean_counts():
    counts = db_clean_counts(CLEAN)
    assert counts == {"tables": {"log": 3, "dag_run": 0}, "archives": ["_airflow_deleted__log__20261126120000"], "total": 3}
    assert db_clean_counts("") == {"tables": {}, "archives": [], "total": 0}


def test_scaling_history_per_hour():
    base = 1_764_170_000.0  # 2025-11-26 15:13:20 UTC
    lines = [
        {"time": base, "mode": "auto", "action": "up", "current": 2, "target": 4, "rule": "r"},
        {"time": base + 600, "mode": "auto", "action": "up", "current": 4, "target": 6, "rule": "r"},
        {"time": base + 3600, "mode": "auto", "action": "down", "current": 6, "target": 4, "rule": "r"},
        {"time": base + 3700, "mode": "set", "action": "set", "current": 4, "target": 2, "rule": "r"},
        {"time": base - 10 * 86400, "mode": "auto", "action": "up", "current": 1, "target": 9, "rule": "too old"},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\nnot json\n\n"
    s = scaling_history_summary(text, base + 7200, hours=24)
    assert s["changes"] == 4 and s["skipped"] == 1
    assert s["min_workers"] == 2 and s["max_workers"] == 6
    assert s["rows"] == [
        {"hour": "2025-11-26 15:00", "changes": 2, "up": 2, "down": 0, "set": 0, "min_workers": 2, "max_workers": 6},
        {"hour": "2025-11-26 16:00", "changes": 2, "up": 0, "down": 1, "set": 1, "min_workers": 2, "max_workers": 6},
    ]
    assert scaling_history_summary("", base)["rows"] == []


def test_restart_plan_drains_workers_orders_services_and_leaves_dbus():
    units = ["airflow-api-server.service", "airflow-worker@2.service", "cron.service", "dbus.service", "postgresql@15-main.service"]
    units += ["airflow-scheduler", "airflow-worker@1"]
    plan = restart_plan(units, ["^postgresql", "^airflow-scheduler", "^airflow-api-server"], ["^dbus"])
    assert plan == {
        "workers": ["airflow-worker@1", "airflow-worker@2"],
        "services": ["cron", "postgresql@15-main", "airflow-scheduler", "airflow-api-server"],
        "left_alone": ["dbus"],
    }
    assert restart_plan([], []) == {"workers": [], "services": [], "left_alone": []}
