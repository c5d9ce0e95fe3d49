"""The lab cluster as the README's main command builds it, and reruns of it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import pytest
import requests
import yaml
from conftest import LAB_HOSTS, LAB_INVENTORY, LAB_NAME, ROOT, assert_refused, lab_secrets, on, playbook, recap, run, why

pytestmark = pytest.mark.lab
PG_HOSTS = sorted(yaml.safe_load((LAB_INVENTORY / "hosts.yml").read_text())["all"]["children"]["postgresql"]["hosts"])


class Secrets(dict):
    """The secrets' values, never shown in a failure report."""

    def __repr__(self) -> str:
        return f"<{len(self)} secrets>"


def running_primary() -> str:
    """The PostgreSQL host that runs as primary (not in recovery), read from the servers."""
    for host in PG_HOSTS:
        rec = on(host, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-c", "SELECT pg_is_in_recovery()")
        if rec.stdout.strip() == "f":
            return host
    raise AssertionError("no PostgreSQL host runs as primary")


@pytest.fixture(scope="module")
def second_run(lab):
    """A second site.yml on the converged lab (verbose: test_secrets_audit.py searches its output)."""
    before = Secrets(lab_secrets())
    primary = running_primary()
    proc = playbook("playbooks/site.yml", "-vvv")
    return proc, before, primary


def test_make_lab_converges_every_host_and_says_where_things_are(lab):
    assert lab.returncode == 0, why(lab)
    counters = recap(lab.stdout)
    assert sorted(counters) == LAB_HOSTS
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counters.values())
    assert f"Lab '{LAB_NAME}': 9 hosts" in lab.stdout  # the lab these tests drive (SCALECORP_LAB_NAME)
    for host in LAB_HOSTS:
        assert any(line.startswith(host) and " running " in line for line in lab.stdout.splitlines())


def test_the_summary_lists_only_urls_that_answer_here(lab):
    """Each URL `make lab` prints under Services answers from the machine it ran on (the
    UIs with their login); what only the cluster reaches is listed apart, as host:port."""
    out = lab.stdout
    listed = out[out.index("Services (each answers from this machine)") :].split("\nSecrets")[0]
    urls = re.findall(r"^  .+?\s((?:https?|redis|postgresql)://[\d.]+:\d+)\s", listed, re.M)
    expected = {"Airflow UI and API (nginx)", "Flower", "Redis", "Redis Sentinel"}
    assert {line[2:30].strip() for line in listed.splitlines() if "://" in line} >= expected, listed
    ca = str(LAB_INVENTORY / "group_vars/all/secrets.ca.crt")
    for url in urls:
        if url.startswith("http"):
            resp = requests.get(url, verify=ca, timeout=10, allow_redirects=False)
            assert resp.status_code < 500, f"{url}: {resp.status_code}"
        else:
            address, port = url.split("://")[1].split(":")
            with socket.create_connection((address, int(port)), timeout=5) as conn:
                conn.sendall(b"PING\r\n")  # Redis and Sentinel answer (+PONG, or -NOAUTH without the password)
                assert conn.recv(64)[:1] in (b"+", b"-"), url
    # The rest is listed apart, each web UI with the SSH tunnel that reaches it: Prometheus through it.
    assert "Inside the cluster only" in listed and "lab-pg1:5432" in listed
    tunnel = re.search(r"^  Prometheus\s+\S+:9090\s+(ssh -F \S+ -N -L 9090:([\d.]+):9090 (\S+))$", listed, re.M)
    assert tunnel, listed
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        local = free.getsockname()[1]
    cmd = tunnel[1].replace("-L 9090:", f"-L {local}:").split()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                resp = requests.get(f"http://127.0.0.1:{local}/-/ready", timeout=5)
                break
            except requests.ConnectionError:
                ended = proc.poll() is not None
                assert not ended and time.monotonic() < deadline, f"the tunnel did not open: {proc.stderr.read() if ended else ''}"
                time.sleep(0.5)
        assert resp.status_code == 401  # Prometheus asks for its password
        auth = ("admin", lab_secrets()["prometheus_web_password"])
        assert requests.get(f"http://127.0.0.1:{local}/-/ready", auth=auth, timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait()


def test_hosts_are_systemd_machines_with_the_baseline(lab):
    for host in ("lab-pg1", "lab-wk2"):
        state = on(host, "systemctl", "is-system-running").stdout.strip()
        assert state in ("running", "degraded")
        assert on(host, "systemctl", "is-active", "chrony").stdout.strip() == "active"
        osrel = on(host, "cat", "/etc/os-release").stdout
        assert 'VERSION_ID="12"' in osrel


def test_ansible_comes_over_ssh_as_a_non_root_user_with_sudo(lab):
    """The lab is reached as real hosts are: SSH with the lab's key as `debian`, then sudo."""
    key = LAB_INVENTORY / "group_vars/all/secrets.ssh_key.pub"
    fingerprint = run(["ssh-keygen", "-l", "-f", str(key)]).stdout.split()[1]
    for host in ("lab-pg1", "lab-wk2"):
        sshd = on(host, "journalctl", "-u", "ssh", "--no-pager", "-o", "cat").stdout
        logins = re.findall(r"Accepted (\S+) for (\S+) from \S+ port \d+ ssh2(?:: \S+ (\S+))?", sshd)
        assert logins, f"{host}: no SSH login in sshd's journal"
        assert {(method, user, fp) for method, user, fp in logins} == {("publickey", "debian", fingerprint)}, logins
        sudo = on(host, "journalctl", "_COMM=sudo", "--no-pager", "-o", "cat").stdout
        assert re.search(r"debian : .*USER=root ; COMMAND=/bin/sh -c 'echo BECOME-SUCCESS-\w+ ; /usr/bin/python3'", sudo), host
        assert on(host, "sshd", "-T").stdout.count("passwordauthentication no") == 1


def test_second_run_changes_nothing_and_keeps_the_primary(second_run):
    proc, _, primary = second_run
    assert proc.returncode == 0, why(proc)
    counters = recap(proc.stdout)
    assert sorted(counters) == LAB_HOSTS
    assert {c["changed"] for c in counters.values()} == {0}
    # site.yml never moves the PostgreSQL primary (test_pg_switchover.py: not even to the inventory's).
    assert running_primary() == primary


def test_secrets_are_stable_and_never_printed(lab, second_run):
    proc, before, _ = second_run
    unchanged = lab_secrets() == before  # compared outside the assert: a failure must not print them
    assert unchanged, "site.yml changed a secret"
    output = lab.stdout + lab.stderr + proc.stdout + proc.stderr
    leaked = [name for name, value in before.items() if value in output]
    assert leaked == []


def test_unsupported_os_fails_in_preflight_before_any_change(lab):
    # A Debian 12 host, with a support list that names only Debian 13.
    proc = playbook("playbooks/site.yml", "-e", '{"preflight_supported_os": {"Debian": ["13"]}}')
    assert_refused(proc, "runs Debian 12", "supported: Debian 13")


def test_unreachable_host_fails_in_preflight(lab, tmp_path):
    inventory = tmp_path / "hosts.yml"
    # The lab's hosts plus a worker whose container does not exist.
    hosts = yaml.safe_load((LAB_INVENTORY / "hosts.yml").read_text())
    hosts["all"]["children"]["airflow"]["children"]["airflow_worker"]["hosts"]["lab-wk9"] = None
    inventory.write_text(yaml.safe_dump(hosts))
    (tmp_path / "group_vars").symlink_to(LAB_INVENTORY / "group_vars")
    proc = playbook("playbooks/site.yml", inventory=inventory)
    assert_refused(proc, "Host lab-wk9 is not reachable")
    assert (ROOT / "inventories/lab/group_vars/all/secrets.yml").exists()


def test_up_reuses_only_the_containers_this_checkout_made():
    """A container of the same name left by another checkout (or an earlier clone) holds
    state made with secrets this checkout does not have: `up` makes it again."""
    lab, owner = "ownertest", ROOT / ".cache/lab-ownertest.owner"
    up = [sys.executable, str(ROOT / "tools/lab.py"), "up", "--name", lab, "h1"]

    def container_id() -> str:
        return run(["docker", "inspect", "-f", "{{.Id}}", f"{lab}-h1"]).stdout.strip()

    try:
        assert run(up).returncode == 0
        first = container_id()
        again = run(up)
        assert again.returncode == 0, why(again)
        assert container_id() == first, "this checkout's own container was not reused"
        owner.write_text("someone-else\n")  # as a lab left on the disk by another clone
        other = run(up)
        assert other.returncode == 0, why(other)
        assert "left by another checkout" in other.stdout
        assert container_id() not in ("", first)
        assert owner.read_text().strip() == "someone-else"  # the id is kept; the new container carries it
        label = run(["docker", "inspect", "-f", '{{index .Config.Labels "scalecorp.lab.owner"}}', f"{lab}-h1"]).stdout.strip()
        assert label == "someone-else"
    finally:
        run([sys.executable, str(ROOT / "tools/lab.py"), "down", "--name", lab])
        owner.unlink(missing_ok=True)
