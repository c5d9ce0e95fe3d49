# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Backups of the metadata database: ids, manifests, checksums, retention, space.

Plain Python (no Ansible imports) shared by the pg_backup and pg_restore modules.

A backup is a directory `<backup_dir>/<id>/` holding the dump (`airflow.dump`, or
`airflow.dir/` in directory format), the configuration archive (`config.tar.gz`) and
`manifest.json`, which is written last: a directory without a valid manifest is not a
backup. The manifest names every other file with its size and sha256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# Backup ids are UTC times: 20261126T023000Z. They sort like the times they name.
ID_FORMAT = "%Y%m%dT%H%M%SZ"
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z$")
CHUNK = 1024 * 1024
# The options pg_backup and pg_restore share (documented in doc_fragments/backup.py).
COMMON_ARGUMENT_SPEC = {
    "backup_dir": {"type": "path", "required": True},
    "servers": {"type": "list", "elements": "dict", "required": True},
    "port": {"type": "int", "default": 5432},
    "database": {"type": "str", "default": "airflow"},
    "login_user": {"type": "str", "default": "airflow_backup"},
    "login_password": {"type": "str", "required": True, "no_log": True},
    "sslmode": {"type": "str", "default": "require"},
    "min_free_mb": {"type": "int", "default": 1024},
    "pg_bin_dir": {"type": "path"},
    "timeout": {"type": "int", "default": 86400},
}
MANIFEST_KEYS = (
    "format_version",
    "id",
    "time",
    "airflow_version",
    "alembic_revision",
    "postgresql_version",
    "postgresql_major",
    "database",
    "database_size_bytes",
    "source",
    "dump_format",
    "files",
    "row_counts",
)


class BackupError(Exception):
    """A refusal or a failure that names what is wrong."""


# ---------------------------------------------------------------- ids and times
def backup_id(when: dt.datetime) -> str:
    """The id of a backup taken at `when` (an aware datetime, or naive UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime(ID_FORMAT)


def is_backup_id(value: str) -> bool:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        return False
    try:
        parse_id(value)
    except ValueError:
        return False
    return True


def parse_id(value: str) -> dt.datetime:
    """The UTC time a backup id names; ValueError when it is not an id."""
    if not ID_PATTERN.match(value or ""):
        raise ValueError(f"not a backup id: {value!r} (expected YYYYMMDDTHHMMSSZ)")
    return dt.datetime.strptime(value, ID_FORMAT).replace(tzinfo=dt.UTC)


def next_id(now: dt.datetime, existing) -> str:
    """A new id for `now`, later than every existing one (two backups in one second)."""
    when = now.replace(microsecond=0)
    taken = {i for i in existing if is_backup_id(i)}
    latest = max(taken) if taken else None
    candidate = backup_id(when)
    while candidate in taken or (latest is not None and candidate <= latest):
        when = when + dt.timedelta(seconds=1)
        candidate = backup_id(when)
    return candidate


# ---------------------------------------------------------------- checksums
def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def list_files(root: str) -> list:
    """Every regular file under `root`, as sorted paths relative to it (the manifest excepted)."""
    found = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            rel = os.path.relpath(os.path.join(directory, name), root)
            if rel != MANIFEST:
                found.append(rel)
    return sorted(found)


def checksum_files(root: str) -> dict:
    """{relative path: {'size': bytes, 'sha256': hex}} for every file under `root`."""
    return {
        rel: {"size": os.path.getsize(os.path.join(root, rel)), "sha256": sha256_file(os.path.join(root, rel))} for rel in list_files(root)
    }


def verify_files(root: str, files: dict) -> list:
    """Problems of the files under `root` against a manifest's `files` (empty: all intact).

    Every file of the manifest must exist with its size and sha256, and no other
    file may be there (a stray file in a directory-format dump would be restored).
    """
    problems = []
    present = set(list_files(root))
    for rel in sorted(files):
        entry = files[rel]
        path = os.path.join(root, rel)
        if rel not in present:
            problems.append(f"{rel}: missing")
            continue
        size = os.path.getsize(path)
        if size != entry["size"]:
            problems.append(f"{rel}: size {size} bytes, manifest says {entry['size']}")
            continue
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            problems.append(f"{rel}: sha256 {digest}, manifest says {entry['sha256']}")
    problems.extend(f"{rel}: not in the manifest" for rel in sorted(present - set(files)))
    return problems


# ---------------------------------------------------------------- manifests
def build_manifest(
    *,
    backup_id_: str,
    time: dt.datetime,
    airflow_version: str,
    alembic_revision: str,
    postgresql_version: str,
    database: str,
    database_size_bytes: int,
    source: dict,
    dump_format: str,
    files: dict,
    row_counts: dict,
    extra: dict | None = None,
) -> dict:
    manifest = {
        "format_version": FORMAT_VERSION,
        "id": backup_id_,
        "time": time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "airflow_version": airflow_version,
        "alembic_revision": alembic_revision,
        "postgresql_version": postgresql_version,
        "postgresql_major": major_version(postgresql_version),
        "database": database,
        "database_size_bytes": int(database_size_bytes),
        "source": dict(source),
        "dump_format": dump_format,
        "files": {k: dict(v) for k, v in sorted(files.items())},
        "row_counts": {k: int(v) for k, v in sorted(row_counts.items())},
        "total_bytes": sum(int(v["size"]) for v in files.values()),
    }
    if extra:
        manifest.update(extra)
    problems = validate_manifest(manifest)
    if problems:
        raise BackupError("invalid manifest: " + "; ".join(problems))
    return manifest


def validate_manifest(manifest, expected_id: str | None = None) -> list:
    """Problems of a manifest (empty: valid)."""
    if not isinstance(manifest, dict):
        return ["the manifest is not a JSON object"]
    problems = [f"'{key}' is missing" for key in MANIFEST_KEYS if key not in manifest]
    if problems:
        return problems
    if manifest["format_version"] != FORMAT_VERSION:
        problems.append(f"format_version {manifest['format_version']!r} is not {FORMAT_VERSION}")
    if not is_backup_id(manifest["id"]):
        problems.append(f"id {manifest['id']!r} is not a backup id")
    elif expected_id is not None and manifest["id"] != expected_id:
        problems.append(f"id {manifest['id']!r} does not match its directory {expected_id!r}")
    if manifest["dump_format"] not in ("custom", "directory"):
        problems.append(f"dump_format {manifest['dump_format']!r} is not custom or directory")
    if not isinstance(manifest["postgresql_major"], int) or manifest["postgresql_major"] <= 0:
        problems.append("postgresql_major is not a positive integer")
    if not manifest["alembic_revision"]:
        problems.append("alembic_revision is empty")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        problems.append("files is empty")
    else:
        for rel, entry in files.items():
            if rel.startswith("/") or ".." in rel.split("/") or rel == MANIFEST:
                problems.append(f"file name {rel!r} is not a plain relative path")
            if not isinstance(entry, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", ""))):
                problems.append(f"{rel}: no valid sha256")
            elif not isinstance(entry.get("size"), int) or entry["size"] < 0:
                problems.append(f"{rel}: no valid size")
    counts = manifest["row_counts"]
    if not isinstance(counts, dict) or not all(isinstance(v, int) and v >= 0 for v in counts.values()):
        problems.append("row_counts must map table names to non-negative integers")
    return problems


def write_manifest(directory: str, manifest: dict) -> str:
    """Write manifest.json atomically (fsync, rename): it marks the backup complete."""
    path = os.path.join(directory, MANIFEST)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def load_manifest(backup_dir: str, id_: str) -> dict:
    """The valid manifest of backup `id_` in `backup_dir`; BackupError when it is not one."""
    if not is_backup_id(id_):
        raise BackupError(f"'{id_}' is not a backup id (expected YYYYMMDDTHHMMSSZ, or 'latest')")
    path = os.path.join(backup_dir, id_, MANIFEST)
    if not os.path.isfile(path):
        known = list_backups(backup_dir)
        hint = f"; known backups: {', '.join(known[-5:])}" if known else "; there is no backup there"
        raise BackupError(f"unknown backup id {id_} in {backup_dir}{hint}")
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BackupError(f"manifest of backup {id_} cannot be read: {exc}") from exc
    problems = validate_manifest(manifest, expected_id=id_)
    if problems:
        raise BackupError(f"manifest of backup {id_} is invalid: {'; '.join(problems)}")
    return manifest


def list_backups(backup_dir: str) -> list:
    """Ids of the complete backups in `backup_dir` (a directory named by an id with a manifest), oldest first."""
    if not os.path.isdir(backup_dir):
        return []
    return sorted(
        name for name in os.listdir(backup_dir) if is_backup_id(name) and os.path.isfile(os.path.join(backup_dir, name, MANIFEST))
    )


def resolve_id(backup_dir: str, wanted: str) -> str:
    """`latest` -> the newest complete backup; an id is returned as is."""
    if wanted == "latest":
        known = list_backups(backup_dir)
        if not known:
            raise BackupError(f"there is no backup in {backup_dir}")
        return known[-1]
    return wanted


def major_version(version: str) -> int:
    """PostgreSQL major version of '15.8', '15.8 (Debian 15.8-0+deb12u1)', '150008', '9.6.24'."""
    text = str(version).strip()
    if re.fullmatch(r"\d{5,6}", text):
        number = int(text)
        if number < 100000:
            return number // 10000 * 10 + number // 100 % 100
        return number // 10000
    match = re.match(r"(\d+)(?:\.(\d+))?", text)
    if not match:
        raise ValueError(f"not a PostgreSQL version: {version!r}")
    first = int(match.group(1))
    if first < 10 and match.group(2) is not None:
        return first * 10 + int(match.group(2))  # 9.6 -> 96, distinct from 9.5
    return first


# ---------------------------------------------------------------- row counts
def compare_counts(expected: dict, actual: dict) -> list:
    """Differences between the manifest's row counts and a restored database's."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            problems.append(f"table {table} is missing")
        elif table not in expected:
            problems.append(f"table {table} is not in the backup")
        elif expected[table] != actual[table]:
            problems.append(f"table {table}: {actual[table]} rows, the backup had {expected[table]}")
    return problems


# ---------------------------------------------------------------- retention
def select_retention(ids, keep_last: int = 1, keep_daily: int = 7, keep_weekly: int = 4, protect=()) -> dict:
    """Which backups to keep and which to delete: a pure function of the ids.

    - keep_last: the newest N backups;
    - keep_daily: the newest backup of each of the newest N days that have backups;
    - keep_weekly: the newest backup of each of the newest N ISO weeks that have backups;
    - the newest backup and the ids in `protect` are always kept.
    Days and weeks are UTC, as are the ids. Returns {'keep': [...], 'delete': [...],
    'reasons': {id: [why kept]}}, lists oldest first.
    """
    for name, value in (("keep_last", keep_last), ("keep_daily", keep_daily), ("keep_weekly", keep_weekly)):
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, not {value}")
    valid = sorted({i for i in ids if is_backup_id(i)}, reverse=True)  # newest first
    reasons: dict = {}

    def mark(id_, why):
        reasons.setdefault(id_, []).append(why)

    for id_ in valid[: int(keep_last)]:
        mark(id_, "last")
    for label, bucket, count in (
        ("daily", lambda t: t.date().isoformat(), keep_daily),
        ("weekly", lambda t: f"{t.isocalendar()[0]:04d}-W{t.isocalendar()[1]:02d}", keep_weekly),
    ):
        seen: list = []
        for id_ in valid:
            key = bucket(parse_id(id_))
            if key in seen:
                continue
            if len(seen) >= int(count):
                break
            seen.append(key)
            mark(id_, f"{label} {key}")
    if valid:
        mark(valid[0], "newest")
    for id_ in protect:
        if id_ in valid:
            mark(id_, "protected")
    keep = sorted(reasons)
    delete = sorted(set(valid) - set(keep))
    return {"keep": keep, "delete": delete, "reasons": {k: reasons[k] for k in keep}}


# ---------------------------------------------------------------- disk space
def free_bytes(path: str) -> int:
    """Bytes free for an unprivileged writer on the file system of `path` (or its nearest existing parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return shutil.disk_usage(probe).free


def space_problem(free: int, needed: int, reserve: int, what: str) -> str | None:
    """A refusal message when `free` bytes cannot hold `needed` and still leave `reserve`; else None."""
    if free - needed < reserve:
        return (
            f"not enough disk for {what}: {human(free)} free, {human(needed)} needed "
            f"plus a reserve of {human(reserve)}; free space or lower the reserve"
        )
    return None


def human(size: float) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


# ---------------------------------------------------------------- database names
def restore_database_name(database: str, id_: str, purpose: str = "restore") -> str:
    """Name of the new database a backup is restored into (63 bytes at most)."""
    name = f"{database}_{purpose}_{id_.lower()}"
    if len(name) > 63:
        raise BackupError(f"database name {name} is longer than PostgreSQL's 63 bytes")
    return name


def previous_database_name(database: str, now: dt.datetime) -> str:
    """Name the live database gets when a restored one is swapped in (kept until dropped)."""
    return f"{database}_before_{backup_id(now).lower()}"


# ---------------------------------------------------------------- restore list
TOC_ENTRY = re.compile(r"^\s*\d+;\s+\d+\s+\d+\s+(?P<rest>.*)$")


def filter_toc(listing: str, extension_members: dict) -> tuple:
    """A `pg_restore -l` listing without what only a superuser may restore.

    Extensions (and comments on them), and privileges on their member objects
    (pg_dump keeps grants made on them), are left out; whoever administers the
    server creates the extensions. Returns (new listing, [dropped entries]).
    """
    names = {name for members in extension_members.values() for name in members}
    kept, dropped = [], []
    for line in listing.splitlines():
        match = TOC_ENTRY.match(line)
        if not match:
            kept.append(line)
            continue
        rest = match.group("rest")
        words = rest.split()
        if words[:1] == ["EXTENSION"] or (words[:1] == ["COMMENT"] and "EXTENSION" in words[:4]):
            dropped.append(rest.strip())
            continue
        if words[:1] == ["ACL"] and any(re.search(rf"(?:^|\s){re.escape(name)}(?:\s|\(|$)", rest) for name in names):
            dropped.append(rest.strip())
            continue
        kept.append(line)
    return "\n".join(kept) + "\n", dropped
