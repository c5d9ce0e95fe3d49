"""Shared helpers of the test suite: run the project's own commands, read their output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
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
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env(**extra_env), text=True, capture_output=True, timeout=timeout, check=False, input=input)
    log_command(cmd, time.monotonic() - started, proc.returncode)
    if Path(cmd[0]).name in AUDITED_PROGRAMS:
        PLAYBOOK_OUTPUTS.append(proc.stdout + proc.stderr)
    shown = "(output holds secrets: not shown)" if secret else f"{proc.stdout[-20000:]}\n{proc.stderr[-5000:]}"
    print(f"$ {' '.join(cmd)}\n--- rc={proc.returncode}\n{shown}")
    return proc


# Every command's wall time, for benchmarks/suite.py (where a run's time goes).
COMMAND_LOG = ROOT / ".cache/suite-commands.tsv"


def log_command(cmd: list[str], seconds: float, rc: int) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    shown = " ".join(Path(cmd[0]).name if i == 0 else str(a).replace(str(ROOT) + "/", "") for i, a in enumerate(cmd))
    try:
        with COMMAND_LOG.open("a") as log:
            log.write(f"{time.time():.0f}\t{seconds:.1f}\t{rc}\t{test}\t{shown[:300]}\n")
    except OSError:
        pass


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


class LabBuild:
    """`make lab`, started in the background as soon as pytest knows that lab tests will run,
    so that the cold site.yml (mostly waiting on apt and the hosts) overlaps the quick tiers
    and the molecule scenarios instead of following them. The `lab` fixture waits for it."""

    proc: subprocess.Popen | None = None
    log: Path | None = None
    result: subprocess.CompletedProcess | None = None
    started = 0.0
    cmd = ["make", "--no-print-directory", "lab"]

    @classmethod
    def start(cls) -> None:
        if cls.proc is None and cls.result is None and shutil.which("docker"):
            cls.started = time.monotonic()
            cls.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"scalecorp-make-lab-{os.getpid()}.log"
            out = cls.log.open("w")
            cls.proc = subprocess.Popen(cls.cmd, cwd=ROOT, env=env(), text=True, stdout=out, stderr=subprocess.STDOUT)
            out.close()

    @classmethod
    def wait(cls, timeout: float = 3600) -> subprocess.CompletedProcess:
        if cls.result is None:
            if cls.proc is None:
                cls.result = run(cls.cmd, timeout=timeout)
                return cls.result
            try:
                cls.proc.wait(timeout=timeout)
            finally:
                if cls.proc.returncode is None:
                    cls.proc.kill()
                    cls.proc.wait()
            output = cls.log.read_text()
            cls.log.unlink(missing_ok=True)
            cls.result = subprocess.CompletedProcess(cls.cmd, cls.proc.returncode, output, "")
            log_command(cls.cmd, time.monotonic() - cls.started, cls.proc.returncode)
            PLAYBOOK_OUTPUTS.append(output)
            print(f"$ {' '.join(cls.cmd)} (started when the session began)\n--- rc={cls.proc.returncode}\n{output[-20000:]}")
        return cls.result


class MoleculeRuns:
    """The molecule scenarios, one after the other in a background thread started with the
    session: they use containers of their own, so they run beside the quick tiers, the lab's
    build and the lab tests instead of after them. They run at a lower priority (their
    controller niced, their containers with a quarter of the CPU weight of the lab's hosts):
    they take the CPU the lab leaves idle, and do not slow the critical path, which is
    `make lab` and then the lab tests. Each scenario's test (run last) waits for its result."""

    NICE = ["nice", "-n", "10"]
    CPU_SHARES = "256"  # docker's default is 1024 (tools/lab.py --cpu-shares)
    TIMEOUT = 3600  # one scenario, at that priority

    results: dict[str, subprocess.CompletedProcess] = {}
    done: dict[str, threading.Event] = {}
    current: subprocess.Popen | None = None

    @staticmethod
    def cmd(name: str) -> list[str]:
        return [str(VENV_BIN / "molecule"), "test", "-s", name]

    @classmethod
    def start(cls, scenarios: list[str]) -> None:
        cls.done = {name: threading.Event() for name in scenarios}
        threading.Thread(target=cls._run_all, args=(scenarios,), daemon=True).start()

    @classmethod
    def _run_all(cls, scenarios: list[str]) -> None:
        for name in scenarios:
            cmd = cls.cmd(name)
            started = time.monotonic()
            try:
                cls.current = subprocess.Popen(
                    [*cls.NICE, *cmd],
                    cwd=ROOT,
                    env=env(SCALECORP_LAB_CPU_SHARES=cls.CPU_SHARES),
                    text=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                out, err = cls.current.communicate(timeout=cls.TIMEOUT)
                cls.results[name] = subprocess.CompletedProcess(cmd, cls.current.returncode, out, err)
            except subprocess.TimeoutExpired:
                cls.current.kill()
                out, err = cls.current.communicate()
                cls.results[name] = subprocess.CompletedProcess(cmd, -1, out, err + f"\ntimed out after {cls.TIMEOUT} s")
            finally:
                log_command(cmd, time.monotonic() - started, cls.results[name].returncode if name in cls.results else -1)
                cls.done[name].set()
        cls.current = None

    @classmethod
    def result(cls, name: str, timeout: float = 2400) -> subprocess.CompletedProcess:
        """The scenario's `molecule test`: from the background run, or run now."""
        if name not in cls.done:
            return run(cls.cmd(name), timeout=timeout)
        assert cls.done[name].wait(timeout), f"molecule scenario {name} did not finish within {timeout:.0f} s"
        proc = cls.results[name]
        print(f"$ {' '.join(proc.args)} (in the background)\n--- rc={proc.returncode}\n{proc.stdout[-20000:]}\n{proc.stderr[-5000:]}")
        return proc


class Prefetch:
    """Slow preparations a lab module declares (module attribute PREFETCH: name -> argv),
    started in the background with the session so that they are done when the module's
    turn comes (the upgrade tests' old Airflow wheelhouse: a download). wait() before use."""

    procs: dict[str, subprocess.Popen] = {}

    @classmethod
    def start(cls, items) -> None:
        for module in {item.module for item in items if hasattr(item, "module")}:
            for name, cmd in (getattr(module, "PREFETCH", None) or {}).items():
                if name not in cls.procs:
                    cls.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @classmethod
    def wait(cls, name: str, timeout: float = 1800) -> None:
        proc = cls.procs.get(name)
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()


def pytest_collection_finish(session):
    """Start the slow independent work at once: the molecule scenarios when they were selected,
    and `make lab` when lab tests were (SCALECORP_LAB_EARLY=0: each when its first test needs it)."""
    if session.config.option.collectonly:
        return
    COMMAND_LOG.parent.mkdir(exist_ok=True)
    COMMAND_LOG.write_text("")  # this session's commands only
    if os.environ.get("SCALECORP_LAB_EARLY", "1") != "1":
        return
    molecule = [item for item in session.items if item.get_closest_marker("molecule") and hasattr(item, "callspec")]
    scenarios = [item.callspec.params["scenario"] for item in molecule]
    if scenarios:
        MoleculeRuns.start(scenarios)
    if any(item.get_closest_marker("lab") for item in session.items):
        LabBuild.start()
        Prefetch.start([item for item in session.items if item.get_closest_marker("lab")])


@pytest.fixture(scope="session")
def lab():
    """The lab cluster as `make lab` (the README's main command) leaves it.

    Brought down at the end of the session unless SCALECORP_KEEP_LAB=1.
    """
    if not shutil.which("docker"):
        pytest.fail("docker is missing: run tools/bootstrap.sh (make test does)")
    proc = LabBuild.wait()
    yield proc
    if os.environ.get("SCALECORP_KEEP_LAB") != "1":
        run([sys.executable, str(ROOT / "tools/lab.py"), "down", "--name", LAB_NAME])


def pytest_sessionfinish(session, exitstatus):
    # A run stopped before its tests needed them (-x, an interrupt): end the background work.
    for proc in (LabBuild.proc, MoleculeRuns.current, *Prefetch.procs.values()):
        if proc is not None and proc.poll() is None:
            proc.terminate()


# The tiers of the suite: every test carries exactly one of these markers (checked at
# collection). `make check` runs the first three (no lab host); `make test` runs all.
QUICK_TIERS = ("unit", "lint", "controller")
TIERS = (*QUICK_TIERS, "molecule", "lab")
# Lab modules in the order they run: read-only checks of the converged cluster (and a
# second site.yml run), then the runbooks (each leaves the cluster as it found it), then
# the destructive drills (marker `drill`, whatever their module), then the modules that
# leave the cluster changed: the upgrade tests (which rebuild the lab's Airflow), the
# PostgreSQL switchover (the standby stays the primary: nothing after it needs the
# inventory's layout) and the secrets audit (which reads every output before it).
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
)
LAST_MODULES = ("test_upgrade.py", "test_pg_switchover.py", "test_secrets_audit.py")


def tier(item) -> str:
    found = [name for name in TIERS if item.get_closest_marker(name)]
    if len(found) != 1:
        raise pytest.UsageError(f"{item.nodeid}: needs exactly one of the markers {', '.join(TIERS)}; has {found or 'none'}")
    if item.get_closest_marker("drill") and found != ["lab"]:
        raise pytest.UsageError(f"{item.nodeid}: a drill is a lab test (add the lab marker)")
    return found[0]


def run_order(item) -> tuple[int, int]:
    """Quick tiers, then the lab, then molecule (whose scenarios ran in the background meanwhile)."""
    name = item.path.name
    kind = tier(item)
    if kind in QUICK_TIERS:
        return (0, 0)
    if kind == "molecule":
        return (5, 0)
    if name in LAST_MODULES:
        return (4, LAST_MODULES.index(name))
    if item.get_closest_marker("drill"):
        return (3, 0)
    return (2, LAB_ORDER.index(name) if name in LAB_ORDER else len(LAB_ORDER))


def pytest_collection_modifyitems(config, items):
    items.sort(key=run_order)  # stable: file order within a step
