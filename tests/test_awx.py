"""AWX as code: the execution environment, the job templates and their schedules (docs/awx.md).

awx/templates.yml is the one definition of the job templates: awx/configure.yml creates them
in AWX, and these tests check them against the playbooks they run. The lint tests read the
tree; the lab tests run the templates' playbooks with ansible-runner (the engine AWX runs
jobs with) against the lab, with each template's extra variables and tags.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import COLLECTION, ROLES, ROOT, VENV_BIN, awx_runner, recap, run, why
from dateutil.rrule import rrulestr
from test_monitoring import prom

TEMPLATES = yaml.safe_load((ROOT / "awx/templates.yml").read_text())["awx_job_templates"]
BY_NAME = {t["name"]: t for t in TEMPLATES}
COMPANY_VARS = yaml.safe_load((ROOT / "group_vars/all.yml").read_text())
SCALING_DEFAULTS = yaml.safe_load((ROLES / "scaling/defaults/main.yml").read_text())
BUNDLED_COLLECTIONS = Path(yaml.__file__).resolve().parent.parent / "ansible_collections"
BACKUP_ID = "20261126T023000Z"
# Where the templates find the runbooks: their one definition, in the collection.
RUNBOOKS = "collections/ansible_collections/scalecorp/airflow/playbooks"


def pins(path: Path) -> dict[str, str]:
    """name -> version of the `name==version` lines of a pip requirements file (names lower-cased)."""
    found = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


def playbook_text(template: dict) -> str:
    """The playbook of a template with the task files of every collection role it names."""
    text = (ROOT / template["playbook"]).read_text()
    roles = set(re.findall(r"scalecorp\.airflow\.(\w+)", text))
    for role in sorted(roles):
        for path in sorted((ROLES / role / "tasks").glob("*.yml")):
            text += "\n" + path.read_text()
    return text


def template_vars(template: dict) -> set[str]:
    return set(template["extra_vars"]) | {q["variable"] for q in template["survey"]}


# -- lint: the definitions against the playbooks ---------------------------------------------


@pytest.mark.lint
def test_every_runbook_has_its_template():
    wanted = {
        (f"{RUNBOOKS}/site.yml", ""),
        (f"{RUNBOOKS}/upgrade.yml", ""),
        (f"{RUNBOOKS}/scale.yml", ""),
        (f"{RUNBOOKS}/backup.yml", ""),
        (f"{RUNBOOKS}/restore.yml", ""),
        (f"{RUNBOOKS}/maintenance.yml", "daily"),
        (f"{RUNBOOKS}/maintenance.yml", "weekly"),
        (f"{RUNBOOKS}/maintenance.yml", "monthly"),
        (f"{RUNBOOKS}/status.yml", ""),
    }
    assert wanted <= {(t["playbook"], t["job_tags"]) for t in TEMPLATES}
    assert {"mode": "auto"} in [t["extra_vars"] for t in TEMPLATES if t["playbook"] == f"{RUNBOOKS}/scale.yml"]
    assert len(BY_NAME) == len(TEMPLATES), "template names must be unique"
    keys = {"name", "description", "playbook", "extra_vars", "job_tags", "changes", "survey", "schedules"}
    for template in TEMPLATES:
        assert set(template) == keys, template["name"]


@pytest.mark.lint
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t["name"])
def test_template_playbook_and_variables(template):
    path = ROOT / template["playbook"]
    assert path.is_file(), f"{template['name']}: {template['playbook']} does not exist"
    text = playbook_text(template)
    for name in template_vars(template):
        assert re.search(rf"\b{re.escape(name)}\b", text), f"{template['name']}: {template['playbook']} never reads {name}"
    if template["job_tags"]:
        plays = yaml.safe_load(path.read_text())
        tags = {tag for play in plays for tag in play.get("tags", [])}
        assert set(template["job_tags"].split(",")) <= tags, f"{template['name']}: no play tagged {template['job_tags']}"
    for question in template["survey"]:
        assert {"variable", "question_name", "type", "required"} <= set(question)
        assert question["type"] in {"text", "integer", "multiplechoice"}


@pytest.mark.lint
@pytest.mark.parametrize("template", [t for t in TEMPLATES if t["survey"]], ids=lambda t: t["name"])
def test_survey_defaults_and_choices_are_valid(template):
    for q in template["survey"]:
        default = q.get("default")
        if q["type"] == "integer":
            assert q["min"] <= default <= q["max"]
        elif q["type"] == "multiplechoice":
            assert default in q["choices"]
        elif q["type"] == "text" and default:
            assert q["min"] <= len(default) <= q["max"]


@pytest.mark.lint
def test_scale_survey_matches_the_playbooks_bounds():
    (workers,) = BY_NAME["Airflow | scale"]["survey"]
    assert workers["variable"] == "workers"
    assert workers["type"] == "integer"
    # scale.yml (roles/scaling/tasks/request.yml, run by preflight and plan.yml) accepts MIN..MAX
    # of the company settings.
    assert workers["min"] == COMPANY_VARS["scaling_min_workers"]
    assert workers["max"] == COMPANY_VARS["scaling_max_workers"] == SCALING_DEFAULTS["scaling_max_workers"]
    request = (ROLES / "scaling/tasks/request.yml").read_text()
    assert "__scaling_workers | int <= scaling_max_workers | int" in request
    assert "request.yml" in (ROLES / "scaling/tasks/plan.yml").read_text()


@pytest.mark.lint
def test_upgrade_survey_default_has_a_lockfile():
    (version,) = BY_NAME["Airflow | upgrade"]["survey"]
    assert version["variable"] == "airflow_version"
    assert list((ROLES / "airflow/files/lockfiles").glob(f"apache-airflow-{version['default']}-py*.txt")), "no lockfile for the default"
    # A version without one is refused before any host is contacted (test_requests.py).


@pytest.mark.lint
def test_restore_survey_admits_the_ids_restore_accepts():
    (backup_id,) = BY_NAME["Airflow | restore"]["survey"]
    assert backup_id["variable"] == "backup_id"
    assert backup_id["required"]
    for value in ("latest", BACKUP_ID):
        assert backup_id["min"] <= len(value) <= backup_id["max"]
    # restore.yml checks the id with the backup role's restore_request.yml (in preflight and its first play).
    assert "restore_request.yml" in (ROOT / "playbooks/restore.yml").read_text()
    assert "^[0-9]{8}T[0-9]{6}Z$" in (ROLES / "backup/tasks/restore_request.yml").read_text()


@pytest.mark.lint
def test_schedules_parse_and_run_when_intended():
    seconds = {}
    for template in TEMPLATES:
        for schedule in template["schedules"]:
            rule = schedule["rrule"]
            # As AWX takes it: one DTSTART, one RRULE, no COUNT/SECONDLY.
            assert re.fullmatch(r"DTSTART;TZID=UTC:\d{8}T\d{6} RRULE:\S+", rule), rule
            assert "SECONDLY" not in rule and "COUNT=" not in rule
            parsed = rrulestr(rule.replace(" ", "\n"))
            first, second = parsed[0], parsed[1]
            seconds[(template["name"], schedule["name"])] = (second - first).total_seconds()
    by_template = {name: gap for (name, _), gap in seconds.items()}
    assert by_template["Airflow | autoscale"] == 60
    assert by_template["Airflow | backup"] == 86400
    assert by_template["Airflow | maintenance daily"] == 86400
    assert by_template["Airflow | maintenance weekly"] == 7 * 86400
    assert 28 * 86400 <= by_template["Airflow | maintenance monthly"] <= 31 * 86400
    assert len({name for _, name in seconds}) == len(seconds), "schedule names must be unique"


@pytest.mark.lint
def test_configure_playbook_syntax_and_refusal():
    proc = run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", str(ROOT / "awx/configure.yml")])
    assert proc.returncode == 0, why(proc)
    # Without an AWX URL and token it stops before its first API call.
    proc = run([str(VENV_BIN / "ansible-playbook"), str(ROOT / "awx/configure.yml")])
    assert proc.returncode != 0
    assert "Give the AWX URL and an OAuth token" in " ".join(proc.stdout.split())
    assert recap(proc.stdout)["localhost"]["changed"] == 0


@pytest.mark.lint
def test_configure_playbook_tasks_pass_argument_validation(tmp_path):
    """Every awx.awx task of configure.yml, run against an AWX that does not answer, gets as far as the API call."""
    plays = yaml.safe_load((ROOT / "awx/configure.yml").read_text())
    for play in plays:
        play["vars_files"] = [str(ROOT / "awx" / name) for name in play["vars_files"]]
        for task in play["tasks"]:
            task["ignore_errors"] = True
            task.pop("no_log", None)  # dummy values below, and the messages are what is checked
    probe = tmp_path / "probe.yml"
    probe.write_text(yaml.safe_dump(plays, sort_keys=False))
    dummies = ["awx_host=http://127.0.0.1:9", "awx_token=dummy", "awx_machine_ssh_key=dummy", "awx_vault_password=dummy"]
    proc = run(
        [str(VENV_BIN / "ansible-playbook"), str(probe), *[a for d in dummies for a in ("-e", d)]],
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
    )
    tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
    seen = set()
    for task in tasks[1:]:
        result = task["hosts"]["localhost"]
        for item in result.get("results", [result]):
            msg = str(item.get("msg", ""))
            assert "trying to connect to http://127.0.0.1:9/api/v2/" in msg, f"{task['task']['name']}: {msg[:500]}"
        seen.add(task["task"]["name"])
    assert "Job templates" in seen and "Schedules" in seen


# -- lint: the execution environment --------------------------------------------------------


@pytest.mark.lint
def test_ee_python_packages_are_the_controller_pins():
    controller = pins(ROOT / "requirements.txt")
    ee = pins(ROOT / "ee/requirements.txt")
    assert ee, "ee/requirements.txt pins nothing"
    assert {name: controller.get(name) for name in ee} == ee
    definition = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert definition["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={controller['ansible-core']}"
    assert definition["dependencies"]["ansible_runner"]["package_pip"] == f"ansible-runner=={controller['ansible-runner']}"


@pytest.mark.lint
def test_ee_collections_are_the_bundled_versions():
    wanted = yaml.safe_load((ROOT / "ee/requirements.yml").read_text())["collections"]
    assert {"name": "./scalecorp.airflow", "type": "dir"} in wanted
    pinned = {c["name"]: c["version"] for c in wanted if "version" in c}
    # Every collection the project and the collection declare, at the version the pinned `ansible` bundles.
    declared = {c["name"] for c in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]}
    declared |= set(yaml.safe_load((COLLECTION / "galaxy.yml").read_text())["dependencies"])
    assert set(pinned) == declared
    for name, version in pinned.items():
        manifest = yaml.safe_load((BUNDLED_COLLECTIONS / name.replace(".", "/") / "MANIFEST.json").read_text())
        assert manifest["collection_info"]["version"] == version, name


@pytest.mark.lint
def test_ansible_builder_create(tmp_path):
    context = tmp_path / "context"
    proc = run([str(VENV_BIN / "ansible-builder"), "create", "-c", str(context), "--output-filename", "Containerfile"])
    assert proc.returncode == 0, why(proc)
    build = context / "_build"
    assert (build / "requirements.txt").read_text() == (ROOT / "ee/requirements.txt").read_text()
    assert yaml.safe_load((build / "requirements.yml").read_text()) == yaml.safe_load((ROOT / "ee/requirements.yml").read_text())
    assert (build / "bindep.txt").read_text() == (ROOT / "ee/bindep.txt").read_text()
    # The collection, as ansible-galaxy installs it from the context (type: dir).
    for path in ("galaxy.yml", "meta/runtime.yml", "plugins/modules/pg_backup.py", "roles/airflow/tasks/main.yml"):
        assert (build / "scalecorp.airflow" / path).is_file(), path
    # ansible-galaxy installs it from there as the image build does (cwd /build); the others need Galaxy.
    only_this = build / "this-collection.yml"
    only_this.write_text(yaml.safe_dump({"collections": [{"name": "./scalecorp.airflow", "type": "dir"}]}))
    proc = run(
        [
            str(VENV_BIN / "ansible-galaxy"),
            "collection",
            "install",
            "--force",
            "--no-deps",
            "-r",
            only_this.name,
            "-p",
            str(tmp_path / "installed"),
        ],
        cwd=build,
    )
    assert proc.returncode == 0, why(proc)
    assert (tmp_path / "installed/ansible_collections/scalecorp/airflow/MANIFEST.json").is_file()
    controller = pins(ROOT / "requirements.txt")
    containerfile = (context / "Containerfile").read_text()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="(.*)"$', containerfile, re.M).group(1).split()
    assert refs == [f"ansible-core=={controller['ansible-core']}", f"ansible-runner=={controller['ansible-runner']}"]
    assert "--user-pip=requirements.txt" in containerfile
    assert "ansible-galaxy collection install" in containerfile


# -- lab: the templates' playbooks through ansible-runner -----------------------------------


# The runs the lab budget allows (about 3 minutes): the read-only templates as they are; backup,
# scale (with its survey's default answers) and autoscale in check mode. site, upgrade, restore
# and the weekly/monthly maintenance change the cluster (and take long even in check mode):
# their own tests run them; here their survey variables are proven by the refusals below.
LAB_RUNS = [
    "Airflow | status",
    "Airflow | workers status",
    "Airflow | maintenance daily",
    "Airflow | backup",
    "Airflow | scale",
    "Airflow | autoscale",
]


def wait_for_quiet_alerts(timeout: float = 300) -> None:
    """The drills of the tests before (a stopped scheduler, a killed worker) leave critical alerts
    firing until their `for:` and the next evaluations pass; status.yml rightly fails on them."""
    deadline = time.monotonic() + timeout
    while True:
        firing = sorted({a["metric"]["alertname"] for a in prom('ALERTS{alertstate="firing",severity="critical"}')})
        if not firing:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"critical alerts still firing after {timeout:.0f} s: {', '.join(firing)}")
        time.sleep(10)


@pytest.mark.lab
@pytest.mark.parametrize("name", LAB_RUNS)
def test_template_runs_with_ansible_runner(lab, tmp_path, name):
    template = BY_NAME[name]
    wait_for_quiet_alerts()
    answers = {q["variable"]: q["default"] for q in template["survey"] if q.get("default") not in (None, "")}
    proc = awx_runner(tmp_path, template, check=template["changes"], **answers)
    assert proc.returncode == 0, why(proc)
    counters = recap(proc.stdout)
    assert counters, "no PLAY RECAP"
    assert {c["failed"] for c in counters.values()} == {0}
    if not template["changes"]:
        assert {c["changed"] for c in counters.values()} == {0}
