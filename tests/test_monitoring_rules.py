"""Monitoring rules, runbook and dashboards, checked without a lab (issue: monitoring).

promtool comes from Debian 12's `prometheus` package, the same build the
prometheus role installs on Debian 12 hosts: `apt-get download` it once into
.cache/promtool and unpack it there (no service is installed on the controller).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml
from conftest import ROLES, ROOT

pytestmark = pytest.mark.controller

PROMETHEUS_ROLE = ROLES / "prometheus"
RULES_TEMPLATE = PROMETHEUS_ROLE / "templates/airflow.rules.yml.j2"
RULES_TEST = ROOT / "tests/promtool/airflow_rules_test.yml"
RUNBOOK = ROOT / "docs/runbook.md"
DASHBOARDS = ROLES / "grafana/files/dashboards"
CACHE = ROOT / ".cache/promtool"
# The Prometheus series the project knows of: the seed's names and what the exporters serve.
SEED_SERIES = {
    "airflow_dag_run_total",
    "airflow_dag_run_ended_total",
    "airflow_task_duration_seconds",
    "airflow_scheduler_heartbeat",
    "airflow_celery_queue_length",
    "airflow_pool_running_slots",
}


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool of Debian's prometheus package (bookworm: 2.42), unpacked once."""
    binary = CACHE / "usr/bin/promtool"
    if not binary.exists():
        if not shutil.which("apt-get"):
            pytest.fail("apt-get is needed to fetch Debian's prometheus package for promtool")
        CACHE.mkdir(parents=True, exist_ok=True)
        for old in CACHE.glob("prometheus_*.deb"):
            old.unlink()
        proc = subprocess.run(["apt-get", "download", "prometheus"], cwd=CACHE, check=False, capture_output=True, text=True)
        assert proc.returncode == 0, f"apt-get download prometheus failed: {proc.stderr}"
        deb = next(CACHE.glob("prometheus_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE)], check=True)
    version = subprocess.run([str(binary), "--version"], check=False, capture_output=True, text=True)
    assert re.search(r"promtool, version 2\.\d+", version.stdout + version.stderr), version.stdout + version.stderr
    return binary


def render_rules(overrides: dict | None = None) -> str:
    """The rules file as the prometheus role writes it with its defaults (collectd bridge)."""
    values = yaml.safe_load((PROMETHEUS_ROLE / "defaults/main.yml").read_text())
    values.update(prometheus_statsd_bridge="collectd", ansible_managed="Ansible managed")
    values.update(overrides or {})
    env = jinja2.Environment(variable_start_string="[[", variable_end_string="]]", trim_blocks=True, undefined=jinja2.StrictUndefined)
    return env.from_string(RULES_TEMPLATE.read_text()).render(**values)


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "airflow.rules.yml").write_text(render_rules())
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    return tmp_path


def alerts() -> list[dict]:
    groups = yaml.safe_load(render_rules())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_promtool_check_rules(promtool, rules_dir):
    proc = subprocess.run(
        [str(promtool), "check", "rules", "airflow.rules.yml"], cwd=rules_dir, check=False, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_pass(promtool, rules_dir):
    proc = subprocess.run([str(promtool), "test", "rules", RULES_TEST.name], cwd=rules_dir, check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_unit_test():
    tested = {t["alertname"] for case in yaml.safe_load(RULES_TEST.read_text())["tests"] for t in case.get("alert_rule_test", [])}
    firing = {
        t["alertname"]
        for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    names = {a["alert"] for a in alerts()}
    assert names - tested == set(), "alerts without a promtool test"
    assert names - firing == set(), "alerts never shown firing in a promtool test"


def test_lab_durations_render_valid_rules(promtool, tmp_path):
    """The lab's short for: durations (inventories/lab) give a valid rules file too."""
    lab = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/monitoring.yml").read_text())
    (tmp_path / "lab.rules.yml").write_text(render_rules({"prometheus_alert_for": lab["prometheus_alert_for"]}))
    proc = subprocess.run([str(promtool), "check", "rules", "lab.rules.yml"], cwd=tmp_path, check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_links_to_its_runbook_section():
    text = RUNBOOK.read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^### (.+)$", text, re.M)}
    for alert in alerts():
        url = alert["annotations"]["runbook_url"]
        anchor = url.rsplit("#", 1)[1]
        assert anchor == alert["alert"].lower()
        assert anchor in anchors, f"docs/runbook.md has no section '### {alert['alert']}'"
        section = text.split(f"### {alert['alert']}\n", 1)[1].split("\n### ", 1)[0]
        for part in ("What it means", "What to check", "Fix"):
            assert part in section, f"runbook section {alert['alert']} lacks '{part}'"


def dashboard_queries() -> dict[str, list[str]]:
    out = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        out[path.name] = [t["expr"] for p in board["panels"] for t in p.get("targets", []) if t.get("expr")]
    return out


def test_four_dashboards_parse_and_use_the_seed_series():
    boards = {json.loads(p.read_text())["title"] for p in DASHBOARDS.glob("*.json")}
    assert boards == {"Airflow Overview", "DAG Performance", "Worker Monitoring", "Infrastructure"}
    queries = [q for qs in dashboard_queries().values() for q in qs]
    used = {name for q in queries for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", q)}
    assert used >= SEED_SERIES, f"seed series missing from the dashboards: {SEED_SERIES - used}"
    for name, qs in dashboard_queries().items():
        assert qs, f"{name} has no query"
        board = json.loads((DASHBOARDS / name).read_text())
        uids = [p.get("id") for p in board["panels"]]
        assert len(uids) == len(set(uids)), f"{name}: panel ids repeat"
