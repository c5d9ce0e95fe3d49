# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Worker scaling as pure functions: the autoscaling decision and the placement.

`decide(signals, policy, state)` says how many Celery worker instances the
cluster should run now, and which rule says so. It reads no clock and no host:
the time is part of the signals, the last change part of the state, so every
boundary can be tested.

The combination rule (docs/scaling.md):

1. Out of bounds first: fewer than MIN instances -> up to MIN; more than MAX
   (or than the hosts can take) -> down to it. Cooldown does not hold these.
2. Scale up when ANY up-signal is above its threshold (queue length, CPU,
   memory, queue wait; each strictly greater) or the instances are below the
   capacity floor ceil((running + queued) / worker_concurrency).
   Step: enough instances for the queued messages, ceil(queue / concurrency),
   at least 1, at most `max_step_up`; never less than the floor.
3. Otherwise scale down only when ALL down-signals are below their thresholds
   (strictly less): by `max_step_down`, never below MIN nor the floor.
4. Otherwise hold.

A change is held back while the cooldown since the last change runs:
`up_cooldown_seconds` for a scale-up, `down_cooldown_seconds` for a scale-down.

`place(n, hosts)` spreads n instances over hosts as evenly as their limits
allow; `host_limit()` is a host's limit from its memory and cores.
"""

from __future__ import annotations

import math

DEFAULT_POLICY = {
    "min_workers": 3,
    "max_workers": 50,
    "up_queue_length": 50,
    "up_cpu_percent": 75.0,
    "up_memory_percent": 85.0,
    "up_wait_seconds": 120.0,
    "down_queue_length": 10,
    "down_cpu_percent": 45.0,
    "down_memory_percent": 50.0,
    "down_wait_seconds": 60.0,
    "worker_concurrency": 16,
    "up_cooldown_seconds": 120.0,
    "down_cooldown_seconds": 600.0,
    "max_step_up": 10,
    "max_step_down": 2,
}

UP, DOWN, NONE = "up", "down", "none"


class PolicyError(ValueError):
    """A policy that cannot be applied (for example MIN above MAX)."""


def merge_policy(policy: dict | None) -> dict:
    """DEFAULT_POLICY with `policy` applied on top, checked for consistency."""
    merged = dict(DEFAULT_POLICY)
    merged.update({k: v for k, v in (policy or {}).items() if v is not None})
    problems = policy_problems(merged)
    if problems:
        raise PolicyError("; ".join(problems))
    return merged


def policy_problems(policy: dict) -> list[str]:
    """What makes a policy unusable, as sentences; empty when it is fine."""
    p = policy
    problems = []
    if int(p["min_workers"]) < 1:
        problems.append(f"MIN workers must be at least 1 (is {p['min_workers']})")
    if int(p["max_workers"]) < int(p["min_workers"]):
        problems.append(f"MAX workers ({p['max_workers']}) is below MIN ({p['min_workers']})")
    if int(p["worker_concurrency"]) < 1:
        problems.append("worker_concurrency must be at least 1")
    if int(p["max_step_up"]) < 1 or int(p["max_step_down"]) < 1:
        problems.append("the step limits must be at least 1")
    for name in ("queue_length", "cpu_percent", "memory_percent", "wait_seconds"):
        if float(p[f"down_{name}"]) > float(p[f"up_{name}"]):
            problems.append(f"scale-down threshold of {name} ({p[f'down_{name}']}) is above the scale-up threshold ({p[f'up_{name}']})")
    if float(p["up_cooldown_seconds"]) < 0 or float(p["down_cooldown_seconds"]) < 0:
        problems.append("cooldowns cannot be negative")
    return problems


def capacity_floor(running: int, queued: int, concurrency: int) -> int:
    """Instances needed to give every running and queued task a slot."""
    return math.ceil((max(0, running) + max(0, queued)) / max(1, concurrency))


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def decide(signals: dict, policy: dict, state: dict | None = None) -> dict:  # noqa: PLR0911 - one return per rule
    """The number of worker instances the cluster should run now.

    signals: {'workers': current instances, 'queue_length': messages waiting in
      the Celery queues, 'queued', 'running': task instances,
      'oldest_queued_age_seconds': float or None, 'cpu_percent',
      'memory_percent': worker hosts' utilisation (mean), 'capacity': optional
      instances the hosts can take, 'time': epoch seconds of the collection}.
    policy: see DEFAULT_POLICY (missing keys take their default).
    state: {'last_change_at': epoch seconds, 'last_action': 'up'|'down'} or empty.

    Returns {'action': 'up'|'down'|'none', 'current', 'target', 'rule' (the rule
    that decided, in words), 'triggers' (every up- or down-condition that held),
    'floor', 'ceiling', 'cooldown_remaining_seconds', 'held_by_cooldown'}.
    """
    p = merge_policy(policy)
    state = state or {}
    current = int(signals["workers"])
    queue = int(signals.get("queue_length") or 0)
    queued = int(signals.get("queued") or 0)
    running = int(signals.get("running") or 0)
    wait = float(signals.get("oldest_queued_age_seconds") or 0.0)
    cpu = float(signals.get("cpu_percent") or 0.0)
    mem = float(signals.get("memory_percent") or 0.0)
    now = float(signals.get("time") or 0.0)

    concurrency = int(p["worker_concurrency"])
    minimum, maximum = int(p["min_workers"]), int(p["max_workers"])
    capacity = signals.get("capacity")
    ceiling = maximum if capacity is None else max(0, min(maximum, int(capacity)))
    floor = capacity_floor(running, queued, concurrency)

    last = state.get("last_change_at")
    since = None if last is None else max(0.0, now - float(last))

    def cooldown_left(seconds: float) -> float:
        return 0.0 if since is None else max(0.0, float(seconds) - since)

    def result(action: str, target: int, rule: str, triggers: list[str], *, left: float = 0.0, held: bool = False) -> dict:
        return {
            "action": action,
            "current": current,
            "target": target,
            "rule": rule,
            "triggers": triggers,
            "floor": floor,
            "ceiling": ceiling,
            "cooldown_remaining_seconds": round(left, 1),
            "held_by_cooldown": held,
        }

    # 1. Bounds.
    if current < minimum <= ceiling:
        return result(UP, minimum, f"below MIN: {current} < {minimum}", [f"workers {current} < MIN {minimum}"])
    if current > ceiling:
        what = "MAX" if ceiling == maximum else "what the hosts can take"
        return result(DOWN, ceiling, f"above {what}: {current} > {ceiling}", [f"workers {current} > {what} {ceiling}"])

    # 2. Up: any condition.
    up = []
    if queue > p["up_queue_length"]:
        up.append(f"queue length {queue} > {_fmt(p['up_queue_length'])}")
    if cpu > p["up_cpu_percent"]:
        up.append(f"CPU {_fmt(cpu)}% > {_fmt(p['up_cpu_percent'])}%")
    if mem > p["up_memory_percent"]:
        up.append(f"memory {_fmt(mem)}% > {_fmt(p['up_memory_percent'])}%")
    if wait > p["up_wait_seconds"]:
        up.append(f"queue wait {_fmt(round(wait, 1))} s > {_fmt(p['up_wait_seconds'])} s")
    if current < floor:
        up.append(f"workers {current} < capacity floor {floor} (running {running} + queued {queued}, {concurrency} slots each)")
    if up:
        step = min(int(p["max_step_up"]), max(1, math.ceil(queue / concurrency)))
        target = min(ceiling, max(current + step, floor))
        rule = "scale up: " + "; ".join(up)
        if target <= current:
            return result(NONE, current, f"{rule}; held at the ceiling {ceiling}", up)
        left = cooldown_left(p["up_cooldown_seconds"])
        if left > 0:
            return result(NONE, current, f"{rule}; held by the cooldown ({left:.0f} s left)", up, left=left, held=True)
        return result(UP, target, rule, up)

    # 3. Down: all conditions.
    checks = [
        (
            queue < p["down_queue_length"],
            f"queue length {queue} < {_fmt(p['down_queue_length'])}",
            f"queue length {queue} >= {_fmt(p['down_queue_length'])}",
        ),
        (
            cpu < p["down_cpu_percent"],
            f"CPU {_fmt(cpu)}% < {_fmt(p['down_cpu_percent'])}%",
            f"CPU {_fmt(cpu)}% >= {_fmt(p['down_cpu_percent'])}%",
        ),
        (
            mem < p["down_memory_percent"],
            f"memory {_fmt(mem)}% < {_fmt(p['down_memory_percent'])}%",
            f"memory {_fmt(mem)}% >= {_fmt(p['down_memory_percent'])}%",
        ),
        (
            wait < p["down_wait_seconds"],
            f"queue wait {_fmt(round(wait, 1))} s < {_fmt(p['down_wait_seconds'])} s",
            f"queue wait {_fmt(round(wait, 1))} s >= {_fmt(p['down_wait_seconds'])} s",
        ),
    ]
    blocking = [no for ok, _yes, no in checks if not ok]
    if blocking:
        return result(NONE, current, "hold: between the thresholds (" + "; ".join(blocking) + ")", [])
    down = [yes for _ok, yes, _no in checks]
    lowest = max(minimum, floor)
    target = max(lowest, current - int(p["max_step_down"]))
    rule = "scale down: " + "; ".join(down)
    if target >= current:
        at = f"MIN {minimum}" if lowest == minimum else f"the capacity floor {floor}"
        return result(NONE, current, f"{rule}; held at {at}", down)
    left = cooldown_left(p["down_cooldown_seconds"])
    if left > 0:
        return result(NONE, current, f"{rule}; held by the cooldown ({left:.0f} s left)", down, left=left, held=True)
    return result(DOWN, target, rule, down)


def next_state(state: dict | None, decision: dict, now: float) -> dict:
    """The state to keep after a decision was applied at `now`.

    Any change of the count (automatic, or a count set by hand) starts the cooldown.
    """
    new = dict(state or {})
    if decision["action"] != NONE and decision["target"] != decision["current"]:
        new["last_change_at"] = float(now)
        new["last_action"] = decision["action"]
    new["last_decision"] = {k: decision[k] for k in ("action", "current", "target", "rule")}
    new["last_decision_at"] = float(now)
    return new


def host_limit(
    memory_mb: int,
    cores: int,
    worker_memory_mb: int,
    *,
    reserved_memory_mb: int = 0,
    workers_per_core: float = 1.0,
    max_per_host: int | None = None,
) -> int:
    """Worker instances a host can take: by memory and by cores, the lower.

    memory: (memory_mb - reserved_memory_mb) // worker_memory_mb;
    cores: floor(cores * workers_per_core); optionally capped at max_per_host.
    """
    if worker_memory_mb <= 0:
        raise PolicyError("worker_memory_mb must be positive")
    by_memory = max(0, (int(memory_mb) - int(reserved_memory_mb)) // int(worker_memory_mb))
    by_cores = max(0, math.floor(int(cores) * float(workers_per_core) + 1e-9))
    limit = min(by_memory, by_cores)
    if max_per_host is not None and int(max_per_host) > 0:
        limit = min(limit, int(max_per_host))
    return int(limit)


def place(n: int, hosts: dict[str, dict]) -> dict[str, int]:
    """Spread n instances over hosts, balanced within each host's limit.

    hosts: name -> {'limit': int, 'current': int (optional)}. Instances go one
    at a time to the host with the fewest so far that has room; among equals,
    the host already running more keeps them (fewer starts and stops), then
    the name decides, so the result is deterministic. Raises ValueError when n
    is negative or more than the hosts can take together.
    """
    if n < 0:
        raise ValueError(f"cannot place a negative number of instances ({n})")
    capacity = sum(max(0, int(h.get("limit", 0))) for h in hosts.values())
    if n > capacity:
        raise ValueError(
            f"{n} instances are more than the hosts can take ({capacity}: "
            + ", ".join(f"{name} {max(0, int(h.get('limit', 0)))}" for name, h in sorted(hosts.items()))
            + ")"
        )
    counts = {name: 0 for name in hosts}
    for _instance in range(n):
        candidates = [name for name in sorted(hosts) if counts[name] < int(hosts[name].get("limit", 0))]
        best = min(candidates, key=lambda name: (counts[name], -int(hosts[name].get("current", 0)), name))
        counts[best] += 1
    return counts


def utilisation(hosts: list[dict]) -> dict:
    """Cluster CPU and memory utilisation: the mean over the worker hosts."""
    if not hosts:
        return {"cpu_percent": 0.0, "memory_percent": 0.0}
    return {
        "cpu_percent": round(sum(float(h["cpu_percent"]) for h in hosts) / len(hosts), 1),
        "memory_percent": round(sum(float(h["memory_percent"]) for h in hosts) / len(hosts), 1),
    }


def instance_plan(count: int, active: list[int], enabled: list[int]) -> dict:
    """What to do on one host to run instances 1..count of a template unit.

    active: instance numbers running (or starting, or stopping) now; enabled:
    instance numbers enabled at boot. Returns {'start': numbers to enable and
    start, 'stop': numbers to disable and stop (highest first), 'disable':
    numbers only to disable (not running)}. Instances 1..count that run but are
    not enabled are enabled (listed in 'start'); so the host runs the same set
    after a reboot.
    """
    if count < 0:
        raise ValueError(f"the instance count cannot be negative ({count})")
    wanted = set(range(1, count + 1))
    running, at_boot = set(active), set(enabled)
    start = sorted(n for n in wanted if n not in running or n not in at_boot)
    stop = sorted((n for n in running if n not in wanted), reverse=True)
    disable = sorted((n for n in at_boot if n not in wanted and n not in running), reverse=True)
    return {"start": start, "stop": stop, "disable": disable}


def plan(mode: str, workers: int | None, hosts: dict[str, dict], cluster: dict, policy: dict, *, state: dict | None, now: float) -> dict:
    """What scale.yml does: the target per host, the decision, and the status table.

    mode: 'set' (workers given), 'status' or 'auto'. hosts: name -> {'limit',
    'current' (instances), 'cpu_percent', 'memory_percent', 'busy' (running
    tasks)}. cluster: {'queue_length', 'queued', 'running',
    'oldest_queued_age_seconds'} (empty in set mode). Returns {'errors': [...],
    'current', 'capacity', 'target', 'placement' {host: n}, 'changes' {host:
    [from, to]}, 'decision' (status/auto), 'table' (lines)}.
    """
    p = merge_policy(policy)
    concurrency = int(p["worker_concurrency"])
    by_host = (cluster or {}).get("running_by_host") or {}
    hosts = {n: {**h, "busy": int(h.get("busy", by_host.get(h.get("hostname") or n, by_host.get(n, 0))))} for n, h in hosts.items()}
    cluster = {k: v for k, v in (cluster or {}).items() if k != "running_by_host"}
    current = sum(int(h.get("current", 0)) for h in hosts.values())
    capacity = sum(max(0, int(h.get("limit", 0))) for h in hosts.values())
    limits = ", ".join(f"{name} {int(h.get('limit', 0))}" for name, h in sorted(hosts.items()))
    out: dict = {"errors": [], "current": current, "capacity": capacity, "decision": None, "table": []}

    if mode == "set":
        target = int(workers or 0)
        if target > capacity:
            out["errors"].append(
                f"workers={target} is more than the worker hosts can take ({capacity}: {limits}; a host's limit comes from its "
                "memory and cores, see scaling_worker_memory_mb, scaling_workers_per_core)"
            )
    else:
        signals = dict(cluster)
        signals.update(utilisation(list(hosts.values())))
        signals.update({"workers": current, "capacity": capacity, "time": now})
        decision = decide(signals, p, state or {})
        out["decision"] = decision
        target = decision["target"] if mode == "auto" else current

    if out["errors"]:
        out.update(target=current, placement={n: int(h.get("current", 0)) for n, h in hosts.items()}, changes={})
        return out
    # A hold keeps the hosts as they are; a set or a change is placed afresh.
    keep = target == current and mode != "set"
    placement = {n: int(h.get("current", 0)) for n, h in hosts.items()} if keep else place(target, hosts)
    out["target"] = target
    out["placement"] = placement
    out["changes"] = {
        n: [int(hosts[n].get("current", 0)), placement[n]] for n in sorted(hosts) if int(hosts[n].get("current", 0)) != placement[n]
    }

    width = max([len("host")] + [len(n) for n in hosts])
    table = [f"{'host':<{width}}  instances  limit  busy/total slots  cpu %  mem %"]
    for name in sorted(hosts):
        h = hosts[name]
        inst = int(h.get("current", 0))
        after = f"{inst} -> {placement[name]}" if placement[name] != inst else str(inst)
        slots = f"{int(h.get('busy', 0))}/{inst * concurrency}"
        cpu, mem = float(h.get("cpu_percent", 0)), float(h.get("memory_percent", 0))
        table.append(f"{name:<{width}}  {after:>9}  {int(h.get('limit', 0)):>5}  {slots:>16}  {cpu:>5.1f}  {mem:>5.1f}")
    busy = sum(int(h.get("busy", 0)) for h in hosts.values())
    table.append(f"{'cluster':<{width}}  {current:>9}  {capacity:>5}  {f'{busy}/{current * concurrency}':>16}")
    if out["decision"] is not None:
        d = out["decision"]
        wait = cluster.get("oldest_queued_age_seconds")
        table.append(
            f"queue length {int(cluster.get('queue_length') or 0)}, queued tasks {int(cluster.get('queued') or 0)}, "
            f"running {int(cluster.get('running') or 0)}, oldest queued {'-' if wait is None else f'{float(wait):.0f} s'}, "
            f"cpu {signals['cpu_percent']:.1f} %, memory {signals['memory_percent']:.1f} % (mean of the worker hosts)"
        )
        table.append(f"auto would: {d['action']} {d['current']} -> {d['target']} ({d['rule']})")
    out["table"] = table
    return out
