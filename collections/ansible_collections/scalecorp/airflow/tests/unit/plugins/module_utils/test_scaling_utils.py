from __future__ import annotations

import pytest

from ansible_collections.scalecorp.airflow.plugins.module_utils.scaling import (
    DEFAULT_POLICY,
    PolicyError,
    capacity_floor,
    decide,
    host_limit,
    merge_policy,
    next_state,
    place,
    utilisation,
)

NOW = 1_000_000.0
# Between the thresholds on every signal: neither up nor down.
MIDDLE = {
    "workers": 5,
    "queue_length": 20,
    "queued": 0,
    "running": 0,
    "oldest_queued_age_seconds": 90.0,
    "cpu_percent": 60.0,
    "memory_percent": 70.0,
    "time": NOW,
}
# Below every down-threshold.
IDLE = {
    "workers": 5,
    "queue_length": 0,
    "queued": 0,
    "running": 0,
    "oldest_queued_age_seconds": None,
    "cpu_percent": 10.0,
    "memory_percent": 20.0,
    "time": NOW,
}


def run(policy=None, state=None, **signals):
    return decide({**MIDDLE, **signals}, policy or {}, state or {})


def idle(policy=None, state=None, **signals):
    return decide({**IDLE, **signals}, policy or {}, state or {})


def test_seed_policy_defaults():
    p = DEFAULT_POLICY
    assert (p["min_workers"], p["max_workers"]) == (3, 50)
    assert (p["up_queue_length"], p["up_cpu_percent"], p["up_memory_percent"], p["up_wait_seconds"]) == (50, 75.0, 85.0, 120.0)
    assert (p["down_queue_length"], p["down_cpu_percent"], p["down_memory_percent"], p["down_wait_seconds"]) == (10, 45.0, 50.0, 60.0)


def test_middle_holds():
    d = run()
    assert d["action"] == "none" and d["target"] == 5
    assert d["rule"].startswith("hold: between the thresholds")


# Up: each signal at its threshold holds, just above scales up.
@pytest.mark.parametrize(
    ("signal", "at", "above", "words"),
    [
        ("queue_length", 50, 51, "queue length 51 > 50"),
        ("cpu_percent", 75.0, 75.1, "CPU 75.1% > 75%"),
        ("memory_percent", 85.0, 85.1, "memory 85.1% > 85%"),
        ("oldest_queued_age_seconds", 120.0, 120.1, "queue wait 120.1 s > 120 s"),
    ],
)
def test_each_up_threshold_both_sides(signal, at, above, words):
    assert run(**{signal: at})["action"] == "none"
    d = run(**{signal: above})
    assert d["action"] == "up" and d["target"] > 5
    assert d["rule"] == f"scale up: {words}"
    assert d["triggers"] == [words]


def test_any_up_signal_suffices_and_all_are_named():
    d = run(queue_length=60, cpu_percent=90.0)
    assert d["action"] == "up"
    assert d["triggers"] == ["queue length 60 > 50", "CPU 90% > 75%"]


# Down: each signal at its threshold holds (all must be below), just below with the others low scales down.
@pytest.mark.parametrize(
    ("signal", "at", "below"),
    [
        ("queue_length", 10, 9),
        ("cpu_percent", 45.0, 44.9),
        ("memory_percent", 50.0, 49.9),
        ("oldest_queued_age_seconds", 60.0, 59.9),
    ],
)
def test_each_down_threshold_both_sides(signal, at, below):
    held = idle(**{signal: at})
    assert held["action"] == "none"
    assert "hold: between the thresholds" in held["rule"]
    d = idle(**{signal: below})
    assert d["action"] == "down" and d["target"] == 3
    assert d["rule"].startswith("scale down: ")


def test_down_needs_every_signal_low():
    # Three of four low is not enough.
    d = idle(cpu_percent=50.0)
    assert d["action"] == "none"
    assert "CPU 50% >= 45%" in d["rule"]


def test_down_step_is_bounded():
    d = idle(workers=20)
    assert (d["action"], d["target"]) == ("down", 18)
    assert idle(workers=20, policy={"max_step_down": 5})["target"] == 15


def test_up_step_follows_the_queue_and_is_bounded():
    # 51 queued messages at 16 slots per worker: 4 more workers.
    assert run(queue_length=51)["target"] == 9
    # 10 000 messages: at most max_step_up (10) more.
    assert run(queue_length=10_000)["target"] == 15
    assert run(queue_length=10_000, policy={"max_step_up": 3})["target"] == 8
    # CPU alone, nothing waiting: one more; with 20 waiting: ceil(20 / 16) = 2 more.
    assert run(cpu_percent=99.0, queue_length=0)["target"] == 6
    assert run(cpu_percent=99.0, queue_length=20)["target"] == 7


def test_never_above_max_nor_capacity():
    d = run(workers=49, queue_length=1000)
    assert (d["action"], d["target"]) == ("up", 50)
    d = run(workers=50, queue_length=1000)
    assert d["action"] == "none" and "held at the ceiling 50" in d["rule"]
    d = run(workers=6, queue_length=1000, capacity=8)
    assert d["target"] == 8 and d["ceiling"] == 8


def test_never_below_min():
    d = idle(workers=3)
    assert d["action"] == "none" and "held at MIN 3" in d["rule"]
    assert idle(workers=4)["target"] == 3
    assert idle(workers=2, policy={"min_workers": 2})["action"] == "none"


def test_bounds_are_restored_even_in_cooldown():
    state = {"last_change_at": NOW - 1, "last_action": "down"}
    d = idle(workers=1, state=state)
    assert (d["action"], d["target"]) == ("up", 3)
    assert d["rule"] == "below MIN: 1 < 3"
    d = idle(workers=60, state=state)
    assert (d["action"], d["target"]) == ("down", 50)
    assert d["rule"] == "above MAX: 60 > 50"
    d = idle(workers=9, capacity=8, state=state)
    assert (d["action"], d["target"]) == ("down", 8)
    assert "what the hosts can take" in d["rule"]


# Capacity floor: ceil((running + queued) / concurrency).
def test_capacity_floor_values():
    assert capacity_floor(0, 0, 16) == 0
    assert capacity_floor(16, 0, 16) == 1
    assert capacity_floor(16, 1, 16) == 2
    assert capacity_floor(40, 40, 16) == 5


def test_floor_scales_up_at_its_boundary():
    # 80 tasks on 16 slots: floor 5 == current: hold; 81: floor 6 > 5: up to 6.
    assert run(running=80, queue_length=0)["action"] == "none"
    d = run(running=81, queue_length=0)
    assert (d["action"], d["target"], d["floor"]) == ("up", 6, 6)
    assert "capacity floor 6" in d["rule"]


def test_floor_stops_scale_down():
    # Idle by every signal, but 70 running tasks need 5 workers of 16 slots.
    d = idle(workers=5, running=70)
    assert d["action"] == "none" and "held at the capacity floor 5" in d["rule"]
    # Floor 4: down to 4 only, not to MIN 3.
    assert idle(workers=5, running=60)["target"] == 4


def test_up_target_reaches_the_floor_beyond_the_step():
    d = run(workers=3, running=400, policy={"max_step_up": 2})
    assert d["target"] == 25


# Cooldown.
def test_up_cooldown_boundaries():
    policy = {"up_cooldown_seconds": 120}
    d = run(queue_length=100, policy=policy, state={"last_change_at": NOW - 119, "last_action": "up"})
    assert d["action"] == "none" and d["held_by_cooldown"]
    assert d["cooldown_remaining_seconds"] == 1.0
    assert "held by the cooldown (1 s left)" in d["rule"]
    d = run(queue_length=100, policy=policy, state={"last_change_at": NOW - 120, "last_action": "up"})
    assert d["action"] == "up" and not d["held_by_cooldown"]


def test_down_cooldown_boundaries():
    policy = {"down_cooldown_seconds": 600}
    d = idle(policy=policy, state={"last_change_at": NOW - 599.5, "last_action": "up"})
    assert d["action"] == "none" and d["held_by_cooldown"]
    d = idle(policy=policy, state={"last_change_at": NOW - 600, "last_action": "up"})
    assert d["action"] == "down"


def test_no_state_means_no_cooldown():
    assert idle(state={})["action"] == "down"
    assert run(queue_length=100, state={})["action"] == "up"


def test_it_does_not_flap():
    # Up now, then the queue drains at once: the next decisions hold until the down cooldown ends.
    policy = {"up_cooldown_seconds": 60, "down_cooldown_seconds": 300}
    up = run(queue_length=100, policy=policy)
    state = next_state({}, up, NOW)
    assert state["last_action"] == "up" and state["last_change_at"] == NOW
    for t in (30, 120, 299):
        d = idle(workers=up["target"], time=NOW + t, policy=policy, state=state)
        assert d["action"] == "none" and d["held_by_cooldown"]
    assert idle(workers=up["target"], time=NOW + 300, policy=policy, state=state)["action"] == "down"


def test_next_state_keeps_last_change_on_hold():
    state = {"last_change_at": 5.0, "last_action": "down"}
    new = next_state(state, run(), NOW)
    assert new["last_change_at"] == 5.0 and new["last_action"] == "down"
    assert new["last_decision"]["action"] == "none" and new["last_decision_at"] == NOW


def test_none_wait_counts_as_zero():
    assert idle(oldest_queued_age_seconds=None)["action"] == "down"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"min_workers": 0}, "MIN workers must be at least 1"),
        ({"min_workers": 10, "max_workers": 5}, "MAX workers (5) is below MIN (10)"),
        ({"down_queue_length": 60}, "scale-down threshold of queue_length"),
        ({"worker_concurrency": 0}, "worker_concurrency must be at least 1"),
        ({"max_step_up": 0}, "step limits"),
        ({"up_cooldown_seconds": -1}, "cooldowns cannot be negative"),
    ],
)
def test_bad_policies_are_refused(policy, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        merge_policy(policy)


# Placement.
def test_host_limit_is_the_lower_of_memory_and_cores():
    assert host_limit(memory_mb=16384, cores=8, worker_memory_mb=4096, reserved_memory_mb=1024) == 3
    assert host_limit(memory_mb=65536, cores=4, worker_memory_mb=4096, workers_per_core=0.5) == 2
    assert host_limit(memory_mb=65536, cores=4, worker_memory_mb=4096, max_per_host=1) == 1
    assert host_limit(memory_mb=1024, cores=4, worker_memory_mb=4096, reserved_memory_mb=2048) == 0
    with pytest.raises(PolicyError):
        host_limit(memory_mb=1024, cores=1, worker_memory_mb=0)


def test_place_balances():
    hosts = {"a": {"limit": 10}, "b": {"limit": 10}, "c": {"limit": 10}}
    assert place(7, hosts) == {"a": 3, "b": 2, "c": 2}
    assert place(0, hosts) == {"a": 0, "b": 0, "c": 0}
    assert place(30, hosts) == {"a": 10, "b": 10, "c": 10}


def test_place_respects_limits():
    hosts = {"a": {"limit": 1}, "b": {"limit": 10}, "c": {"limit": 3}}
    assert place(8, hosts) == {"a": 1, "b": 4, "c": 3}


def test_place_keeps_existing_instances_on_ties():
    hosts = {"a": {"limit": 5, "current": 1}, "b": {"limit": 5, "current": 2}}
    assert place(3, hosts) == {"a": 1, "b": 2}
    assert place(1, hosts) == {"a": 0, "b": 1}


def test_place_refuses_too_many_and_negative():
    with pytest.raises(ValueError, match=r"9 instances are more than the hosts can take \(8: a 4, b 4\)"):
        place(9, {"a": {"limit": 4}, "b": {"limit": 4}})
    with pytest.raises(ValueError, match="negative"):
        place(-1, {"a": {"limit": 4}})


def test_utilisation_is_the_mean():
    assert utilisation([{"cpu_percent": 10, "memory_percent": 20}, {"cpu_percent": 30, "memory_percent": 41}]) == {
        "cpu_percent": 20.0,
        "memory_percent": 30.5,
    }
    assert utilisation([]) == {"cpu_percent": 0.0, "memory_percent": 0.0}


# The instances of one host.
def test_instance_plan_scale_up_and_down():
    from ansible_collections.scalecorp.airflow.plugins.module_utils.scaling import instance_plan

    assert instance_plan(3, [1], [1]) == {"start": [2, 3], "stop": [], "disable": []}
    assert instance_plan(1, [1, 2, 3], [1, 2, 3]) == {"start": [], "stop": [3, 2], "disable": []}
    assert instance_plan(2, [1, 2], [1, 2]) == {"start": [], "stop": [], "disable": []}
    # Running but not enabled: enabled; enabled but stopped beyond the count: disabled.
    assert instance_plan(2, [1, 2], [1]) == {"start": [2], "stop": [], "disable": []}
    assert instance_plan(1, [1], [1, 4]) == {"start": [], "stop": [], "disable": [4]}
    # A gap is filled from the bottom; a stray high instance is stopped.
    assert instance_plan(2, [2, 7], [2, 7]) == {"start": [1], "stop": [7], "disable": []}
    assert instance_plan(0, [1], [1]) == {"start": [], "stop": [1], "disable": []}
    with pytest.raises(ValueError):
        instance_plan(-1, [], [])


# plan(): what scale.yml does.
def _hosts(**current):
    return {
        name: {"limit": 4, "current": n, "cpu_percent": 10.0, "memory_percent": 20.0, "hostname": f"{name}.example"}
        for name, n in current.items()
    }


def test_plan_set_spreads_and_lists_changes():
    from ansible_collections.scalecorp.airflow.plugins.module_utils.scaling import plan

    out = plan("set", 5, _hosts(a=1, b=1), {}, {"min_workers": 2, "worker_concurrency": 2}, state={}, now=NOW)
    assert out["errors"] == [] and out["target"] == 5
    assert out["placement"] == {"a": 3, "b": 2}
    assert out["changes"] == {"a": [1, 3], "b": [1, 2]}
    assert out["decision"] is None
    assert out["table"][1].split()[:4] == ["a", "1", "->", "3"]


def test_plan_set_refuses_more_than_the_hosts_take():
    from ansible_collections.scalecorp.airflow.plugins.module_utils.scaling import plan

    out = plan("set", 9, _hosts(a=1, b=1), {}, {"min_workers": 2}, state={}, now=NOW)
    assert out["errors"] == [
        "workers=9 is more than the worker hosts can take (8: a 4, b 4; a host's limit comes from its memory and cores, "
        "see scaling_worker_memory_mb, scaling_workers_per_core)"
    ]
    assert out["changes"] == {}


def test_plan_status_changes_nothing_and_says_what_auto_would_do():
    from ansible_collections.scalecorp.airflow.plugins.module_utils.scaling import plan

    cluster = {
        "queue_length": 40,
        "queued": 40,
        "running": 4,
        "oldest_queued_age_seconds": 12.0,
        "running_by_host": {"a.example": 3, "b.example": 1},
    }
    policy = {"min_workers": 2, "worker_concurrency": 2, "up_queue_length": 20}
    out = plan("status", None, _hosts(a=1, b=1), cluster, policy, state={}, now=NOW)
    assert out["changes"] == {} and out["target"] == 2
    assert out["decision"]["action"] == "up" and out["decision"]["target"] == 8
    assert "3/2" in out["table"][1] and "1/2" in out["table"][2]
    assert out["table"][-1].startswith("auto would: up 2 -> 8 (scale up: queue length 40 > 20")
    auto = plan("auto", None, _hosts(a=1, b=1), cluster, policy, state={}, now=NOW)
    assert auto["placement"] == {"a": 4, "b": 4}


def test_plan_auto_hold_keeps_the_hosts_as_they_are():
    from ansible_collections.scalecorp.airflow.plugins.module_utils.scaling import plan

    # Unbalanced by hand (3 + 1), idle, at MIN 4: hold, no rebalancing.
    out = plan("auto", None, _hosts(a=3, b=1), {"queue_length": 0}, {"min_workers": 4}, state={}, now=NOW)
    assert out["decision"]["action"] == "none" and out["changes"] == {}
