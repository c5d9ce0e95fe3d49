"""Security hardening on the lab (issue: security hardening): the host firewall seen
from the lab's own hosts, and authentication of PostgreSQL, Redis and Airflow. The secrets audit is
test_secrets_audit.py, which runs after every other module."""

from __future__ import annotations

import json
import sys
import time

import pytest
import requests
from airflow_api import Airflow, container_ip
from conftest import LAB_HOSTS, LAB_INVENTORY, VENV_BIN, lab_secrets, on, playbook, run, why

pytestmark = pytest.mark.lab
AIRFLOW_PYTHON = "/opt/airflow/current/bin/python"  # the Airflow virtualenv (psycopg2)

# What a connect() scan from one lab host finds open on another, among the ports that
# host listens on (not on loopback): exactly the flows of docs/firewall.md.
#   lab-rd2: Redis replica and Sentinel only; lab-wk1: a Celery worker;
#   lab-lb1: nginx, Prometheus, Alertmanager, a Sentinel and the backup host.
EXPECTED_OPEN = {
    ("lab-rd2", "lab-pg1"): set(),
    ("lab-rd2", "lab-api1"): set(),
    ("lab-rd2", "lab-rd1"): {6379, 26379},
    ("lab-rd2", "lab-lb1"): {80, 443, 26379},
    ("lab-wk1", "lab-pg1"): {5432},
    ("lab-wk1", "lab-api1"): set(),
    ("lab-wk1", "lab-lb1"): {80, 443, 8081, 26379},
    ("lab-lb1", "lab-pg1"): {5432, 9100, 9187},
    ("lab-lb1", "lab-api1"): {8080, 9100, 9102},
}

# Runs on the scanning host: connect() to each port, 3 s each, in parallel; prints the open ones.
SCAN = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
target, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
def probe(port):
    try:
        with socket.create_connection((target, port), timeout=3):
            return port
    except OSError:
        return None
with ThreadPoolExecutor(64) as pool:
    print(json.dumps(sorted(p for p in pool.map(probe, ports) if p)))
"""


def listening(host: str) -> set[int]:
    """The TCP ports a host listens on for other hosts (loopback-only listeners left out)."""
    ports = set()
    for line in on(host, "ss", "-Hltn").stdout.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        if address.strip("[]").startswith(("127.", "::1")) or address == "[::ffff:127.0.0.1]":
            continue
        ports.add(int(port))
    return ports


def scan(source: str, target: str, ports: set[int]) -> set[int]:
    proc = on(source, "python3", "-c", SCAN, container_ip(target), ",".join(map(str, sorted(ports))))
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def firewalled(lab):
    assert lab.returncode == 0, why(lab)
    for host in LAB_HOSTS:
        assert "table inet scalecorp_firewall" in on(host, "nft", "list", "tables").stdout, host
    return lab


@pytest.mark.parametrize(("source", "target"), sorted(EXPECTED_OPEN))
def test_a_scan_from_a_lab_host_finds_only_the_ports_it_may_reach(firewalled, source, target):
    ports = listening(target)
    # What the scanner may reach does listen (so a scan could miss nothing by accident);
    # the pairs with fewer open ports than listening ones show what the firewall drops.
    assert EXPECTED_OPEN[(source, target)] <= ports, f"{target} listens on {sorted(ports)} only"
    assert scan(source, target, ports) == EXPECTED_OPEN[(source, target)]


def test_the_scans_cover_ports_that_listen_but_are_dropped(firewalled):
    dropped = {t: listening(t) - EXPECTED_OPEN[(s, t)] for s, t in EXPECTED_OPEN if s == "lab-rd2"}
    assert {5432, 9100, 9187} <= dropped["lab-pg1"]
    assert {8080, 9100} <= dropped["lab-api1"]
    assert {8081, 9090, 9093} <= dropped["lab-lb1"]


def test_the_controller_keeps_its_admin_access_and_nothing_else(firewalled):
    # The lab's controller (the Docker gateway) is the admin source: SSH (Ansible's way in),
    # HTTPS to nginx and Flower's UI (and, lab only, Redis for the benchmarks); not the
    # databases, the API servers or the execution API. Prometheus and Alertmanager answer
    # the inventory's hosts only (their units' IPAddressAllow), on top of their passwords.
    found = {h: scan_from_controller(h) for h in ("lab-pg1", "lab-api1", "lab-api2", "lab-lb1")}
    assert found["lab-pg1"] == {22}
    assert found["lab-api1"] == {22}
    assert found["lab-api2"] == {22, 5555}
    assert found["lab-lb1"] == {22, 80, 443, 26379}


def scan_from_controller(host: str) -> set[int]:
    """The same connect() scan as from a lab host, run on the controller."""
    ports = ",".join(map(str, sorted(listening(host))))
    proc = run([sys.executable, "-c", SCAN, container_ip(host), ports])
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


def test_the_ruleset_is_on_at_boot_and_no_rollback_is_armed(firewalled):
    for host in ("lab-pg1", "lab-lb1"):
        assert on(host, "systemctl", "is-enabled", "nftables").stdout.strip() == "enabled"
        assert on(host, "systemctl", "is-active", "scalecorp-firewall-rollback.timer").stdout.strip() != "active"


@pytest.mark.drill
def test_a_ruleset_that_shuts_out_the_controller_is_rolled_back_by_its_timer(firewalled):
    """Over SSH, for real: the role arms its rollback timer, loads a ruleset that drops the
    controller's SSH (the controller's own address is left out on purpose), cannot open a new
    connection through it, says so, and the timer puts the previous ruleset back."""
    host = "lab-rd2"
    before = on(host, "sha256sum", "/etc/nftables.conf").stdout.split()[0]
    since = on(host, "date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    shut_out = {
        "firewall_ssh_detect_controller": False,
        "firewall_ssh_sources": ["198.51.100.7"],
        "firewall_reconnect_timeout": 10,
        "firewall_rollback_seconds": 30,
    }
    proc = playbook("playbooks/site.yml", "--tags", "firewall", "--limit", host, "-e", json.dumps(shut_out))
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    assert f"No new connection to {host} through the new firewall within 10 s" in out, why(proc)
    # Within the 30 s of the timer the previous ruleset is back, and the controller with it.
    ping = [str(VENV_BIN / "ansible"), "-i", str(LAB_INVENTORY), host, "-m", "ansible.builtin.ping", "-T", "5"]
    deadline = time.monotonic() + 90
    while run(ping).returncode != 0:
        assert time.monotonic() < deadline, f"{host} did not come back after the rollback"
        time.sleep(3)
    assert on(host, "sha256sum", "/etc/nftables.conf").stdout.split()[0] == before
    assert "table inet scalecorp_firewall" in on(host, "nft", "list", "tables").stdout
    log = on(host, "journalctl", "-t", "scalecorp-firewall", "--since", since, "--no-pager", "-o", "cat").stdout
    assert "the previous ruleset is back" in log
    assert on(host, "systemctl", "is-active", "scalecorp-firewall-rollback.timer").stdout.strip() != "active"


# PostgreSQL: hostssl for Airflow's user, from the Airflow hosts only. The password
# goes in on standard input, never on a command line.
PG_CONNECT = r"""
import json, sys, psycopg2
host, sslmode, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    psycopg2.connect(host=host, user="airflow", password=sys.stdin.read(), dbname="airflow", sslmode=sslmode,
                     connect_timeout=5, **extra).close()
    print("connected")
except psycopg2.OperationalError as exc:
    print(" ".join(str(exc).split()))
"""


def pg_connect(source: str, sslmode: str, python: str = AIRFLOW_PYTHON, host: str | None = None, **extra) -> str:
    password = lab_secrets()["postgresql_airflow_password"]
    proc = on(source, python, "-c", PG_CONNECT, host or container_ip("lab-pg1"), sslmode, json.dumps(extra), input=password)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_postgresql_admits_airflow_only_over_tls_and_only_from_airflow_hosts(firewalled):
    assert pg_connect("lab-api1", "require") == "connected"
    plain = pg_connect("lab-api1", "disable")
    assert "no pg_hba.conf entry" in plain and "no encryption" in plain, plain
    # lab-lb1 passes the firewall (it is the backup host) but is no Airflow host.
    outsider = pg_connect("lab-lb1", "require", python="/usr/bin/python3")
    assert "no pg_hba.conf entry" in outsider and 'user "airflow"' in outsider, outsider
    # lab-rd2 does not even pass the firewall (the scans above).


# Airflow's own engines, sync (psycopg2) and async (asyncpg), as the airflow user with
# airflow.cfg: each session reports TLS in pg_stat_ssl, on URLs that ask for verify-full.
AIRFLOW_DB_TLS = r"""
import asyncio, json
from sqlalchemy import text
from airflow import settings
settings.configure_orm()
Q = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
with settings.engine.connect() as c:
    sync = [list(r) for r in c.execute(text(Q))]
async def main():
    async with settings.async_engine.connect() as c:
        rows = [list(r) for r in await c.execute(text(Q))]
    await settings.async_engine.dispose()
    return rows
print(json.dumps({"sync": sync, "async": asyncio.run(main()),
                  "sync_query": dict(settings.engine.url.query), "async_query": dict(settings.async_engine.url.query)}))
"""


OTHER_CA = "/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt"  # a public CA, from Debian's ca-certificates


def test_airflow_verifies_postgresql_against_the_cluster_ca(firewalled):
    proc = on(
        "lab-api1",
        "sh",
        "-c",
        f"cd / && set -a && . /etc/airflow/airflow.env && set +a && exec runuser -u airflow -- {AIRFLOW_PYTHON} -",
        input=AIRFLOW_DB_TLS,
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["sync"][0][0] is True and seen["async"][0][0] is True, seen
    assert seen["sync_query"] == {"sslmode": "verify-full", "sslrootcert": "/var/lib/airflow/.postgresql/root.crt"}, seen
    assert seen["async_query"] == {"ssl": "verify-full"}, seen
    # The server's certificate is the cluster CA's, issued to the address Airflow uses.
    issuer = on("lab-pg1", "openssl", "x509", "-in", "/etc/postgresql/tls/server.crt", "-noout", "-issuer", "-ext", "subjectAltName")
    ca = (LAB_INVENTORY / "group_vars/all/secrets.ca.crt").read_text()
    assert "scalecorp.airflow cluster CA" in issuer.stdout and f"IP Address:{container_ip('lab-pg1')}" in issuer.stdout, issuer.stdout
    assert on("lab-api1", "cat", "/var/lib/airflow/.postgresql/root.crt").stdout.strip() == ca.strip()
    # Negative: verify-full fails against another CA, and for a name the certificate does not hold.
    root = "/var/lib/airflow/.postgresql/root.crt"
    assert pg_connect("lab-api1", "verify-full", sslrootcert=root) == "connected"
    wrong_ca = pg_connect("lab-api1", "verify-full", sslrootcert=OTHER_CA)
    assert "certificate verify failed" in wrong_ca, wrong_ca
    wrong_name = pg_connect("lab-api1", "verify-full", host="db.invalid", hostaddr=container_ip("lab-pg1"), sslrootcert=root)
    assert 'does not match host name "db.invalid"' in wrong_name, wrong_name


# Every host trusts the cluster CA system-wide: nginx's certificate verifies with the
# system's bundle, by the load balancer's address.
def test_every_host_trusts_the_cluster_ca_and_nginx_presents_a_certificate_it_signed(firewalled):
    lb = container_ip("lab-lb1")
    for host in ("lab-wk1", "lab-pg1"):
        proc = on(host, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://{lb}/api/v2/monitor/health")
        assert proc.stdout == "200", f"{host}: {proc.stdout} {proc.stderr}"
    # Only the CA given (the capath holds no hashed links): the cluster CA verifies, a public one does not.
    only = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--capath", "/usr/share/ca-certificates/mozilla"]
    proc = on(
        "lab-wk1", *only, "--cacert", "/usr/local/share/ca-certificates/scalecorp-airflow-ca.crt", f"https://{lb}/api/v2/monitor/health"
    )
    assert proc.stdout == "200", (proc.returncode, proc.stderr)
    proc = on("lab-wk1", *only, "--cacert", OTHER_CA, f"https://{lb}/api/v2/monitor/health")
    assert proc.returncode == 60 and "unable to get local issuer certificate" in proc.stderr, (proc.returncode, proc.stderr)


# Redis and Sentinel: a command without AUTH is refused; the same with the password is
# answered (the refusal is the password's, not a broken probe).
REDIS_ASK = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
password = sys.stdin.read()
commands = ["AUTH " + password, "PING"] if password else ["PING"]
with socket.create_connection((host, port), timeout=5) as s:
    s.sendall("".join(c + "\r\n" for c in commands).encode())
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(4096):
        data += chunk
print(data.decode().split("\r\n")[len(commands) - 1])
"""


def redis_ping(port: int, auth: str) -> str:
    proc = on("lab-api1", "python3", "-c", REDIS_ASK, container_ip("lab-rd1"), str(port), input=auth)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize(("port", "auth"), [(6379, "redis_password"), (26379, "redis_sentinel_password")])
def test_redis_and_sentinel_refuse_commands_without_a_password(firewalled, port, auth):
    assert redis_ping(port, "").startswith("-NOAUTH"), "PING without AUTH was not refused"
    assert redis_ping(port, lab_secrets()[auth]) == "+PONG"


def test_viewer_reads_but_cannot_change_anything(firewalled):
    viewer = Airflow(user="viewer", secret="airflow_viewer_password")
    dags = viewer.get("/api/v2/dags")
    assert dags["total_entries"] >= 1
    dag_id = dags["dags"][0]["dag_id"]
    assert viewer.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None}).status_code == 403
    assert viewer.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True}).status_code == 403
    assert viewer.request("GET", "/api/v2/config").status_code == 403
    # ... while the admin may: the 403s are the role's, not a broken request.
    admin = Airflow()
    assert admin.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": dags["dags"][0]["is_paused"]}).status_code == 200
    # No token at all: 401, on the UI's API and the public one.
    assert requests.get(f"{viewer.base}/api/v2/dags", verify=viewer.ca, timeout=30).status_code == 401


# systemd's exposure score of every unit the collection writes (airflow-*, scalecorp-*)
# or hardens with a drop-in (scalecorp.conf), on every lab host.
EXPOSURE = r"""
import json, re, subprocess
def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True).stdout
units = run("systemctl", "list-units", "--type=service", "--all", "--no-legend", "--plain").split("\n")
scores = {}
for unit in sorted({line.split()[0] for line in units if line.strip()}):
    show = run("systemctl", "show", "-p", "FragmentPath", "-p", "DropInPaths", "-p", "LoadState", unit)
    ours = re.search(r"FragmentPath=/etc/systemd/system/(airflow-|scalecorp-)", show) or "scalecorp.conf" in show
    if ours and "LoadState=loaded" in show:
        out = run("systemd-analyze", "security", "--no-pager", unit)
        scores[unit] = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
print(json.dumps(scores))
"""
EXPOSURE_LIMIT = 5.0


def test_every_unit_of_the_collection_is_hardened(firewalled):
    table = {}
    for host in LAB_HOSTS:
        proc = on(host, "python3", "-c", EXPOSURE)
        assert proc.returncode == 0, proc.stderr
        for unit, score in json.loads(proc.stdout).items():
            table.setdefault(unit, {})[host] = score
    print("\n".join(f"{unit:40} {max(h.values()):4.1f}  {', '.join(sorted(h))}" for unit, h in sorted(table.items())))
    # Every tier's units are there: Airflow's, the databases', nginx and monitoring.
    for unit in ("airflow-api-server.service", "airflow-worker@1.service", "nginx.service", "postgresql@15-main.service"):
        assert unit in table, f"{unit} not found among {sorted(table)}"
    for unit in ("redis-server.service", "prometheus.service", "scalecorp-airflow-exporter.service"):
        assert unit in table, f"{unit} not found among {sorted(table)}"
    over = {u: h for u, h in table.items() if max(h.values()) > EXPOSURE_LIMIT}
    assert over == {}, f"units above an exposure of {EXPOSURE_LIMIT}: {over}"
