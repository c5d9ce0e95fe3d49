from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.scalecorp.airflow.plugins.module_utils.firewall import (
    AIRFLOW_GROUPS,
    DEFAULT_PORTS,
    DEFAULT_SCRAPE_JOBS,
    FirewallError,
    accepts,
    allowed_flows,
    rules_for_host,
)

COLLECTION = Path(__file__).resolve().parents[4]
ROLES = COLLECTION / "roles"
LAB_INVENTORY = COLLECTION.parents[3] / "inventories/lab/hosts.yml"

# The groups of inventories/lab/hosts.yml, with the parent groups Ansible adds.
LAB = {
    "all": ["lab-lb1", "lab-api1", "lab-api2", "lab-wk1", "lab-wk2", "lab-pg1", "lab-pg2", "lab-rd1", "lab-rd2"],
    "ungrouped": [],
    "loadbalancer": ["lab-lb1"],
    "airflow": ["lab-api1", "lab-api2", "lab-wk1", "lab-wk2"],
    "airflow_api": ["lab-api1", "lab-api2"],
    "airflow_scheduler": ["lab-api1", "lab-api2"],
    "airflow_dag_processor": ["lab-api1"],
    "airflow_triggerer": ["lab-api1"],
    "airflow_flower": ["lab-api2"],
    "airflow_worker": ["lab-wk1", "lab-wk2"],
    "postgresql": ["lab-pg1", "lab-pg2"],
    "redis": ["lab-rd1", "lab-rd2"],
    "redis_sentinel": ["lab-rd1", "lab-rd2", "lab-lb1"],
    "prometheus": ["lab-lb1"],
    "alertmanager": ["lab-lb1"],
    "grafana": ["lab-lb1"],
    "backup": ["lab-lb1"],
}
ADDRESS = {h: f"10.0.0.{i}" for i, h in enumerate(LAB["all"], start=11)}
HOSTVARS = {h: {"address": a} for h, a in ADDRESS.items()}
NAME = {a: h for h, a in ADDRESS.items()}
ADMIN = "192.0.2.10"
SETTINGS = {"admin_sources": [ADMIN]}
ANY = {"0.0.0.0/0", "::/0"}
AIRFLOW = {"lab-api1", "lab-api2", "lab-wk1", "lab-wk2"}
LB, PROMETHEUS = "lab-lb1", "lab-lb1"


def by_destination(flows):
    """dst host -> port/proto -> source host names (outside sources as they are)."""
    out: dict[str, dict[str, set[str]]] = {}
    for f in flows:
        out.setdefault(f["dst_host"], {}).setdefault(f"{f['port']}/{f['proto']}", set()).add(f["src_host"])
    return out


def lab_flows(**settings):
    return allowed_flows(LAB, HOSTVARS, {**SETTINGS, **settings})


def test_the_groups_above_are_the_lab_inventory():
    if not LAB_INVENTORY.exists():
        pytest.skip("the lab inventory is not beside this collection")
    groups: dict[str, set[str]] = {}

    def walk(name, node):
        hosts = set((node or {}).get("hosts") or {})
        for child, sub in ((node or {}).get("children") or {}).items():
            hosts |= walk(child, sub)
        groups[name] = hosts
        return hosts

    walk("all", yaml.safe_load(LAB_INVENTORY.read_text())["all"])
    assert groups == {k: set(v) for k, v in LAB.items() if k != "ungrouped"}


def test_the_lab_gets_exactly_the_flows_of_the_architecture():
    scraped = {"9100/tcp": {PROMETHEUS}}
    ssh = {"22/tcp": {ADMIN}}
    expected = {
        # nginx, the third Sentinel, Prometheus, Alertmanager, Grafana and the backups.
        # Its own scrapes, Grafana -> Prometheus and Prometheus -> Alertmanager go over loopback.
        "lab-lb1": {
            **ssh,
            "80/tcp": ANY,
            "443/tcp": ANY,
            "3000/tcp": {ADMIN},
            "8081/tcp": {"lab-wk1", "lab-wk2"},
            "26379/tcp": AIRFLOW | {"lab-rd1", "lab-rd2"},
        },
        # The triggerer's log server, for the other API server (lab-api1 reads its own over loopback).
        "lab-api1": {**ssh, **scraped, "8080/tcp": {LB}, "9102/tcp": {PROMETHEUS}, "8794/tcp": {"lab-api2"}},
        "lab-api2": {**ssh, **scraped, "8080/tcp": {LB}, "9102/tcp": {PROMETHEUS}, "5555/tcp": {ADMIN}},
        # Task logs: the API servers ask each worker host's log server.
        "lab-wk1": {**ssh, **scraped, "9102/tcp": {PROMETHEUS}, "8793/tcp": {"lab-api1", "lab-api2"}},
        "lab-wk2": {**ssh, **scraped, "9102/tcp": {PROMETHEUS}, "8793/tcp": {"lab-api1", "lab-api2"}},
        "lab-pg1": {**ssh, **scraped, "9187/tcp": {PROMETHEUS}, "5432/tcp": AIRFLOW | {"lab-pg2", PROMETHEUS}},
        "lab-pg2": {**ssh, **scraped, "9187/tcp": {PROMETHEUS}, "5432/tcp": AIRFLOW | {"lab-pg1", PROMETHEUS}},
        "lab-rd1": {
            **ssh,
            **scraped,
            "9121/tcp": {PROMETHEUS},
            "6379/tcp": AIRFLOW | {"lab-rd2", "lab-lb1"},
            "26379/tcp": AIRFLOW | {"lab-rd2", "lab-lb1"},
        },
        "lab-rd2": {
            **ssh,
            **scraped,
            "9121/tcp": {PROMETHEUS},
            "6379/tcp": AIRFLOW | {"lab-rd1", "lab-lb1"},
            "26379/tcp": AIRFLOW | {"lab-rd1", "lab-lb1"},
        },
    }
    flows = lab_flows()
    assert by_destination(flows) == expected
    # Each flow once, with its reasons, addresses from the inventory, and no host to itself.
    assert len({(f["src_host"], f["dst_host"], f["port"], f["proto"]) for f in flows}) == len(flows)
    assert all(f["why"] for f in flows)
    assert all(f["src"] == ADDRESS.get(f["src_host"], f["src_host"]) for f in flows)
    assert all(f["src_host"] != f["dst_host"] for f in flows)


def test_flows_name_their_reasons():
    flows = {(f["src_host"], f["dst_host"], f["port"]): f["why"] for f in lab_flows()}
    assert flows[("lab-lb1", "lab-api1", 8080)] == "nginx -> API servers (upstream airflow_api)"
    assert "execution API" in flows[("lab-wk1", "lab-lb1", 8081)]
    assert flows[("lab-lb1", "lab-pg1", 5432)] == (
        "backups, restores and restore checks (backup user); signals exporter reads the metadata database (monitor user)"
    )
    assert "Sentinel <-> Sentinel" in flows[("lab-rd1", "lab-lb1", 26379)]
    assert "Redis replication" in flows[("lab-rd2", "lab-rd1", 6379)]


def test_a_host_in_two_tiers_gets_the_union_of_their_accepts():
    # lab-pg2 and lab-rd2 on one host "both": a PostgreSQL node, a Redis node and a Sentinel.
    groups = {k: sorted({"both" if h in ("lab-pg2", "lab-rd2") else h for h in v}) for k, v in LAB.items()}
    hostvars = {h: v for h, v in HOSTVARS.items() if h not in ("lab-pg2", "lab-rd2")} | {"both": {"address": "10.0.0.99"}}
    merged = rules_for_host("both", allowed_flows(groups, hostvars, SETTINGS))
    alone = lab_flows()
    pg, rd = rules_for_host("lab-pg2", alone), rules_for_host("lab-rd2", alone)
    assert list(merged) == sorted(set(pg) | set(rd), key=lambda k: (int(k.split("/")[0]), k))
    for key in merged:
        # The same sources, where "both" replaces the two hosts it stands for (and never lets itself in).
        separate = {ADDRESS["lab-pg2"], ADDRESS["lab-rd2"]}
        wanted = (set(pg.get(key, {}).get("sources", [])) | set(rd.get(key, {}).get("sources", []))) - separate
        assert set(merged[key]["sources"]) - {"10.0.0.99"} == wanted, key
        assert "10.0.0.99" not in merged[key]["sources"]
    # The Redis replica on "both" still reaches the master, the PostgreSQL standby the primary.
    both_out = {(f["dst_host"], f["port"]) for f in allowed_flows(groups, hostvars, SETTINGS) if f["src_host"] == "both"}
    assert {("lab-rd1", 6379), ("lab-rd1", 26379), ("lab-pg1", 5432), ("lab-lb1", 26379)} <= both_out


def test_a_worker_reaches_the_database_port_but_is_no_replication_peer():
    flows = lab_flows()
    worker = [f for f in flows if f["src_host"] == "lab-wk1"]
    assert {(f["dst_host"], f["port"]) for f in worker} == {
        ("lab-pg1", 5432),
        ("lab-pg2", 5432),
        ("lab-rd1", 6379),
        ("lab-rd2", 6379),
        ("lab-rd1", 26379),
        ("lab-rd2", 26379),
        ("lab-lb1", 26379),
        ("lab-lb1", 8081),
    }
    for f in worker:
        assert "replication" not in f["why"], f
    to_primary = next(f for f in worker if f["dst_host"] == "lab-pg1")
    assert to_primary["why"] == "Airflow metadata database and Celery result backend"
    # Replication flows come from the PostgreSQL nodes only.
    replication = {f["src_host"] for f in flows if "PostgreSQL streaming replication" in f["why"]}
    assert replication == {"lab-pg1", "lab-pg2"}
    rules = rules_for_host("lab-pg1", flows)
    assert accepts(rules, ADDRESS["lab-wk1"], 5432)
    assert not accepts(rules, ADDRESS["lab-wk1"], 9187)
    assert not accepts(rules, ADDRESS["lab-wk1"], 22)


def spread_inventory():
    """Every tier on hosts of its own, and two of each monitoring host."""
    groups = {
        "loadbalancer": ["lb1", "lb2"],
        "airflow_api": ["api1"],
        "airflow_scheduler": ["sch1"],
        "airflow_dag_processor": ["dp1"],
        "airflow_triggerer": ["tr1"],
        "airflow_flower": ["fl1"],
        "airflow_worker": ["wk1", "wk2"],
        "postgresql": ["pg1", "pg2", "pg3"],
        "redis": ["rd1", "rd2"],
        "redis_sentinel": ["s1", "s2", "s3"],
        "prometheus": ["prom1"],
        "alertmanager": ["am1", "am2"],
        "grafana": ["graf1"],
        "backup": ["bk1"],
    }
    groups["airflow"] = sorted({h for g in AIRFLOW_GROUPS[1:] for h in groups[g]})
    groups["all"] = sorted({h for v in groups.values() for h in v} | {"bastion"})
    hostvars = {h: {"address": f"10.1.0.{i}"} for i, h in enumerate(groups["all"], start=1)}
    return groups, hostvars


def test_only_airflow_postgresql_monitoring_and_backup_hosts_reach_the_database_port():
    groups, hostvars = spread_inventory()
    flows = allowed_flows(groups, hostvars, SETTINGS)
    allowed = set(groups["airflow"]) | set(groups["postgresql"]) | {"prom1", "bk1"}
    to_db = {f["src_host"] for f in flows if f["dst_host"] in groups["postgresql"] and f["port"] == 5432}
    assert to_db == allowed
    outsiders = set(groups["all"]) - allowed
    assert outsiders == {"lb1", "lb2", "rd1", "rd2", "s1", "s2", "s3", "am1", "am2", "graf1", "bastion"}
    for pg in groups["postgresql"]:
        rules = rules_for_host(pg, flows)
        for host in outsiders:
            assert not accepts(rules, hostvars[host]["address"], 5432), (host, pg)
        # ... nor does anyone outside the cluster (only SSH from the admin address).
        assert not accepts(rules, ADMIN, 5432)
    # The signals exporter and the backup host are there for what their roles need.
    why = {f["src_host"]: f["why"] for f in flows if f["dst_host"] == "pg1" and f["port"] == 5432}
    assert "signals exporter" in why["prom1"]
    assert "backup" in why["bk1"]


def test_a_spread_inventory_keeps_each_tier_to_its_ports():
    groups, hostvars = spread_inventory()
    flows = allowed_flows(groups, hostvars, SETTINGS)
    ports = {h: sorted(int(k.split("/")[0]) for k in rules_for_host(h, flows)) for h in groups["all"]}
    assert ports["lb1"] == [22, 80, 443, 8081, 9100, 9113]
    assert ports["api1"] == [22, 8080, 9100, 9102]
    assert ports["fl1"] == [22, 5555, 9100, 9102]
    assert ports["pg1"] == [22, 5432, 9100, 9187]
    assert ports["rd1"] == [22, 6379, 9100, 9121]
    assert ports["s1"] == [22, 9100, 26379]
    # Prometheus scrapes its own exporters over loopback: only Grafana comes in.
    assert ports["prom1"] == [22, 9090]
    assert list(rules_for_host("am1", flows)) == ["22/tcp", "9093/tcp", "9094/tcp", "9094/udp", "9100/tcp"]
    assert ports["graf1"] == [22, 3000, 9100]
    assert ports["bk1"] == ports["bastion"] == [22, 9100]
    # Alertmanager's cluster port, TCP and UDP, from the other Alertmanager only.
    am1 = rules_for_host("am1", flows)
    assert am1["9094/tcp"]["sources"] == am1["9094/udp"]["sources"] == [hostvars["am2"]["address"]]
    assert am1["9093/tcp"]["sources"] == [hostvars["prom1"]["address"]]
    # Grafana's UI for the admins, Prometheus' for Grafana (and nobody else outside).
    assert rules_for_host("graf1", flows)["3000/tcp"]["sources"] == [ADMIN]
    assert rules_for_host("prom1", flows)["9090/tcp"]["sources"] == [hostvars["graf1"]["address"]]
    # The execution API on the load balancers: the workers only (the dag-processor and the
    # triggerer use Airflow's in-process execution API).
    assert rules_for_host("lb2", flows)["8081/tcp"]["sources"] == [hostvars["wk1"]["address"], hostvars["wk2"]["address"]]
    # A single Alertmanager has no cluster port.
    single = allowed_flows(dict(groups, alertmanager=["am1"]), hostvars, SETTINGS)
    assert not [f for f in single if f["port"] == 9094]


def test_ssh_sources_reach_every_host_on_its_own_port():
    hostvars = {h: dict(v) for h, v in HOSTVARS.items()}
    hostvars["lab-pg1"]["ssh_port"] = "2222"
    flows = allowed_flows(LAB, hostvars, {"admin_sources": [ADMIN, "198.51.100.0/24", "2001:db8::/48"]})
    for host in LAB["all"]:
        rules = rules_for_host(host, flows)
        key = "2222/tcp" if host == "lab-pg1" else "22/tcp"
        assert rules[key]["sources"] == [ADMIN, "198.51.100.0/24", "2001:db8::/48"], host
        assert rules[key]["ipv4"] == [ADMIN, "198.51.100.0/24"]
        assert rules[key]["ipv6"] == ["2001:db8::/48"]
        # The controller keeps its SSH; an address from elsewhere does not get it.
        assert accepts(rules, ADMIN, rules[key]["port"])
        assert accepts(rules, "::ffff:192.0.2.10", rules[key]["port"])
        assert accepts(rules, "2001:db8::5", rules[key]["port"])
        assert not accepts(rules, "203.0.113.5", rules[key]["port"])
        assert not accepts(rules, ADMIN, 2223)
    assert "22/tcp" not in rules_for_host("lab-pg1", flows)
    # The port the run's own connection came in on wins (sshd behind a port forward).
    flows = allowed_flows(LAB, hostvars, {"admin_sources": [ADMIN], "ssh_ports": {"lab-pg1": "22"}})
    assert list(rules_for_host("lab-pg1", flows))[0] == "22/tcp"


def test_ui_and_client_sources_can_be_narrowed():
    flows = lab_flows(client_sources=["203.0.113.0/24"], ui_sources=["198.51.100.7"])
    lb = rules_for_host("lab-lb1", flows)
    assert lb["443/tcp"]["sources"] == lb["80/tcp"]["sources"] == ["203.0.113.0/24"]
    assert lb["3000/tcp"]["sources"] == ["198.51.100.7"]
    assert lb["22/tcp"]["sources"] == [ADMIN]
    assert rules_for_host("lab-api2", flows)["5555/tcp"]["sources"] == ["198.51.100.7"]


def test_ports_come_from_the_settings():
    flows = lab_flows(ports={"postgresql": "5433", "redis_sentinel": 26380, "airflow_api": 8443})
    assert "5433/tcp" in rules_for_host("lab-pg1", flows)
    assert "5432/tcp" not in rules_for_host("lab-pg1", flows)
    assert "26380/tcp" in rules_for_host("lab-rd1", flows)
    assert "8443/tcp" in rules_for_host("lab-api1", flows)


def test_a_network_swallows_the_addresses_inside_it():
    flows = lab_flows(admin_sources=["10.0.0.0/8", ADMIN, "10.0.0.17"])
    assert rules_for_host("lab-wk1", flows)["22/tcp"]["sources"] == ["10.0.0.0/8", ADMIN]
    # The scrape source 10.0.0.11 stays on its own port.
    assert rules_for_host("lab-wk1", flows)["9100/tcp"]["sources"] == [ADDRESS["lab-lb1"]]


def test_extra_flows_by_group_host_or_network():
    extra = [
        {"src": "airflow_worker", "dst": "redis", "port": 16379, "why": "site tool"},
        {"src": "lab-api1", "dst": "lab-lb1", "port": 514, "proto": "udp", "why": "syslog"},
        {"src": "198.51.100.0/24", "dst": "grafana", "port": 3000, "why": "the operations team"},
    ]
    flows = lab_flows(extra_flows=extra)
    assert rules_for_host("lab-rd1", flows)["16379/tcp"]["sources"] == [ADDRESS["lab-wk1"], ADDRESS["lab-wk2"]]
    assert rules_for_host("lab-lb1", flows)["514/udp"] == {
        "port": 514,
        "proto": "udp",
        "sources": [ADDRESS["lab-api1"]],
        "ipv4": [ADDRESS["lab-api1"]],
        "ipv6": [],
        "why": ["syslog"],
    }
    grafana = rules_for_host("lab-lb1", flows)["3000/tcp"]
    assert grafana["sources"] == [ADMIN, "198.51.100.0/24"]
    assert grafana["why"] == ["admins: Grafana UI", "the operations team"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"admin_sources": ["controller"]}, "admin_sources: 'controller' is not an IP address"),
        ({"ports": {"postgres": 5432}}, "unknown port name 'postgres'"),
        ({"ports": {"postgresql": 70000}}, "postgresql: port 70000 is out of range"),
        ({"ssh_ports": {"lab-wk1": "ssh"}}, "host lab-wk1 SSH port: port 'ssh' is not a number"),
        ({"sources": []}, "unknown setting 'sources'"),
        ({"extra_flows": [{"src": "lab-wk1", "dst": "nowhere", "port": 1}]}, "'nowhere' is neither a group nor a host"),
        ({"extra_flows": [{"src": "lab-wk1", "dst": "redis", "port": 1, "proto": "sctp"}]}, "proto must be one of tcp, udp"),
        ({"extra_flows": [{"dst": "redis", "port": 1}]}, "needs src, dst and port"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(FirewallError, match=message.replace("(", r"\(").replace(")", r"\)")):
        allowed_flows(LAB, HOSTVARS, settings)


def test_a_host_without_an_address_is_named():
    hostvars = dict(HOSTVARS, **{"lab-wk2": {}})
    with pytest.raises(FirewallError, match="host lab-wk2 has no address"):
        allowed_flows(LAB, hostvars, SETTINGS)


def test_no_admin_source_means_no_ssh_rule():
    # The role refuses this unless Ansible reaches the hosts without SSH (docker, local).
    flows = allowed_flows(LAB, HOSTVARS, {})
    assert not [f for f in flows if f["port"] == 22]
    assert not [f for f in flows if f["port"] in (3000, 5555)]


def _defaults(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults/main.yml").read_text())


def test_the_ports_are_the_roles_own():
    nginx, airflow, redis = _defaults("nginx"), _defaults("airflow"), _defaults("redis")
    am = _defaults("alertmanager")
    ports = dict(DEFAULT_PORTS)
    assert ports == {
        "ssh": 22,
        "nginx_http": nginx["nginx_http_port"],
        "nginx_https": nginx["nginx_https_port"],
        "nginx_internal": nginx["nginx_internal_port"],
        "airflow_api": airflow["airflow_api_port"],
        "flower": airflow["airflow_flower_port"],
        "worker_log_server": airflow["airflow_worker_log_server_port"],
        "triggerer_log_server": airflow["airflow_triggerer_log_server_port"],
        "postgresql": _defaults("postgresql")["postgresql_port"],
        "redis": redis["redis_port"],
        "redis_sentinel": redis["redis_sentinel_port"],
        "prometheus": _defaults("prometheus")["prometheus_port"],
        "alertmanager": am["alertmanager_port"],
        "alertmanager_cluster": am["alertmanager_cluster_port"],
        "grafana": _defaults("grafana")["grafana_port"],
    }
    assert nginx["nginx_upstream_port"] == airflow["airflow_api_port"]
    assert f":{nginx['nginx_internal_port']}/execution/" in airflow["airflow_execution_api_url"]


def test_the_scrape_jobs_are_prometheus_own_and_the_exporters_listen_there():
    jobs = _defaults("prometheus")["prometheus_scrape_jobs"]
    assert list(DEFAULT_SCRAPE_JOBS) == [{k: job[k] for k in ("name", "group", "port")} for job in jobs]
    exporters = _defaults("exporters")
    listening = {
        "node": exporters["exporters_node_port"],
        "postgres": exporters["exporters_postgres_port"],
        "redis": exporters["exporters_redis_port"],
        "nginx": exporters["exporters_nginx_port"],
        "statsd": _defaults("statsd_bridge")["statsd_bridge_metrics_port"],
        "airflow_exporter": _defaults("signals_exporter")["signals_exporter_port"],
        "prometheus": DEFAULT_PORTS["prometheus"],
        "alertmanager": DEFAULT_PORTS["alertmanager"],
    }
    assert {job["name"]: job["port"] for job in DEFAULT_SCRAPE_JOBS} == listening
