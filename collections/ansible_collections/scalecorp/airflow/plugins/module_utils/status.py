# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""The cluster's status table (status.yml): rows, verdicts, text.

Plain Python, no Ansible imports. The role `status` collects what each host
says about itself (`collect.yml`, fact `status_host`) and what is read once for
the cluster (fact `status_cluster`); `rows()` turns both into one row per
component and host with a level (ok, warn, fail), `problems()` names what is
unhealthy, and `table()` formats the rows for a terminal.
"""

from __future__ import annotations

import datetime as dt

from .backup import is_backup_id, parse_id

OK, WARN, FAIL = "ok", "warn", "fail"
LEVELS = (OK, WARN, FAIL)

DEFAULT_SETTINGS = {
    "scheduler_heartbeat_max_age": 60.0,
    "replication_max_lag": 300.0,
    "backup_max_age_hours": 26.0,
    "backup_required": False,
    "queue_max_length": 100,
    "alert_fail_severities": ["critical"],
}

HEALTH_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def _row(host: str, component: str, state: str, detail: str = "", level: str = OK) -> dict:
    return {"host": str(host), "component": str(component), "state": str(state), "detail": str(detail), "level": level}


def seconds(value: float | None) -> str:
    """A short age: 4 s, 12 min, 3.5 h, 2.0 d."""
    if value is None:
        return "never"
    value = max(0.0, float(value))
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def size(value: float) -> str:
    value = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover - the loop returns


def parse_timestamp(value: str | None) -> float | None:
    """Epoch seconds of an ISO 8601 time (Airflow's heartbeats), or None."""
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def parse_systemctl_show(text: str) -> dict[str, dict]:
    """`systemctl show -p Id,LoadState,ActiveState,SubState u1 u2 ...` -> {unit: {load, active, sub}}."""
    units: dict[str, dict] = {}
    for block in (text or "").strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.strip().splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = {
                "load": props.get("LoadState", ""),
                "active": props.get("ActiveState", ""),
                "sub": props.get("SubState", ""),
            }
    return units


def parse_info(text: str) -> dict[str, str]:
    """Redis `INFO` text -> {field: value}."""
    info: dict[str, str] = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            info[key] = value
    return info


def _short(name) -> str:
    """A host name without its domain."""
    return str(name).split(".", maxsplit=1)[0]


def _unit_key(name: str) -> str:
    return name if name.endswith((".service", ".timer", ".socket")) else f"{name}.service"


def unit_rows(host: str, expected: list[str], shown: str) -> list[dict]:
    units = parse_systemctl_show(shown)
    rows = []
    for name in expected:
        unit = units.get(_unit_key(name)) or units.get(name) or {}
        active = unit.get("active") or "unknown"
        if unit.get("load") == "not-found":
            rows.append(_row(host, name, "not installed", "", FAIL))
            continue
        level = OK if active == "active" else FAIL
        rows.append(_row(host, name, active, unit.get("sub", ""), level))
    return rows


def health_row(host: str, component: str, health: dict | None, now: float) -> dict:
    """A row from an Airflow /api/v2/monitor/health answer ({'status': code, 'json': ..., 'msg': ...})."""
    health = health or {}
    body = health.get("json")
    if not isinstance(body, dict):
        reason = health.get("msg") or f"HTTP {health.get('status', '?')}"
        return _row(host, component, "unreachable", str(reason)[:120], FAIL)
    parts, bad = [], []
    for part in HEALTH_PARTS:
        entry = body.get(part) or {}
        status = str(entry.get("status") or "unknown")
        beat = next((v for k, v in entry.items() if k.startswith("latest_") and k.endswith("_heartbeat")), None)
        stamp = parse_timestamp(beat)
        age = f" (beat {seconds(now - stamp)} ago)" if stamp is not None else ""
        parts.append(f"{part}={status}{age}")
        if status != "healthy":
            bad.append(part)
    state = "healthy" if not bad else "unhealthy: " + ", ".join(bad)
    return _row(host, component, state, " ".join(parts), FAIL if bad else OK)


def redis_row(host: str, redis: dict | None) -> dict:
    redis = redis or {}
    if redis.get("error") or not redis.get("info"):
        return _row(host, "redis role", "unreachable", str(redis.get("error") or "no answer")[:120], FAIL)
    info = parse_info(redis["info"])
    role = info.get("role", "unknown")
    if role == "master":
        replicas = int(info.get("connected_slaves", "0") or 0)
        return _row(host, "redis role", "master", f"{replicas} replica(s) connected", OK)
    if role == "slave":
        link = info.get("master_link_status", "unknown")
        detail = f"master {info.get('master_host', '?')}:{info.get('master_port', '?')} link {link}"
        return _row(host, "redis role", "replica", detail, OK if link == "up" else FAIL)
    return _row(host, "redis role", role, "", FAIL)


def postgresql_row(host: str, pg: dict | None, settings: dict, expected_replicas: int) -> dict:
    """From the `role|receiver|lag_seconds|lag_bytes|streaming` line the collect task reads locally."""
    pg = pg or {}
    line = (pg.get("line") or "").strip()
    fields = line.split("|")
    if pg.get("error") or len(fields) != 5:
        return _row(host, "postgresql role", "unreachable", str(pg.get("error") or line or "no answer")[:120], FAIL)
    role, receiver, lag_seconds, lag_bytes, streaming = fields
    if role == "primary":
        count = int(streaming or 0)
        level = OK if count >= expected_replicas else FAIL
        return _row(host, "postgresql role", "primary", f"{count} of {expected_replicas} replica(s) streaming", level)
    lag = float(lag_seconds or 0)
    behind = int(float(lag_bytes or 0))
    detail = f"lag {lag:.0f} s, {size(behind)} to replay, wal receiver {receiver or 'stopped'}"
    level = OK if receiver == "streaming" and lag <= float(settings["replication_max_lag"]) else FAIL
    return _row(host, "postgresql role", "replica", detail, level)


def worker_row(host: str, workers: dict, busy_by_host: dict | None) -> dict:
    recorded = int(workers.get("recorded") or 0)
    running = len(workers.get("running") or [])
    slots = running * int(workers.get("concurrency") or 0)
    if busy_by_host is None:
        busy = "?"
    else:
        name = workers.get("hostname") or host
        busy = str(sum(int(v) for k, v in busy_by_host.items() if k == name or _short(k) == _short(name)))
    level = OK if running == recorded and recorded > 0 else FAIL
    return _row(host, "celery workers", f"{running}/{recorded} instances", f"slots busy/total {busy}/{slots}", level)


def rows(hosts: list[dict] | dict, cluster: dict | None, settings: dict | None = None, now: float | None = None) -> list[dict]:
    """Every row of the table: each host's own, then the checks across hosts.

    hosts: the `status_host` fact of every host in the run, in inventory order, or a dict
    host -> `status_host` where None stands for a host that collected nothing (unreachable).
    cluster: the `status_cluster` fact (signals, backups, alerts), read once.
    """
    missing: list[dict] = []
    if isinstance(hosts, dict):
        missing = [
            _row(name, "status", "not collected", "unreachable, or failed before its readings", FAIL) for name, h in hosts.items() if not h
        ]
        hosts = [dict(h) for h in hosts.values() if h]
    s = dict(DEFAULT_SETTINGS, **(settings or {}))
    cluster = dict(cluster or {})
    now = float(now if now is not None else cluster.get("time") or dt.datetime.now(dt.UTC).timestamp())
    signals = cluster.get("signals") or {}
    signals_ok = not signals.get("error") and bool(signals)
    busy_by_host = (signals.get("tasks") or {}).get("running_by_host") if signals_ok else None
    beats = signals.get("scheduler_heartbeat_age") if signals_ok else None
    pg_count = int(cluster.get("postgresql_hosts") or sum(1 for h in hosts if h.get("postgresql")))
    out: list[dict] = list(missing)
    for h in hosts:
        name = h["host"]
        out += unit_rows(name, list(h.get("units_expected") or []), h.get("units") or "")
        if "api_health" in h:
            out.append(health_row(name, "api health", h["api_health"], now))
        if "lb_health" in h:
            out.append(health_row(name, "nginx -> api health", h["lb_health"], now))
        if "scheduler_fqdn" in h:
            out.append(heartbeat_row(name, h["scheduler_fqdn"], beats, s, signals))
        if "redis" in h:
            out.append(redis_row(name, h["redis"]))
        if "sentinel" in h:
            out.append(_row(name, "sentinel master", *_sentinel_state(h["sentinel"])))
        if "postgresql" in h:
            out.append(postgresql_row(name, h["postgresql"], s, max(pg_count - 1, 0)))
        if "workers" in h:
            out.append(worker_row(name, h["workers"], busy_by_host))
    out += redis_agreement(hosts, out, cluster.get("redis_hosts"))
    out += cluster_rows(cluster, s, now)
    return out


def heartbeat_row(host: str, fqdn: str, beats: dict | None, settings: dict, signals: dict) -> dict:
    if beats is None:
        reason = signals.get("error") or "the metadata database was not read"
        return _row(host, "scheduler heartbeat", "unknown", str(reason)[:120], FAIL)
    ages = [float(v) for k, v in beats.items() if k == fqdn or _short(k) == _short(fqdn)]
    if not ages:
        return _row(host, "scheduler heartbeat", "never", f"no heartbeat from {fqdn}", FAIL)
    age = min(ages)
    level = OK if age <= float(settings["scheduler_heartbeat_max_age"]) else FAIL
    return _row(host, "scheduler heartbeat", f"{seconds(age)} ago", f"limit {seconds(settings['scheduler_heartbeat_max_age'])}", level)


def _sentinel_state(sentinel: dict) -> tuple[str, str, str]:
    sentinel = sentinel or {}
    # The answer to AUTH ("OK") comes first.
    lines = [ln.strip() for ln in (sentinel.get("answer") or "").splitlines() if ln.strip() and ln.strip() != "OK"]
    if sentinel.get("error") or len(lines) != 2 or not lines[1].isdigit():
        return "unreachable", str(sentinel.get("error") or " ".join(lines) or "no answer")[:120], FAIL
    return f"{lines[0]}:{lines[1]}", "", OK


def redis_agreement(hosts: list[dict], table: list[dict], redis_hosts: int | None = None) -> list[dict]:
    """Sentinels agree with each other and name the Redis host that says it is master."""
    extra: list[dict] = []
    address = {h["host"]: h.get("address") for h in hosts}
    masters = [r["host"] for r in table if r["component"] == "redis role" and r["state"] == "master"]
    views = [r for r in table if r["component"] == "sentinel master" and r["level"] == OK]
    named = {r["state"] for r in views}
    master_addresses = {f"{address.get(m)}" for m in masters if address.get(m)}
    for r in views:
        ip = r["state"].rsplit(":", 1)[0]
        owner = next((h for h, a in address.items() if a == ip and h in masters), None)
        if len(named) > 1:
            r["detail"], r["level"] = "sentinels disagree: " + ", ".join(sorted(named)), FAIL
        elif owner:
            r["detail"] = f"= {owner}, the Redis master"
        elif masters and ip not in master_addresses:
            r["detail"], r["level"] = f"not the Redis master ({', '.join(masters)})", FAIL
        else:
            r["detail"] = "the Redis master is outside this run"
    seen = [h for h in hosts if "redis" in h]
    if len(masters) > 1:
        extra.append(_row("cluster", "redis masters", str(len(masters)), "more than one: " + ", ".join(masters), FAIL))
    elif seen and not masters and len(seen) == int(redis_hosts or len(seen)):
        extra.append(_row("cluster", "redis masters", "0", "no Redis host says it is master", FAIL))
    return extra


def cluster_rows(cluster: dict, settings: dict, now: float) -> list[dict]:
    out: list[dict] = []
    signals = cluster.get("signals")
    if signals is not None:
        host = cluster.get("signals_host", "cluster")
        if signals.get("error"):
            out.append(_row(host, "celery queue", "unknown", str(signals["error"])[:120], FAIL))
        else:
            length = int(signals.get("queue_length") or 0)
            queues = ", ".join(f"{k}={v}" for k, v in sorted((signals.get("queues") or {}).items()))
            tasks = signals.get("tasks") or {}
            detail = f"{queues}; tasks queued {tasks.get('queued', '?')}, running {tasks.get('running', '?')}"
            level = WARN if length > int(settings["queue_max_length"]) else OK
            out.append(_row(host, "celery queue", f"{length} waiting", detail, level))
    backups = cluster.get("backups")
    if backups is not None:
        out.append(backup_row(backups, settings, now))
    alerts = cluster.get("alerts")
    if alerts is not None:
        out.append(alerts_row(alerts, settings))
    return out


def backup_row(backups: dict, settings: dict, now: float) -> dict:
    host = backups.get("host", "cluster")
    if backups.get("error"):
        return _row(host, "last backup", "unknown", str(backups["error"])[:120], FAIL)
    ids = sorted(i for i in backups.get("ids") or [] if is_backup_id(i))
    if not ids:
        return _row(host, "last backup", "none", "no backup yet (backup.yml)", FAIL if settings["backup_required"] else WARN)
    age = now - parse_id(ids[-1]).timestamp()
    limit = float(settings["backup_max_age_hours"]) * 3600
    level = OK if age <= limit else FAIL
    return _row(host, "last backup", f"{seconds(age)} ago", f"{ids[-1]}, {len(ids)} kept, limit {seconds(limit)}", level)


def alerts_row(alerts: dict, settings: dict) -> dict:
    host = alerts.get("host", "cluster")
    if alerts.get("error"):
        return _row(host, "alerts firing", "unknown", str(alerts["error"])[:120], FAIL)
    firing = [a for a in alerts.get("alerts") or [] if a.get("state") == "firing"]
    if not firing:
        return _row(host, "alerts firing", "0", "", OK)
    severe = set(settings["alert_fail_severities"])
    names = sorted({f"{a.get('labels', {}).get('alertname', '?')}({a.get('labels', {}).get('severity', '?')})" for a in firing})
    failing = sorted({a.get("labels", {}).get("alertname", "?") for a in firing if a.get("labels", {}).get("severity") in severe})
    if failing:  # the state names them: the failure message is made of host, component and state
        return _row(host, "alerts firing", f"{len(firing)}: {', '.join(failing)}"[:120], ", ".join(names)[:200], FAIL)
    return _row(host, "alerts firing", str(len(firing)), ", ".join(names)[:200], WARN)


def problems(table_rows: list[dict]) -> list[str]:
    """'host component (state)' for every failed row."""
    return [f"{r['host']} {r['component']} ({r['state']})" for r in table_rows if r["level"] == FAIL]


def table(table_rows: list[dict]) -> str:
    """The rows as aligned text, one line per row, a header and a summary line."""
    header = ("HOST", "COMPONENT", "STATE", "", "DETAIL")
    lines = [(r["host"], r["component"], r["state"], {OK: "ok", WARN: "WARN", FAIL: "FAIL"}[r["level"]], r["detail"]) for r in table_rows]
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(4)]
    out = []
    for line in [header, *lines]:
        cells = [str(c).ljust(w) for c, w in zip(line[:4], widths, strict=True)]
        out.append("  ".join([*cells, str(line[4])]).rstrip())
    failed = sum(1 for r in table_rows if r["level"] == FAIL)
    warned = sum(1 for r in table_rows if r["level"] == WARN)
    out.append(f"{len(table_rows)} checks: {len(table_rows) - failed - warned} ok, {warned} warning(s), {failed} unhealthy")
    return "\n".join(out)


def report(hosts: list[dict], cluster: dict | None, settings: dict | None = None, now: float | None = None) -> dict:
    """{'rows', 'table', 'problems', 'healthy'} for the hosts and the cluster."""
    found = rows(hosts, cluster, settings, now)
    bad = problems(found)
    return {"rows": found, "table": table(found), "problems": bad, "healthy": not bad}
