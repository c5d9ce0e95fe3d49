from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

import pytest

from ansible_collections.scalecorp.airflow.plugins.module_utils import backup as b

UTC = dt.UTC


def make_backup(root, id_="20261126T023000Z", counts=None):
    directory = root / id_
    (directory / "airflow.dir").mkdir(parents=True)
    (directory / "airflow.dir" / "toc.dat").write_bytes(b"toc")
    (directory / "airflow.dir" / "3001.dat.gz").write_bytes(b"x" * 5000)
    (directory / "config.tar.gz").write_bytes(b"config")
    manifest = b.build_manifest(
        backup_id_=id_,
        time=b.parse_id(id_),
        airflow_version="3.3.2",
        alembic_revision="abc123",
        postgresql_version="15.8",
        database="airflow",
        database_size_bytes=12345,
        source={"host": "pg2", "role": "replica", "lag_seconds": 0.0},
        dump_format="directory",
        files=b.checksum_files(str(directory)),
        row_counts=counts or {"public.dag_run": 3, "public.task_instance": 30},
    )
    b.write_manifest(str(directory), manifest)
    return directory, manifest


# ---------------------------------------------------------------- ids
def test_ids_are_utc_times_that_sort_like_them():
    when = dt.datetime(2026, 11, 26, 3, 30, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert b.backup_id(when) == "20261126T023000Z"
    assert b.parse_id("20261126T023000Z") == dt.datetime(2026, 11, 26, 2, 30, tzinfo=UTC)
    assert b.is_backup_id("20261126T023000Z")
    for bad in ("latest", "20261126", "20261326T023000Z", "../20261126T023000Z", "", None):
        assert not b.is_backup_id(bad)
    with pytest.raises(ValueError):
        b.parse_id("yesterday")


def test_next_id_is_unique_and_later_than_every_existing_one():
    now = dt.datetime(2026, 11, 26, 2, 30, 0, 500, tzinfo=UTC)
    assert b.next_id(now, []) == "20261126T023000Z"
    assert b.next_id(now, ["20261126T023000Z"]) == "20261126T023001Z"
    # A clock that went back never yields an id older than the newest backup.
    assert b.next_id(now, ["20261126T040000Z", "junk"]) == "20261126T040001Z"


# ---------------------------------------------------------------- checksums
def test_checksums_cover_every_file_but_the_manifest(tmp_path):
    directory, manifest = make_backup(tmp_path)
    assert sorted(manifest["files"]) == ["airflow.dir/3001.dat.gz", "airflow.dir/toc.dat", "config.tar.gz"]
    assert manifest["files"]["config.tar.gz"] == {"size": 6, "sha256": hashlib.sha256(b"config").hexdigest()}
    assert manifest["total_bytes"] == 3 + 5000 + 6
    assert b.verify_files(str(directory), manifest["files"]) == []


def test_one_flipped_byte_is_found(tmp_path):
    directory, manifest = make_backup(tmp_path)
    path = directory / "airflow.dir" / "3001.dat.gz"
    data = bytearray(path.read_bytes())
    data[2500] ^= 0x01
    path.write_bytes(bytes(data))
    problems = b.verify_files(str(directory), manifest["files"])
    assert len(problems) == 1
    assert problems[0].startswith("airflow.dir/3001.dat.gz: sha256 ")


def test_missing_truncated_and_stray_files_are_found(tmp_path):
    directory, manifest = make_backup(tmp_path)
    (directory / "config.tar.gz").unlink()
    (directory / "airflow.dir" / "toc.dat").write_bytes(b"to")
    (directory / "airflow.dir" / "9999.dat.gz").write_bytes(b"stray")
    problems = b.verify_files(str(directory), manifest["files"])
    assert problems == [
        "airflow.dir/toc.dat: size 2 bytes, manifest says 3",
        "config.tar.gz: missing",
        "airflow.dir/9999.dat.gz: not in the manifest",
    ]


# ---------------------------------------------------------------- manifests
def test_manifest_round_trip(tmp_path):
    _directory, manifest = make_backup(tmp_path)
    loaded = b.load_manifest(str(tmp_path), "20261126T023000Z")
    assert loaded == json.loads(json.dumps(manifest))
    assert loaded["postgresql_major"] == 15
    assert loaded["time"] == "2026-11-26T02:30:00Z"
    assert oct(os.stat(tmp_path / "20261126T023000Z" / "manifest.json").st_mode & 0o777) == "0o600"


def test_unknown_id_names_the_known_ones(tmp_path):
    make_backup(tmp_path)
    with pytest.raises(b.BackupError, match=r"unknown backup id 20250101T000000Z .*known backups: 20261126T023000Z"):
        b.load_manifest(str(tmp_path), "20250101T000000Z")
    with pytest.raises(b.BackupError, match="is not a backup id"):
        b.load_manifest(str(tmp_path), "../etc")


def test_invalid_manifests_are_refused(tmp_path):
    directory, manifest = make_backup(tmp_path)
    for mutate, message in (
        (lambda m: m.pop("row_counts"), "'row_counts' is missing"),
        (lambda m: m.update(id="20261126T023001Z"), "does not match its directory"),
        (lambda m: m["files"].update({"../x": {"size": 1, "sha256": "0" * 64}}), "not a plain relative path"),
        (lambda m: m["files"]["config.tar.gz"].update(sha256="nothex"), "no valid sha256"),
        (lambda m: m.update(dump_format="plain"), "dump_format"),
        (lambda m: m["row_counts"].update({"t": -1}), "row_counts"),
    ):
        broken = json.loads(json.dumps(manifest))
        mutate(broken)
        (directory / "manifest.json").write_text(json.dumps(broken))
        with pytest.raises(b.BackupError, match=message):
            b.load_manifest(str(tmp_path), "20261126T023000Z")
    (directory / "manifest.json").write_text("{not json")
    with pytest.raises(b.BackupError, match="cannot be read"):
        b.load_manifest(str(tmp_path), "20261126T023000Z")


def test_only_complete_backups_are_listed_and_latest_resolves(tmp_path):
    make_backup(tmp_path, "20261125T023000Z")
    make_backup(tmp_path, "20261126T023000Z")
    (tmp_path / "20261127T023000Z.partial").mkdir()
    (tmp_path / "20261128T023000Z").mkdir()  # no manifest: interrupted
    assert b.list_backups(str(tmp_path)) == ["20261125T023000Z", "20261126T023000Z"]
    assert b.resolve_id(str(tmp_path), "latest") == "20261126T023000Z"
    assert b.resolve_id(str(tmp_path), "20261125T023000Z") == "20261125T023000Z"
    with pytest.raises(b.BackupError, match="there is no backup"):
        b.resolve_id(str(tmp_path / "empty"), "latest")


@pytest.mark.parametrize(
    ("version", "major"),
    [("15.8", 15), ("17.2 (Debian 17.2-1)", 17), ("150008", 15), ("170002", 17), ("90624", 96), ("9.6.24", 96)],
)
def test_major_versions(version, major):
    assert b.major_version(version) == major


def test_row_count_comparison():
    assert b.compare_counts({"a": 1, "b": 2}, {"a": 1, "b": 2}) == []
    assert b.compare_counts({"a": 1, "b": 2}, {"a": 0, "c": 5}) == [
        "table a: 0 rows, the backup had 1",
        "table b is missing",
        "table c is not in the backup",
    ]


# ---------------------------------------------------------------- retention
def ids(*stamps):
    return [b.backup_id(dt.datetime.fromisoformat(s).replace(tzinfo=UTC)) for s in stamps]


def test_retention_keeps_the_newest_of_each_day_and_week():
    # Monday 2026-01-05 .. Monday 2026-01-19; two backups on some days.
    history = ids(
        "2026-01-05T01:00",
        "2026-01-05T13:00",
        "2026-01-06T01:00",
        "2026-01-11T01:00",  # Sunday: week 2
        "2026-01-12T01:00",  # Monday: week 3
        "2026-01-13T01:00",
        "2026-01-13T13:00",
        "2026-01-19T01:00",  # week 4
    )
    result = b.select_retention(history, keep_last=1, keep_daily=3, keep_weekly=3)
    assert result["keep"] == ids("2026-01-11T01:00", "2026-01-12T01:00", "2026-01-13T13:00", "2026-01-19T01:00")
    assert result["delete"] == ids("2026-01-05T01:00", "2026-01-05T13:00", "2026-01-06T01:00", "2026-01-13T01:00")
    assert set(result["keep"]) | set(result["delete"]) == set(history)
    assert result["reasons"][ids("2026-01-11T01:00")[0]] == ["weekly 2026-W02"]
    assert "daily 2026-01-19" in result["reasons"][ids("2026-01-19T01:00")[0]]


def test_retention_counts_days_that_have_backups_not_calendar_days():
    history = ids("2026-01-01T00:00", "2026-03-01T00:00", "2026-06-01T00:00")
    assert b.select_retention(history, keep_last=0, keep_daily=2, keep_weekly=0)["keep"] == ids("2026-03-01T00:00", "2026-06-01T00:00")


def test_retention_always_keeps_the_newest_and_protected_ones():
    history = ids("2026-01-01T00:00", "2026-01-01T01:00", "2026-01-01T02:00")
    result = b.select_retention(history, keep_last=0, keep_daily=0, keep_weekly=0, protect=[history[0]])
    assert result["keep"] == [history[0], history[2]]
    assert result["delete"] == [history[1]]


def test_retention_keep_last_and_idempotence():
    history = ids(*(f"2026-01-01T0{h}:00" for h in range(6)))
    first = b.select_retention(history, keep_last=2, keep_daily=1, keep_weekly=1)
    assert first["keep"] == history[-2:]
    again = b.select_retention(first["keep"], keep_last=2, keep_daily=1, keep_weekly=1)
    assert again["keep"] == first["keep"] and again["delete"] == []


def test_retention_ignores_foreign_names_and_refuses_negative_counts():
    assert b.select_retention(["lost+found", "20261126T023000Z.partial"])["keep"] == []
    with pytest.raises(ValueError, match="keep_daily"):
        b.select_retention([], keep_daily=-1)


# ---------------------------------------------------------------- space and names
def test_space_check():
    assert b.space_problem(free=10 * 2**30, needed=2 * 2**30, reserve=2**30, what="the dump") is None
    message = b.space_problem(free=2 * 2**30, needed=2 * 2**30, reserve=2**30, what="the dump")
    assert (
        message == "not enough disk for the dump: 2.0 GiB free, 2.0 GiB needed plus a reserve of 1.0 GiB; free space or lower the reserve"
    )


def test_free_bytes_of_a_path_that_does_not_exist_yet(tmp_path):
    assert b.free_bytes(str(tmp_path / "not" / "yet")) == b.free_bytes(str(tmp_path)) > 0


def test_database_names():
    assert b.restore_database_name("airflow", "20261126T023000Z") == "airflow_restore_20261126t023000z"
    assert b.restore_database_name("airflow", "20261126T023000Z", "verify") == "airflow_verify_20261126t023000z"
    assert b.previous_database_name("airflow", dt.datetime(2026, 11, 26, 4, 0, tzinfo=UTC)) == "airflow_before_20261126t040000z"
    with pytest.raises(b.BackupError, match="63 bytes"):
        b.restore_database_name("a" * 60, "20261126T023000Z")


def test_toc_filter_leaves_out_extensions_and_grants_on_their_objects():
    listing = "\n".join(
        [
            ";",
            "; Archive created at 2026-11-26 02:30:00 UTC",
            "2; 3079 16385 EXTENSION - pg_stat_statements ",
            "4350; 0 0 COMMENT - EXTENSION pg_stat_statements ",
            "215; 1259 16390 TABLE public dag_run airflow",
            "4100; 0 16390 TABLE DATA public dag_run airflow",
            "4351; 0 0 ACL public TABLE pg_stat_statements postgres",
            "4352; 0 0 ACL public FUNCTION pg_stat_statements_reset(userid oid) postgres",
            "4353; 0 0 ACL public TABLE dag_run airflow",
            "4354; 0 0 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES airflow",
        ]
    )
    kept, dropped = b.filter_toc(listing, {"pg_stat_statements": ["pg_stat_statements", "pg_stat_statements_reset"]})
    assert dropped == [
        "EXTENSION - pg_stat_statements",
        "COMMENT - EXTENSION pg_stat_statements",
        "ACL public TABLE pg_stat_statements postgres",
        "ACL public FUNCTION pg_stat_statements_reset(userid oid) postgres",
    ]
    assert "TABLE public dag_run airflow" in kept
    assert "ACL public TABLE dag_run airflow" in kept
    assert "DEFAULT ACL public" in kept
    assert kept.startswith(";\n; Archive created")
