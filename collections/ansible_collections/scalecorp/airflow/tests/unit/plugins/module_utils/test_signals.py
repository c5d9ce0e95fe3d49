from __future__ import annotations

import sys
import types

import pytest

from ansible_collections.scalecorp.airflow.plugins.module_utils import signals
from ansible_collections.scalecorp.airflow.plugins.module_utils.signals import (
    SignalError,
    cpu_percent_between,
    host_utilisation,
    memory_percent_of,
    queue_keys,
    read_cpu_times,
    read_meminfo,
)

STAT = "cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n"
MEMINFO = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    4096000 kB\nBuffers:           10 kB\n"


def fake_proc(tmp_path, **cpu):
    (tmp_path / "stat").write_text(STAT.format(**cpu))
    (tmp_path / "meminfo").write_text(MEMINFO)
    return str(tmp_path)


def test_imports_without_redis_or_psycopg2(monkeypatch):
    import importlib.util

    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    spec = importlib.util.spec_from_file_location("signals_alone", signals.__file__)
    alone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alone)
    assert callable(alone.queue_lengths) and callable(alone.task_counts) and callable(alone.host_utilisation)
    with pytest.raises(alone.SignalError, match="the psycopg2 Python package is required"):
        alone.task_counts("dbname=airflow")


def test_cpu_times_and_percent(tmp_path):
    proc = fake_proc(tmp_path, user=100, system=50, idle=800, iowait=50)
    assert read_cpu_times(proc) == (150, 1000)
    assert cpu_percent_between((150, 1000), (225, 1100)) == 75.0
    assert cpu_percent_between((150, 1000), (150, 1000)) == 0.0


def test_memory_percent(tmp_path):
    info = read_meminfo(fake_proc(tmp_path, user=1, system=1, idle=1, iowait=0))
    assert info["MemTotal"] == 16384000
    assert memory_percent_of(info) == 75.0
    # Without MemAvailable: free + buffers + cached.
    assert memory_percent_of({"MemTotal": 1000, "MemFree": 500}) == 50.0
    with pytest.raises(SignalError):
        memory_percent_of({})


def test_host_utilisation_samples_proc(tmp_path):
    proc = fake_proc(tmp_path, user=100, system=0, idle=900, iowait=0)
    result = host_utilisation(interval=0, proc=proc)
    assert result["cpu_percent"] == 0.0  # the same file twice: no time passed
    assert result["memory_percent"] == 75.0
    assert result["memory_mb"] == 16000
    assert result["cores"] >= 1


def test_host_utilisation_on_this_machine():
    result = host_utilisation(interval=0.1)
    assert set(result) == {"cpu_percent", "memory_percent", "cores", "memory_mb"}
    assert 0.0 <= result["cpu_percent"] <= 100.0 and 0.0 < result["memory_percent"] <= 100.0


def test_queue_keys_follow_kombu_priorities():
    assert queue_keys("default") == ["default", "default\x06\x163", "default\x06\x166", "default\x06\x169"]


class FakePipeline:
    def __init__(self, lists):
        self.lists, self.calls = lists, []

    def llen(self, key):
        self.calls.append(key)

    def execute(self):
        return [self.lists.get(k, 0) for k in self.calls]


def install_fake_redis(monkeypatch, lists, seen, error=None):
    redis = types.ModuleType("redis")
    sentinel_mod = types.ModuleType("redis.sentinel")
    exceptions = types.ModuleType("redis.exceptions")

    class RedisError(Exception):
        pass

    class Sentinel:
        def __init__(self, sentinels, sentinel_kwargs=None, **kwargs):
            seen.update(sentinels=sentinels, sentinel_kwargs=sentinel_kwargs, kwargs=kwargs)

        def master_for(self, name, **kwargs):
            seen["master_name"] = name
            if error:
                raise RedisError(error)
            pipe = FakePipeline(lists)
            return types.SimpleNamespace(pipeline=lambda transaction=False: pipe)

    sentinel_mod.Sentinel = Sentinel
    exceptions.RedisError = RedisError
    monkeypatch.setitem(sys.modules, "redis", redis)
    monkeypatch.setitem(sys.modules, "redis.sentinel", sentinel_mod)
    monkeypatch.setitem(sys.modules, "redis.exceptions", exceptions)


def test_queue_lengths_sums_priority_lists_on_the_sentinel_master(monkeypatch):
    seen = {}
    install_fake_redis(monkeypatch, {"default": 40, "default\x06\x163": 2, "other": 1}, seen)
    result = signals.queue_lengths(
        [("10.0.0.1", 26379)], "airflow", "pw", "spw", ["default", "other", "empty"], sentinel_username="sentinel"
    )
    assert result == {"default": 42, "other": 1, "empty": 0}
    assert seen["master_name"] == "airflow"
    assert seen["sentinel_kwargs"]["password"] == "spw" and seen["sentinel_kwargs"]["username"] == "sentinel"
    assert seen["kwargs"]["password"] == "pw" and seen["kwargs"]["username"] is None


def test_queue_lengths_failure_names_the_sentinels(monkeypatch):
    install_fake_redis(monkeypatch, {}, {}, error="No master found for 'airflow'")
    with pytest.raises(SignalError, match=r"through sentinels 10.0.0.1:26379, 10.0.0.2:26379: No master found"):
        signals.queue_lengths([("10.0.0.1", 26379), ("10.0.0.2", 26379)], "airflow", None, None, ["default"])


def install_fake_psycopg2(monkeypatch, row, seen, connect_error=None):
    mod = types.ModuleType("psycopg2")

    class Error(Exception):
        pass

    class Cursor:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def execute(self, sql, args=None):
            seen.setdefault("sql", []).append(sql)

        def fetchone(self):
            return row

    class Conn:
        def set_session(self, **kw):
            seen["session"] = kw

        def cursor(self):
            return Cursor()

        def close(self):
            seen["closed"] = True

    def connect(dsn, connect_timeout=None):
        seen["dsn"] = dsn
        if connect_error:
            raise Error(connect_error)
        return Conn()

    mod.Error = Error
    mod.connect = connect
    monkeypatch.setitem(sys.modules, "psycopg2", mod)


def test_task_counts(monkeypatch):
    seen = {}
    install_fake_psycopg2(monkeypatch, (7, 4, 130.5), seen)
    assert signals.task_counts("dbname=airflow user=airflow_monitor") == {"queued": 7, "running": 4, "oldest_queued_age_seconds": 130.5}
    assert seen["session"] == {"readonly": True, "autocommit": True} and seen["closed"]
    assert "state IN ('queued', 'running')" in seen["sql"][-1]


def test_task_counts_nothing_queued(monkeypatch):
    install_fake_psycopg2(monkeypatch, (0, 0, None), {})
    assert signals.task_counts("x") == {"queued": 0, "running": 0, "oldest_queued_age_seconds": None}


def test_task_counts_connection_failure_shows_no_password(monkeypatch):
    install_fake_psycopg2(
        monkeypatch, None, {}, connect_error='connection to server at "10.0.0.5" failed: password authentication failed\nDETAIL: x'
    )
    with pytest.raises(SignalError, match="cannot connect to the metadata database: connection to server") as exc:
        signals.task_counts("password=secret")
    assert "secret" not in str(exc.value) and "DETAIL" not in str(exc.value)
