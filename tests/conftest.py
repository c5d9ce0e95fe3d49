"""Shared helpers of the test suite: run the project's own commands, read their output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COLLECTION = ROOT / "collections/ansible_collections/scalecorp/airflow"
ROLES = COLLECTION / "roles"
LAB_INVENTORY = ROOT / "inventories/lab"
# The lab the tests drive: `lab`, or another beside it (SCALECORP_LAB_NAME=dev, see tools/lab.py).
LAB_NAME = os.environ.get("SCALECORP_LAB_NAME") or "lab"
LAB_SECRETS = LAB_INVENTORY / "group_vars/all/secrets.yml"
RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)


def env(**extra: str) -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{VENV_BIN}{os.pathsep}{e.get('PATH', '')}"
    e["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    e["ANSIBLE_FORCE_COLOR"] = "0"
    e["ANSIBLE_NOCOLOR"] = "1"
    e["PY_COLORS"] = "0"
    e["SCALECORP_LAB_NAME"] = LAB_NAME
    e["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(ROOT / (".cache/facts" if LAB_NAME == "lab" else f".cache/facts-{LAB_NAME}"))
    e.update(extra)
    return e


# The lab inventory's hosts (inventories/lab/hosts.yml).
LAB_HOSTS = ["lab-api1", "lab-api2", "lab-lb1", "lab-pg1", "lab-pg2", "lab-rd1", "lab-rd2", "lab-wk1", "lab-wk2"]

# Everything the Ansible commands of this session printed, for the secrets audit
# (test_hardening.py): what a playbook shows must never hold a secret.
PLAYBOOK_OUTPUTS: list[str] = []
AUDITED_PROGRAMS = ("ansible-playbook", "ansible", "make")


def run(
    cmd: list[str], cwd: Path = ROOT, timeout: float = 1800, secret: bool = False, input: str | None = None, **extra_env: str
) -> subprocess.CompletedProcess:
    """Run a command of the project; its output is printed when a test fails (unless it holds secrets).

    Secrets go in by `input` (standard input), never on the command line, which is printed.
    """
    proc = subprocess.run(cmd, cwd=cwd, env=env(**extra_env), text=True, capture_output=True, timeout=timeout, check=False, input=input)
    if Path(cmd[0]).name in AUDITED_PROGRAMS:
        PLAYBOOK_OUTPUTS.append(proc.stdout + proc.stderr)
    shown = "(output holds secrets: not shown)" if secret else f"{proc.stdout[-20000:]}\n{proc.stderr[-5000:]}"
    print(f"$ {' '.join(cmd)}\n--- rc={proc.returncode}\n{shown}")
    return proc


def why(proc: subprocess.CompletedProcess, limit: int = 6000) -> str:
    """What went wrong in a command's output, short enough for a failure line.

    For an ansible-playbook run: each failed task's name with its 'fatal:'/'failed:' lines and
    what follows them, then the PLAY RECAP; otherwise the tail of the output. Known lab secret
    values are masked.
    """
    lines = (proc.stdout or "").splitlines() + (proc.stderr or "").splitlines()
    picked: list[str] = []
    task = ""
    for i, line in enumerate(lines):
        if line.startswith("TASK [") or line.startswith("RUNNING HANDLER ["):
            task = line
        elif line.startswith(("fatal:", "failed:")) or "ERROR!" in line or line.startswith("[ERROR]"):
            picked += [task, *lines[i : i + 12], ""]
        elif line.startswith("PLAY RECAP"):
            picked += lines[i:]
            break
    text = "\n".join(picked) if picked else "\n".join(lines[-60:])
    text = f"rc={proc.returncode}\n{text}"
    try:
        values = [v for v in lab_secrets().values() if isinstance(v, str) and len(v) >= 8]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        values = []
    for value in values:
        text = text.replace(value, "********")
    return text[-limit:]


def container(host: str) -> str:
    """The container of a lab host (tools/lab.py container_name)."""
    return host if LAB_NAME == "lab" else f"{LAB_NAME}-{host}"


def on(host: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    """Run a command on a lab host (with `input`: on its standard input)."""
    interactive = ["-i"] if kw.get("input") is not None else []
    return run(["docker", "exec", *interactive, container(host), *cmd], **kw)


def playbook(path: str, *args: str, inventory: str | Path = LAB_INVENTORY, **extra_env: str) -> subprocess.CompletedProcess:
    return run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / path), *args], **extra_env)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP of an ansible-playbook run: host -> counters."""
    return {m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"} for m in RECAP.finditer(output)}


def assert_refused(proc: subprocess.CompletedProcess, *messages: str, not_reached: str = "Baseline of every host") -> str:
    """A playbook run that failed with these messages, before `not_reached`, changing nothing."""
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    for message in messages:
        assert message in out
    counters = recap(proc.stdout)
    assert counters, "no PLAY RECAP"
    assert {c["changed"] for c in counters.values()} == {0}
    assert not_reached not in proc.stdout
    return out


def awx_runner(tmp_path: Path, template: dict, check: bool = False, **survey: str) -> subprocess.CompletedProcess:
    """Run an AWX job template's playbook as AWX does: ansible-runner, its extra vars (plus the
    survey's answers) and tags, against the lab inventory."""
    data = tmp_path / "runner"
    (data / "env").mkdir(parents=True)
    (data / "env/extravars").write_text(yaml.safe_dump({**template["extra_vars"], **survey}))
    options = (["--tags", template["job_tags"]] if template["job_tags"] else []) + (["--check"] if check else [])
    cmd = [str(VENV_BIN / "ansible-runner"), "run", str(data), "-p", template["playbook"]]
    cmd += ["--project-dir", str(ROOT), "--inventory", str(LAB_INVENTORY)]
    if options:
        cmd.append("--cmdline=" + " ".join(options))
    return run(cmd, timeout=1200)


def lab_secrets() -> dict:
    return yaml.safe_load(LAB_SECRETS.read_text())["scalecorp_secrets"]


@pytest.fixture(scope="session")
def lab():
    """The lab cluster as `make lab` (the README's main command) leaves it.

    Brought down at the end of the session unless SCALECORP_KEEP_LAB=1.
    """
    if not shutil.which("docker"):
        pytest.fail("docker is missing: run tools/bootstrap.sh (make test does)")
    proc = run(["make", "--no-print-directory", "lab"], timeout=3600)
    yield proc
    if os.environ.get("SCALECORP_KEEP_LAB") != "1":
        run([sys.executable, str(ROOT / "tools/lab.py"), "down", "--name", LAB_NAME])


# The tiers of the suite: every test carries exactly one of these markers (checked at
# collection). `make check` runs the first three (no lab host); `make test` runs all.
QUICK_TIERS = ("unit", "lint", "controller")
TIERS = (*QUICK_TIERS, "molecule", "lab")
# Lab modules in the order they run: read-only checks of the converged cluster first,
# then the runbooks (each leaves the cluster as it found it), then the destructive
# drills (marker `drill`, whatever their module), then the upgrade tests (which
# rebuild the lab's Airflow) and the secrets audit (which reads every output before it).
LAB_ORDER = (
    "test_lab.py",
    "test_airflow_cluster.py",
    "test_hardening.py",
    "test_status.py",
    "test_monitoring.py",
    "test_awx.py",
    "test_backup.py",
    "test_maintenance.py",
    "test_scaling.py",
    "test_pg_switchover.py",
)
LAST_MODULES = ("test_upgrade.py", "test_secrets_audit.py")


def tier(item) -> str:
    found = [name for name in TIERS if item.get_closest_marker(name)]
    if len(found) != 1:
        raise pytest.UsageError(f"{item.nodeid}: needs exactly one of the markers {', '.join(TIERS)}; has {found or 'none'}")
    if item.get_closest_marker("drill") and found != ["lab"]:
        raise pytest.UsageError(f"{item.nodeid}: a drill is a lab test (add the lab marker)")
    return found[0]


def run_order(item) -> tuple[int, int]:
    """Quick tiers, then molecule (before the lab is up: its idle load is a core), then the lab."""
    name = item.path.name
    kind = tier(item)
    if kind in QUICK_TIERS:
        return (0, 0)
    if kind == "molecule":
        return (1, 0)
    if name in LAST_MODULES:
        return (4, LAST_MODULES.index(name))
    if item.get_closest_marker("drill"):
        return (3, 0)
    return (2, LAB_ORDER.index(name) if name in LAB_ORDER else len(LAB_ORDER))


def pytest_collection_modifyitems(config, items):
    items.sort(key=run_order)  # stable: file order within a step
