# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""The host firewall's flows, computed from the inventory (role `firewall`).

Plain Python, no Ansible imports. `allowed_flows()` lists every connection the
cluster needs as {src_host, src, dst_host, port, proto, why}: which host (or
outside address/network) opens a connection to which host's port, and why a
role needs it. `rules_for_host()` turns the flows that end on one host into
its input accepts (port/proto -> sorted source addresses) for the nftables
template; anything not listed is dropped there. `accepts()` answers whether a
ruleset lets an address in on a port (the role's guard for the controller's
own SSH).

A host reaching itself goes over loopback (also when it connects to its own
address), which the ruleset always accepts, so flows from a host to itself are
left out. Any PostgreSQL node and any Redis node may become the primary or
master (switchover, Sentinel failover), so clients and peers get every node of
the tier, like pg_hba.conf does. The firewall matches ports, not protocols:
PostgreSQL's replication and SQL logins share one port and pg_hba.conf tells
them apart (replication only for the PostgreSQL nodes' addresses).
"""

from __future__ import annotations

import ipaddress

from ansible_collections.scalecorp.airflow.plugins.module_utils import inventory

# The parent group and its children (the inventory contract's Airflow groups).
AIRFLOW_GROUPS = ("airflow", *inventory.AIRFLOW_GROUPS)

# The ports the roles listen on, each as found in the role that sets it up.
DEFAULT_PORTS = {
    "ssh": 22,  # the host's ansible_port when set (Ansible's own default otherwise)
    "nginx_http": 80,  # roles/nginx/defaults/main.yml nginx_http_port (redirect to HTTPS)
    "nginx_https": 443,  # roles/nginx/defaults/main.yml nginx_https_port
    "nginx_internal": 8081,  # roles/nginx/defaults/main.yml nginx_internal_port (execution API);
    # roles/airflow/defaults/main.yml airflow_execution_api_url names it too
    "airflow_api": 8080,  # roles/airflow/defaults/main.yml airflow_api_port (nginx_upstream_port)
    "flower": 5555,  # roles/airflow/defaults/main.yml airflow_flower_port
    # roles/airflow/defaults/main.yml airflow_worker_log_server_port (unit airflow-log-server
    # on each worker host) and airflow_triggerer_log_server_port (the triggerer's own)
    "worker_log_server": 8793,
    "triggerer_log_server": 8794,
    "postgresql": 5432,  # roles/postgresql/defaults/main.yml postgresql_port
    "redis": 6379,  # roles/redis/defaults/main.yml redis_port
    "redis_sentinel": 26379,  # roles/redis/defaults/main.yml redis_sentinel_port
    "prometheus": 9090,  # roles/prometheus/defaults/main.yml prometheus_port
    "alertmanager": 9093,  # roles/alertmanager/defaults/main.yml alertmanager_port
    # roles/alertmanager/defaults/main.yml alertmanager_cluster_port: gossip (TCP and UDP),
    # enabled by templates/alertmanager.default.j2 only when the group has several hosts
    "alertmanager_cluster": 9094,
    "grafana": 3000,  # roles/grafana/defaults/main.yml grafana_port
}
# Not listened on from the network, so no rule: nginx_status_port 8082 (127.0.0.1 only,
# roles/nginx/templates/nginx.conf.j2), Airflow's StatsD 127.0.0.1:8125/udp
# (roles/airflow/defaults/main.yml airflow_statsd_host/_port, the statsd_bridge input).

# What Prometheus scrapes: roles/prometheus/defaults/main.yml prometheus_scrape_jobs.
# The exporters listen on the same ports: roles/exporters/defaults/main.yml
# exporters_node_port 9100, exporters_postgres_port 9187, exporters_redis_port 9121,
# exporters_nginx_port 9113; roles/statsd_bridge/defaults/main.yml
# statsd_bridge_metrics_port 9102; roles/signals_exporter/defaults/main.yml
# signals_exporter_port 9112; Prometheus (9090) and Alertmanager (9093) themselves.
DEFAULT_SCRAPE_JOBS = (
    {"name": "node", "group": "all", "port": 9100},
    {"name": "postgres", "group": "postgresql", "port": 9187},
    {"name": "redis", "group": "redis", "port": 9121},
    {"name": "nginx", "group": "loadbalancer", "port": 9113},
    {"name": "statsd", "group": "airflow", "port": 9102},
    {"name": "airflow_exporter", "group": "prometheus", "port": 9112},
    {"name": "prometheus", "group": "prometheus", "port": 9090},
    {"name": "alertmanager", "group": "alertmanager", "port": 9093},
)

ANY = ("0.0.0.0/0", "::/0")

DEFAULT_SETTINGS = {
    "ports": DEFAULT_PORTS,
    "scrape_jobs": DEFAULT_SCRAPE_JOBS,
    # SSH to every host (and, unless ui_sources says otherwise, the Grafana and Flower UIs).
    "admin_sources": [],
    # Users of the load balancer (Airflow's UI and API over HTTPS).
    "client_sources": list(ANY),
    # Grafana and Flower; None: the admin sources.
    "ui_sources": None,
    # Who runs tasks, and so talks to the execution API on nginx's internal listener.
    # The dag-processor and the triggerer use Airflow's in-process execution API.
    "execution_api_groups": ["airflow_worker"],
    # More flows: {src: group, host, address or network; dst: group or host; port; proto; why}.
    "extra_flows": [],
    # host -> the port its sshd listens on, before the host's ssh_port (the role gives
    # the port of the run's own connection, from SSH_CLIENT).
    "ssh_ports": {},
}

PROTOCOLS = ("tcp", "udp")


class FirewallError(ValueError):
    """The inventory or the settings cannot give a ruleset."""


def _settings(settings: dict | None) -> dict:
    s = dict(DEFAULT_SETTINGS)
    for key, value in (settings or {}).items():
        if key not in DEFAULT_SETTINGS:
            raise FirewallError(f"unknown setting {key!r} (known: {', '.join(sorted(DEFAULT_SETTINGS))})")
        s[key] = value
    ports = dict(DEFAULT_PORTS)
    for name, value in dict(s["ports"] or {}).items():
        if name not in DEFAULT_PORTS:
            raise FirewallError(f"unknown port name {name!r} (known: {', '.join(sorted(DEFAULT_PORTS))})")
        ports[name] = _port(value, name)
    s["ports"] = ports
    s["scrape_jobs"] = list(s["scrape_jobs"] or DEFAULT_SCRAPE_JOBS)
    s["ssh_ports"] = {str(h): v for h, v in dict(s["ssh_ports"] or {}).items()}
    if s["ui_sources"] is None:
        s["ui_sources"] = s["admin_sources"]
    for key in ("admin_sources", "client_sources", "ui_sources"):
        s[key] = [_source(v, key) for v in s[key] or []]
    return s


def _port(value, what: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise FirewallError(f"{what}: port {value!r} is not a number") from None
    if not 0 < port < 65536:
        raise FirewallError(f"{what}: port {port} is out of range")
    return port


def network(value) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or network as a network; an IPv4-mapped IPv6 address as IPv4."""
    text = str(value).strip()
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise FirewallError(f"{value!r} is not an IP address or network") from None
    if net.version == 6 and net.prefixlen == 128 and net.network_address.ipv4_mapped:
        return ipaddress.ip_network(net.network_address.ipv4_mapped)
    return net


def _source(value, what: str) -> str:
    try:
        return _text(network(value))
    except FirewallError as exc:
        raise FirewallError(f"{what}: {exc}") from None


def _text(net) -> str:
    """A host as its bare address, a network with its prefix."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _hosts(groups: dict, *names: str) -> list[str]:
    out: set[str] = set()
    for name in names:
        out.update(str(h) for h in groups.get(name) or [])
    return sorted(out)


def _address(hostvars_subset: dict, host: str) -> str:
    address = (hostvars_subset.get(host) or {}).get("address")
    if not address:
        raise FirewallError(f"host {host} has no address (gather its facts: ansible_default_ipv4)")
    return _source(address, f"host {host}")


class _Flows:
    def __init__(self, hostvars_subset: dict):
        self.hostvars = hostvars_subset
        self.flows: dict[tuple, set[str]] = {}
        self.sources: dict[str, str] = {}

    def add(self, src_hosts, dst_hosts, port: int, why: str, *, proto: str = "tcp", external: bool = False):
        for src in src_hosts:
            address = src if external else _address(self.hostvars, src)
            for dst in dst_hosts:
                if src == dst:
                    continue  # loopback
                self.sources[src] = address
                self.flows.setdefault((src, dst, int(port), proto), set()).add(why)

    def result(self) -> list[dict]:
        return [
            {"src_host": src, "src": self.sources[src], "dst_host": dst, "port": port, "proto": proto, "why": "; ".join(sorted(why))}
            for (src, dst, port, proto), why in sorted(self.flows.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3], kv[0][0]))
        ]


def allowed_flows(groups: dict, hostvars_subset: dict, settings: dict | None = None) -> list[dict]:
    """Every connection the cluster needs.

    groups: Ansible's `groups` (group -> host names, with the parent group `airflow`).
    hostvars_subset: host -> {address (the one the roles bind to and connect from,
    ansible_default_ipv4), ssh_port (the host's ansible_port, optional; default 22)}.
    settings: see DEFAULT_SETTINGS.
    Returns [{src_host, src, dst_host, port, proto, why}] sorted by destination, port,
    protocol and source; src_host is an inventory host, or an address or network
    from the settings (then src_host == src).
    """
    s = _settings(settings)
    p = s["ports"]
    g = {name: _hosts(groups, name) for name in groups}
    every = _hosts(groups, "all") or sorted({h for hosts in g.values() for h in hosts})
    airflow = _hosts(groups, *AIRFLOW_GROUPS)
    lb, api, flower = g.get("loadbalancer", []), g.get("airflow_api", []), g.get("airflow_flower", [])
    pg, redis, sentinel = g.get("postgresql", []), g.get("redis", []), g.get("redis_sentinel", [])
    prometheus, alertmanager, grafana = g.get("prometheus", []), g.get("alertmanager", []), g.get("grafana", [])
    backup = g.get("backup", [])
    f = _Flows(hostvars_subset)

    # The load balancer and the API servers (roles/nginx/templates/nginx.conf.j2).
    f.add(s["client_sources"], lb, p["nginx_http"], "users: HTTP, redirected to HTTPS", external=True)
    f.add(s["client_sources"], lb, p["nginx_https"], "users: Airflow UI and API through nginx", external=True)
    f.add(lb, api, p["airflow_api"], "nginx -> API servers (upstream airflow_api)")
    f.add(_hosts(groups, *s["execution_api_groups"]), lb, p["nginx_internal"], "task runners -> execution API (nginx internal listener)")
    f.add(s["ui_sources"], flower, p["flower"], "admins: Flower UI", external=True)
    # A task's log, shown in the UI and the API, is read from the host that ran it.
    f.add(api, g.get("airflow_worker", []), p["worker_log_server"], "API servers read task logs from the workers' log server")
    f.add(api, g.get("airflow_triggerer", []), p["triggerer_log_server"], "API servers read deferred tasks' logs from the triggerers")

    # PostgreSQL (roles/postgresql/templates/pg_hba.conf.j2 admits the same hosts).
    f.add(airflow, pg, p["postgresql"], "Airflow metadata database and Celery result backend")
    f.add(pg, pg, p["postgresql"], "PostgreSQL streaming replication and base backups (any node may be primary)")
    f.add(prometheus, pg, p["postgresql"], "signals exporter reads the metadata database (monitor user)")
    f.add(backup, pg, p["postgresql"], "backups, restores and restore checks (backup user)")

    # Redis and Sentinel (Celery's sentinel:// broker, roles/redis).
    f.add(airflow, sentinel, p["redis_sentinel"], "Celery broker: asks the Sentinels for the master")
    f.add(airflow, redis, p["redis"], "Celery broker on the Redis master")
    f.add(redis, redis, p["redis"], "Redis replication (any node may become master)")
    f.add(sentinel, redis, p["redis"], "Sentinel monitors and reconfigures Redis")
    f.add(sentinel, sentinel, p["redis_sentinel"], "Sentinel <-> Sentinel (hello messages, failover votes)")
    f.add(redis, sentinel, p["redis_sentinel"], "redis role: master discovery asks every Sentinel")
    f.add(prometheus, sentinel, p["redis_sentinel"], "signals exporter asks the Sentinels for the master")
    f.add(prometheus, redis, p["redis"], "signals exporter reads the queue lengths on the master")

    # Monitoring (roles/prometheus, alertmanager, grafana).
    for job in s["scrape_jobs"]:
        name, group = str(job["name"]), str(job["group"])
        port = _port(job["port"], f"scrape job {name}")
        f.add(prometheus, every if group == "all" else g.get(group, []), port, f"Prometheus scrapes {name}")
    f.add(prometheus, alertmanager, p["alertmanager"], "Prometheus sends alerts to Alertmanager")
    if len(alertmanager) > 1:
        for proto in PROTOCOLS:
            f.add(alertmanager, alertmanager, p["alertmanager_cluster"], "Alertmanager cluster gossip", proto=proto)
    f.add(grafana, prometheus, p["prometheus"], "Grafana's Prometheus datasource")
    f.add(s["ui_sources"], grafana, p["grafana"], "admins: Grafana UI", external=True)

    # SSH from the controller and the admin networks, on each host's own port.
    for host in every:
        port = s["ssh_ports"].get(host) or (hostvars_subset.get(host) or {}).get("ssh_port") or p["ssh"]
        port = _port(port, f"host {host} SSH port")
        f.add(s["admin_sources"], [host], port, "SSH from the controller and admin networks", external=True)

    for extra in s["extra_flows"] or []:
        _extra(f, groups, hostvars_subset, extra)
    return f.result()


def _extra(f: _Flows, groups: dict, hostvars_subset: dict, extra: dict):
    try:
        src, dst, why = str(extra["src"]), str(extra["dst"]), str(extra.get("why") or "extra flow")
    except (KeyError, TypeError):
        raise FirewallError(f"extra flow {extra!r} needs src, dst and port") from None
    proto = str(extra.get("proto") or "tcp")
    if proto not in PROTOCOLS:
        raise FirewallError(f"extra flow {extra!r}: proto must be one of {', '.join(PROTOCOLS)}")
    port = _port(extra.get("port"), f"extra flow {src} -> {dst}")
    if dst in groups:
        dst_hosts = _hosts(groups, dst)
    elif dst in hostvars_subset:
        dst_hosts = [dst]
    else:
        raise FirewallError(f"extra flow {src} -> {dst}: {dst!r} is neither a group nor a host of the inventory")
    if src in groups:
        f.add(_hosts(groups, src), dst_hosts, port, why, proto=proto)
    elif src in hostvars_subset:
        f.add([src], dst_hosts, port, why, proto=proto)
    else:
        f.add([_source(src, f"extra flow {src} -> {dst}")], dst_hosts, port, why, proto=proto, external=True)


def _sources(addresses) -> list[str]:
    """Unique, without what a listed network already holds, sorted (IPv4 first)."""
    nets = {network(a) for a in addresses}
    kept = [n for n in nets if not any(m != n and m.version == n.version and n.subnet_of(m) for m in nets)]
    return [_text(n) for n in sorted(kept, key=lambda n: (n.version, n.network_address, n.prefixlen))]


def rules_for_host(host: str, flows: list[dict]) -> dict:
    """The input accepts of one host: "port/proto" -> {port, proto, sources, ipv4, ipv6, why}.

    Ordered by port and protocol. sources are the flows' source addresses, each once,
    without those inside a listed network, sorted (IPv4 first); ipv4 and ipv6 split
    them by family; why lists the flows' reasons.
    """
    grouped: dict[tuple[int, str], dict] = {}
    for flow in flows:
        if flow["dst_host"] != host:
            continue
        key = (int(flow["port"]), str(flow["proto"]))
        entry = grouped.setdefault(key, {"sources": set(), "why": set()})
        entry["sources"].add(str(flow["src"]))
        entry["why"].update(w for w in str(flow["why"]).split("; ") if w)
    rules = {}
    for (port, proto), entry in sorted(grouped.items()):
        sources = _sources(entry["sources"])
        rules[f"{port}/{proto}"] = {
            "port": port,
            "proto": proto,
            "sources": sources,
            "ipv4": [a for a in sources if ":" not in a],
            "ipv6": [a for a in sources if ":" in a],
            "why": sorted(entry["why"]),
        }
    return rules


def accepts(rules: dict, address: str, port: int, proto: str = "tcp") -> bool:
    """Whether rules (from rules_for_host) let address in on port/proto."""
    rule = rules.get(f"{int(port)}/{proto}")
    if not rule:
        return False
    addr = network(address)
    return any(addr.version == n.version and addr.subnet_of(n) for n in map(network, rule["sources"]))
