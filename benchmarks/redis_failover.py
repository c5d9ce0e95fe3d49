#!/usr/bin/env python3
"""Failover drills against the Redis tier of the molecule scenario `redis`.

Run after `molecule converge -s redis` (the containers mol-rd1..3 up):

    .venv/bin/python benchmarks/redis_failover.py [--drills 3]

Each drill freezes the current master's host with `docker pause` (nothing can
restart it, like a hung VM), while a client writes numbered messages through
the Sentinels (as Celery does), then measures:

  reported   seconds until a Sentinel names another master
  writable   seconds until a write to the master the Sentinels name succeeds
  client     seconds until the client writing through the Sentinels (redis-py
             Sentinel, 0.5 s timeout towards Sentinels, 1 s towards Redis, no
             retries unless --sentinel-retries) gets its first write acknowledged
  rejoined   seconds after `docker unpause` until the old master is a
             connected replica of the new one
  old-as-M   seconds after the unpause during which the old master still
             answered ROLE with "master" (what a client connected to it
             directly would see; clients asking the Sentinels do not)
  stale      Sentinel answers naming the old master after the unpause
  acked/lost writes acknowledged to the client, and how many of them are
             missing from the final master

Drills start --interval seconds apart (default 65): a Sentinel that voted in
a failover does not start another for the same master within twice the
failover-timeout (2 x 30 s), so back-to-back drills measure that wait, not
the failure detection (measured: 13.7 s instead of 7 s to "reported").

Never part of pass/fail; touches only the scenario's containers.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

MASTER_NAME = "airflow"
QUEUE = "bench:failover"


def container_ip(name: str) -> str:
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return subprocess.run(["docker", "inspect", "-f", fmt, name], check=True, capture_output=True, text=True).stdout.strip()


def find_secrets(path: str | None) -> dict:
    if not path:
        candidates = sorted(glob.glob(os.path.expanduser("~/.ansible/tmp/molecule.*.redis/secrets.yml")), key=os.path.getmtime)
        if not candidates:
            sys.exit("no secrets file: run `molecule converge -s redis` first, or give --secrets")
        path = candidates[-1]
    return yaml.safe_load(Path(path).read_text())["scalecorp_secrets"]


class Writer(threading.Thread):
    """A client that pushes numbered messages through the Sentinels, like Celery."""

    def __init__(self, sentinel: Sentinel):
        super().__init__(daemon=True)
        self.master = sentinel.master_for(MASTER_NAME, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
        self.acked: list[int] = []
        self.acked_at: list[float] = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                self.master.rpush(QUEUE, n)
                self.acked.append(n)
                self.acked_at.append(time.monotonic())
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, redis.ResponseError):
                self.errors += 1
                time.sleep(0.05)
            time.sleep(0.01)


def ask(client: redis.Redis, *cmd):
    try:
        return client.execute_command(*cmd)
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return None


def as_text(v):
    return v.decode() if isinstance(v, bytes) else v


def sentinel_master(client: redis.Redis) -> str | None:
    reply = ask(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
    return as_text(reply[0]) if reply else None


def role(client: redis.Redis) -> list | None:
    reply = ask(client, "ROLE")
    return [as_text(x) if not isinstance(x, list) else x for x in reply] if reply else None


def wait_settled(sentinels: dict, nodes: dict, timeout: float = 90) -> str:
    """Every Sentinel names the same master, and every other node replicates it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = {sentinel_master(c) for c in sentinels.values()}
        if len(answers) == 1 and None not in answers:
            master_ip = answers.pop()
            ok = True
            for ip, client in nodes.items():
                r = role(client)
                if ip == master_ip:
                    ok &= bool(r) and r[0] == "master"
                else:
                    ok &= bool(r) and r[0] == "slave" and r[1] == master_ip and r[3] == "connected"
            if ok:
                return master_ip
        time.sleep(0.5)
    sys.exit("the cluster did not settle within 90 s")


def drill(n: int, names: dict, sentinels: dict, nodes: dict, sentinel: Sentinel, nodes_pw: str) -> dict:  # noqa: PLR0917
    old_ip = wait_settled(sentinels, nodes)
    old_name = names[old_ip]
    nodes[old_ip].delete(QUEUE)
    writer = Writer(sentinel)
    writer.start()
    time.sleep(1.0)
    others = {ip: c for ip, c in sentinels.items() if ip != old_ip}
    t0 = time.monotonic()
    subprocess.run(["docker", "pause", old_name], check=True, capture_output=True)
    reported = writable = None
    new_ip = None
    try:
        while time.monotonic() - t0 < 60 and writable is None:
            if reported is None:
                for c in others.values():
                    answer = sentinel_master(c)
                    if answer and answer != old_ip:
                        reported, new_ip = time.monotonic() - t0, answer
                        break
            if reported is not None:
                probe = redis.Redis(host=new_ip, port=6379, password=nodes_pw, socket_timeout=0.5)
                try:
                    probe.set("bench:probe", n)
                    writable = time.monotonic() - t0
                except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, redis.ResponseError):
                    pass
                finally:
                    probe.close()
            time.sleep(0.1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(t > t0 + (reported or 0) for t in writer.acked_at):
            time.sleep(0.1)
        time.sleep(2.0)  # some writes on the new master before the old one returns
    finally:
        subprocess.run(["docker", "unpause", old_name], check=True, capture_output=True)
    t1 = time.monotonic()
    stale = 0
    old_as_master = 0.0
    rejoined = None
    while time.monotonic() - t1 < 60:
        stale += sum(1 for c in sentinels.values() if sentinel_master(c) == old_ip)
        r = role(nodes[old_ip])
        if r and r[0] == "master":
            old_as_master = time.monotonic() - t1
        if r and r[0] == "slave" and r[1] == new_ip and r[3] == "connected":
            rejoined = time.monotonic() - t1
            break
        time.sleep(0.1)
    time.sleep(1.0)
    writer.stop.set()
    writer.join(5)
    final_ip = wait_settled(sentinels, nodes)
    stored = {int(x) for x in nodes[final_ip].lrange(QUEUE, 0, -1)}
    lost = sum(1 for x in writer.acked if x not in stored)
    after = [t - t0 for t in writer.acked_at if t > t0 + (reported or 0)]
    return {
        "drill": n,
        "paused": old_name,
        "new": names.get(new_ip or "", "-"),
        "reported": reported,
        "writable": writable,
        "client": after[0] if after else None,
        "rejoined": rejoined,
        "old-as-M": old_as_master,
        "stale": stale,
        "acked": len(writer.acked),
        "lost": lost,
    }


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drills", type=int, default=3)
    parser.add_argument("--interval", type=float, default=65.0, help="seconds between the starts of two drills")
    parser.add_argument("--hosts", default="mol-rd1,mol-rd2,mol-rd3", help="Sentinel hosts (containers)")
    parser.add_argument("--redis-hosts", default="mol-rd1,mol-rd2", help="Redis hosts (containers)")
    parser.add_argument(
        "--sentinel-retries",
        action="store_true",
        help="keep redis-py's default retries (with backoff) on the client's Sentinel connections",
    )
    parser.add_argument("--secrets", help="the scenario's secrets.yml (default: the newest molecule one)")
    args = parser.parse_args()

    secrets = find_secrets(args.secrets)
    app_pw, sentinel_pw = secrets["redis_password"], secrets["redis_sentinel_password"]
    names = {container_ip(h): h for h in args.hosts.split(",") + args.redis_hosts.split(",")}
    sentinels = {
        container_ip(h): redis.Redis(host=container_ip(h), port=26379, password=sentinel_pw, socket_timeout=0.5)
        for h in args.hosts.split(",")
    }
    # The application user (ROLE, LRANGE, DEL): what a client may do.
    nodes = {
        container_ip(h): redis.Redis(host=container_ip(h), port=6379, password=app_pw, socket_timeout=0.5)
        for h in args.redis_hosts.split(",")
    }
    sentinel_kwargs = {"password": sentinel_pw, "socket_timeout": 0.5}
    if not args.sentinel_retries:
        sentinel_kwargs["retry"] = Retry(NoBackoff(), 0)
    sentinel = Sentinel([(ip, 26379) for ip in sentinels], sentinel_kwargs=sentinel_kwargs, password=app_pw, socket_timeout=1)

    rows = []
    started = time.monotonic()
    for i in range(args.drills):
        if i:
            time.sleep(max(0.0, started + args.interval - time.monotonic()))
        started = time.monotonic()
        rows.append(drill(i + 1, names, sentinels, nodes, sentinel, app_pw))
    cols = ["drill", "paused", "new", "reported", "writable", "client", "rejoined", "old-as-M", "stale", "acked", "lost"]
    print(
        f"Redis failover: docker pause of the master, down-after-milliseconds 5000, {len(sentinels)} Sentinels, "
        f"drills {args.interval:.0f} s apart"
    )
    print("  ".join(f"{c:>9}" for c in cols))
    for r in rows:
        print("  ".join(f"{fmt(r[c]):>9}" for c in cols))
    for key in ("reported", "writable", "client", "rejoined"):
        vals = [r[key] for r in rows if r[key] is not None]
        if vals:
            print(f"{key:>9}: median {statistics.median(vals):.1f} s, max {max(vals):.1f} s")


if __name__ == "__main__":
    main()
